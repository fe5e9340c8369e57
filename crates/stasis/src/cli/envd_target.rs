//! How the CLI reaches a sandbox's agent (envd): through `stasis serve`'s proxy, with
//! the sandbox headers and its access token, as the SDKs do.

use anyhow::{Context, Result};
use serde_json::Value;

use super::sandbox::{Api, ApiFailure};

/// The agent of one running sandbox, behind the server's proxy.
pub(super) struct EnvdTarget {
    /// `host:port` of `stasis serve`.
    pub addr: String,
    pub base: String,
    pub headers: Vec<(&'static str, String)>,
}

impl EnvdTarget {
    /// The agent of running sandbox `id`, as `user` when given (a 409 when it is not
    /// running: the CLI does not resume a sandbox behind the user's back).
    pub async fn of(api: &Api, id: &str, user: Option<&str>) -> Result<EnvdTarget> {
        let (_, info) = api.call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None).await?;
        if info["state"] != "running" {
            let state = info["state"].as_str().unwrap_or("not running");
            return Err(ApiFailure::new(409, format!("sandbox {id} is {state}")).into());
        }
        let url = reqwest::Url::parse(&api.base).context("bad --api-url")?;
        let addr = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port_or_known_default().unwrap_or(80));
        let mut headers = vec![("e2b-sandbox-id", id.to_string()), ("e2b-sandbox-port", "49983".to_string())];
        if let Some(t) = info.get("envdAccessToken").and_then(Value::as_str) {
            headers.push(("x-access-token", t.to_string()));
        }
        headers.extend(user.map(stasis_runtime::agent_client::user_header));
        Ok(EnvdTarget { addr, base: api.base.trim_end_matches('/').to_string(), headers })
    }

    /// A new connection to the server, for one envd request.
    pub async fn connect(&self) -> Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::connect(&self.addr).await.with_context(|| format!("connect {}", self.addr))
    }

    /// A reqwest request to the agent's `path` (e.g. `/files?path=...`).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        req
    }
}
