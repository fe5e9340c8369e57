//! This node's part in a cluster of `stasis serve` processes sharing one store
//! (docs/architecture.md, "Cluster"): its identity and lease (`heartbeat.rs`), the
//! host's figures it reports (`capacity.rs`), which requests belong to another node
//! (`routing.rs`), how they get there (`forward.rs`) and how a node knows a forwarded
//! request came from another node (`auth.rs`).
//!
//! It decides nothing about a sandbox's life: who owns a sandbox, whether a node is dead
//! and where a create goes are the lifecycle's answers (`lifecycle/nodes.rs`), from the
//! store. On a single machine (no `--node-id`) the node is `local`, it beats and shows in
//! `stasis node ls`, and nothing is ever forwarded.

pub mod auth;
pub mod capacity;
pub mod forward;
pub mod heartbeat;
pub mod routing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Lifecycle;

/// How often a node renews its lease, and how long a lease holds, by default: a node is
/// declared dead after about 15 s without a heartbeat (five missed beats).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// What a node is told at start (`stasis serve --node-id ... --advertise ...`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// A DNS name (`valid_node_id`); `None`: the single machine's (`local`).
    pub node_id: Option<String>,
    /// Where the other nodes reach this one: `http://HOST:PORT` (its API port).
    pub advertise: String,
    /// The secret every node of the cluster shares (`--cluster-secret-file`): it marks a
    /// forwarded request as coming from a node. `None`: no forwarding (one machine).
    pub secret: Option<String>,
    pub heartbeat: Duration,
    pub lease: Duration,
    /// What the node offers; `None`: the host's (memory, CPUs).
    pub capacity: capacity::Offered,
    pub data_dir: PathBuf,
    pub disk_reserve: u64,
}

impl ClusterConfig {
    /// A single machine's: node `local`, no forwarding.
    pub fn single(listen: std::net::SocketAddr, data_dir: PathBuf, disk_reserve: u64) -> Self {
        ClusterConfig {
            node_id: None,
            advertise: format!("http://{listen}"),
            secret: None,
            heartbeat: DEFAULT_HEARTBEAT,
            lease: DEFAULT_LEASE,
            capacity: Default::default(),
            data_dir,
            disk_reserve,
        }
    }

    /// Checks what the flags said; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.node_id {
            valid_node_id(id)?;
            if self.secret.is_none() {
                return Err("--node-id needs --cluster-secret-file (the secret the cluster's nodes share)".into());
            }
        }
        if let Some(s) = &self.secret {
            if s.len() < 16 {
                return Err("the cluster secret must be at least 16 characters".into());
            }
        }
        // Other nodes use it only in a cluster (one machine may listen on port 0).
        if self.node_id.is_some() {
            forward::authority(&self.advertise).map_err(|e| format!("--advertise: {e}"))?;
        }
        if self.lease < self.heartbeat * 2 {
            return Err("--node-lease must be at least twice --heartbeat-interval".into());
        }
        Ok(())
    }
}

/// A node id: a DNS subdomain name (RFC 1123, as Kubernetes names its nodes, so a
/// DaemonSet can pass `spec.nodeName`): dot-separated labels of lower-case letters, digits
/// and `-` (1 to 63 each, not starting or ending with `-`), 253 characters at most.
pub fn valid_node_id(id: &str) -> Result<(), String> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if id.len() <= 253 && id.split('.').all(label) {
        Ok(())
    } else {
        Err(format!(
            "bad node id {id:?}: a DNS name (labels of a-z, 0-9 and '-' joined by '.', not starting or ending \
             with '-', 253 characters at most)"
        ))
    }
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    lifecycle: Lifecycle,
}

impl Cluster {
    pub fn new(config: ClusterConfig, lifecycle: Lifecycle) -> Self {
        Cluster { inner: Arc::new(Inner { config, lifecycle }) }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Whether requests may go to other nodes (a cluster secret is set).
    pub fn forwards(&self) -> bool {
        self.inner.config.secret.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_dns_names_as_kubernetes_names_nodes() {
        for ok in ["a", "node-1", "n0", &"x".repeat(63), "ip-10-0-1-2.ec2.internal", "a.b"] {
            assert!(valid_node_id(ok).is_ok(), "{ok}");
        }
        let long = ["x".repeat(63), "x".repeat(63), "x".repeat(63), "x".repeat(62)].join(".");
        for bad in ["", "-a", "a-", "A", "a_b", "a..b", ".a", "a.", "a.-b", &"x".repeat(64), &long] {
            assert!(valid_node_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_needs_a_secret_a_reachable_url_and_a_lease_longer_than_two_beats() {
        let mut c = ClusterConfig::single("127.0.0.1:3000".parse().unwrap(), "/tmp".into(), 0);
        assert!(c.validate().is_ok());
        c.advertise = "http://127.0.0.1:0".into();
        assert!(c.validate().is_ok(), "one machine: the URL is only shown");
        c.advertise = "http://127.0.0.1:3000".into();
        c.node_id = Some("a".into());
        assert!(c.validate().unwrap_err().contains("--cluster-secret-file"));
        c.secret = Some("short".into());
        assert!(c.validate().unwrap_err().contains("16"));
        c.secret = Some("0123456789abcdef".into());
        assert!(c.validate().is_ok());
        c.advertise = "https://x:1".into();
        assert!(c.validate().unwrap_err().contains("--advertise"));
        c.advertise = "http://x:1".into();
        c.lease = c.heartbeat;
        assert!(c.validate().unwrap_err().contains("--node-lease"));
    }
}
