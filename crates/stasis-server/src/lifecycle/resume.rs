//! Connecting to a sandbox: a running one has its end extended, a paused one is resumed
//! (by an API call, or by proxied traffic when it asked for auto-resume).

use stasis_store::{Level, Operation, SandboxRow, SandboxState};

use super::{conflict, mode, ms, Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;
use crate::metrics::Op;

impl Lifecycle {
    /// Connect (an API call): a running sandbox gets its end extended (never shortened); a
    /// paused one is resumed. Returns the row and whether it was resumed.
    pub async fn connect(&self, id: &SandboxId, timeout_secs: Option<u64>, memory: bool) -> Result<(SandboxRow, bool)> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.touched(self.row(id).await?).await?;
        self.connect_locked(row, timeout_secs, memory).await
    }

    async fn connect_locked(
        &self,
        row: SandboxRow,
        timeout_secs: Option<u64>,
        memory: bool,
    ) -> Result<(SandboxRow, bool)> {
        match row.state {
            SandboxState::Running => {
                let Some(t) = timeout_secs else {
                    return Ok((row, false));
                };
                let end = (self.now() + ms(t)).max(row.end_at);
                let mut r = row;
                r.end_at = end;
                Ok((self.inner.store.update_sandbox(&r).await?, false))
            }
            SandboxState::Paused if row.node_id != self.node_id() && self.movable(&row).await? => {
                let t = timeout_secs.unwrap_or(row.timeout_secs);
                Ok((self.take_over_locked(row, t, memory, "connect (API)").await?, true))
            }
            SandboxState::Paused if row.node_id != self.node_id() => Err(LifecycleError::Conflict(format!(
                "sandbox {} is paused on node {}, which does not answer; its files are there: it resumes \
                 once that node is back",
                row.id, row.node_id
            ))),
            SandboxState::Paused => {
                let t = timeout_secs.unwrap_or(row.timeout_secs);
                Ok((self.resume_locked(row, t, memory, "connect (API)").await?, true))
            }
            SandboxState::Lost => Err(super::lost(&row)),
            other => Err(conflict(&row.id, other)),
        }
    }

    pub(super) async fn resume_locked(
        &self,
        row: SandboxRow,
        timeout_secs: u64,
        memory: bool,
        why: &str,
    ) -> Result<SandboxRow> {
        let id = row.id.clone();
        if self.is_draining().await? {
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} is paused on node {}, which is draining: it resumes once the node is activated",
                self.node_id()
            )));
        }
        self.flip(&id, &[SandboxState::Paused], SandboxState::Resuming, |_| {}).await?;
        let memory = memory && row.pause_memory;
        let started = std::time::Instant::now();
        let resumed = self.inner.runtime.resume(&id, mode(memory)).await;
        self.inner.metrics.operation(Op::Resume, started.elapsed().as_secs_f64(), resumed.is_ok());
        if let Err(e) = resumed {
            // Nothing was lost: the checkpoint is intact, the sandbox stays paused.
            let _ = self.flip(&id, &[SandboxState::Resuming], SandboxState::Paused, |_| {}).await;
            return Err(self.record_failure(&id, Operation::Resume, e.into()).await);
        }
        self.resumed(&id, started, timeout_secs, memory, why).await
    }

    /// After a resume the runtime completed: recorded running, said in an event.
    pub(super) async fn resumed(
        &self,
        id: &str,
        started: std::time::Instant,
        timeout_secs: u64,
        memory: bool,
        why: &str,
    ) -> Result<SandboxRow> {
        let id = id.to_string();
        if memory {
            self.inner.metrics.checkpoint_read(self.checkpoint_bytes(&id).await);
        }
        let now = self.now();
        self.inner.activity.started(&id);
        let row = self
            .flip(&id, &[SandboxState::Resuming], SandboxState::Running, move |r| {
                r.end_at = now + ms(timeout_secs);
                r.paused_at = None;
                r.last_error = None;
            })
            .await?;
        let total_ms = started.elapsed().as_millis().to_string();
        let message = format!("resumed ({why}) in {total_ms} ms{}", if memory { "" } else { ", without memory" });
        tracing::info!(sandbox = %id, reason = why, memory, total_ms, "resumed");
        let fields = [("reason", why.into()), ("total_ms", total_ms), ("memory", memory.to_string())];
        self.event(&id, Level::Info, "resumed", message, &fields).await;
        Ok(row)
    }
}

/// Why an auto-resume is not tried now.
pub(super) fn backing_off(row: &SandboxRow) -> String {
    let Some(f) = &row.last_error else {
        return format!("sandbox {} cannot be resumed now", row.id);
    };
    let when = match f.next_attempt_at {
        Some(t) => format!("the next attempt is at {}", stasis_proto::rfc3339_millis(t)),
        None => "no more attempts until an API call (connect) resumes it".to_string(),
    };
    format!("resuming sandbox {} failed {} time(s), last: {}; {when}", row.id, f.attempts, f.message)
}
