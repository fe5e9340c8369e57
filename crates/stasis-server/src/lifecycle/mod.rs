//! The lifecycle: every rule about when a sandbox runs, pauses, resumes and dies, in one
//! place, over the store (what is decided, durably) and the runtime (what is done).
//!
//! Each sandbox's operations are serialised by a per-sandbox lock, and every state change
//! is written to the store (compare-and-set) before and after it is acted on, so a crash
//! mid-operation leaves a row that says which operation was interrupted.
//!
//! It is the only door to sandbox rows and to the runtime: the API, the proxy and start-up
//! call its methods (there is no accessor to the store or the runtime to go around it).
//! It knows nothing of HTTP: the API and the proxy map its results and errors to the wire.

mod activity;
mod admission;
pub mod affinity;
mod census;
mod clock;
mod create;
mod error;
mod events;
mod exits;
mod failures;
#[cfg(test)]
pub(crate) mod fake_runtime;
mod kill;
pub mod nodes;
mod parking;
mod pause;
mod recovery;
mod reset;
mod resume;
mod routes;
mod sampler;
mod scheduler;
mod secrets;
pub mod snapshots;
mod takeover;
#[cfg(test)]
pub(crate) mod tests;
mod timeouts;
mod update;
mod volume_mounts;
pub mod volumes;
mod warm;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use stasis_runtime::{NetworkPolicy, PauseMode, Runtime, SandboxUsage};
use stasis_store::{ListQuery, Page, SandboxRow, SandboxState, Store, StoreError};

pub use activity::Guard;
pub use admission::{Credentials, PortConnection, Refusal};
pub use clock::Clock;
pub use error::{LifecycleError, Result};
pub use failures::{Backoff, FailedActionCounts};
pub use parking::{limit as park_limit, PortStream, MAX_LIMIT as PARK_MAX_LIMIT, METADATA_KEY as PARK_METADATA_KEY};
pub use sampler::Sample;
pub use secrets::MAX_PAGE as MAX_SECRETS_PAGE;

use crate::ids::SandboxId;
use activity::Activity;

/// What a create request asks for, validated by the API layer.
#[derive(Debug, Clone)]
pub struct CreateParams {
    pub template: String,
    pub timeout_secs: u64,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub auto_pause: bool,
    pub pause_memory: bool,
    pub auto_resume: bool,
    pub secure: bool,
    pub allow_internet_access: bool,
    pub network: serde_json::Value,
    /// Novita's `idle_timeout` metadata: seconds without an open client connection.
    pub idle_timeout_secs: Option<u64>,
    pub memory_mb: u64,
    pub cpu_count: u32,
    pub disk_mb: u64,
    /// Volumes to mount (`Lifecycle::resolve_volume_mounts`). From a snapshot: empty means
    /// the snapshot's own.
    pub volumes: Vec<stasis_store::VolumeMount>,
}

/// Settings of the lifecycle, read once at start (from `ServeConfig`); no rule reads a
/// default or an environment variable of its own.
#[derive(Debug, Clone, Default)]
pub struct LifecycleConfig {
    /// Paused sandboxes older than this are killed; `None` keeps them until killed.
    pub paused_retention: Option<std::time::Duration>,
    /// How the lifecycle spaces its own retries of a failed action.
    pub backoff: Backoff,
    pub defaults: SandboxDefaults,
    /// Seals secret values (`DATA/secrets.key`); `None`: the secret endpoints refuse.
    pub secrets: Option<crate::secrets::Vault>,
    /// How long proxied connections stay parked across a pause for sandboxes that do not
    /// say (`stasis serve --park-connections`); `None`: cut at pause (`parking.rs`).
    pub park_connections: Option<std::time::Duration>,
    /// This node's id (`stasis serve --node-id`); empty: the single machine's
    /// (`stasis_store::LOCAL_NODE`). The lifecycle acts only on the sandboxes of its node.
    pub node_id: String,
    /// Paused sandboxes' layers are in the object store (a cluster with one): a paused
    /// sandbox of a dead or draining node is taken over by the node a connect reaches
    /// (`takeover.rs`).
    pub share_layers: bool,
}

/// What a sandbox gets for what its create request does not say, and the bounds it is
/// kept in: E2B's `base` template and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxDefaults {
    /// The template of a create request without `templateID`.
    pub template: String,
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// Processes a sandbox may run at once.
    pub max_pids: u64,
    /// The timeout of a create without one: `POST /sandboxes` (v1) and `/v2/sandboxes`.
    pub timeout_secs_v1: u64,
    pub timeout_secs_v2: u64,
    /// The timeout of a fork without one.
    pub fork_timeout_secs: u64,
    /// The extension of a legacy refresh without a `duration`.
    pub refresh_secs: u64,
    /// The longest timeout accepted at create, connect and setTimeout (`stasis serve
    /// --max-timeout`, 30 days by default); `None`: no limit (then [`FOREVER_SECS`]).
    pub max_timeout_secs: Option<u64>,
    /// After an auto-resume the sandbox lives at least this long.
    pub min_auto_resume_secs: u64,
}

