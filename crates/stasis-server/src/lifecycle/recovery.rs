//! Start-up reconciliation: after a crash or restart, every sandbox is brought to a state
//! that matches what the runtime has on disk. Paused sandboxes are never dropped; running
//! ones are re-adopted (their processes kept running), and one whose processes are gone
//! keeps its files as a filesystem-only paused sandbox, reported in the log.
//!
//! Only this node's sandboxes: in a cluster the other rows are their nodes' to settle.
//! Sandboxes the cluster declared lost while this node was away (its lease expired) are
//! taken up again when their files are here (`readopt_lost`, also after a heartbeat
//! finds the node was declared dead).

use std::collections::HashSet;

use stasis_runtime::{Recovered, RuntimeError};
use stasis_store::SandboxState;

use super::{Lifecycle, Result};

impl Lifecycle {
    /// Reconciles every sandbox's row with the runtime; run once, before serving.
    pub async fn reconcile(&self) -> Result<()> {
        let (store, rt) = (&self.inner.store, &self.inner.runtime);
        let rows = self
            .own_in_states(&[
                SandboxState::Creating,
                SandboxState::Killing,
                SandboxState::Pausing,
                SandboxState::Resuming,
                SandboxState::Running,
                SandboxState::Paused,
                SandboxState::Lost,
            ])
            .await?;
        let known: HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        for row in rows {
            let id = row.id.clone();
            if matches!(row.state, SandboxState::Creating | SandboxState::Killing) {
                // Half-created or half-killed: finish the kill (nothing of value was made
                // yet, or the user asked for it to go).
                tracing::warn!(sandbox = %id, state = %row.state, "finishing interrupted create/kill");
                match rt.kill(&id).await {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(e) => tracing::error!(sandbox = %id, "cannot clean: {e}"),
                }
                store.delete_sandbox(&id).await?;
                self.inner.routes.forget(&id);
                continue;
            }
            let (to, memory) = match rt.recover(&id).await {
                Ok(Recovered::Running) => (SandboxState::Running, row.pause_memory),
                Ok(Recovered::Paused) => (SandboxState::Paused, true),
                Ok(Recovered::MemoryLost) => {
                    tracing::warn!(sandbox = %id, "its processes were gone after the restart: memory lost, files kept; it is now paused (filesystem only)");
                    (SandboxState::Paused, false)
                }
                // Declared lost while this node was away, and its files are not here either.
                Err(RuntimeError::NotFound(_)) if row.state == SandboxState::Lost => continue,
                Err(RuntimeError::NotFound(_)) => {
                    tracing::error!(sandbox = %id, state = %row.state, "the runtime has no trace of it: removing its record");
                    store.delete_sandbox(&id).await?;
                    self.inner.routes.forget(&id);
                    continue;
                }
                Err(e) => {
                    tracing::error!(sandbox = %id, "recovery failed, left as {}: {e}", row.state);
                    continue;
                }
            };
            if to != row.state || (to == SandboxState::Paused && memory != row.pause_memory) {
                tracing::warn!(sandbox = %id, from = %row.state, to = %to, "recovered");
                let now = self.now();
                self.flip(&id, &[row.state], to, move |r| {
                    if to == SandboxState::Paused {
                        r.pause_memory = memory;
                        r.paused_at.get_or_insert(now);
                    } else {
                        r.paused_at = None;
                    }
                })
                .await?;
            }
        }
        // Paused sandboxes other nodes took over while this one was away: stale copies.
        self.drop_moved().await?;
        // Shared snapshots deleted through another node while this one was away.
        self.drop_deleted_snapshots().await?;
        // Sandboxes the runtime holds but the store does not know as this node's (only if
        // the database was replaced or lost, or a takeover is under way): reported, never
        // deleted; `stasis runtime kill ID` removes one.
        for id in rt.list().await? {
            if !known.contains(&id) {
                tracing::warn!(sandbox = %id, "the runtime holds this sandbox but the database does not list it as this node's; left untouched");
            }
        }
        Ok(())
    }

    /// Sandboxes of this node the cluster declared lost (its lease expired: a stall, a
    /// network cut) that this node still holds: running again, or paused with their files,
    /// as the runtime finds them. Those it does not hold stay lost.
    pub async fn readopt_lost(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for row in self.own_in_states(&[SandboxState::Lost]).await? {
            let lock = self.lock(&row.id);
            let _g = lock.lock().await;
            let recovered = match self.inner.runtime.recover(&row.id).await {
                Ok(r) => r,
                Err(RuntimeError::NotFound(_)) => continue,
                Err(e) => {
                    tracing::error!(sandbox = %row.id, "cannot check a lost sandbox: {e}");
                    continue;
                }
            };
            if self.settle(&row.id, recovered, &[SandboxState::Lost]).await.is_ok() {
                tracing::warn!(sandbox = %row.id, "declared lost while this node was away, found again");
                let message = "found again: its node renewed its lease after it had expired".to_string();
                self.event(&row.id, stasis_store::Level::Warn, "found", message, &[]).await;
                found.push(row.id);
            }
        }
        Ok(found)
    }
}
