//! The relay endpoint (`GET /stasis/relay`, an HTTP upgrade; protocol in `stasis-relay`):
//! the host proxy's connections to a port inside the sandbox, made *by the agent*, so the
//! sandbox's end (the agent's loopback socket to the port, and the bytes the host has not
//! acknowledged) is part of the sandbox and is checkpointed and restored with it. The host
//! leg may be cut (a pause cuts it) and reopened with `resume`: a session outlives its
//! legs for its park time, counted in the sandbox's running time (a pause does not use it
//! up; the host enforces its own limit on the pause itself).
//!
//! It owns the sessions and their loopback connections; it must not do anything else with
//! them (it never reads what it relays).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use stasis_relay::handshake::{self, Accept};
use stasis_relay::pump::{self, LegEnd};
use stasis_relay::RelayState;
use tokio::sync::{mpsc, oneshot};

use crate::envd;

/// Sessions one sandbox may hold at once (each is a socket and up to
/// [`pump::MAX_UNACKED`] bytes each way).
const MAX_SESSIONS: usize = 1024;
/// How long the agent waits for the port to accept (as the host's direct connect).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The open sessions, by id.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, mpsc::Sender<NewLeg>>>>,
}

/// A leg handed to its session: the peer's counters, the upgrade to wait for, and where
/// to send the agent's side for the 101 answer.
struct NewLeg {
    peer_received: u64,
    peer_fin: bool,
    upgrade: OnUpgrade,
    reply: oneshot::Sender<Result<Accept, String>>,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// `GET /stasis/relay`: opens or resumes a session on this upgraded connection.
pub async fn handle(AxState(state): AxState<envd::State>, mut req: Request<Body>) -> Response {
    if let Err(e) = envd::check_token(&state, req.headers()) {
        return refuse(StatusCode::UNAUTHORIZED, e.message);
    }
    let upgrade_asked = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(handshake::PROTOCOL));
    if !upgrade_asked {
        return refuse(StatusCode::BAD_REQUEST, format!("{} needs Upgrade: {}", handshake::PATH, handshake::PROTOCOL));
    }
    let asked = req.headers().get(handshake::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let asked = match handshake::Request::parse(asked) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "this connection cannot be upgraded");
    };
    let sessions = state.relay_sessions();
    let (legs, peer_received, peer_fin) = match asked {
        handshake::Request::Open { port, park_secs } => {
            if sessions.inner.lock().unwrap().len() >= MAX_SESSIONS {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many relay sessions");
            }
            let app = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(("127.0.0.1", port)))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return refuse(StatusCode::BAD_GATEWAY, format!("port {port}: {e}")),
                Err(_) => return refuse(StatusCode::BAD_GATEWAY, format!("port {port} did not accept in 10 s")),
            };
            let _ = app.set_nodelay(true);
            let id = new_session_id();
            let (tx, rx) = mpsc::channel(1);
            sessions.inner.lock().unwrap().insert(id.clone(), tx.clone());
            tokio::spawn(run_session(sessions.clone(), id, app, park_secs, rx));
            (tx, 0, false)
        }
        handshake::Request::Resume { session, received, fin } => match sessions.inner.lock().unwrap().get(&session) {
            Some(tx) => (tx.clone(), received, fin),
            None => return refuse(StatusCode::NOT_FOUND, format!("no relay session {session}")),
        },
    };
    let (reply, answer) = oneshot::channel();
    let leg = NewLeg { peer_received, peer_fin, upgrade, reply };
    if legs.send(leg).await.is_err() {
        return refuse(StatusCode::NOT_FOUND, "the relay session ended");
    }
    match answer.await {
        Ok(Ok(accept)) => {
            let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
            let h = r.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static(handshake::PROTOCOL));
            h.insert(handshake::HEADER, HeaderValue::from_str(&accept.header_value()).expect("ascii"));
            r
        }
        Ok(Err(e)) => refuse(StatusCode::CONFLICT, e),
        Err(_) => refuse(StatusCode::NOT_FOUND, "the relay session ended"),
    }
}

/// One session: relays over each leg it is given, parks between legs, ends when both
/// sides are done, the host closes it, its port fails, or it stays parked `park_secs` of
/// running time.
async fn run_session(
    sessions: Sessions,
    id: String,
    app: tokio::net::TcpStream,
    park_secs: u64,
    mut legs: mpsc::Receiver<NewLeg>,
) {
    let (mut app_r, mut app_w) = app.into_split();
    let mut state = RelayState::new();
    let mut next: Option<NewLeg> = None;
    loop {
        let leg = match next.take() {
            Some(l) => l,
            None => match parked(&mut legs, park_secs).await {
                Some(l) => l,
                None => break, // its park time ran out: the port's connection is closed
            },
        };
        if let Err(e) = state.attach(leg.peer_received, leg.peer_fin) {
            let _ = leg.reply.send(Err(e.to_string()));
            break;
        }
        let accept = Accept { session: id.clone(), received: state.received(), fin: state.received_fin() };
        if leg.reply.send(Ok(accept)).is_err() {
            continue;
        }
        let Ok(upgraded) = leg.upgrade.await else { continue };
        let (mut leg_r, mut leg_w) = tokio::io::split(TokioIo::new(upgraded));
        let stop = async {
            next = legs.recv().await;
            if next.is_none() {
                std::future::pending::<()>().await
            }
        };
        match pump::run(&mut state, &mut leg_r, &mut leg_w, &mut app_r, &mut app_w, stop).await {
            LegEnd::Lost | LegEnd::Stopped => {}
            LegEnd::Finished => {
                pump::send_close(&mut leg_w).await;
                break;
            }
            LegEnd::Closed => break,
            LegEnd::LocalFailed(_) | LegEnd::Protocol(_) => {
                pump::send_close(&mut leg_w).await;
                break;
            }
        }
    }
    sessions.inner.lock().unwrap().remove(&id);
}

/// Waits for the next leg; `None` once `park_secs` seconds of running time went by
/// without one. Counted in ticks of one second: after a restore the clock has jumped by
/// the pause, but the ticks it missed are not made up (the pause is the host's to limit).
async fn parked(legs: &mut mpsc::Receiver<NewLeg>, park_secs: u64) -> Option<NewLeg> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut left = park_secs;
    loop {
        tokio::select! {
            leg = legs.recv() => return leg,
            _ = ticks.tick() => {
                if left == 0 {
                    return None;
                }
                left -= 1;
            }
        }
    }
}

/// 128 bits from the kernel's RNG at each use (a sandbox copied from a snapshot makes ids
/// of its own).
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        b[..8].copy_from_slice(&NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
        b[8..].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