impl Default for SandboxDefaults {
    fn default() -> Self {
        // The sandbox's own defaults are the runtime's (one place says them).
        let spec = stasis_runtime::SandboxSpec::default();
        Self {
            template: spec.template,
            cpu_count: spec.cpu_count,
            memory_mb: spec.memory_mb,
            disk_mb: spec.disk_mb,
            max_pids: spec.max_pids,
            timeout_secs_v1: 15,
            timeout_secs_v2: 300,
            fork_timeout_secs: 15,
            refresh_secs: 60,
            max_timeout_secs: Some(30 * 24 * 3600),
            min_auto_resume_secs: 300,
        }
    }
}

#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    config: LifecycleConfig,
    clock: Clock,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    activity: Activity,
    routes: routes::Routes,
    metrics: Arc<crate::metrics::Metrics>,
    /// Usage samples of each sandbox (`getMetrics` with a range).
    history: sampler::History,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Last CPU sample per sandbox (cumulative ns, when), for a usage percentage.
    cpu_samples: Mutex<HashMap<String, (u64, std::time::Instant)>>,
}

/// What "no limit" on a timeout means: a thousand years, so that every end (now + timeout)
/// stays a valid time and an `i64` of milliseconds.
pub const FOREVER_SECS: u64 = 1000 * 365 * 24 * 3600;

fn ms(secs: u64) -> i64 {
    (secs.min(FOREVER_SECS) as i64) * 1000
}

fn mode(memory: bool) -> PauseMode {
    if memory {
        PauseMode::Memory
    } else {
        PauseMode::Filesystem
    }
}

impl Lifecycle {
    pub fn new(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>, config: LifecycleConfig) -> Self {
        Self::with_clock(store, runtime, config, Clock::wall())
    }

