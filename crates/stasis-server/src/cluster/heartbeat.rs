//! The node's lease: a heartbeat every `--heartbeat-interval` (3 s) writes what the node
//! offers and has free, and holds its lease for `--node-lease` (15 s) from then. Each
//! beat also sweeps: every node's sweep declares the nodes whose lease ended dead (the
//! store makes that happen once), so a node's death is noticed by whichever node looks
//! first, with no leader. A node told to drain pauses its running sandboxes at its beat.
//!
//! A beat that fails (the store unreachable) is logged and tried at the next tick; the
//! node keeps serving what it runs. If its lease runs out meanwhile the others report its
//! sandboxes lost, and it takes them up again at its next successful beat
//! (`Lifecycle::heartbeat`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stasis_store::{Heartbeat, NodeRow, NodeState};

use super::{capacity, Cluster};

/// Every how many beats a node drops its copies of snapshots deleted through other nodes
/// (one store read per such copy: not at every beat).
const SNAPSHOT_SWEEP_BEATS: u64 = 10;

impl Cluster {
    /// One beat: renew, then sweep; `first`: the beat at start, before serving.
    pub async fn beat(&self, first: bool) -> anyhow::Result<NodeRow> {
        let cfg = self.config();
        let lc = self.lifecycle();
        let dir = cfg.data_dir.clone();
        let host = tokio::task::spawn_blocking(move || capacity::read_host(&dir)).await??;
        let committed = lc.committed().await?;
        let (capacity, free) = capacity::figures(&host, cfg.capacity, committed, cfg.disk_reserve);
        let at = lc.now();
        let hb = Heartbeat {
            id: lc.node_id().to_string(),
            url: cfg.advertise.clone(),
            capacity,
            free,
            at,
            lease_until: at + cfg.lease.as_millis() as i64,
        };
        let row = lc.heartbeat(hb, first).await?;
        lc.sweep_nodes().await?;
        Ok(row)
    }

    /// Beats until the process ends; a draining node pauses what it runs.
    pub fn spawn_heartbeat(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let draining = Arc::new(AtomicBool::new(false));
            let mut tick = tokio::time::interval(this.config().heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first beat was made at start
            let mut beats: u64 = 0;
            loop {
                tick.tick().await;
                beats += 1;
                if beats.is_multiple_of(SNAPSHOT_SWEEP_BEATS) {
                    let lc = this.lifecycle().clone();
                    tokio::spawn(async move {
                        if let Err(e) = lc.drop_deleted_snapshots().await {
                            tracing::warn!("cannot check for snapshots deleted through other nodes: {e}");
                        }
                    });
                }
                match this.beat(false).await {
                    Ok(row) if row.state == NodeState::Draining => {
                        // Not on the beat's task (pauses take seconds, the lease must not
                        // wait), and one drain pass at a time.
                        if draining.swap(true, Ordering::AcqRel) {
                            continue;
                        }
                        let (lc, draining) = (this.lifecycle().clone(), draining.clone());
                        tokio::spawn(async move {
                            let paused = lc.pause_all("node drain").await;
                            if !paused.is_empty() {
                                tracing::info!(count = paused.len(), "draining: paused the running sandboxes");
                            }
                            draining.store(false, Ordering::Release);
                        });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("heartbeat failed (the lease runs out if this lasts): {e:#}"),
                }
            }
        });
    }
}
