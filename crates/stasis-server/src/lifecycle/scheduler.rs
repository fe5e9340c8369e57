//! Timeouts: a sandbox whose end has passed is paused (auto-pause) or killed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stasis_store::SandboxState;

use super::Lifecycle;

const TICK: Duration = Duration::from_millis(250);

pub fn spawn(lc: Lifecycle) {
    // Sandboxes whose action is under way: not started twice.
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let rows = match lc.store().sandboxes_in_states(&[SandboxState::Running, SandboxState::Paused]).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("timeout scan failed: {e}");
                    continue;
                }
            };
            let now = lc.now();
            let retention = lc.config().paused_retention.map(|r| r.as_millis() as i64);
            for row in rows {
                let due = match row.state {
                    SandboxState::Running => lc.effective_end(&row) <= now,
                    _ => retention.is_some_and(|r| row.paused_at.is_some_and(|p| p + r <= now)),
                };
                if !due || !in_flight.lock().unwrap().insert(row.id.clone()) {
                    continue;
                }
                let (lc, in_flight) = (lc.clone(), in_flight.clone());
                // Each expiry on its own task: one slow pause must not delay the others.
                tokio::spawn(async move {
                    let r = match row.state {
                        SandboxState::Running => lc.expire_if_due(&row.id).await,
                        _ => lc.retire_if_due(&row.id).await,
                    };
                    if let Err(e) = r {
                        tracing::warn!(sandbox = %row.id, "timeout action failed: {e}");
                    }
                    in_flight.lock().unwrap().remove(&row.id);
                });
            }
        }
    });
}