    /// [`Lifecycle::new`] reading time from `clock` (tests: [`Clock::tokio`]).
    pub fn with_clock(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>, config: LifecycleConfig, clock: Clock) -> Self {
        let activity = Activity::new(clock);
        let inner = Inner {
            config,
            clock,
            store,
            runtime,
            activity,
            routes: Default::default(),
            metrics: Default::default(),
            history: Default::default(),
            locks: Mutex::default(),
            cpu_samples: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Where the lifecycle's operations and the proxy are counted.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// Now, in ms since the epoch, as every lifecycle rule sees it.
    pub fn now(&self) -> stasis_store::UnixMillis {
        self.inner.clock.now_ms()
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.inner.config
    }

    /// When the sandbox ends: its timeout end, or with an idle timeout and no client
    /// connection open, idle-since + idle timeout.
    pub fn effective_end(&self, row: &SandboxRow) -> i64 {
        match (row.idle_timeout_secs, self.inner.activity.idle_since(&row.id)) {
            (Some(idle), Some(since)) if row.state == SandboxState::Running => since + ms(idle),
            _ => row.end_at,
        }
    }

    fn with_effective_end(&self, mut row: SandboxRow) -> SandboxRow {
        row.end_at = self.effective_end(&row);
        row
    }

    /// Progress of the pause or resume under way, if any.
    pub fn progress(&self, id: &SandboxId) -> Option<stasis_runtime::OpProgress> {
        self.inner.runtime.progress(id)
    }

    /// At shutdown, last: the runtime's ready pools go (`Runtime::release_pools`).
    pub async fn release_pools(&self) {
        self.inner.runtime.release_pools().await;
    }

    /// Ids of the running sandboxes.
    pub async fn running_ids(&self) -> Result<Vec<String>> {
        let rows = self.own_in_states(&[SandboxState::Running]).await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// This node's id: the sandboxes it creates carry it, and it acts only on those.
    pub fn node_id(&self) -> &str {
        match self.inner.config.node_id.as_str() {
            "" => stasis_store::LOCAL_NODE,
            id => id,
        }
    }

    /// This node's sandboxes in one of `states` (the store's rows of every node, filtered:
    /// the rows of a cluster are few enough; an index on `node_id` is there when not).
    async fn own_in_states(&self, states: &[SandboxState]) -> std::result::Result<Vec<SandboxRow>, StoreError> {
        let rows = self.inner.store.sandboxes_in_states(states).await?;
        Ok(rows.into_iter().filter(|r| r.node_id == self.node_id()).collect())
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.locks.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    async fn row(&self, id: &str) -> Result<SandboxRow> {
        match self.inner.store.get_sandbox(id).await? {
            Some(r) if r.state != SandboxState::Killed => Ok(r),
            _ => Err(LifecycleError::NotFound(id.to_string())),
        }
    }

    /// Moves `id` from one of `from` to `to`, mapping a lost race to a clear error.
    /// Every state change goes through here: it also invalidates the sandbox's cached
    /// route, so no proxied request is let through on the state it left.
    async fn flip(
        &self,
        id: &str,
        from: &[SandboxState],
        to: SandboxState,
        update: impl FnOnce(&mut SandboxRow) + Send + 'static,
    ) -> Result<SandboxRow> {
        let result = self.inner.store.transition_with(id, from, to, Box::new(update)).await;
        self.inner.routes.invalidate(id);
        match result {
            Ok(r) => Ok(r),
            Err(StoreError::NotFound) => Err(LifecycleError::NotFound(id.to_string())),
            Err(StoreError::Conflict { current }) => Err(conflict(id, current)),
            Err(e) => Err(e.into()),
        }
    }

    /// A sandbox as the info API shows it (running or paused).
    pub async fn get(&self, id: &SandboxId) -> Result<SandboxRow> {
        let row = self.row(id).await?;
        if row.state == SandboxState::Lost {
            return Err(lost(&row));
        }
        if row.state.listed_as().is_none() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        Ok(self.with_effective_end(row))
    }

    pub async fn list(&self, q: &ListQuery) -> Result<Page<SandboxRow>> {
        let (rows, next) = self.inner.store.list_sandboxes(q).await?;
        Ok((rows.into_iter().map(|r| self.with_effective_end(r)).collect(), next))
    }

    pub async fn usage(&self, id: &SandboxId) -> Result<Option<SandboxUsage>> {
        let row = self.get(id).await?;
        if row.state != SandboxState::Running {
            return Ok(None);
        }
        Ok(Some(self.inner.runtime.usage(id).await?))
    }

    /// CPU use since the previous call for this sandbox (or over the last second of a
    /// first call), as a percentage of its CPU quota.
    pub async fn cpu_percent(&self, id: &SandboxId, cpu_ns: u64, cpus: u32) -> f64 {
        let now = std::time::Instant::now();
        let prev = self.inner.cpu_samples.lock().unwrap().insert(id.to_string(), (cpu_ns, now));
        let (prev_ns, prev_t) = match prev {
            Some(p) => p,
            None => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let again = self.inner.runtime.usage(id).await.map(|u| u.cpu_usage_ns).unwrap_or(cpu_ns);
                let t = std::time::Instant::now();
                self.inner.cpu_samples.lock().unwrap().insert(id.to_string(), (again, t));
                return pct(again.saturating_sub(cpu_ns), t - now, cpus);
            }
        };
        pct(cpu_ns.saturating_sub(prev_ns), now - prev_t, cpus)
    }

    /// Starts the background jobs (timeouts, init exits, template warms).
    pub fn start(&self) {
        scheduler::spawn(self.clone());
        exits::spawn(self.clone());
        warm::spawn(self.clone());
        sampler::spawn(self.clone());
    }
}

/// The runtime's outbound policy from E2B's `allow_internet_access` and
/// `network.{allowOut,denyOut}` (validated by the API layer).
pub fn network_policy(allow_internet: bool, network: &serde_json::Value) -> NetworkPolicy {
    let list = |k: &str| -> Vec<String> {
        network
            .get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let intercept_https = network.get("rules").is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()));
    NetworkPolicy { allow_internet, allow_out: list("allowOut"), deny_out: list("denyOut"), intercept_https }
}

/// The sandbox's environment, with, when its `network.rules` are applied, the variables
/// that make Python (requests, certifi) and Node read the system CA bundle the egress CA
/// was added to (`stasis-runtime`'s `trust.rs`); a variable the user set stays theirs.
pub fn sandbox_env(
    mut env: std::collections::BTreeMap<String, String>,
    policy: &NetworkPolicy,
) -> std::collections::BTreeMap<String, String> {
    if policy.intercept_https {
        for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"] {
            env.entry(k.to_string()).or_insert_with(|| stasis_runtime::container::TRUST_BUNDLE.to_string());
        }
    }
    env
}

/// E2B's `network.allowPublicTraffic` (default true): false makes the sandbox's user ports
/// take its traffic access token. `secure` does not: it guards the agent (envd access
/// token) only, so the SDK releases that create `secure` sandboxes by default keep public
/// ports.
pub fn allows_public_traffic(network: &serde_json::Value) -> bool {
    network.get("allowPublicTraffic").and_then(|v| v.as_bool()).unwrap_or(true)
}

fn conflict(id: &str, current: SandboxState) -> LifecycleError {
    match current {
        SandboxState::Paused => LifecycleError::Conflict(format!("sandbox {id} is already paused")),
        SandboxState::Killing | SandboxState::Killed => {
            LifecycleError::Conflict(format!("sandbox {id} is being killed"))
        }
        other => LifecycleError::Conflict(format!("sandbox {id} is {other}")),
    }
}

/// What the API answers for a sandbox lost with its node: not found, saying why.
pub(super) fn lost(row: &SandboxRow) -> LifecycleError {
    let why = row.last_error.as_ref().map_or("lost: its node died", |e| e.message.as_str());
    LifecycleError::NotRunning(format!("sandbox {} was {why}", row.id))
}

fn pct(used_ns: u64, over: std::time::Duration, cpus: u32) -> f64 {
    let avail = over.as_nanos() as f64 * cpus.max(1) as f64;
    if avail <= 0.0 {
        return 0.0;
    }
    (used_ns as f64 / avail * 100.0).clamp(0.0, 100.0)
}
