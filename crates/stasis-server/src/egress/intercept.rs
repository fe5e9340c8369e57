//! A connection a rule matches: the upstream side first (TLS to the original
//! destination, verified for the name the sandbox asked for: sending to the address the
//! sandbox chose, not a fresh DNS answer, is safe because the certificate must still be
//! valid for the rule's name), then the sandbox's side (TLS ended with a leaf from the
//! egress CA for that name), then HTTP/1.1 relayed request by request with the rule's
//! headers set. Values are read per request, so a `Secret.update` applies to the next
//! one. An upstream that fails verification fails the sandbox's handshake: it never
//! talks to an impostor through us.
//!
//! A value is never logged; a header whose secret is gone is left out, and the
//! sandbox's events say which.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use stasis_runtime::container::egress::EgressUpstream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Proxy;
use crate::secrets::rules::{headers_for, secret_names, Rule};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run<S>(
    proxy: &Proxy,
    sandbox_id: &str,
    client: S,
    name: &str,
    rules: Vec<Rule>,
    upstream: &EgressUpstream,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).context("server name")?;
    let up = upstream.connect().await.context("connect")?;
    let up = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(proxy.upstream_tls.clone()).connect(server_name, up),
    )
    .await
    .context("upstream TLS handshake timed out")?
    .with_context(|| format!("upstream TLS for {name}"))?;
    let tls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(proxy.ca.server_config(name)?).accept(client),
    )
    .await
    .context("the sandbox's TLS handshake timed out")?
    .context("the sandbox's TLS handshake")?;

    let (sender, upstream_conn) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await?;
    // The upstream connection is driven beside the sandbox's; it goes when this does.
    let driver = tokio::spawn(upstream_conn);
    let _stop = AbortOnDrop(driver.abort_handle());
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let (lifecycle, id, host) = (proxy.lifecycle.clone(), sandbox_id.to_string(), name.to_string());
    let rules = Arc::new(rules);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let (sender, lifecycle, id, host, rules) =
            (sender.clone(), lifecycle.clone(), id.clone(), host.clone(), rules.clone());
        async move {
            // The current values of the secrets the rules name.
            let mut values = HashMap::new();
            for n in secret_names(rules.iter()) {
                if let Ok(v) = lifecycle.secret_value(&n).await {
                    values.insert(n, v);
                }
            }
            for (header, value) in headers_for(&rules, |n| values.get(n).cloned()) {
                let Ok(hname) = HeaderName::from_bytes(header.as_bytes()) else { continue };
                match value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    Some(mut v) => {
                        v.set_sensitive(true);
                        req.headers_mut().insert(hname, v);
                    }
                    None => {
                        req.headers_mut().remove(&hname);
                        tracing::warn!(sandbox = %id, "egress: {host}: header {header:?} left out, a secret it names does not exist");
                        lifecycle.egress_secret_missing(&id, &host, &header).await;
                    }
                }
            }
            let mut sender = sender.lock().await;
            sender.ready().await?;
            let resp: Result<Response<Incoming>, hyper::Error> = sender.send_request(req).await;
            resp
        }
    });
    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await.context("relay")?;
    Ok(())
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
