//! Sending a request to the node that answers it and its answer back: one HTTP/1.1
//! connection to the node's advertised URL per request, bodies streamed both ways,
//! upgrades (WebSocket) and CONNECT tunnels bridged as raw streams. The request keeps
//! its method, path, Host and credentials (the API key, the sandbox's tokens: the owning
//! node checks them as it would a client's) and is marked as forwarded (`auth.rs`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use stasis_store::NodeRow;

use super::{auth, Cluster};

/// How long a node has to accept the connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long it has to start answering (the sandbox's own answer may take that long too:
/// the proxy's own bound, `proxy::forward`).
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `HOST:PORT` of an advertised `http://HOST:PORT[/]` URL.
pub fn authority(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: an http://HOST:PORT URL"))?;
    let auth = rest.trim_end_matches('/');
    if auth.is_empty() || auth.contains('/') || auth.contains('@') {
        return Err(format!("{url:?}: an http://HOST:PORT URL, no path"));
    }
    let (host, port) = auth.rsplit_once(':').ok_or_else(|| format!("{url:?}: the port is missing"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{url:?}: a host and a port 1-65535"));
    }
    Ok(auth.to_string())
}

fn failed(node: &NodeRow, e: impl std::fmt::Display) -> Response {
    let message = format!("node {} ({}) did not answer: {e}", node.id, node.url);
    tracing::warn!(node = %node.id, "{message}");
    crate::api::ApiError::new(StatusCode::BAD_GATEWAY, message).into_response()
}

fn is_upgrade(req: &Request) -> bool {
    req.method() == Method::CONNECT
        || req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

impl Cluster {
    /// Sends `req` to `node` and returns its answer (a 502 saying so when it does not).
    pub async fn forward(&self, node: &NodeRow, mut req: Request) -> Response {
        let Some(secret) = self.config().secret.as_deref() else {
            return failed(node, "this node has no cluster secret");
        };
        if let Err(e) = auth::mark(req.headers_mut(), self.lifecycle().node_id(), secret) {
            return failed(node, e);
        }
        let addr = match authority(&node.url) {
            Ok(a) => a,
            Err(e) => return failed(node, e),
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return failed(node, e),
            Err(_) => return failed(node, format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())),
        };
        let _ = stream.set_nodelay(true);
        // Origin form, as a client sends it (CONNECT keeps its authority form).
        if req.method() != Method::CONNECT {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
            *req.uri_mut() = pq.parse().unwrap_or_else(|_| "/".parse().unwrap());
        }
        let connect = req.method() == Method::CONNECT;
        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut sender, conn) = match hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)).await
        {
            Ok(x) => x,
            Err(e) => return failed(node, e),
        };
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut resp = match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failed(node, e),
            Err(_) => return failed(node, format!("no answer within {} s", RESPONSE_TIMEOUT.as_secs())),
        };
        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success());
        if let (true, Some(client_upgrade)) = (switched, client_upgrade) {
            let node_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (Ok(upstream), Ok(client)) = (node_upgrade.await, client_upgrade.await) else { return };
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, Body::new(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_urls_are_plain_http_host_and_port() {
        assert_eq!(authority("http://10.0.0.5:3000").unwrap(), "10.0.0.5:3000");
        assert_eq!(authority("http://node-a.internal:3000/").unwrap(), "node-a.internal:3000");
        assert_eq!(authority("http://[::1]:3000").unwrap(), "[::1]:3000");
        for bad in ["https://a:1", "http://a", "http://a:0", "http://:1", "http://a:1/x", "http://u@a:1", "a:1"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }
}
