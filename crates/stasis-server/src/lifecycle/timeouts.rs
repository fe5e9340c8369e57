//! When a sandbox ends: its timeout (set by create, connect, setTimeout), the action at
//! the end (pause or kill), the operator's retention of paused sandboxes, and the retry of
//! a kill that failed. The scheduler asks [`Lifecycle::due_action`] on every tick.

use stasis_store::{Operation, SandboxRow, SandboxState, UnixMillis};

use super::{ms, Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;
use crate::metrics::Action;

impl Lifecycle {
    /// Sets the end to now + `secs` (may shorten, unlike connect). `0` ends it now, as E2B
    /// does: a running sandbox is paused (auto-pause) or killed before this returns, and
    /// keeps the timeout it had for its next resume; a paused one stays as it is.
    pub async fn set_timeout(&self, id: &SandboxId, secs: u64) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let mut row = self.touched(self.row(id).await?).await?;
        // E2B looks the sandbox up among the running ones and answers 404 for a paused
        // one; SDK releases rely on it (e2b 2.3's `connect` sets the timeout first and
        // resumes on that 404). The timeout a resume gives is the connect's.
        if row.state == SandboxState::Paused {
            return Err(LifecycleError::NotRunning(format!(
                "sandbox {id} not found among the running sandboxes: it is paused (Sandbox.connect resumes it, with its timeout)"
            )));
        }
        if secs == 0 {
            return match (row.state, row.auto_pause) {
                (SandboxState::Running, true) => {
                    self.pause_locked(id, row.pause_memory, "setTimeout(0) (auto-pause)").await
                }
                (SandboxState::Running, false) => self.kill_locked(id, "setTimeout(0)").await.map(|()| row),
                _ => Ok(row),
            };
        }
        row.timeout_secs = secs;
        if row.state == SandboxState::Running {
            row.end_at = self.now() + ms(secs);
        }
        Ok(self.inner.store.update_sandbox(&row).await?)
    }

    /// The action the lifecycle owes `row` by itself at `now`, if any: its timeout action
    /// once its end passed, a kill once it was paused longer than the retention, or the
    /// retry of a kill that failed; none while a failed action's back-off runs.
    pub(super) fn due_action(&self, row: &SandboxRow, now: UnixMillis) -> Option<Operation> {
        let retention = self.inner.config.paused_retention.map(|r| r.as_millis() as i64);
        let op = match row.state {
            SandboxState::Running if self.effective_end(row) <= now => match row.auto_pause {
                true => Operation::Pause,
                false => Operation::Kill,
            },
            SandboxState::Paused if retention.is_some_and(|r| row.paused_at.is_some_and(|p| p + r <= now)) => {
                Operation::Kill
            }
            SandboxState::Killing if row.last_error.as_ref().is_some_and(|f| f.operation == Operation::Kill) => {
                Operation::Kill
            }
            _ => return None,
        };
        self.may_retry(row, op, now).then_some(op)
    }

    /// How the metrics name action `op`, due on `row`.
    fn action_of(&self, row: &SandboxRow, op: Operation) -> Action {
        let idle = row.state == SandboxState::Running && self.effective_end(row) < row.end_at;
        match (row.state, op) {
            (SandboxState::Running, Operation::Pause) if idle => Action::IdlePause,
            (SandboxState::Running, Operation::Pause) => Action::TimeoutPause,
            (SandboxState::Running, _) if idle => Action::IdleKill,
            (SandboxState::Running, _) => Action::TimeoutKill,
            (SandboxState::Paused, _) => Action::RetentionKill,
            _ => Action::KillRetry,
        }
    }

    /// Runs the action due on sandbox `id`, if one still is under its lock. A failure is
    /// recorded on the row and logged by the operation; it is not an error here.
    pub(super) async fn run_due_action(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let Some(row) = self.inner.store.get_sandbox(id).await? else {
            return Ok(());
        };
        let now = self.now();
        let Some(op) = self.due_action(&row, now) else {
            return Ok(());
        };
        let action = self.action_of(&row, op);
        self.inner.metrics.action(action);
        let why = why(action);
        let result = match op {
            Operation::Pause => self.pause_locked(id, row.pause_memory, why).await.map(drop),
            _ => {
                if row.state == SandboxState::Paused {
                    tracing::info!(sandbox = %id, "paused longer than the retention: killing it");
                }
                self.kill_locked(id, why).await
            }
        };
        match result {
            Err(e @ (LifecycleError::Store(_) | LifecycleError::Conflict(_))) => Err(e),
            _ => Ok(()),
        }
    }
}

/// An action the lifecycle takes by itself, in words (its events' reason).
fn why(a: Action) -> &'static str {
    match a {
        Action::TimeoutPause => "its timeout passed (auto-pause)",
        Action::TimeoutKill => "its timeout passed",
        Action::IdlePause => "no client connection for its idle timeout (auto-pause)",
        Action::IdleKill => "no client connection for its idle timeout",
        Action::RetentionKill => "paused longer than the retention (--paused-retention)",
        Action::KillRetry => "retrying a kill that failed",
        Action::AutoResume => "a proxied request (auto-resume)",
    }
}
