//! The egress proxy (docs/architecture.md, "Secrets and the egress proxy"): what a
//! sandbox with `network.rules` sends to port 443 arrives here (the runtime's listener in
//! its gateway namespace, `stasis_runtime::container::egress`), and leaves with the
//! rules' headers set, their `${e2b.secrets.NAME}` placeholders filled from the Secret
//! store, so no secret value ever enters the sandbox.
//!
//! | file | owns |
//! |---|---|
//! | `proxy.rs` | one connection: its server name, the rules for it, splice or intercept |
//! | `sni.rs` | the server name of a ClientHello, read without consuming it |
//! | `intercept.rs` | a matched connection: TLS ended with a leaf from the CA, upstream TLS verified, HTTP/1.1 relayed with the headers set |
//! | `ca.rs` | the sandbox egress CA and its leaves |
//! | `upstream.rs` | the roots upstream certificates are verified against |
//! | `replay.rs` | a stream that gives back the bytes read to decide first |

pub mod ca;
mod intercept;
mod proxy;
mod replay;
pub mod sni;
pub mod upstream;

use std::sync::Arc;

use stasis_runtime::container::egress::EgressConnection;

use crate::lifecycle::Lifecycle;

/// What every connection needs.
pub struct Proxy {
    pub lifecycle: Lifecycle,
    pub ca: Arc<ca::EgressCa>,
    /// Upstream TLS: the host's roots (plus `--egress-extra-root`), ALPN `http/1.1`.
    pub upstream_tls: Arc<rustls::ClientConfig>,
}

/// Handles every connection the runtime's listeners accept, each on its own task, until
/// the runtime drops the sink.
pub fn spawn(proxy: Proxy, mut conns: tokio::sync::mpsc::UnboundedReceiver<EgressConnection>) {
    let proxy = Arc::new(proxy);
    tokio::spawn(async move {
        while let Some(conn) = conns.recv().await {
            tokio::spawn(proxy::handle(proxy.clone(), conn));
        }
    });
}
