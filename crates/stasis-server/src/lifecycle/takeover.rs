//! A paused sandbox of another node resumed here (a cluster with an object store:
//! `share_layers`): when its node is dead or draining, the node that receives the connect
//! claims the row with a compare-and-set of state and node (`Store::move_sandbox`,
//! `(paused, OLD) -> (resuming, THIS)`), imports the sandbox's layer set from the object
//! store (`Runtime::import_paused`) and resumes it. A failed import or resume hands the
//! row back (`(resuming, THIS) -> (paused, OLD)`): it stays paused where it was.
//!
//! Must not: take over a sandbox whose node is alive and active (requests for it are
//! forwarded there: its files and cache are there), or act without winning the claim.

use stasis_runtime::RuntimeError;
use stasis_store::{Level, NodeState, Operation, SandboxRow, SandboxState, StoreError};

use super::{conflict, mode, Lifecycle, LifecycleError, Result};
use crate::metrics::Op;

impl Lifecycle {
    /// Whether paused sandboxes of other nodes may be taken over by this one.
    pub fn shares_layers(&self) -> bool {
        self.inner.config.share_layers
    }

    /// Whether the paused sandbox `row` is to be resumed elsewhere than on its node: layers
    /// are shared and its node (this one included) is dead, its lease over, or draining.
    pub(super) async fn movable(&self, row: &SandboxRow) -> Result<bool> {
        if !self.shares_layers() || row.state != SandboxState::Paused {
            return Ok(false);
        }
        let owner = self.inner.store.get_node(&row.node_id).await?;
        Ok(!owner.is_some_and(|n| n.state == NodeState::Active && n.lease_until >= self.now()))
    }

    /// Claims the paused sandbox `row` of another node for this one, imports and resumes
    /// it. Called under the sandbox's lock.
    pub(super) async fn take_over_locked(
        &self,
        row: SandboxRow,
        timeout_secs: u64,
        memory: bool,
        why: &str,
    ) -> Result<SandboxRow> {
        let id = row.id.clone();
        if self.is_draining().await? {
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} is paused on node {} and this node ({}) is draining: it takes no sandbox over",
                row.node_id,
                self.node_id()
            )));
        }
        let (old, me) = (row.node_id.clone(), self.node_id().to_string());
        let claimed =
            self.inner.store.move_sandbox(&id, (SandboxState::Paused, &old), (SandboxState::Resuming, &me)).await;
        self.inner.routes.invalidate(&id);
        match claimed {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(LifecycleError::NotFound(id)),
            Err(StoreError::Conflict { current }) => return Err(conflict(&id, current)),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(sandbox = %id, from = %old, "paused sandbox taken over from its node");
        let fields = [("from", old.clone()), ("to", me.clone())];
        let message = format!("taken over from node {old} (dead or draining) by node {me}");
        self.event(&id, Level::Info, "taken_over", message, &fields).await;
        let memory = memory && row.pause_memory;
        let started = std::time::Instant::now();
        let resumed = match self.inner.runtime.import_paused(&id).await {
            Ok(()) => self.inner.runtime.resume(&id, mode(memory)).await,
            Err(e) => Err(e),
        };
        self.inner.metrics.operation(Op::Resume, started.elapsed().as_secs_f64(), resumed.is_ok());
        if let Err(e) = resumed {
            // Nothing was lost: the set is still in the bucket; the row goes back.
            let back =
                self.inner.store.move_sandbox(&id, (SandboxState::Resuming, &me), (SandboxState::Paused, &old)).await;
            self.inner.routes.invalidate(&id);
            if let Err(b) = back {
                tracing::error!(sandbox = %id, "a failed takeover could not hand the row back: {b}");
            }
            // Not a failure of the sandbox: it resumes where it was paused (a 409 saying so).
            if let RuntimeError::Immovable(_) = e {
                return Err(e.into());
            }
            return Err(self.record_failure(&id, Operation::Resume, e.into()).await);
        }
        self.resumed(&id, started, timeout_secs, memory, &format!("{why}, taken over from node {old}")).await
    }

    /// This host's copies of paused sandboxes another node took over while this one was
    /// dead or draining: their rows name that node and the object store holds their
    /// state, so the copy here is stale. Removed (files, id range); the objects are left
    /// alone, they are the new node's. One whose takeover is under way (resuming there)
    /// waits for a later pass: a failed takeover hands the row back. Runs at start-up and
    /// at every heartbeat while this node is draining or after it was declared dead.
    /// Returns the ids removed.
    pub async fn drop_moved(&self) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        if !self.shares_layers() {
            return Ok(dropped);
        }
        // One read of the rows that name another node (but those being taken over now),
        // not one per sandbox this host holds: it runs at every beat while draining.
        use SandboxState::*;
        let others: std::collections::HashMap<String, String> = self
            .inner
            .store
            .sandboxes_in_states(&[Creating, Running, Pausing, Paused, Killing, Killed, Lost])
            .await?
            .into_iter()
            .filter(|r| r.node_id != self.node_id())
            .map(|r| (r.id, r.node_id))
            .collect();
        for id in self.inner.runtime.list().await? {
            let Some(node) = others.get(&id) else { continue };
            let lock = self.lock(&id);
            let _g = lock.lock().await;
            match self.inner.runtime.drop_local(&id).await {
                Ok(()) => {
                    tracing::info!(sandbox = %id, node = %node, "removed the stale copy of a sandbox taken over by another node");
                    dropped.push(id);
                }
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(sandbox = %id, "cannot remove the stale copy of a sandbox taken over: {e}"),
            }
        }
        Ok(dropped)
    }
}
