//! The background job: on every tick, each sandbox the lifecycle owes an action (its
//! timeout action, a retention kill, the retry of a failed kill: see
//! [`Lifecycle::due_action`]) gets it, on its own task. A failed action is not retried on
//! the next tick but after its back-off (`failures.rs`).

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
            let states = [SandboxState::Running, SandboxState::Paused, SandboxState::Killing];
            let rows = match lc.own_in_states(&states).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("timeout scan failed: {e}");
                    continue;
                }
            };
            let now = lc.now();
            for row in rows {
                if lc.due_action(&row, now).is_none() || !in_flight.lock().unwrap().insert(row.id.clone()) {
                    continue;
                }
                let (lc, in_flight) = (lc.clone(), in_flight.clone());
                // Each action on its own task: one slow pause must not delay the others.
                tokio::spawn(async move {
                    if let Err(e) = lc.run_due_action(&row.id).await {
                        tracing::warn!(sandbox = %row.id, "timeout action: {e}");
                    }
                    in_flight.lock().unwrap().remove(&row.id);
                });
            }
        }
    });
}
