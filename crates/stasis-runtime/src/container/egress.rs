//! The egress proxy's listeners: one in the gateway namespace of each running sandbox
//! whose policy intercepts HTTPS (`network.rs` redirects its port-443 connections to
//! [`network::EGRESS_PORT`] there). The runtime owns them because a socket keeps its
//! network namespace alive: each is opened when the sandbox's network comes up (create,
//! resume, a policy update that turns interception on, recovery of a running sandbox)
//! and closed, with every connection it accepted, *before* the namespace is deleted
//! (pause, kill, a failed create, an update that turns it off).
//!
//! What to do with a connection is not decided here: each accepted one goes, with its
//! original destination (`SO_ORIGINAL_DST`) and the sandbox's id, to the sink the server
//! registered (`ContainerConfig.egress`), which opens the upstream connection through
//! [`EgressUpstream::connect`] (made in the same namespace, so it is held to
//! the sandbox's policy and the host's rules).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{network, Inner};
use crate::error::{Result, RuntimeError};

/// Where accepted connections go (the server's proxy).
pub type EgressSink = tokio::sync::mpsc::UnboundedSender<EgressConnection>;

/// What the runtime needs to intercept a sandbox's HTTPS: where connections go, and the
/// CA certificate (PEM) sandboxes with rules trust (`trust.rs`).
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub sink: EgressSink,
    pub ca_pem: String,
}

/// One connection a sandbox opened to port 443, redirected to the proxy.
#[derive(Debug)]
pub struct EgressConnection {
    pub sandbox_id: String,
    pub stream: tokio::net::TcpStream,
    /// The address the sandbox connected to.
    pub original_dst: SocketAddrV4,
    /// Cancelled when the sandbox's network goes (pause, kill): drop every socket then.
    pub closed: CancellationToken,
    /// Opens the connection to `original_dst`.
    pub upstream: EgressUpstream,
}

/// The way out of one sandbox's gateway namespace.
#[derive(Debug, Clone)]
pub struct EgressUpstream {
    netns: String,
    dst: SocketAddrV4,
}

/// How long an upstream connect may take (a dropped SYN would otherwise retry for
/// two minutes while the sandbox waits).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl EgressUpstream {
    /// A TCP connection to the original destination, from the sandbox's gateway
    /// namespace.
    pub async fn connect(&self) -> io::Result<tokio::net::TcpStream> {
        let netns = self.netns.clone();
        let fd =
            tokio::task::spawn_blocking(move || socket_in(&netns, |_| Ok(()))).await.map_err(io::Error::other)??;
        let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
        tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, socket.connect(SocketAddr::V4(self.dst)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the destination did not answer in 30 s"))?
    }
}

/// A non-blocking TCP socket made in the named network namespace (on a thread that
/// enters it and ends), then `prepare`d there.
fn socket_in(netns: &str, prepare: impl FnOnce(&socket2::Socket) -> io::Result<()> + Send) -> io::Result<OwnedFd> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))?;
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<OwnedFd> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            sock.set_nonblocking(true)?;
            prepare(&sock)?;
            Ok(sock.into())
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}

/// Lets `s` bind an address its namespace does not have yet.
fn freebind(s: &socket2::Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with an int option value of the length given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            libc::IP_FREEBIND,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination a redirected connection was sent to (netfilter's conntrack entry).
fn original_dst(fd: &impl AsRawFd) -> io::Result<SocketAddrV4> {
    // SAFETY: getsockopt into a sockaddr_in of the length given.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            &mut addr as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)), u16::from_be(addr.sin_port)))
}

/// An open listener: cancelling `closed` ends its accept loop and every connection it
/// handed out; `done` says the listening socket is closed.
pub(super) struct Listener {
    closed: CancellationToken,
    done: std::sync::mpsc::Receiver<()>,
}

impl Inner {
    /// Opens the egress listener of sandbox `id` in its gateway namespace `netns`
    /// (nothing if one is open).
    pub(super) fn egress_open(&self, id: &str, netns: &str) -> Result<()> {
        let Some(cfg) = &self.egress else {
            return Err(RuntimeError::Network(
                "this sandbox has network rules, and this runtime has no egress proxy to apply them".into(),
            ));
        };
        if self.egress_listeners.lock().unwrap().contains_key(id) {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| RuntimeError::Network("the egress listener needs a tokio runtime".into()))?;
        let addr = SocketAddr::from((network::GATEWAY_IP, network::EGRESS_PORT));
        let fd = socket_in(netns, |s| {
            s.set_reuse_address(true)?;
            // The gateway's end of the sandbox pair, which holds the address, is made
            // after this (at boot, or by CRIU at restore).
            freebind(s)?;
            s.bind(&addr.into())?;
            s.listen(1024)
        })
        .map_err(|e| RuntimeError::Network(format!("egress listener in {netns}: {e}")))?;
        let _enter = handle.enter();
        let listener = tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
            .map_err(|e| RuntimeError::Network(format!("egress listener in {netns}: {e}")))?;
        let closed = CancellationToken::new();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (sink, id_owned, ns, token) = (cfg.sink.clone(), id.to_string(), netns.to_string(), closed.clone());
        handle.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = token.cancelled() => break,
                };
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(sandbox = %id_owned, "egress accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // A connection made to the listener itself (not redirected) has no other
                // destination: relaying it would connect the proxy to itself.
                let dst = match original_dst(&stream) {
                    Ok(d) if stream.local_addr().ok() != Some(SocketAddr::V4(d)) => d,
                    _ => continue,
                };
                let conn = EgressConnection {
                    sandbox_id: id_owned.clone(),
                    stream,
                    original_dst: dst,
                    closed: token.child_token(),
                    upstream: EgressUpstream { netns: ns.clone(), dst },
                };
                if sink.send(conn).is_err() {
                    break;
                }
            }
            drop(listener);
            let _ = done_tx.send(());
        });
        self.egress_listeners.lock().unwrap().insert(id.to_string(), Listener { closed, done });
        Ok(())
    }

    /// Puts the egress CA in the sandbox's trust store (`trust.rs`) if `policy`
    /// intercepts its HTTPS.
    pub(super) fn trust_egress_ca(
        &self,
        policy: Option<&network::NetworkPolicy>,
        rootfs: &std::path::Path,
    ) -> Result<()> {
        match (&self.egress, policy.is_some_and(|p| p.intercept_https)) {
            (Some(cfg), true) => super::trust::install(rootfs, &cfg.ca_pem),
            _ => Ok(()),
        }
    }

    /// Closes sandbox `id`'s egress listener and cuts its connections; returns once the
    /// listening socket is closed (bounded), so the namespace can go.
    pub(super) fn egress_close(&self, id: &str) {
        let Some(l) = self.egress_listeners.lock().unwrap().remove(id) else { return };
        l.closed.cancel();
        let _ = l.done.recv_timeout(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_was_not_redirected_has_no_original_destination_but_its_own() {
        // Without NAT, conntrack's original destination is the socket's own address (or
        // none at all without conntrack): the accept loop refuses both.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        if let Ok(d) = original_dst(&s) {
            assert_eq!(SocketAddr::V4(d), s.local_addr().unwrap());
        }
    }
}
