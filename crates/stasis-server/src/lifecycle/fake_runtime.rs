//! An in-memory [`Runtime`] for the lifecycle's unit tests: no root, no CRIU, no cgroups.
//!
//! It keeps each sandbox's state (running or paused) and snapshot ids, records every call
//! with the (tokio) time it was made, and lets a test inject, per operation:
//! - failures (`fail`: the next N calls, or every call, return an error; a failed pause
//!   leaves the sandbox running and a failed resume leaves it paused, as the container
//!   runtime does),
//! - delays (`delay`: each call sleeps first, on tokio's clock),
//! - holds (`hold`: the next call stops half-way until the test releases it, to run other
//!   operations while this one is under way).
//!
//! `connect` hands out real loopback TCP connections (to a listener it owns), so the
//! proxy admission path can be tested end to end.

#![allow(dead_code)] // a test kit: not every test turns every knob

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stasis_runtime::{
    CheckpointStats, OpProgress, PauseMode, Recovered, Result, Runtime, RuntimeError, SandboxSpec, SandboxState,
    SandboxUsage, SnapshotStats,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The operations of [`Runtime`] a test can fail, delay, hold and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    CreateFromSnapshot,
    Pause,
    Resume,
    Snapshot,
    DeleteSnapshot,
    Kill,
    Recover,
    Connect,
    /// `import_paused`: a paused sandbox of another node made this runtime's.
    Import,
    /// `drop_local`: the stale copy of a sandbox another node took over removed.
    DropLocal,
}

/// A call the runtime received.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    pub id: String,
    pub at: Instant,
}

/// Stops the next call of an operation half-way (after it was recorded, before it acts).
#[derive(Clone)]
pub struct Hold {
    entered: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

impl Hold {
    /// Waits until a call reached the hold.
    pub async fn entered(&self) {
        self.entered.acquire().await.expect("hold open").forget();
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, SandboxState>,
    snapshots: HashSet<String>,
    /// Calls left to fail per operation; `None`: every call fails.
    failures: HashMap<Op, Option<u32>>,
    delays: HashMap<Op, Duration>,
    holds: HashMap<Op, Hold>,
    calls: Vec<Call>,
    /// What `recover` says per sandbox (default: what the runtime holds).
    recovered: HashMap<String, Result<Recovered, String>>,
    /// Operations under way, for `progress`.
    under_way: HashMap<String, &'static str>,
}

pub struct FakeRuntime {
    state: Mutex<State>,
    /// What `connect` reaches: a loopback listener (the kernel completes the handshake).
    listener: std::net::TcpListener,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
        Self { state: Mutex::default(), listener }
    }
}

fn injected(op: Op, id: &str) -> RuntimeError {
    let message = format!("injected {op:?} failure");
    match op {
        Op::Pause | Op::Snapshot => RuntimeError::Checkpoint { op: "dump", message },
        Op::Resume => RuntimeError::Checkpoint { op: "restore", message },
        Op::Create | Op::CreateFromSnapshot => RuntimeError::Boot(message),
        _ => RuntimeError::Io { context: format!("{op:?} {id}"), source: std::io::Error::other(message) },
    }
}

impl FakeRuntime {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next `times` calls of `op` fail.
    pub fn fail(&self, op: Op, times: u32) {
        self.state.lock().unwrap().failures.insert(op, Some(times));
    }

    /// Every call of `op` fails until [`FakeRuntime::heal`].
    pub fn fail_always(&self, op: Op) {
        self.state.lock().unwrap().failures.insert(op, None);
    }

    pub fn heal(&self, op: Op) {
        self.state.lock().unwrap().failures.remove(&op);
    }

    /// Every call of `op` first sleeps `d` (tokio time).
    pub fn delay(&self, op: Op, d: Duration) {
        self.state.lock().unwrap().delays.insert(op, d);
    }

    /// The next call of `op` waits half-way until the returned hold is released.
    pub fn hold(&self, op: Op) -> Hold {
        let hold = Hold { entered: Arc::new(Semaphore::new(0)), release: Arc::new(Semaphore::new(0)) };
        self.state.lock().unwrap().holds.insert(op, hold.clone());
        hold
    }

