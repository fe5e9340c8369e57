//! Sandboxes whose processes end on their own: the runtime notices its init exit (a crash,
//! the OOM killer, a kill from outside), recovers the sandbox (files kept as a
//! filesystem-only pause, or a completed dump committed) and tells us; the row follows,
//! and the failure stays visible on it (`lastError`, operation `run`) and in the counters.
//!
//! Also here: settling a row on what the runtime recovered, shared with a pause that
//! failed after its point of no return (`pause.rs`).

use stasis_runtime::{InitExit, Recovered};
use stasis_store::{Operation, SandboxRow, SandboxState};
use tokio::sync::broadcast::error::RecvError;

use super::{Lifecycle, LifecycleError, Result};

pub(super) fn spawn(lc: Lifecycle) {
    let mut exits = lc.inner.runtime.init_exits();
    tokio::spawn(async move {
        loop {
            match exits.recv().await {
                Ok(exit) => lc.on_init_exit(exit).await,
                Err(RecvError::Lagged(n)) => {
                    // Missed some: the runtime has recovered them already; look again at
                    // every running sandbox (not a start-up reconcile: creates are in flight).
                    tracing::warn!("missed {n} sandbox exits; checking every running sandbox");
                    lc.resync_running().await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

impl Lifecycle {
    async fn on_init_exit(&self, exit: InitExit) {
        let lock = self.lock(&exit.id);
        let _g = lock.lock().await;
        let Ok(row) = self.row(&exit.id).await else { return };
        if row.state != SandboxState::Running {
            return; // an operation of ours under way or done settles it
        }
        let message = match &exit.outcome {
            Ok(recovered) => {
                if let Err(e) = self.settle(&exit.id, *recovered, &[SandboxState::Running]).await {
                    tracing::error!(sandbox = %exit.id, "cannot record the sandbox's exit: {e}");
                }
                exit.reason.clone()
            }
            Err(e) => format!("{}; recovering it failed: {e}", exit.reason),
        };
        let _ = self.record_failure(&exit.id, Operation::Run, LifecycleError::Lost(message)).await;
    }

    /// Settles every running row whose sandbox the runtime no longer runs.
    async fn resync_running(&self) {
        let Ok(rows) = self.own_in_states(&[SandboxState::Running]).await else { return };
        for row in rows {
            let lock = self.lock(&row.id);
            let _g = lock.lock().await;
            match self.inner.runtime.recover(&row.id).await {
                Ok(Recovered::Running) => {}
                Ok(recovered) => {
                    if let Err(e) = self.settle(&row.id, recovered, &[SandboxState::Running]).await {
                        tracing::error!(sandbox = %row.id, "cannot record the sandbox's exit: {e}");
                    }
                }
                Err(e) => tracing::error!(sandbox = %row.id, "cannot check the sandbox: {e}"),
            }
        }
    }

    /// Brings the row of `id` (in one of `from`) to what the runtime recovered.
    pub(super) async fn settle(&self, id: &str, recovered: Recovered, from: &[SandboxState]) -> Result<SandboxRow> {
        let now = self.now();
        match recovered {
            Recovered::Running => self.flip(id, from, SandboxState::Running, |r| r.paused_at = None).await,
            Recovered::Paused | Recovered::MemoryLost => {
                let memory = recovered == Recovered::Paused;
                self.flip(id, from, SandboxState::Paused, move |r| {
                    r.pause_memory = memory;
                    r.paused_at.get_or_insert(now);
                })
                .await
            }
        }
    }
}
