//! This node in the cluster's registry: its heartbeat (what it commits of its capacity),
//! the sweep that declares nodes whose lease expired dead (their running sandboxes lost,
//! said in each one's events), the nodes' list, drain, and where a create goes.
//!
//! The timing (how often, how long a lease) and the host's figures are the caller's
//! (`crate::cluster`); the decisions that must hold across nodes are compare-and-sets in
//! the store.

use stasis_store::{DeadNode, Heartbeat, Level, NodeRow, NodeState, Resources, SandboxState, StoreError};

use super::{Lifecycle, LifecycleError, Result};

/// States in which a sandbox holds its share of its node's memory and CPUs.
const COMMITTED: [SandboxState; 4] =
    [SandboxState::Creating, SandboxState::Running, SandboxState::Pausing, SandboxState::Resuming];

impl Lifecycle {
    /// Memory, CPUs and disk promised to this node's sandboxes that hold them now.
    pub async fn committed(&self) -> Result<Resources> {
        let rows = self.own_in_states(&COMMITTED).await?;
        Ok(rows.iter().fold(Resources::default(), |acc, r| Resources {
            memory_mb: acc.memory_mb + r.memory_mb,
            cpu_count: acc.cpu_count + r.cpu_count,
            disk_mb: acc.disk_mb + r.disk_size_mb,
        }))
    }

    /// Renews this node's lease. When the node finds it was declared dead meanwhile (it
    /// rejoined: `joined_at` is this beat, not its first), it takes up the sandboxes it
    /// still holds that were reported lost.
    pub async fn heartbeat(&self, hb: Heartbeat, first: bool) -> Result<NodeRow> {
        let at = hb.at;
        let row = self.inner.store.heartbeat(&hb).await?;
        let rejoined = row.joined_at == at && !first;
        if rejoined {
            tracing::warn!("this node's lease had expired and it was declared dead; taking up what it still holds");
            self.readopt_lost().await?;
        }
        if rejoined || row.state == NodeState::Draining {
            // Other nodes may have taken over its paused sandboxes meanwhile.
            if let Err(e) = self.drop_moved().await {
                tracing::warn!("cannot check for sandboxes taken over by other nodes: {e}");
            }
        }
        Ok(row)
    }

    /// Whether this node is draining (read from the store: a drain or an activate counts
    /// at once). A draining node resumes nothing, so a connect does not undo the drain
    /// (to be paused again at the next beat).
    pub(super) async fn is_draining(&self) -> Result<bool> {
        let node = self.inner.store.get_node(self.node_id()).await?;
        Ok(node.is_some_and(|n| n.state == NodeState::Draining))
    }

    /// Declares dead the nodes whose lease ended; each of their lost sandboxes gets an
    /// event saying so (whichever node's sweep won writes them, once).
    pub async fn sweep_nodes(&self) -> Result<Vec<DeadNode>> {
        let dead = self.inner.store.expire_nodes(self.now()).await?;
        for d in &dead {
            tracing::error!(node = %d.node.id, lost = d.lost.len(), "node's lease expired: declared dead, its running sandboxes lost");
            for id in &d.lost {
                self.inner.routes.invalidate(id);
                let message = stasis_store::nodes::lost_error(&d.node.id, d.node.heartbeat_at, self.now()).message;
                self.event(id, Level::Error, "lost", message, &[("node", d.node.id.clone())]).await;
            }
        }
        Ok(dead)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        Ok(self.inner.store.list_nodes().await?)
    }

    pub async fn node(&self, id: &str) -> Result<NodeRow> {
        self.inner.store.get_node(id).await?.ok_or_else(|| LifecycleError::NotFound(format!("node {id}")))
    }

    /// Where the sandbox `id` lives, when that is another node that answers (its lease
    /// holds): requests for it go there. A paused one whose node is dead or draining goes
    /// to the node placement picks (`takeover.rs`), when layers are shared. `None`: this node answers (its own, unknown, or
    /// its node is dead, for which the lifecycle has its own answers).
    pub async fn remote_owner(&self, id: &str) -> Result<Option<NodeRow>> {
        if self.inner.routes.lookup_cached(id) {
            return Ok(None); // cached routes are of this node's sandboxes only
        }
        let Some(row) = self.inner.store.get_sandbox(id).await? else { return Ok(None) };
        if self.movable(&row).await? {
            // Paused on a dead or draining node (this one too), and any node can take it:
            // the one a create would go to (the most free memory) resumes it.
            let nodes = self.nodes().await?;
            return Ok(match place(&nodes, self.now()) {
                Some(n) if n.id != self.node_id() => Some(n.clone()),
                _ => None,
            });
        }
        if row.node_id == self.node_id() {
            return Ok(None);
        }
        match self.inner.store.get_node(&row.node_id).await? {
            Some(n) if n.state != NodeState::Dead && n.lease_until >= self.now() => Ok(Some(n)),
            _ => Ok(None),
        }
    }

