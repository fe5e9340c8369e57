//! Node affinity: which node holds the files a request needs besides a sandbox's. A
//! snapshot's layer, images and `snapshot.json` are in the data dir of the node whose
//! runtime took it (its row's `node_id`): a create from it and its delete must run there,
//! and nowhere else (another node would fail, or create nothing, or leave its files behind).
//! A create from a plain template is placed freely (`nodes::place`). With shared layers (a
//! cluster with an object store) a snapshot is in the bucket too: its node is still
//! preferred while it answers (its files are there), any other node fetches it otherwise.
//!
//! It decides where, not how: routing (`cluster/routing.rs`) forwards or answers the
//! error; the operations themselves refuse what this node does not hold
//! (`Lifecycle::create`, `delete_snapshot_row`).

use stasis_store::{NodeRow, NodeState, SnapshotRow, UnixMillis};

use super::{Lifecycle, Result};

/// Where a request about some held files is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// Nothing held names it (not a snapshot): any node, placement decides.
    Free,
    /// This node holds it.
    Here,
    /// That node holds snapshot `snapshot` (its id) and its lease holds.
    Node { node: NodeRow, snapshot: String },
    /// The node that holds it (this one or another) is draining: it takes no new sandbox,
    /// from its snapshots neither (it would pause them at its next beat); a delete still
    /// goes there.
    Draining { node: NodeRow, snapshot: String },
    /// The node that holds it is dead, its lease ended, or it is unknown: the message.
    Gone(String),
}

/// The message of a snapshot whose node cannot answer (`routing` adds it when the node
/// does not accept connections).
pub fn gone_message(snapshot: &str, node: &str) -> String {
    format!(
        "snapshot {snapshot} is held by node {node}, which does not answer: its files are on that node only \
         (stasis node ls)"
    )
}

pub fn draining_message(snapshot: &str, node: &str) -> String {
    format!(
        "snapshot {snapshot} is held by node {node}, which is draining: sandboxes from it are made there only \
         (stasis node activate {node})"
    )
}

/// The answer to a create from snapshot `snapshot` of node `node` on a node that could not
/// fetch it (taken before snapshots went to the object store, or its upload was lost).
pub fn not_shared_message(snapshot: &str, node: &str) -> String {
    format!(
        "snapshot {snapshot} is held by node {node} and is not in the object store (taken before snapshots were \
         shared between nodes): sandboxes from it are made on that node only"
    )
}

/// Where snapshot `snap` is answered, seen from node `here` at `now` (`holder`: the row of
/// the node it names, if any).
pub fn of_snapshot(snap: &SnapshotRow, here: &str, holder: Option<&NodeRow>, now: UnixMillis) -> Affinity {
    if snap.node_id == here {
        // This node answers, alive by definition; draining, it makes nothing new.
        return match holder {
            Some(n) if n.state == NodeState::Draining => {
                Affinity::Draining { node: n.clone(), snapshot: snap.id.clone() }
            }
            _ => Affinity::Here,
        };
    }
    match holder {
        Some(n) if n.state == NodeState::Dead || n.lease_until < now => Affinity::Gone(gone_message(&snap.id, &n.id)),
        Some(n) if n.state == NodeState::Draining => Affinity::Draining { node: n.clone(), snapshot: snap.id.clone() },
        Some(n) => Affinity::Node { node: n.clone(), snapshot: snap.id.clone() },
        None => Affinity::Gone(gone_message(&snap.id, &snap.node_id)),
    }
}

impl Lifecycle {
    /// Where a request naming template or snapshot `reference` (a create's `templateID`,
    /// a `DELETE /templates/{id}`) is answered: resolved as `create` resolves it.
    pub async fn affinity(&self, reference: &str) -> Result<Affinity> {
        let Some(snap) = self.resolve_snapshot(reference).await? else { return Ok(Affinity::Free) };
        let holder = self.inner.store.get_node(&snap.node_id).await?;
        Ok(of_snapshot(&snap, self.node_id(), holder.as_ref(), self.now()))
    }

    /// Refuses an operation on the files of a snapshot another node holds (routing sends
    /// it there; this is the answer when it could not, or when two nodes disagree).
    /// With shared layers any node may: the runtime fetches a snapshot from the object
    /// store (and says so when it is not there: [`not_shared_message`]).
    pub(super) fn check_held_here(&self, snap: &SnapshotRow) -> Result<()> {
        if snap.node_id == self.node_id() || self.shares_layers() {
            return Ok(());
        }
        Err(super::LifecycleError::Conflict(format!(
            "snapshot {} is held by node {}: its files are on that node only, ask it (it answers this \
             request when it is alive)",
            snap.id, snap.node_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stasis_store::Resources;

    fn snap(node: &str) -> SnapshotRow {
        SnapshotRow {
            id: "s1".into(),
            names: vec![],
            source_sandbox_id: "src".into(),
            template_id: "base".into(),
            memory: true,
            size_bytes: 1,
            created_at: 0,
            node_id: node.into(),
        }
    }

    fn node(id: &str, state: NodeState, lease_until: i64) -> NodeRow {
        let r = Resources { memory_mb: 1, cpu_count: 1, disk_mb: 1 };
        NodeRow {
            id: id.into(),
            url: format!("http://{id}:1"),
            state,
            capacity: r,
            free: r,
            heartbeat_at: 0,
            lease_until,
            joined_at: 0,
        }
    }

    #[test]
    fn a_snapshot_goes_to_its_node_while_that_node_holds_its_lease() {
        let a = node("a", NodeState::Active, 100);
        assert_eq!(of_snapshot(&snap("b"), "b", None, 50), Affinity::Here);
        let to_a = Affinity::Node { node: a.clone(), snapshot: "s1".into() };
        assert_eq!(of_snapshot(&snap("a"), "b", Some(&a), 50), to_a);
        assert_eq!(of_snapshot(&snap("a"), "b", Some(&a), 100), to_a, "the lease's last instant");
        let Affinity::Gone(m) = of_snapshot(&snap("a"), "b", Some(&a), 101) else { panic!("lease ended") };
        assert_eq!(m, gone_message("s1", "a"));
        assert!(m.contains("snapshot s1 is held by node a, which does not answer"), "{m}");
        let dead = node("a", NodeState::Dead, 1000);
        assert!(matches!(of_snapshot(&snap("a"), "b", Some(&dead), 50), Affinity::Gone(_)));
        let Affinity::Gone(m) = of_snapshot(&snap("gone"), "b", None, 50) else { panic!("unknown node") };
        assert!(m.contains("node gone"), "{m}");
        let draining = node("a", NodeState::Draining, 100);
        let held_draining = Affinity::Draining { node: draining.clone(), snapshot: "s1".into() };
        assert_eq!(of_snapshot(&snap("a"), "b", Some(&draining), 50), held_draining);
        assert_eq!(of_snapshot(&snap("a"), "a", Some(&draining), 50), held_draining, "here, draining");
        let m = draining_message("s1", "a");
        assert!(m.contains("draining") && m.contains("stasis node activate a"), "{m}");
        assert_eq!(
            of_snapshot(&snap("a"), "a", Some(&dead), 50),
            Affinity::Here,
            "this node answers whatever its row says"
        );
    }
}
