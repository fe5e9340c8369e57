//! Proxied requests: whether one may reach a port of a sandbox (its access token for the
//! agent's port, or a signed URL for the agent's `/files`; its traffic token for the
//! other ports when the sandbox asks for one), whether it
//! resumes the sandbox (paused with auto-resume), and its connection to the port, counted
//! as client activity (idle timeout) and cut when the sandbox pauses.
//!
//! A request to a running sandbox costs a lookup in the route cache (`routes.rs`), no
//! database read; the runtime's connect is the rest.

use stasis_proto::file_signing::{self, Operation, SignedQuery};
use stasis_runtime::{RuntimeError, ENVD_PORT};
use stasis_store::SandboxState;

use super::activity::Guard;
use super::routes::Route;
use super::{Lifecycle, LifecycleError};
use crate::ids::SandboxId;

/// The tokens a proxied request presents.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `X-Access-Token`: required on the agent's (envd's) port.
    pub access_token: Option<&'a str>,
    /// `e2b-traffic-access-token`: required on the other ports of a `secure` sandbox.
    pub traffic_token: Option<&'a str>,
    /// A `GET`/`POST /files` call to the agent: its signed URL may stand in for the access
    /// token (`downloadUrl` / `uploadUrl`). Checked here too, so that a forged URL cannot
    /// even auto-resume a sandbox; the agent checks it again.
    pub file_call: Option<(Operation, SignedQuery<'a>)>,
}

/// Why a proxied request does not get through.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, or not running and not to be resumed.
    NotRunning,
    MissingAccessToken,
    InvalidAccessToken,
    /// A `/files` call whose signed URL does not hold: envd's status and message.
    FileSignature {
        status: u16,
        message: String,
    },
    /// A user port of a `secure` sandbox without its traffic token.
    TrafficTokenRequired,
    /// An auto-resume failed, or waits for its back-off.
    ResumeFailed(String),
    /// The sandbox runs but nothing listens on the port.
    PortClosed(u16),
    Internal(String),
}

/// A connection to a port inside a sandbox, counted as client activity while it lives.
pub struct PortConnection {
    pub stream: super::parking::PortStream,
    /// Cancelled when the sandbox pauses or is killed: the connection must end then.
    pub guard: Guard,
}

/// How many times a request is admitted again when the sandbox changed state between its
/// admission and its connection (each time it waits for, or triggers, the change).
const MAX_ADMISSIONS: usize = 3;

impl Lifecycle {
    /// Admits a request for `port` of sandbox `id` (checking its tokens before anything
    /// else: an unauthenticated request must not even auto-resume a sandbox), resumes the
    /// sandbox if it is paused and asked for auto-resume, and opens the connection.
    pub async fn connect_port(
        &self,
        id: &SandboxId,
        port: u16,
        creds: Credentials<'_>,
    ) -> Result<PortConnection, Refusal> {
        for _ in 0..MAX_ADMISSIONS {
            let route = self.admit(id, port, creds).await?;
            if let Some(limit) = route.park {
                if !self.inner.routes.is_current(id, route.generation) {
                    continue;
                }
                // A pause that starts from here on parks it (it is counted, and its phase
                // read, before its first leg opens).
                let token = route.envd_access_token.clone();
                if let Some(conn) = self.connect_parked(id, port, limit, token, route.auto_resume).await? {
                    return Ok(conn);
                }
            }
            // Counted as open before the check: a pause that starts after the check cuts it.
            let guard = self.inner.activity.enter(id);
            if !self.inner.routes.is_current(id, route.generation) {
                continue;
            }
            return match self.inner.runtime.connect(id, port).await {
                Ok(stream) => Ok(PortConnection { stream: super::parking::PortStream::Direct(stream), guard }),
                Err(RuntimeError::NotRunning(_) | RuntimeError::NotFound(_)) => Err(Refusal::NotRunning),
                Err(_) => Err(Refusal::PortClosed(port)),
            };
        }
        Err(Refusal::NotRunning)
    }

