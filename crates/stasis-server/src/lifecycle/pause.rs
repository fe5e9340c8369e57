//! Pausing a sandbox: connections cut, the runtime checkpoints it, the row says paused.

use stasis_runtime::{Recovered, RuntimeError};
use stasis_store::{Level, Operation, SandboxRow, SandboxState};

use super::{mode, Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;
use crate::metrics::Op;

impl Lifecycle {
    /// An API pause: starts a failed action's back-off over, then pauses.
    pub async fn pause(&self, id: &SandboxId, memory: bool) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        self.touched(self.row(id).await?).await?;
        self.pause_locked(id, memory, "asked by the API").await
    }

    pub(super) async fn pause_locked(&self, id: &str, memory: bool, why: &str) -> Result<SandboxRow> {
        let row = self.row(id).await?;
        if row.state == SandboxState::Paused {
            return Err(LifecycleError::Conflict(format!("sandbox {id} is already paused")));
        }
        self.flip(id, &[SandboxState::Running], SandboxState::Pausing, |_| {}).await?;
        // A paused sandbox serves nobody: open connections are cut now, cleanly (parked
        // ones drop their leg into the sandbox and wait for it to run again).
        self.inner.activity.disconnect_all(id);
        let started = std::time::Instant::now();
        let paused = self.inner.runtime.pause(id, mode(memory)).await;
        self.inner.metrics.operation(Op::Pause, started.elapsed().as_secs_f64(), paused.is_ok());
        match paused {
            Ok(stats) => {
                let total_ms = started.elapsed().as_millis() as u64;
                let message = match memory {
                    true => format!(
                        "paused ({why}) in {total_ms} ms: dump {} ms, sync {} ms, {} bytes",
                        stats.dump_ms, stats.sync_ms, stats.image_bytes
                    ),
                    false => format!("paused ({why}) in {total_ms} ms, files only"),
                };
                let fields = [
                    ("reason", why.to_string()),
                    ("memory", memory.to_string()),
                    ("total_ms", total_ms.to_string()),
                    ("dump_ms", stats.dump_ms.to_string()),
                    ("sync_ms", stats.sync_ms.to_string()),
                    ("image_bytes", stats.image_bytes.to_string()),
                ];
                self.event(id, Level::Info, "paused", message, &fields).await;
                tracing::info!(
                    sandbox = %id, memory, total_ms = started.elapsed().as_millis() as u64,
                    dump_ms = stats.dump_ms, sync_ms = stats.sync_ms, image_bytes = stats.image_bytes, "paused"
                );
                if memory {
                    self.inner.metrics.pause_phases(stats.dump_ms, stats.sync_ms, stats.image_bytes);
                }
            }
            Err(e @ (RuntimeError::PauseIncomplete { .. } | RuntimeError::InitGone { .. })) => {
                // Past the point of no return (or nothing left to pause): its processes
                // are gone. Never reported as running: the row follows what the runtime
                // recovers; a checkpoint it could not complete yet is completed by the
                // next resume, so the sandbox reads paused.
                let recovered = self.inner.runtime.recover(id).await.unwrap_or(Recovered::Paused);
                if let Err(e) = self.settle(id, recovered, &[SandboxState::Pausing]).await {
                    tracing::error!(sandbox = %id, "cannot record the pause's outcome: {e}");
                }
                return Err(self.record_failure(id, Operation::Pause, e.into()).await);
            }
            Err(e) => {
                // The runtime leaves the sandbox running when a pause fails.
                let _ = self.flip(id, &[SandboxState::Pausing], SandboxState::Running, |_| {}).await;
                self.inner.activity.running_again(id);
                return Err(self.record_failure(id, Operation::Pause, e.into()).await);
            }
        }
        let now = self.now();
        self.flip(id, &[SandboxState::Pausing], SandboxState::Paused, move |r| {
            r.paused_at = Some(now);
            r.pause_memory = memory;
            r.last_error = None;
        })
        .await
    }

    /// Pauses every running sandbox of this node (daemon shutdown with
    /// --pause-on-shutdown, a drain: `why`); returns the ids it paused. Tried even where an
    /// auto-pause gave up: the operator asked.
    pub async fn pause_all(&self, why: &'static str) -> Vec<String> {
        let Ok(rows) = self.own_in_states(&[SandboxState::Running]).await else {
            return vec![];
        };
        let mut paused = Vec::new();
        let tasks: Vec<_> = rows
            .into_iter()
            .map(|row| {
                let lc = self.clone();
                tokio::spawn(async move {
                    let lock = lc.lock(&row.id);
                    let _g = lock.lock().await;
                    (row.id.clone(), lc.pause_locked(&row.id, row.pause_memory, why).await)
                })
            })
            .collect();
        for t in tasks {
            if let Ok((id, r)) = t.await {
                match r {
                    Ok(_) => paused.push(id),
                    Err(e) => tracing::error!(sandbox = %id, "pause ({why}) failed: {e}"),
                }
            }
        }
        paused
    }
}
