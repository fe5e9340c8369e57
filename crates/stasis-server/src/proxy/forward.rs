//! Forwarding one HTTP/1.1 request to a port inside a sandbox, streaming both ways
//! (no buffering), with protocol upgrades (WebSocket) bridged as raw byte streams.
//!
//! The sandbox has [`RESPONSE_HEADERS_TIMEOUT`] to start its answer; a body or an
//! upgraded stream may then be quiet as long as it likes (process streams, WebSockets).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::counted::Counted;

use crate::lifecycle::{Guard, PortStream};
use crate::metrics::Metrics;

/// Copies both ways between a client and a sandbox until either side ends or the sandbox
/// pauses (`guard` cancelled); the bytes are counted as they pass.
pub async fn bridge<C, S>(mut client: C, sandbox: &mut S, guard: &Guard, metrics: &Metrics)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Counted::new(&mut client);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, sandbox) => {}
        _ = guard.cancel.cancelled() => {}
    }
    metrics.proxy_bytes(client.read, client.written);
}

/// How long the proxy waits for a sandbox's response headers: generous (a slow endpoint
/// is the user's business) but bounded, so a service that accepts and never answers does
/// not hold the proxy's connections for ever.
pub const RESPONSE_HEADERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn is_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).is_some()
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Sends `req` over `stream` and returns the sandbox's response. The connection lives as
/// long as the response body (or the upgraded stream) and ends when `guard` is cancelled
/// (at pause, or only at kill for a parked connection, whose stream waits out a pause).
pub async fn forward(
    stream: PortStream,
    req: Request,
    guard: Guard,
    metrics: Arc<Metrics>,
) -> Result<Response, String> {
    // Request bodies counted as they stream to the sandbox.
    let counter = metrics.clone();
    let mut req = req.map(|body| {
        let stream = http_body_util::BodyStream::new(body).map(move |frame| {
            let frame = frame?;
            if let Some(data) = frame.data_ref() {
                counter.proxy_bytes(data.len() as u64, 0);
            }
            Ok::<_, axum::Error>(frame)
        });
        Body::new(http_body_util::StreamBody::new(stream))
    });
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with the sandbox failed: {e}"))?;
    let cancel = guard.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = conn.with_upgrades() => {}
            _ = cancel.cancelled() => {}
        }
    });
    let mut resp = tokio::time::timeout(RESPONSE_HEADERS_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| format!("the sandbox did not answer within {} s", RESPONSE_HEADERS_TIMEOUT.as_secs()))?
        .map_err(|e| format!("the sandbox did not answer: {e}"))?;

    if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let client_upgrade = client_upgrade.expect("upgrade requested");
        tokio::spawn(async move {
            let (Ok(backend), Ok(client)) = (backend_upgrade.await, client_upgrade.await) else { return };
            bridge(TokioIo::new(client), &mut TokioIo::new(backend), &guard, &metrics).await;
            drop(guard);
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (parts, body) = resp.into_parts();
    // The guard rides with the body: the connection counts as open until the client has
    // the whole response. At pause the body fails, so the client sees the connection cut
    // (not a response that merely ended).
    let body = async_stream::stream! {
        let guard = guard;
        let mut frames = http_body_util::BodyStream::new(body);
        loop {
            tokio::select! {
                frame = frames.next() => match frame {
                    Some(Ok(f)) => if let Ok(data) = f.into_data() {
                        metrics.proxy_bytes(0, data.len() as u64);
                        yield Ok::<_, BoxError>(data)
                    },
                    Some(Err(e)) => { yield Err(Box::new(e) as BoxError); break }
                    None => break,
                },
                _ = guard.cancel.cancelled() => {
                    yield Err("the sandbox was paused".into());
                    break;
                }
            }
        }
    };
    Ok(Response::from_parts(parts, Body::from_stream(body)))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
