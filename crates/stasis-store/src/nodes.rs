//! The nodes of a cluster: every `stasis serve` sharing one store registers itself here
//! and renews a lease by heartbeat (`stasis-server/src/cluster/`).
//!
//! The store keeps what each node said of itself (advertised URL, capacity, free
//! resources) and the one decision that must have a single winner across nodes: a node
//! whose lease expired is declared dead *once*, and in the same transaction its sandboxes
//! that were running (or between states) become [`SandboxState::Lost`]: their memory and
//! writable layer were on that host. Paused ones stay paused. It does not decide when a
//! lease expires (the caller passes the time) nor where a sandbox goes (placement is the
//! server's).
//!
//! [`SandboxState::Lost`]: crate::SandboxState::Lost

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// The node of a single machine (no `--node-id`): every sandbox row written before nodes
/// existed belongs to it (migration default).
pub const LOCAL_NODE: &str = "local";

/// Where a node is in its life. Persisted as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Renewing its lease; takes new sandboxes.
    Active,
    /// Renewing its lease, takes no new sandbox and pauses the ones it runs (`node drain`).
    Draining,
    /// Its lease expired: its running sandboxes were reported lost. A heartbeat from it
    /// (it came back) makes it active again.
    Dead,
}

impl NodeState {
    pub const ALL: [NodeState; 3] = [NodeState::Active, NodeState::Draining, NodeState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown node state {s:?}"))
    }
}

/// Memory, CPUs and disk: a node's capacity, or what of it is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub memory_mb: u64,
    pub cpu_count: u32,
    pub disk_mb: u64,
}

/// One node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub id: String,
    /// Where other nodes reach it (`http://HOST:PORT`, its `--advertise`).
    pub url: String,
    pub state: NodeState,
    pub capacity: Resources,
    pub free: Resources,
    /// Its last heartbeat.
    pub heartbeat_at: UnixMillis,
    /// Until when its last heartbeat holds: past it, the node is dead.
    pub lease_until: UnixMillis,
    /// Its first heartbeat since it (re)joined.
    pub joined_at: UnixMillis,
}

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub id: String,
    pub url: String,
    pub capacity: Resources,
    pub free: Resources,
    pub at: UnixMillis,
    pub lease_until: UnixMillis,
}

/// A node declared dead, and its sandboxes that became lost with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadNode {
    pub node: NodeRow,
    pub lost: Vec<String>,
}

/// The `last_error` a lost sandbox carries (JSON of [`crate::FailedAction`]).
pub fn lost_error(node: &str, heartbeat_at: UnixMillis, now: UnixMillis) -> crate::FailedAction {
    let when = chrono::DateTime::from_timestamp_millis(heartbeat_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| heartbeat_at.to_string());
    crate::FailedAction {
        operation: crate::Operation::Run,
        message: format!(
            "lost: its node {node} stopped renewing its lease (last heartbeat {when}); \
             its memory and files were on that node"
        ),
        at: now,
        attempts: 1,
        next_attempt_at: None,
    }
}
