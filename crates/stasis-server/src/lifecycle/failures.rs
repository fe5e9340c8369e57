//! Failed lifecycle actions: contained, visible, never retried blindly.
//!
//! When the runtime fails to pause, resume or kill a sandbox:
//! - the sandbox is left where the runtime left it: running after a failed pause,
//!   paused (checkpoint intact) after a failed resume, `killing` after a failed kill
//!   (its processes may already be gone, so it is never shown as running again);
//! - the failure is written on its row ([`FailedAction`]: operation, message, time,
//!   attempts, next attempt), shown by `GET /sandboxes/{id}` as `lastError` and by
//!   `stasis sandbox info`, logged once per attempt, and counted per operation;
//! - the lifecycle's own retries (timeout pause or kill, retention kill, auto-resume by
//!   proxied traffic) wait an exponential back-off ([`Backoff`]: 1 s, 2 s, 4 s, 8 s), and
//!   after `max_attempts` consecutive failures it stops trying: the sandbox stays as it
//!   is (running, for a failed auto-pause) until an API call touches it (connect,
//!   resume, pause, kill, setTimeout, refresh, snapshot, fork), which starts the back-off
//!   over. A daemon restart does not: a given-up action stays given up.
//!
//! The next success of the operation clears the row's error.

use std::time::Duration;

use serde::Serialize;
use stasis_store::{FailedAction, Operation, SandboxRow, StoreError, UnixMillis};

use super::{Lifecycle, LifecycleError, Result};

/// How the lifecycle spaces its own retries of a failed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure; doubled after each further one.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Consecutive failures after which the lifecycle stops trying by itself.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), max: Duration::from_secs(300), max_attempts: 5 }
    }
}

impl Backoff {
    /// The wait after `attempts` consecutive failures, or `None` once it gives up.
    pub fn after(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doubled = self.first.saturating_mul(1u32 << attempts.saturating_sub(1).min(31));
        Some(doubled.min(self.max))
    }
}

/// The metrics' name of a failed operation.
fn label(op: Operation) -> &'static str {
    match op {
        Operation::Pause => "pause",
        Operation::Resume => "resume",
        Operation::Kill => "kill",
        Operation::Run => "lost",
    }
}

/// A reading of the failure counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedActionCounts {
    pub pause: u64,
    pub resume: u64,
    pub kill: u64,
    /// Sandboxes whose processes ended while they were meant to run.
    pub lost: u64,
    pub total: u64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

impl Lifecycle {
    pub fn failed_actions(&self) -> FailedActionCounts {
        let m = &self.inner.metrics;
        let [pause, resume, kill, lost] =
            [Operation::Pause, Operation::Resume, Operation::Kill, Operation::Run].map(|op| m.failed_count(label(op)));
        FailedActionCounts { pause, resume, kill, lost, total: pause + resume + kill + lost }
    }

    /// Every sandbox with a failed action on its row.
    pub async fn with_failed_actions(&self) -> Result<Vec<SandboxRow>> {
        use stasis_store::SandboxState::*;
        let rows = self.inner.store.sandboxes_in_states(&[Running, Pausing, Paused, Resuming, Killing]).await?;
        Ok(rows.into_iter().filter(|r| r.last_error.is_some()).collect())
    }

    /// Whether the lifecycle may try `op` on `row` by itself now: not while the back-off
    /// of a failed `op` runs, nor after it gave up.
    pub(super) fn may_retry(&self, row: &SandboxRow, op: Operation, now: UnixMillis) -> bool {
        match &row.last_error {
            Some(f) if f.operation == op => f.next_attempt_at.is_some_and(|t| t <= now),
            _ => true,
        }
    }

    /// Records that `op` failed on sandbox `id` with `error` (called under its lock, with
    /// the row in the state the failure left it in). The error to return is `error`.
    pub(super) async fn record_failure(&self, id: &str, op: Operation, error: LifecycleError) -> LifecycleError {
        self.inner.metrics.action_failed(label(op));
        let now = self.now();
        let message = error.to_string();
        let backoff = self.inner.config.backoff;
        let Ok(Some(mut row)) = self.inner.store.get_sandbox(id).await else {
            tracing::warn!(sandbox = %id, operation = %op, "{op} failed: {message}");
            return error;
        };
        let attempts = match &row.last_error {
            Some(f) if f.operation == op => f.attempts.saturating_add(1),
            _ => 1,
        };
        let wait = backoff.after(attempts);
        let next = wait.map(|w| now + ms(w));
        match wait {
            Some(w) => tracing::warn!(
                sandbox = %id, operation = %op, attempt = attempts, max_attempts = backoff.max_attempts,
                "{op} failed (attempt {attempts}/{}), next attempt in {} s: {message}", backoff.max_attempts, w.as_secs_f64()
            ),
            None => tracing::warn!(
                sandbox = %id, operation = %op, attempt = attempts, max_attempts = backoff.max_attempts,
                "{op} failed (attempt {attempts}/{}): no more attempts until an API call touches the sandbox: {message}",
                backoff.max_attempts
            ),
        }
        let kind = match op {
            Operation::Run => "lost".to_string(),
            other => format!("{other}-failed"),
        };
        let next_text = next.map_or("no more automatic attempts".to_string(), |t| {
            format!("next attempt at {}", stasis_proto::rfc3339_millis(t))
        });
        let fields = [("error", message.clone()), ("attempt", attempts.to_string()), ("next", next_text.clone())];
        let text = format!("{op} failed (attempt {attempts}): {message}; {next_text}");
        self.event(id, stasis_store::Level::Error, &kind, text, &fields).await;
        row.last_error = Some(FailedAction { operation: op, message, at: now, attempts, next_attempt_at: next });
        if let Err(e) = self.inner.store.update_sandbox(&row).await {
            tracing::error!(sandbox = %id, "cannot record the failed {op}: {e}");
        }
        error
    }

    /// An API call touches the sandbox (under its lock): a failed action's back-off starts
    /// over, and the lifecycle may try again at once. The error stays visible until the
    /// operation succeeds. Returns the row as stored.
    pub(super) async fn touched(&self, mut row: SandboxRow) -> Result<SandboxRow> {
        let now = self.now();
        let Some(f) = row.last_error.as_mut() else {
            return Ok(row);
        };
        if f.attempts == 0 {
            return Ok(row);
        }
        f.attempts = 0;
        f.next_attempt_at = Some(now);
        match self.inner.store.update_sandbox(&row).await {
            Ok(r) => Ok(r),
            Err(StoreError::Conflict { current }) => Err(super::conflict(&row.id, current)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_then_gives_up() {
        let b = Backoff::default();
        let waits: Vec<_> = (1..=6).map(|n| b.after(n).map(|d| d.as_secs())).collect();
        assert_eq!(waits, [Some(1), Some(2), Some(4), Some(8), None, None]);
        let capped = Backoff { first: Duration::from_secs(10), max: Duration::from_secs(30), max_attempts: 100 };
        assert_eq!(capped.after(3), Some(Duration::from_secs(30)));
        assert_eq!(capped.after(99), Some(Duration::from_secs(30)), "no overflow on many attempts");
    }
}
