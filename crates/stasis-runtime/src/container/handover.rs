//! Handing a sandbox restored from a snapshot its own identity. The restored agent still
//! holds the source's access token and environment; `POST /init` with a typed
//! [`InitRequest`] (`stasis_proto::agent`) gives it the new sandbox's, authenticated with
//! the old token, as E2B's orchestrator does with envd.
//!
//! Blocking, like every runtime operation (it runs on the operation's thread): the request
//! goes through hyper's HTTP/1 client on a current-thread tokio runtime of its own, over a
//! socket made inside the sandbox's network namespace (`netns`).

use std::io;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use stasis_proto::agent::{InitRequest, ACCESS_TOKEN_HEADER, ENVD_PORT, INIT_PATH};

use crate::error::{IoContext, Result, RuntimeError};

/// For the connect, and again for the whole exchange.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `req` to the agent of the sandbox whose init is `init`.
pub(super) fn hand_over(
    init: std::sync::Arc<super::InitHandle>,
    old_token: Option<&str>,
    req: &InitRequest,
) -> Result<()> {
    let stream = crate::netns::connect_blocking(init, ENVD_PORT, TIMEOUT)
        .ctx(|| "hand the new access token to the restored agent".into())?;
    init_over(stream, old_token, req)
}

/// `POST /init` on a connected stream; any status but 200 or 204 is a refusal.
fn init_over(stream: std::net::TcpStream, old_token: Option<&str>, req: &InitRequest) -> Result<()> {
    let context = || "hand the new access token to the restored agent".to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ctx(context)?;
    let (status, body) = rt
        .block_on(async {
            match tokio::time::timeout(TIMEOUT, post_init(stream, old_token, req)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer from the agent")),
            }
        })
        .ctx(context)?;
    if status != StatusCode::NO_CONTENT && status != StatusCode::OK {
        return Err(RuntimeError::Boot(format!("the restored agent refused its new token: {status} {body}")));
    }
    Ok(())
}

async fn post_init(
    stream: std::net::TcpStream,
    old_token: Option<&str>,
    req: &InitRequest,
) -> io::Result<(StatusCode, String)> {
    stream.set_nonblocking(true)?;
    let io = TokioIo::new(tokio::net::TcpStream::from_std(stream)?);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(io::Error::other)?;
    // Drives the connection until the exchange is over.
    tokio::spawn(conn);
    let mut http = hyper::Request::post(INIT_PATH).header(HOST, "agent").header(CONTENT_TYPE, "application/json");
    if let Some(t) = old_token {
        http = http.header(ACCESS_TOKEN_HEADER, t);
    }
    let http = http.body(Full::new(Bytes::from(req.to_json()))).map_err(io::Error::other)?;
    let resp = sender.send_request(http).await.map_err(io::Error::other)?;
    let status = resp.status();
    // The agent's reason (a Connect error) says why it refused.
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).trim().chars().take(300).collect();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// What the server received: request line, headers (names lowercased), body.
    type Received = (String, Vec<(String, String)>, Vec<u8>);

    /// A one-request HTTP server: returns what it received and answers `response`.
    fn serve_once(response: &'static str) -> (std::net::TcpStream, std::thread::JoinHandle<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut request_line = String::new();
            r.read_line(&mut request_line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").unwrap().1.parse().unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            (&s).write_all(response.as_bytes()).unwrap();
            (request_line.trim_end().to_string(), headers, body)
        });
        (std::net::TcpStream::connect(addr).unwrap(), server)
    }

    #[test]
    fn posts_a_typed_init_request_with_the_old_token() {
        let (stream, server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n");
        let req = InitRequest {
            access_token: Some("new-token".into()),
            env_vars: BTreeMap::from([("A".into(), "1".into())]),
            boot_id: Some("0123456789abcdef0123456789abcdef".into()),
        };
        init_over(stream, Some("old-token"), &req).unwrap();
        let (line, headers, body) = server.join().unwrap();
        assert_eq!(line, "POST /init HTTP/1.1");
        assert!(headers.contains(&("x-access-token".into(), "old-token".into())), "{headers:?}");
        assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
        // Exactly what the agent's handler reads.
        assert_eq!(InitRequest::from_json(&body).unwrap(), req);
    }

    #[test]
    fn a_refusal_is_an_error_with_the_agents_reason() {
        let (stream, server) = serve_once(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\r\n{\"code\":\"unauthenticated\",\"message\":\"invalid!!\"}",
        );
        let e = init_over(stream, None, &InitRequest::default()).unwrap_err().to_string();
        let (_, headers, _) = server.join().unwrap();
        assert!(!headers.iter().any(|(k, _)| k == "x-access-token"), "{headers:?}");
        assert!(e.contains("refused") && e.contains("401") && e.contains("invalid!!"), "{e}");
    }
}
