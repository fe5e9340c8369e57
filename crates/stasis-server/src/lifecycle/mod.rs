//! The lifecycle: every rule about when a sandbox runs, pauses, resumes and dies, in one
//! place, over the store (what is decided, durably) and the runtime (what is done).
//!
//! Each sandbox's operations are serialised by a per-sandbox lock, and every state change
//! is written to the store (compare-and-set) before and after it is acted on, so a crash
//! mid-operation leaves a row that says which operation was interrupted.

mod error;
mod scheduler;
pub mod snapshots;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use stasis_runtime::{NetworkPolicy, PauseMode, Runtime, SandboxSpec, SandboxUsage};
use stasis_store::{now_ms, ListQuery, Page, SandboxRow, SandboxState, Store, StoreError};

pub use error::{LifecycleError, Result};

use crate::ids;
use crate::proxy::activity::Activity;

/// Defaults of a created sandbox, as E2B's `base` template.
pub const DEFAULT_CPU: u32 = 2;
pub const DEFAULT_MEMORY_MB: u64 = 512;
pub const DEFAULT_DISK_MB: u64 = 4096;
/// The longest timeout accepted (24 h, as E2B's paid tiers).
pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;
/// After an auto-resume the sandbox lives at least this long.
pub const MIN_AUTO_RESUME_SECS: u64 = 300;

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
}

/// Operator settings of the lifecycle.
#[derive(Debug, Clone, Default)]
pub struct LifecycleConfig {
    /// Paused sandboxes older than this are killed; `None` keeps them until killed.
    pub paused_retention: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    config: LifecycleConfig,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    activity: Activity,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Last CPU sample per sandbox (cumulative ns, when), for a usage percentage.
    cpu_samples: Mutex<HashMap<String, (u64, std::time::Instant)>>,
}

fn ms(secs: u64) -> i64 {
    (secs as i64).saturating_mul(1000)
}

fn mode(memory: bool) -> PauseMode {
    if memory {
        PauseMode::Memory
    } else {
        PauseMode::Filesystem
    }
}