    /// A sandbox the runtime holds without the lifecycle having made it (recovery tests).
    pub fn insert(&self, id: &str, state: SandboxState) {
        self.state.lock().unwrap().sandboxes.insert(id.to_string(), state);
    }

    /// The runtime no longer holds `id` (its host lost it).
    pub fn remove(&self, id: &str) {
        self.state.lock().unwrap().sandboxes.remove(id);
    }

    /// What `recover(id)` answers.
    pub fn set_recovered(&self, id: &str, r: Result<Recovered, String>) {
        self.state.lock().unwrap().recovered.insert(id.to_string(), r);
    }

    /// The runtime's state of `id`, if it holds it.
    /// Holds snapshot `id` as if fetched from the object store.
    pub fn add_snapshot(&self, id: &str) {
        self.state.lock().unwrap().snapshots.insert(id.to_string());
    }

    /// Whether it holds snapshot `id` (taken, not deleted).
    pub fn has_snapshot(&self, id: &str) -> bool {
        self.state.lock().unwrap().snapshots.contains(id)
    }

    pub fn state_of(&self, id: &str) -> Option<SandboxState> {
        self.state.lock().unwrap().sandboxes.get(id).copied()
    }

    pub fn calls(&self, op: Op) -> Vec<Call> {
        self.state.lock().unwrap().calls.iter().filter(|c| c.op == op).cloned().collect()
    }

    pub fn count(&self, op: Op) -> usize {
        self.calls(op).len()
    }

