//! The sandbox's environment variables, from envd (`GET /envs`, the agent's envd on
//! port 49983), as E2B's interpreter gets them.
//!
//! A template's kernels start in its warm snapshot, before the sandbox (and the `envs`
//! of its create request) exists, so before each run the service asks envd for them with
//! the caller's `X-Access-Token` and applies what changed in the context
//! (`crate::context`). Asked every run, not once: a sandbox made from a snapshot of
//! another has its own. Unreachable envd or an error answer: no sandbox envs, a warning.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use stasis_proto::agent::ACCESS_TOKEN_HEADER;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Envd {
    /// `host:port`, or none when disabled.
    authority: Option<String>,
}

impl Envd {
    /// From `http://host:port` (empty: disabled).
    pub fn new(url: &str) -> Result<Self, String> {
        if url.is_empty() {
            return Ok(Envd { authority: None });
        }
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("envd URL must be http://host:port: {url}"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("envd URL must be http://host:port: {url}"));
        }
        Ok(Envd { authority: Some(authority.to_string()) })
    }

    /// The sandbox's envs (none when envd cannot say).
    pub async fn envs(&self, token: Option<&str>) -> BTreeMap<String, String> {
        let Some(authority) = &self.authority else { return BTreeMap::new() };
        match tokio::time::timeout(TIMEOUT, get_envs(authority, token)).await {
            Ok(Ok(envs)) => envs,
            Ok(Err(e)) => {
                tracing::warn!(envd = %authority, "no sandbox envs: {e}");
                BTreeMap::new()
            }
            Err(_) => {
                tracing::warn!(envd = %authority, "no sandbox envs: envd did not answer in time");
                BTreeMap::new()
            }
        }
    }
}

async fn get_envs(authority: &str, token: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get("/envs").header(hyper::header::HOST, authority);
    if let Some(t) = token {
        req = req.header(ACCESS_TOKEN_HEADER, t);
    }
    let req = req.body(Body::empty()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("GET /envs: {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET /envs: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Envd::new("http://127.0.0.1:49983/").unwrap().authority.as_deref(), Some("127.0.0.1:49983"));
        assert!(Envd::new("").unwrap().authority.is_none());
        assert!(Envd::new("https://x:1").is_err());
        assert!(Envd::new("http://x:1/envs").is_err());
    }

    #[tokio::test]
    async fn asks_with_the_token_and_survives_failures() {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/envs",
            get(|h: axum::http::HeaderMap| async move {
                match h.get(ACCESS_TOKEN_HEADER).map(|v| v.to_str().unwrap().to_string()) {
                    Some(t) if t == "tok" => (axum::http::StatusCode::OK, r#"{"A":"1"}"#),
                    _ => (axum::http::StatusCode::UNAUTHORIZED, "no"),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let envd = Envd::new(&url).unwrap();
        assert_eq!(envd.envs(Some("tok")).await, BTreeMap::from([("A".to_string(), "1".to_string())]));
        assert!(envd.envs(Some("bad")).await.is_empty());
        assert!(Envd::new("http://127.0.0.1:1").unwrap().envs(None).await.is_empty());
    }
}