    /// Stops new placements on `id` and has it pause its sandboxes (it sees the state at
    /// its next heartbeat). `NodeConflict` unless it is active (or already draining).
    pub async fn drain_node(&self, id: &str) -> Result<NodeRow> {
        match self.inner.store.set_node_state(id, &[NodeState::Active, NodeState::Draining], NodeState::Draining).await
        {
            Ok(n) => Ok(n),
            Err(StoreError::NotFound) => Err(LifecycleError::NotFound(format!("node {id}"))),
            Err(StoreError::NodeConflict { current }) => {
                Err(LifecycleError::Conflict(format!("node {id} is {current}: only an active node is drained")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes new sandboxes again (after a drain).
    pub async fn activate_node(&self, id: &str) -> Result<NodeRow> {
        match self.inner.store.set_node_state(id, &[NodeState::Draining, NodeState::Active], NodeState::Active).await {
            Ok(n) => Ok(n),
            Err(StoreError::NotFound) => Err(LifecycleError::NotFound(format!("node {id}"))),
            Err(StoreError::NodeConflict { current }) => {
                Err(LifecycleError::Conflict(format!("node {id} is {current}: it becomes active when it beats again")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The node a new sandbox goes to: among the active nodes whose lease holds and that have
/// disk left above their reserve (one without would refuse the create, 507), the one with
/// the most free memory, then the most free CPUs, then the most free disk, then the lowest
/// id (so every node decides alike from the same rows). `None`: no node can take it.
pub fn place(nodes: &[NodeRow], now: stasis_store::UnixMillis) -> Option<&NodeRow> {
    placement_order(nodes, now).into_iter().next()
}

/// Every node that can take a new sandbox, best first (as [`place`] ranks them): the
/// next one is tried when the best does not answer (killed, its lease not over yet).
pub fn placement_order(nodes: &[NodeRow], now: stasis_store::UnixMillis) -> Vec<&NodeRow> {
    let mut v: Vec<&NodeRow> =
        nodes.iter().filter(|n| n.state == NodeState::Active && n.lease_until >= now && n.free.disk_mb > 0).collect();
    let rank = |n: &NodeRow| (n.free.memory_mb, n.free.cpu_count, n.free.disk_mb);
    v.sort_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| a.id.cmp(&b.id)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: NodeState, free_mb: u64, cpus: u32, lease_until: i64) -> NodeRow {
        NodeRow {
            id: id.into(),
            url: format!("http://{id}"),
            state,
            capacity: Resources { memory_mb: 16_384, cpu_count: 8, disk_mb: 1 },
            free: Resources { memory_mb: free_mb, cpu_count: cpus, disk_mb: 1 },
            heartbeat_at: 0,
            lease_until,
            joined_at: 0,
        }
    }

    #[test]
    fn placement_takes_the_live_active_node_with_most_free_memory() {
        let nodes = [
            node("a", NodeState::Active, 2048, 4, 100),
            node("b", NodeState::Active, 4096, 1, 100),
            node("c", NodeState::Draining, 9000, 8, 100),
            node("d", NodeState::Active, 9000, 8, 10), // lease over
            node("e", NodeState::Dead, 9000, 8, 100),
        ];
        assert_eq!(place(&nodes, 50).unwrap().id, "b");
        // Ties: more CPUs, then the lowest id.
        let tied = [node("b", NodeState::Active, 4096, 2, 100), node("a", NodeState::Active, 4096, 2, 100)];
        assert_eq!(place(&tied, 50).unwrap().id, "a");
        let more_cpus = [node("a", NodeState::Active, 4096, 2, 100), node("b", NodeState::Active, 4096, 3, 100)];
        assert_eq!(place(&more_cpus, 50).unwrap().id, "b");
        assert!(place(&nodes[2..], 50).is_none());
    }

    #[test]
    fn placement_skips_a_node_without_disk_above_its_reserve_and_ranks_disk_after_cpus() {
        let mut full = node("a", NodeState::Active, 9000, 8, 100);
        full.free.disk_mb = 0;
        let mut roomy = node("c", NodeState::Active, 4096, 2, 100);
        roomy.free.disk_mb = 50_000;
        let nodes = [full, node("b", NodeState::Active, 4096, 2, 100), roomy];
        assert_eq!(place(&nodes, 50).unwrap().id, "c", "a has no disk left; c more disk than b");
        assert_eq!(placement_order(&nodes, 50).len(), 2);
    }
}
