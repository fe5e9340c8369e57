//! Parked connections (docs/architecture.md, "Connections across a pause"): for a sandbox
//! that parks its connections, a proxied connection to one of its ports is a relay
//! session through the agent (`stasis-relay`; the agent's end is `stasis-agent`'s
//! `relay`) instead of a socket to the port. A pause drops the session's leg into the
//! sandbox, not the client: the client's bytes are kept (bounded, then backpressure),
//! client traffic auto-resumes a sandbox that asked for it, and when the sandbox runs
//! again the leg is reopened and each side resends what the other lacks. A kill, a pause
//! longer than the limit, or a session the sandbox no longer has (a resume without
//! memory, a reset) closes the client.
//!
//! It owns the host's half of each session; what a session *is* on the wire is
//! `stasis-relay`'s. It must not decide when a sandbox pauses or resumes (it asks, like
//! any proxied request, through `auto_resume`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use stasis_relay::handshake::{self, Accept, Answer};
use stasis_relay::pump::{self, LegEnd};
use stasis_relay::RelayState;
use stasis_runtime::{RuntimeError, ENVD_PORT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::activity::Phase;
use super::admission::{PortConnection, Refusal};
use super::Lifecycle;

/// The sandbox metadata key that turns parking on or off for one sandbox: `on`, `off`,
/// or the limit (`90s`, `10m`, `1h`; a number is seconds).
pub const METADATA_KEY: &str = "stasis_park_connections";
/// The limit of `on` when the server sets none (`stasis serve --park-connections`).
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// The longest limit a sandbox may ask for.
pub const MAX_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// How long the handshake of a leg may take (the agent's connect to the port is 10 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer head the agent may send.
const MAX_HEAD: usize = 8 * 1024;
/// The proxy's side of a parked connection buffers this much before the relay.
const LOCAL_BUFFER: usize = 64 * 1024;

/// How long a sandbox's connections stay parked across a pause, or `None` if they are cut:
/// its metadata's [`METADATA_KEY`] if it has one, else the server's setting.
pub fn limit(metadata: &BTreeMap<String, String>, server: Option<Duration>) -> Result<Option<Duration>, String> {
    let Some(v) = metadata.get(METADATA_KEY) else { return Ok(server) };
    let v = v.trim();
    let bad = || format!("metadata {METADATA_KEY} must be on, off or a duration up to 24h (90s, 10m), got {v:?}");
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(Some(server.unwrap_or(DEFAULT_LIMIT))),
        "off" | "false" => Ok(None),
        _ => {
            let d = match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(v).map_err(|_| bad())?,
            };
            if d.is_zero() || d > MAX_LIMIT {
                return Err(bad());
            }
            Ok(Some(d))
        }
    }
}

/// What the proxy reads and writes for a connection to a sandbox's port.
pub enum PortStream {
    /// A socket to the port (cut at pause).
    Direct(TcpStream),
    /// The local end of a parked connection's relay.
    Parked(DuplexStream),
}