    /// The running sandbox's route the request was admitted on.
    async fn admit(&self, id: &str, port: u16, creds: Credentials<'_>) -> Result<std::sync::Arc<Route>, Refusal> {
        let route = self.route_of(id).await?;
        check_tokens(&route, port, creds, self.now() / 1000)?;
        match route.state {
            SandboxState::Running => Ok(route),
            // A pause under way is waited for (the sandbox lock), then undone.
            SandboxState::Pausing | SandboxState::Paused | SandboxState::Resuming if route.auto_resume => {
                self.auto_resume(id).await?;
                let route = self.route_of(id).await?;
                match route.state {
                    SandboxState::Running => Ok(route),
                    _ => Err(Refusal::NotRunning),
                }
            }
            _ => Err(Refusal::NotRunning),
        }
    }

    /// The cached route of `id`, or one read from the store (and cached).
    async fn route_of(&self, id: &str) -> Result<std::sync::Arc<Route>, Refusal> {
        let generation = match self.inner.routes.lookup(id) {
            Ok(route) => return Ok(route),
            Err(generation) => generation,
        };
        match self.inner.store.get_sandbox(id).await {
            // Another node's (requests reach this node for it only while that node is
            // dead): nothing here to connect to, and only this node's routes are cached.
            Ok(Some(row)) if row.node_id != self.node_id() => {
                self.inner.routes.forget(id);
                Err(Refusal::NotRunning)
            }
            Ok(Some(row)) => Ok(self.inner.routes.fill(id, generation, &row, self.inner.config.park_connections)),
            Ok(None) => {
                self.inner.routes.forget(id);
                Err(Refusal::NotRunning)
            }
            Err(e) => Err(Refusal::Internal(format!("store: {e}"))),
        }
    }

    /// Resumes paused sandbox `id` for proxied traffic: it then lives at least
    /// `min_auto_resume_secs` ([`super::SandboxDefaults`]). A resume that failed is not tried again per request, only
    /// once its back-off ran (`failures.rs`).
    pub(super) async fn auto_resume(&self, id: &str) -> Result<(), Refusal> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = match self.row(id).await {
            Ok(r) => r,
            Err(LifecycleError::NotFound(_)) => return Err(Refusal::NotRunning),
            Err(e) => return Err(Refusal::Internal(e.to_string())),
        };
        match row.state {
            SandboxState::Running => Ok(()),
            SandboxState::Paused if !self.may_retry(&row, stasis_store::Operation::Resume, self.now()) => {
                Err(Refusal::ResumeFailed(super::resume::backing_off(&row)))
            }
            SandboxState::Paused => {
                let timeout = row.timeout_secs.max(self.inner.config.defaults.min_auto_resume_secs);
                let why = "a proxied request (auto-resume)";
                let resumed = match self.movable(&row).await {
                    Ok(true) if row.node_id != self.node_id() => self.take_over_locked(row, timeout, true, why).await,
                    _ => self.resume_locked(row, timeout, true, why).await,
                };
                match resumed {
                    Ok(_) => {
                        self.inner.metrics.action(crate::metrics::Action::AutoResume);
                        Ok(())
                    }
                    Err(LifecycleError::NotFound(_) | LifecycleError::Conflict(_)) => Err(Refusal::NotRunning),
                    Err(e) => Err(Refusal::ResumeFailed(e.to_string())),
                }
            }
            _ => Err(Refusal::NotRunning),
        }
    }

    /// Whether `key` is one of the recorded API keys.
    pub async fn verify_api_key(&self, key: &str) -> super::Result<bool> {
        Ok(self.inner.store.verify_api_key(key).await?)
    }
}

fn check_tokens(route: &Route, port: u16, creds: Credentials<'_>, now_secs: i64) -> Result<(), Refusal> {
    let same = |given: &str, expected: &str| stasis_store::constant_time_eq(given.as_bytes(), expected.as_bytes());
    if port == ENVD_PORT {
        if let Some(token) = &route.envd_access_token {
            if let Some((op, query)) = creds.file_call {
                return file_signing::authorize(Some(token), creds.access_token, query, op, now_secs)
                    .map_err(|r| Refusal::FileSignature { status: r.status, message: r.message });
            }
            return match creds.access_token {
                Some(t) if same(t, token) => Ok(()),
                Some(_) => Err(Refusal::InvalidAccessToken),
                None => Err(Refusal::MissingAccessToken),
            };
        }
    } else if let Some(token) = &route.traffic_access_token {
        return match creds.traffic_token {
            Some(t) if same(t, token) => Ok(()),
            _ => Err(Refusal::TrafficTokenRequired),
        };
    }
    Ok(())
}