impl Lifecycle {
    pub fn new(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>, activity: Activity, config: LifecycleConfig) -> Self {
        Self { inner: Arc::new(Inner { config, store, runtime, activity, locks: Mutex::default(), cpu_samples: Mutex::default() }) }
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

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    pub fn activity(&self) -> &Activity {
        &self.inner.activity
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
    async fn flip(&self, id: &str, from: &[SandboxState], to: SandboxState, update: impl FnOnce(&mut SandboxRow) + Send + 'static) -> Result<SandboxRow> {
        match self.inner.store.transition_with(id, from, to, Box::new(update)).await {
            Ok(r) => Ok(r),
            Err(StoreError::NotFound) => Err(LifecycleError::NotFound(id.to_string())),
            Err(StoreError::Conflict { current }) => Err(conflict(id, current)),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a sandbox from a template, or from a snapshot when `p.template` names one.
    pub async fn create(&self, p: CreateParams) -> Result<SandboxRow> {
        match self.resolve_snapshot(&p.template).await? {
            Some(snap) => {
                let mut p = p;
                p.template = snapshots::public_id(&snap);
                self.create_with(p, Some(snap.id)).await
            }
            None => self.create_with(p, None).await,
        }
    }

    /// Creates a sandbox; from runtime snapshot `snapshot` when given.
    async fn create_with(&self, p: CreateParams, snapshot: Option<String>) -> Result<SandboxRow> {
        let id = ids::sandbox_id();
        let now = now_ms();
        let row = SandboxRow {
            id: id.clone(),
            template_id: p.template.clone(),
            alias: Some(p.template.clone()),
            client_id: "stasis".into(),
            state: SandboxState::Creating,
            metadata: p.metadata,
            env_vars: p.env_vars.clone(),
            cpu_count: p.cpu_count,
            memory_mb: p.memory_mb,
            disk_size_mb: p.disk_mb,
            envd_access_token: Some(ids::token()),
            traffic_access_token: p.secure.then(ids::token),
            started_at: now,
            end_at: now + ms(p.timeout_secs),
            timeout_secs: p.timeout_secs,
            auto_pause: p.auto_pause,
            auto_resume: p.auto_resume,
            pause_memory: p.pause_memory,
            secure: p.secure,
            allow_internet_access: p.allow_internet_access,
            network: p.network,
            paused_at: None,
            idle_timeout_secs: p.idle_timeout_secs,
            created_at: now,
            updated_at: now,
        };
        // Recorded first: a crash during the boot leaves a `creating` row that recovery cleans.
        self.inner.store.insert_sandbox(&row).await?;
        let lock = self.lock(&id);
        let _g = lock.lock().await;
        let spec = SandboxSpec {
            network: Some(network_policy(p.allow_internet_access, &row.network)),
            template: p.template,
            cpu_count: row.cpu_count,
            memory_mb: row.memory_mb,
            disk_mb: row.disk_size_mb,
            max_pids: 1024,
            env: p.env_vars,
            access_token: row.envd_access_token.clone(),
        };
        let created = match &snapshot {
            Some(snap) => self.inner.runtime.create_from_snapshot(&id, snap, &spec).await,
            None => self.inner.runtime.create(&id, &spec).await,
        };
        if let Err(e) = created {
            let _ = self.inner.store.delete_sandbox(&id).await;
            return Err(e.into());
        }
        let started = now_ms();
        let timeout = row.timeout_secs;
        self.inner.activity.started(&id);
        self.flip(&id, &[SandboxState::Creating], SandboxState::Running, move |r| {
            r.started_at = started;
            r.end_at = started + ms(timeout);
        })
        .await
    }

    /// Connect: a running sandbox gets its end extended (never shortened); a paused one is
    /// resumed. Returns the row and whether it was resumed.
    pub async fn connect(&self, id: &str, timeout_secs: Option<u64>, memory: bool) -> Result<(SandboxRow, bool)> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.row(id).await?;
        match row.state {
            SandboxState::Running => {
                let Some(t) = timeout_secs else { return Ok((row, false)) };
                let end = (now_ms() + ms(t)).max(row.end_at);
                let mut r = row;
                r.end_at = end;
                Ok((self.inner.store.update_sandbox(&r).await?, false))
            }
            SandboxState::Paused => {
                let t = timeout_secs.unwrap_or(row.timeout_secs);
                Ok((self.resume_locked(row, t, memory).await?, true))
            }
            other => Err(conflict(id, other)),
        }
    }

    async fn resume_locked(&self, row: SandboxRow, timeout_secs: u64, memory: bool) -> Result<SandboxRow> {
        let id = row.id.clone();
        self.flip(&id, &[SandboxState::Paused], SandboxState::Resuming, |_| {}).await?;
        let memory = memory && row.pause_memory;
        if let Err(e) = self.inner.runtime.resume(&id, mode(memory)).await {
            // Nothing was lost: the checkpoint is intact, the sandbox stays paused.
            let _ = self.flip(&id, &[SandboxState::Resuming], SandboxState::Paused, |_| {}).await;
            return Err(e.into());
        }
        let now = now_ms();
        self.inner.activity.started(&id);
        self.flip(&id, &[SandboxState::Resuming], SandboxState::Running, move |r| {
            r.end_at = now + ms(timeout_secs);
            r.paused_at = None;
        })
        .await
    }

    pub async fn pause(&self, id: &str, memory: bool) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        self.pause_locked(id, memory).await
    }

    async fn pause_locked(&self, id: &str, memory: bool) -> Result<SandboxRow> {
        let row = self.row(id).await?;
        if row.state == SandboxState::Paused {
            return Err(LifecycleError::Conflict(format!("sandbox {id} is already paused")));
        }
        self.flip(id, &[SandboxState::Running], SandboxState::Pausing, |_| {}).await?;
        // A paused sandbox serves nobody: open connections are cut now, cleanly.
        self.inner.activity.disconnect_all(id);
        let started = std::time::Instant::now();
        match self.inner.runtime.pause(id, mode(memory)).await {
            Ok(stats) => tracing::info!(
                sandbox = %id, memory, total_ms = started.elapsed().as_millis() as u64,
                dump_ms = stats.dump_ms, sync_ms = stats.sync_ms, image_bytes = stats.image_bytes, "paused"
            ),
            Err(e) => {
                // The runtime leaves the sandbox running when a pause fails.
                let _ = self.flip(id, &[SandboxState::Pausing], SandboxState::Running, |_| {}).await;
                return Err(e.into());
            }
        }
        let now = now_ms();
        self.flip(id, &[SandboxState::Pausing], SandboxState::Paused, move |r| {
            r.paused_at = Some(now);
            r.pause_memory = memory;
        })
        .await
    }

    pub async fn kill(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        self.kill_locked(id).await
    }

    async fn kill_locked(&self, id: &str) -> Result<()> {
        let row = self.row(id).await?;
        self.flip(id, &[row.state], SandboxState::Killing, |_| {}).await?;
        self.inner.activity.forget(id);
        match self.inner.runtime.kill(id).await {
            Ok(()) | Err(stasis_runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.delete_sandbox(id).await?;
        Ok(())
    }

    /// Sets the end to now + `secs` (may shorten, unlike connect).
    pub async fn set_timeout(&self, id: &str, secs: u64) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let mut row = self.row(id).await?;
        row.timeout_secs = secs;
        if row.state == SandboxState::Running {
            row.end_at = now_ms() + ms(secs);
        }
        Ok(self.inner.store.update_sandbox(&row).await?)
    }

    /// A sandbox as the info API shows it (running or paused).
    pub async fn get(&self, id: &str) -> Result<SandboxRow> {
        let row = self.row(id).await?;
        if row.state.listed_as().is_none() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        Ok(self.with_effective_end(row))
    }

    pub async fn list(&self, q: &ListQuery) -> Result<Page<SandboxRow>> {
        let (rows, next) = self.inner.store.list_sandboxes(q).await?;
        Ok((rows.into_iter().map(|r| self.with_effective_end(r)).collect(), next))
    }

    pub async fn usage(&self, id: &str) -> Result<Option<SandboxUsage>> {
        let row = self.get(id).await?;
        if row.state != SandboxState::Running {
            return Ok(None);
        }
        Ok(Some(self.inner.runtime.usage(id).await?))
    }

    /// CPU use since the previous call for this sandbox (or over the last second of a
    /// first call), as a percentage of its CPU quota.
    pub async fn cpu_percent(&self, id: &str, cpu_ns: u64, cpus: u32) -> f64 {
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

    /// For the proxy: the running sandbox `id`, resumed first if it is paused and asked
    /// for auto-resume. `Ok(None)`: not running (paused without auto-resume, or unknown).
    pub async fn route(&self, id: &str) -> Result<Option<SandboxRow>> {
        let Some(row) = self.inner.store.get_sandbox(id).await? else { return Ok(None) };
        match row.state {
            SandboxState::Running => Ok(Some(row)),
            SandboxState::Paused | SandboxState::Resuming if row.auto_resume => {
                let timeout = row.timeout_secs.max(MIN_AUTO_RESUME_SECS);
                match self.connect(id, Some(timeout), true).await {
                    Ok((r, _)) => Ok(Some(r)),
                    Err(LifecycleError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(None),
        }
    }

    /// Runs the sandbox's timeout policy if its end has passed (checked under its lock).
    pub async fn expire_if_due(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let Some(row) = self.inner.store.get_sandbox(id).await? else { return Ok(()) };
        if row.state != SandboxState::Running || self.effective_end(&row) > now_ms() {
            return Ok(());
        }
        if row.auto_pause {
            self.pause_locked(id, row.pause_memory).await.map(|_| ())
        } else {
            self.kill_locked(id).await
        }
    }

    /// Kills a paused sandbox older than the operator's retention (checked under its lock).
    pub async fn retire_if_due(&self, id: &str) -> Result<()> {
        let Some(retention) = self.inner.config.paused_retention else { return Ok(()) };
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let Some(row) = self.inner.store.get_sandbox(id).await? else { return Ok(()) };
        let due = row.paused_at.is_some_and(|p| p + retention.as_millis() as i64 <= now_ms());
        if row.state == SandboxState::Paused && due {
            tracing::info!(sandbox = %id, "paused longer than the retention: killed");
            self.kill_locked(id).await?;
        }
        Ok(())
    }

    /// Pauses every running sandbox (daemon shutdown with --pause-on-shutdown); returns
    /// the ids it paused.
    pub async fn pause_all(&self) -> Vec<String> {
        let Ok(rows) = self.inner.store.sandboxes_in_states(&[SandboxState::Running]).await else { return vec![] };
        let mut paused = Vec::new();
        let tasks: Vec<_> = rows
            .into_iter()
            .map(|row| {
                let lc = self.clone();
                tokio::spawn(async move { (row.id.clone(), lc.pause(&row.id, row.pause_memory).await) })
            })
            .collect();
        for t in tasks {
            if let Ok((id, r)) = t.await {
                match r {
                    Ok(_) => paused.push(id),
                    Err(e) => tracing::error!(sandbox = %id, "pause at shutdown failed: {e}"),
                }
            }
        }
        paused
    }

    /// Starts the background jobs (timeouts).
    pub fn start(&self) {
        scheduler::spawn(self.clone());
    }
}

/// The runtime's outbound policy from E2B's `allow_internet_access` and
/// `network.{allowOut,denyOut}` (validated by the API layer).
pub fn network_policy(allow_internet: bool, network: &serde_json::Value) -> NetworkPolicy {
    let list = |k: &str| -> Vec<String> {
        network.get(k).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    NetworkPolicy { allow_internet, allow_out: list("allowOut"), deny_out: list("denyOut") }
}

fn conflict(id: &str, current: SandboxState) -> LifecycleError {
    match current {
        SandboxState::Paused => LifecycleError::Conflict(format!("sandbox {id} is already paused")),
        SandboxState::Killing | SandboxState::Killed => LifecycleError::Conflict(format!("sandbox {id} is being killed")),
        other => LifecycleError::Conflict(format!("sandbox {id} is {other}")),
    }
}

fn pct(used_ns: u64, over: std::time::Duration, cpus: u32) -> f64 {
    let avail = over.as_nanos() as f64 * cpus.max(1) as f64;
    if avail <= 0.0 {
        return 0.0;
    }
    (used_ns as f64 / avail * 100.0).clamp(0.0, 100.0)
}