impl AsyncRead for PortStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PortStream::Direct(s) => Pin::new(s).poll_read(cx, buf),
            PortStream::Parked(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PortStream::Direct(s) => Pin::new(s).poll_write(cx, data),
            PortStream::Parked(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PortStream::Direct(s) => Pin::new(s).poll_flush(cx),
            PortStream::Parked(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PortStream::Direct(s) => Pin::new(s).poll_shutdown(cx),
            PortStream::Parked(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// An open leg: its socket, the agent's counters, and bytes read past the answer's head.
struct Leg {
    stream: TcpStream,
    accept: Accept,
    leftover: Bytes,
}

enum LegError {
    /// The sandbox does not run (paused again, or gone).
    NotRunning,
    /// The agent answered this status (404: no such session).
    Refused(u16),
    Failed(String),
}

/// What a parked connection needs to reopen its leg.
struct Session {
    lifecycle: Lifecycle,
    id: String,
    access_token: Option<String>,
    auto_resume: bool,
    limit: Duration,
    /// The agent's id of the session (from the first leg).
    session: String,
}

impl Lifecycle {
    /// Opens a parked connection to `port` (the sandbox is running: admitted). `None`: the
    /// sandbox's agent has no relay (a sandbox paused by an older Stasis resumes with the
    /// agent it ran), so the connection is made as without parking.
    pub(super) async fn connect_parked(
        &self,
        id: &str,
        port: u16,
        limit: Duration,
        access_token: Option<String>,
        auto_resume: bool,
    ) -> Result<Option<PortConnection>, Refusal> {
        let (guard, phase) = self.inner.activity.enter_parked(id);
        let run = match *phase.borrow() {
            Phase::Running(n) => n,
            Phase::Paused => return Err(Refusal::NotRunning),
        };
        let mut session = Session {
            lifecycle: self.clone(),
            id: id.to_string(),
            access_token,
            auto_resume,
            limit,
            session: String::new(),
        };
        let open = handshake::Request::Open { port, park_secs: limit.as_secs().max(1) };
        let leg = match session.open_leg(&open).await {
            Ok(l) => l,
            Err(LegError::NotRunning) => return Err(Refusal::NotRunning),
            Err(LegError::Refused(502)) => return Err(Refusal::PortClosed(port)),
            Err(LegError::Refused(status @ (401 | 503))) => {
                return Err(Refusal::Internal(format!("the sandbox's agent refused a relay ({status})")))
            }
            Err(LegError::Refused(status)) => {
                tracing::debug!(sandbox = %id, status, "the agent has no relay: this connection is not parked");
                return Ok(None);
            }
            Err(LegError::Failed(e)) => return Err(Refusal::Internal(format!("relay to port {port}: {e}"))),
        };
        session.session = leg.accept.session.clone();
        let (local, remote) = tokio::io::duplex(LOCAL_BUFFER);
        tokio::spawn(session.relay(remote, leg, run, guard.cancel.clone(), phase));
        Ok(Some(PortConnection { stream: PortStream::Parked(local), guard }))
    }
}

impl Session {
    async fn open_leg(&self, req: &handshake::Request) -> Result<Leg, LegError> {
        let mut stream = match self.lifecycle.inner.runtime.connect(&self.id, ENVD_PORT).await {
            Ok(s) => s,
            Err(RuntimeError::NotRunning(_) | RuntimeError::NotFound(_)) => return Err(LegError::NotRunning),
            Err(e) => return Err(LegError::Failed(e.to_string())),
        };
        let _ = stream.set_nodelay(true);
        let exchange = async {
            stream.write_all(req.http(self.access_token.as_deref()).as_bytes()).await?;
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    return Ok((head, Bytes::copy_from_slice(&buf[end + 4..])));
                }
                if buf.len() > MAX_HEAD {
                    return Err(std::io::Error::other("the agent's answer head is too long"));
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("the agent closed the relay before answering"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        let (head, leftover) = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
            .await
            .map_err(|_| LegError::Failed("the agent did not answer the relay in 15 s".into()))?
            .map_err(|e| LegError::Failed(e.to_string()))?;
        match handshake::parse_answer(&head) {
            Ok(Answer::Accepted(accept)) => Ok(Leg { stream, accept, leftover }),
            Ok(Answer::Refused { status }) => Err(LegError::Refused(status)),
            Err(e) => Err(LegError::Failed(e.to_string())),
        }
    }

    /// Relays between the proxy's end (`local`) and the sandbox, over legs reopened after
    /// each pause, until the session ends.
    async fn relay(
        self,
        local: DuplexStream,
        leg: Leg,
        mut run: u64,
        killed: CancellationToken,
        mut phase: watch::Receiver<Phase>,
    ) {
        let (mut cr, mut cw) = tokio::io::split(local);
        let mut state = RelayState::new();
        let mut leg = Some(leg);
        loop {
            if let Some(l) = leg.take() {
                if state.attach(l.accept.received, l.accept.fin).is_err() || state.receive(&l.leftover).is_err() {
                    break;
                }
                let (mut lr, mut lw) = l.stream.into_split();
                let mut watch = phase.clone();
                let stop = async {
                    tokio::select! {
                        _ = killed.cancelled() => {}
                        _ = watch.wait_for(|p| *p != Phase::Running(run)) => {}
                    }
                };
                match pump::run(&mut state, &mut lr, &mut lw, &mut cr, &mut cw, stop).await {
                    LegEnd::Lost | LegEnd::Stopped => {}
                    LegEnd::Finished | LegEnd::LocalFailed(_) | LegEnd::Protocol(_) => {
                        pump::send_close(&mut lw).await;
                        return;
                    }
                    LegEnd::Closed => break,
                }
                tracing::debug!(sandbox = %self.id, "connection parked");
            }
            match self.park(&mut state, &mut cr, &mut run, &killed, &mut phase).await {
                Some(l) => leg = Some(l),
                None => break,
            }
        }
        // Closed cleanly: the client reads the end of the stream.
        let _ = cw.shutdown().await;
    }

    /// Waits, parked, for the sandbox to run again and reopens the leg; `None` when the
    /// connection is over (killed, the limit passed, the session is gone, the client failed).
    async fn park(
        &self,
        state: &mut RelayState,
        client: &mut (impl AsyncRead + Unpin),
        run: &mut u64,
        killed: &CancellationToken,
        phase: &mut watch::Receiver<Phase>,
    ) -> Option<Leg> {
        let deadline = tokio::time::Instant::now() + self.limit;
        let mut resume_asked = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = *phase.borrow_and_update();
            // A leg lost while the sandbox still runs (same run) is reopened at once too.
            if let Phase::Running(n) = now {
                *run = n;
                match self.reopen(state).await {
                    Ok(l) => return Some(l),
                    Err(LegError::NotRunning) => {}
                    Err(LegError::Refused(404)) => {
                        tracing::info!(sandbox = %self.id, "parked connection closed: the sandbox no longer has its session (resumed without memory, reset, or past its park time)");
                        return None;
                    }
                    Err(LegError::Refused(status)) => {
                        tracing::warn!(sandbox = %self.id, status, "parked connection closed: the agent refused to resume it");
                        return None;
                    }
                    Err(LegError::Failed(e)) => {
                        tracing::warn!(sandbox = %self.id, "parked connection closed: cannot reopen it: {e}");
                        return None;
                    }
                }
            }
            let read_client = !state.local_ended() && state.unacked() < pump::MAX_UNACKED;
            tokio::select! {
                _ = killed.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(sandbox = %self.id, limit_secs = self.limit.as_secs(), "parked connection closed: the sandbox stayed paused past the limit");
                    return None;
                }
                r = phase.changed() => if r.is_err() { return None },
                r = client.read(&mut buf), if read_client => match r {
                    Ok(0) => state.local_eof(),
                    Ok(n) => {
                        state.push_local(&buf[..n]);
                        if self.auto_resume && !resume_asked {
                            resume_asked = true;
                            let (lc, id) = (self.lifecycle.clone(), self.id.clone());
                            tokio::spawn(async move {
                                if let Err(e) = lc.auto_resume(&id).await {
                                    tracing::warn!(sandbox = %id, "a parked connection's traffic could not resume the sandbox: {e:?}");
                                }
                            });
                        }
                    }
                    Err(_) => return None,
                },
            }
        }
    }

    /// Reopens the leg of a session: a few tries, as the agent may still be settling
    /// after a restore.
    async fn reopen(&self, state: &RelayState) -> Result<Leg, LegError> {
        let req = handshake::Request::Resume {
            session: self.session.clone(),
            received: state.received(),
            fin: state.received_fin(),
        };
        let mut last = LegError::NotRunning;
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            match self.open_leg(&req).await {
                Ok(l) => return Ok(l),
                Err(LegError::Failed(e)) => {
                    tracing::debug!(sandbox = %self.id, "reopening a parked connection: {e}");
                    last = LegError::Failed(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(METADATA_KEY.to_string(), v.to_string())])
    }

    #[test]
    fn the_limit_comes_from_the_metadata_else_the_server() {
        let server = Some(Duration::from_secs(120));
        assert_eq!(limit(&BTreeMap::new(), None), Ok(None), "off by default");
        assert_eq!(limit(&BTreeMap::new(), server), Ok(server));
        assert_eq!(limit(&meta("on"), None), Ok(Some(DEFAULT_LIMIT)));
        assert_eq!(limit(&meta("ON"), server), Ok(server));
        assert_eq!(limit(&meta("off"), server), Ok(None), "a sandbox may refuse the server's parking");
        assert_eq!(limit(&meta("90s"), None), Ok(Some(Duration::from_secs(90))));
        assert_eq!(limit(&meta("45"), server), Ok(Some(Duration::from_secs(45))));
        assert_eq!(limit(&meta("1h 30m"), None), Ok(Some(Duration::from_secs(5400))));
        for bad in ["sometimes", "0", "0s", "25h", "-1", ""] {
            let e = limit(&meta(bad), None).unwrap_err();
            assert!(e.contains(METADATA_KEY), "{bad}: {e}");
        }
    }
}
