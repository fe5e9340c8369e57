//! Timeouts: a sandbox whose end has passed is paused (auto-pause) or killed.

use std::time::Duration;

use stasis_store::{now_ms, SandboxState};

use super::Lifecycle;

const TICK: Duration = Duration::from_millis(250);

pub fn spawn(lc: Lifecycle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let rows = match lc.store().sandboxes_in_states(&[SandboxState::Running]).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("timeout scan failed: {e}");
                    continue;
                }
            };
            let now = now_ms();
            for row in rows.into_iter().filter(|r| r.end_at <= now) {
                let lc = lc.clone();
                // Each expiry on its own task: one slow pause must not delay the others.
                tokio::spawn(async move {
                    if let Err(e) = lc.expire_if_due(&row.id).await {
                        tracing::warn!(sandbox = %row.id, "timeout action failed: {e}");
                    }
                });
            }
        }
    });
}
