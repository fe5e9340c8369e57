//! Unit tests of the lifecycle rules: the real SQLite store (a temp file), the fake
//! runtime, and tokio's paused clock, so they need no root and run in seconds while
//! covering hours of timeouts.

mod backoff;
mod conflicts;
mod counting_store;
mod failures;
mod nodes;
mod proxy;
mod reset;
mod timeouts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stasis_store::{SandboxRow, SandboxState, SqliteStore, Store};

use super::fake_runtime::FakeRuntime;
use super::{Clock, CreateParams, Credentials, Lifecycle, LifecycleConfig, PortConnection, Refusal};
use crate::ids::SandboxId;
use counting_store::CountingStore;

pub(crate) struct Harness {
    pub lc: Lifecycle,
    pub rt: Arc<FakeRuntime>,
    pub store: Arc<SqliteStore>,
    pub config: LifecycleConfig,
    /// Sandbox reads the lifecycle made from the store.
    pub sandbox_reads: Arc<AtomicUsize>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// The API's state over this harness (template builds on the fake runtime, which
    /// builds none).
    pub fn app_state(&self) -> crate::api::AppState {
        let templates = crate::templates::Templates::new(self.rt.clone(), self.dir.path()).unwrap();
        crate::api::AppState {
            lifecycle: self.lc.clone(),
            templates,
            domain: "localhost".into(),
            ops: Default::default(),
            cluster: None,
        }
    }
}

/// A lifecycle over the database in `dir`, reading time from tokio's clock.
async fn open(
    dir: &tempfile::TempDir,
    rt: &Arc<FakeRuntime>,
    config: &LifecycleConfig,
) -> (Lifecycle, Arc<SqliteStore>, Arc<AtomicUsize>) {
    let store = SqliteStore::open(dir.path().join("stasis.db")).await.unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let counting = Arc::new(CountingStore { inner: store.clone(), sandbox_reads: reads.clone() });
    let mut config = config.clone();
    config.secrets.get_or_insert_with(|| crate::secrets::Vault::new(dir.path().join("secrets.key")));
    let lc = Lifecycle::with_clock(counting, rt.clone(), config, Clock::tokio());
    (lc, Arc::new(store), reads)
}

pub(crate) async fn harness() -> Harness {
    harness_with(LifecycleConfig::default()).await
}

pub(crate) async fn harness_with(config: LifecycleConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::new();
    let (lc, store, sandbox_reads) = open(&dir, &rt, &config).await;
    Harness { lc, rt, store, config, sandbox_reads, dir }
}

/// What the API would pass for `{"timeout": 60}`.
pub(super) fn params() -> CreateParams {
    CreateParams {
        template: "base".into(),
        timeout_secs: 60,
        metadata: Default::default(),
        env_vars: Default::default(),
        auto_pause: false,
        pause_memory: true,
        auto_resume: false,
        secure: false,
        allow_internet_access: true,
        network: serde_json::Value::Null,
        idle_timeout_secs: None,
        memory_mb: 512,
        cpu_count: 2,
        disk_mb: 4096,
        volumes: Vec::new(),
    }
}

impl Harness {
    /// Creates a sandbox with `params()` changed by `f`; returns its id.
    pub async fn create(&self, f: impl FnOnce(&mut CreateParams)) -> SandboxId {
        let mut p = params();
        f(&mut p);
        SandboxId::parse(&self.lc.create(p).await.unwrap().id).unwrap()
    }

    /// A sandbox that pauses (rather than dies) `timeout_secs` after its creation.
    pub async fn create_auto_pause(&self, timeout_secs: u64) -> SandboxId {
        self.create(|p| {
            p.timeout_secs = timeout_secs;
            p.auto_pause = true;
        })
        .await
    }

    pub async fn row(&self, id: &str) -> Option<SandboxRow> {
        self.store.get_sandbox(id).await.unwrap()
    }

    pub async fn state(&self, id: &str) -> Option<SandboxState> {
        self.row(id).await.map(|r| r.state)
    }

    /// Seconds from now to the sandbox's end as the info API reports it.
    pub async fn secs_left(&self, id: &SandboxId) -> f64 {
        let row = self.lc.get(id).await.unwrap();
        (row.end_at - self.lc.now()) as f64 / 1000.0
    }

    /// A daemon restart: a new lifecycle on the same database file and the same runtime
    /// (sandboxes outlive the daemon), reconciled as `stasis serve` does at start.
    pub async fn restart(self) -> Harness {
        let Harness { rt, config, dir, .. } = self;
        let (lc, store, sandbox_reads) = open(&dir, &rt, &config).await;
        lc.reconcile().await.unwrap();
        Harness { lc, rt, store, config, sandbox_reads, dir }
    }

    /// A proxied request to `port` of `id` with the sandbox's own tokens.
    pub async fn request(&self, id: &SandboxId, port: u16) -> Result<PortConnection, Refusal> {
        let row = self.store.get_sandbox(id).await.unwrap();
        let (envd, traffic) = row.map(|r| (r.envd_access_token, r.traffic_access_token)).unwrap_or_default();
        let creds = Credentials { access_token: envd.as_deref(), traffic_token: traffic.as_deref(), file_call: None };
        self.lc.connect_port(id, port, creds).await
    }

    pub fn reads(&self) -> usize {
        self.sandbox_reads.load(Ordering::Relaxed)
    }
}

/// Sleeps on tokio's (paused) clock.
pub(crate) async fn after(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}