    /// Records the call, waits for its delay and hold, then says whether it must fail.
    async fn enter(&self, op: Op, id: &str) -> Result<()> {
        let (delay, hold) = {
            let mut s = self.state.lock().unwrap();
            s.calls.push(Call { op, id: id.to_string(), at: Instant::now() });
            (s.delays.get(&op).copied(), s.holds.remove(&op))
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(h) = hold {
            h.entered.add_permits(1);
            h.release.acquire().await.expect("hold open").forget();
        }
        let mut s = self.state.lock().unwrap();
        match s.failures.get_mut(&op) {
            Some(None) => Err(injected(op, id)),
            Some(Some(n)) if *n > 0 => {
                *n -= 1;
                Err(injected(op, id))
            }
            _ => Ok(()),
        }
    }

    /// Runs `op` on `id` with its progress reported as `kind` while it is under way.
    async fn tracked(&self, op: Op, id: &str, kind: &'static str) -> Result<()> {
        self.state.lock().unwrap().under_way.insert(id.to_string(), kind);
        let r = self.enter(op, id).await;
        self.state.lock().unwrap().under_way.remove(id);
        r
    }

    fn expect(&self, id: &str, want: SandboxState) -> Result<()> {
        match self.state_of(id) {
            None => Err(RuntimeError::NotFound(id.to_string())),
            Some(s) if s == want => Ok(()),
            Some(SandboxState::Paused) => Err(RuntimeError::AlreadyPaused(id.to_string())),
            Some(SandboxState::Running) => Err(RuntimeError::NotPaused(id.to_string())),
        }
    }

    fn set(&self, id: &str, state: SandboxState) {
        self.insert(id, state);
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn create(&self, id: &str, _spec: &SandboxSpec) -> Result<()> {
        self.enter(Op::Create, id).await?;
        self.set(id, SandboxState::Running);
        Ok(())
    }

    async fn pause(&self, id: &str, _mode: PauseMode) -> Result<CheckpointStats> {
        self.expect(id, SandboxState::Running)?;
        self.tracked(Op::Pause, id, "pausing").await?;
        self.set(id, SandboxState::Paused);
        Ok(CheckpointStats::default())
    }

    async fn import_paused(&self, id: &str) -> Result<()> {
        self.enter(Op::Import, id).await?;
        self.set(id, SandboxState::Paused);
        Ok(())
    }

    async fn drop_local(&self, id: &str) -> Result<()> {
        self.expect(id, SandboxState::Paused)?;
        self.enter(Op::DropLocal, id).await?;
        self.state.lock().unwrap().sandboxes.remove(id);
        Ok(())
    }

    async fn resume(&self, id: &str, _mode: PauseMode) -> Result<()> {
        self.expect(id, SandboxState::Paused)?;
        self.tracked(Op::Resume, id, "resuming").await?;
        self.set(id, SandboxState::Running);
        Ok(())
    }

    async fn snapshot(&self, id: &str, snapshot_id: &str, mode: PauseMode) -> Result<SnapshotStats> {
        self.expect(id, SandboxState::Running)?;
        self.enter(Op::Snapshot, id).await?;
        self.state.lock().unwrap().snapshots.insert(snapshot_id.to_string());
        Ok(SnapshotStats { memory: mode == PauseMode::Memory, ..Default::default() })
    }

    async fn create_from_snapshot(&self, id: &str, snapshot_id: &str, _spec: &SandboxSpec) -> Result<()> {
        if !self.state.lock().unwrap().snapshots.contains(snapshot_id) {
            return Err(RuntimeError::SnapshotNotFound(snapshot_id.to_string()));
        }
        self.enter(Op::CreateFromSnapshot, id).await?;
        self.set(id, SandboxState::Running);
        Ok(())
    }

    async fn shared_snapshots(&self) -> Vec<String> {
        self.state.lock().unwrap().snapshots.iter().cloned().collect()
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.enter(Op::DeleteSnapshot, snapshot_id).await?;
        match self.state.lock().unwrap().snapshots.remove(snapshot_id) {
            true => Ok(()),
            false => Err(RuntimeError::SnapshotNotFound(snapshot_id.to_string())),
        }
    }

    async fn update(&self, id: &str, update: &stasis_runtime::SandboxUpdate) -> Result<()> {
        if self.state_of(id).is_none() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        if let Some(p) = &update.network {
            p.validate()?;
        }
        Ok(())
    }

    async fn mount_volume(&self, id: &str, _mount: &stasis_runtime::VolumeMount) -> Result<()> {
        self.expect(id, SandboxState::Running)
    }

    async fn unmount_volume(&self, id: &str, _path: &str, _force: bool) -> Result<()> {
        self.expect(id, SandboxState::Running)
    }

    async fn kill(&self, id: &str) -> Result<()> {
        if self.state_of(id).is_none() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        self.enter(Op::Kill, id).await?;
        self.state.lock().unwrap().sandboxes.remove(id);
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<SandboxState> {
        self.state_of(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    async fn recover(&self, id: &str) -> Result<Recovered> {
        self.enter(Op::Recover, id).await?;
        let told = self.state.lock().unwrap().recovered.get(id).cloned();
        let r = match told {
            Some(Ok(r)) => r,
            Some(Err(message)) => return Err(RuntimeError::Checkpoint { op: "recover", message }),
            None => match self.state_of(id) {
                Some(SandboxState::Running) => Recovered::Running,
                Some(SandboxState::Paused) => Recovered::Paused,
                None => return Err(RuntimeError::NotFound(id.to_string())),
            },
        };
        let state = if r == Recovered::Running { SandboxState::Running } else { SandboxState::Paused };
        self.set(id, state);
        Ok(r)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self.state.lock().unwrap().sandboxes.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn usage(&self, id: &str) -> Result<SandboxUsage> {
        self.expect(id, SandboxState::Running).map_err(|_| RuntimeError::NotRunning(id.to_string()))?;
        Ok(SandboxUsage { memory_bytes: 1 << 20, memory_limit_bytes: 512 << 20, ..Default::default() })
    }

    fn progress(&self, id: &str) -> Option<OpProgress> {
        let kind = *self.state.lock().unwrap().under_way.get(id)?;
        Some(OpProgress { kind: kind.to_string(), bytes_done: 1, bytes_total: 2 })
    }

    async fn connect(&self, id: &str, _port: u16) -> Result<tokio::net::TcpStream> {
        if self.state_of(id) != Some(SandboxState::Running) {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        self.enter(Op::Connect, id).await?;
        let addr = self.listener.local_addr().expect("listener address");
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| RuntimeError::Io { context: "connect".into(), source })
    }
}
