//! Accepting connections on the API/proxy listeners (plain and TLS) with the limits a
//! daemon facing untrusted clients needs: a cap on open connections, a deadline for the
//! TLS handshake and for each request's headers (which also closes keep-alive
//! connections idle between requests), and no busy loop when `accept` fails (out of
//! file descriptors: the error repeats until a connection closes).
//!
//! Once a request is in flight nothing here times it out: envd streams, WebSockets and
//! CONNECT tunnels may be quiet for hours. The proxy bounds what it waits for upstream
//! (`proxy/forward.rs`).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, both listeners together; more wait in the kernel's
    /// backlog until one closes.
    pub max_connections: usize,
    /// From accept (or the end of the previous response) to a request's complete headers.
    pub header_timeout: Duration,
    /// From accept to a completed TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared by the listeners of one daemon.
#[derive(Clone)]
pub struct Gate {
    limits: Limits,
    permits: Arc<Semaphore>,
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Gate { limits, permits: Arc::new(Semaphore::new(limits.max_connections)) }
    }

    /// Serves `app` on `listener` (over TLS with `tls`) until the task is dropped.
    pub async fn serve(self, listener: TcpListener, app: axum::Router, tls: Option<Arc<rustls::ServerConfig>>) {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => {
                    backoff = Duration::from_millis(5);
                    tcp
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS repeat at once: wait (up to 1 s) for a
                    // connection to close instead of spinning a core.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (app, acceptor, limits) = (app.clone(), acceptor.clone(), self.limits);
            tokio::spawn(async move {
                let _permit = permit;
                match acceptor {
                    None => serve_connection(TokioIo::new(tcp), app, limits).await,
                    Some(a) => {
                        let Ok(Ok(tls)) = tokio::time::timeout(limits.tls_handshake_timeout, a.accept(tcp)).await
                        else {
                            return;
                        };
                        serve_connection(TokioIo::new(tls), app, limits).await
                    }
                }
            });
        }
    }
}

/// hyper's HTTP/1 server itself, not hyper-util's auto builder: that one first reads
/// the protocol preface without any deadline, so a client that sends nothing would hold
/// its connection for ever.
async fn serve_connection<I>(io: TokioIo<I>, app: axum::Router, limits: Limits)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}
