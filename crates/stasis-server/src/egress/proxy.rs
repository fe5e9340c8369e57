//! One connection a sandbox opened to port 443: its ClientHello is read (within
//! [`HELLO_TIMEOUT`]) for the server name; a name the sandbox's rules match is
//! intercepted (`intercept.rs`), anything else (no match, no name, not TLS) is spliced to
//! the original destination byte for byte, the bytes read first included: TLS stays end
//! to end and the sandbox sees the server's own certificate.
//!
//! The rules are read per connection, so an update applies to the next one. When the
//! sandbox's network goes (pause, kill) the runtime cancels `closed` and every socket
//! here is dropped with the task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use stasis_runtime::container::egress::EgressConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::replay::Replay;
use super::sni::{self, Sni};
use super::Proxy;

/// How long a client has to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle(proxy: Arc<Proxy>, conn: EgressConnection) {
    let (id, dst, closed) = (conn.sandbox_id.clone(), conn.original_dst, conn.closed.clone());
    tokio::select! {
        r = relay(proxy, conn) => if let Err(e) = r {
            tracing::debug!(sandbox = %id, "egress to {dst}: {e:#}");
        },
        _ = closed.cancelled() => {}
    }
}

async fn relay(proxy: Arc<Proxy>, conn: EgressConnection) -> Result<()> {
    let EgressConnection { sandbox_id, mut stream, upstream, .. } = conn;
    let mut head = Vec::with_capacity(2048);
    let name = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            match sni::parse(&head) {
                Sni::Incomplete => {}
                Sni::Name(n) => return Ok(Some(n)),
                Sni::None | Sni::NotTls => return Ok(None),
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                anyhow::bail!("the client closed before its ClientHello ended");
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .context("no ClientHello in 10 s")??;
    if let Some(name) = name {
        let rules = proxy.lifecycle.network_rules(&sandbox_id).await;
        if let Some(rules) = rules.for_host(&name) {
            let client = Replay::new(head, stream);
            return super::intercept::run(&proxy, &sandbox_id, client, &name, rules.to_vec(), &upstream).await;
        }
    }
    let mut up = upstream.connect().await.context("connect")?;
    up.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut stream, &mut up).await?;
    Ok(())
}
