//! Snapshots and forks: capture a running sandbox (it keeps running), start new sandboxes
//! from the capture, list and delete captures.

use stasis_runtime::PauseMode;
use stasis_store::{Page, SandboxRow, SandboxState, SnapshotQuery, SnapshotRow, StoreError};

use super::{CreateParams, Lifecycle, LifecycleError, Result};
use crate::ids::{self, SandboxId};

/// Namespace shown in snapshot ids and names (E2B shows the team's slug there).
pub const NAMESPACE: &str = "stasis";
/// Tag shown in snapshot ids and names.
pub const TAG: &str = "default";

/// The bare snapshot id or name in an E2B-style reference: `ns/name:tag` → `name`.
pub fn normalize(reference: &str) -> &str {
    let without_tag = match reference.rsplit_once(':') {
        Some((head, _tag)) if !head.is_empty() => head,
        _ => reference,
    };
    without_tag.rsplit_once('/').map_or(without_tag, |(_, name)| name)
}

/// The id the SDKs see: `ns/name:tag` for a named snapshot, else `id:tag`.
pub fn public_id(row: &SnapshotRow) -> String {
    match row.names.first() {
        Some(name) => format!("{NAMESPACE}/{name}:{TAG}"),
        None => format!("{}:{TAG}", row.id),
    }
}

pub fn public_names(row: &SnapshotRow) -> Vec<String> {
    row.names.iter().map(|n| format!("{NAMESPACE}/{n}:{TAG}")).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Lifecycle {
    /// The snapshot a template reference names, if it names one.
    pub async fn resolve_snapshot(&self, reference: &str) -> Result<Option<SnapshotRow>> {
        Ok(self.inner.store.resolve_snapshot(normalize(reference)).await?)
    }

    /// Captures running sandbox `id` (with its memory unless `memory` is false: then
    /// sandboxes made from it boot fresh on its files). A name already in use moves to the
    /// new capture (as a new build of a named E2B snapshot template), retiring the old one.
    pub async fn snapshot(&self, id: &SandboxId, name: Option<String>, memory: bool) -> Result<SnapshotRow> {
        let name = name.map(|n| normalize(&n).to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            if !valid_name(n) {
                return Err(LifecycleError::BadRequest(format!(
                    "snapshot name {n:?}: use 1-128 letters, digits, '.', '_' or '-'"
                )));
            }
        }
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.touched(self.row(id).await?).await?;
        if row.state != SandboxState::Running {
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} is {}: only a running sandbox can be snapshotted",
                row.state
            )));
        }
        let snap_id = ids::snapshot_id();
        let mode = if memory { PauseMode::Memory } else { PauseMode::Filesystem };
        let started = std::time::Instant::now();
        let taken = self.inner.runtime.snapshot(id, &snap_id, mode).await;
        self.inner.metrics.operation(crate::metrics::Op::Snapshot, started.elapsed().as_secs_f64(), taken.is_ok());
        let stats = match taken {
            Ok(stats) => stats,
            Err(e) => {
                // The source goes on running, unchanged; say why in its events and the log.
                let e = LifecycleError::from(e);
                tracing::warn!(sandbox = %id, snapshot = %snap_id, "snapshot failed: {e}");
                let message = format!("snapshot failed: {e}");
                self.event(id, stasis_store::Level::Error, "snapshot-failed", message, &[("error", e.to_string())])
                    .await;
                return Err(e);
            }
        };
        let message = format!("snapshot {snap_id} taken (frozen {} ms, {} bytes)", stats.frozen_ms, stats.size_bytes);
        let fields = [
            ("snapshot", snap_id.clone()),
            ("frozen_ms", stats.frozen_ms.to_string()),
            ("size_bytes", stats.size_bytes.to_string()),
        ];
        self.event(id, stasis_store::Level::Info, "snapshot", message, &fields).await;
        let previous = match &name {
            Some(n) => self.inner.store.find_snapshot_by_name(n).await?,
            None => None,
        };
        if let Some(old) = &previous {
            if old.node_id != self.node_id() && !self.shares_layers() {
                // Its files are on that node: deleting only the row here would leave them
                // there for good. The new capture is dropped; the name stays where it is.
                let _ = self.inner.runtime.delete_snapshot(&snap_id).await;
                return Err(LifecycleError::Conflict(format!(
                    "snapshot name {:?} is taken by snapshot {} held by node {}: delete it first \
                     (DELETE /templates/{}) or use another name",
                    name.as_deref().unwrap_or_default(),
                    old.id,
                    old.node_id,
                    old.id
                )));
            }
            self.delete_snapshot_row(old).await?;
        }
        let snap = SnapshotRow {
            id: snap_id.clone(),
            names: name.into_iter().collect(),
            source_sandbox_id: id.to_string(),
            template_id: row.template_id.clone(),
            memory: stats.memory,
            size_bytes: stats.size_bytes,
            created_at: self.now(),
            // This node's runtime took it: its files are here only.
            node_id: self.node_id().to_string(),
        };
        // Sandboxes made from it mount what the source mounts.
        let mounts = self.inner.store.volume_mounts(id).await?;
        let inserted = match self.inner.store.insert_snapshot(&snap).await {
            Ok(()) => self.inner.store.set_volume_mounts(&snap_id, &mounts).await,
            Err(e) => Err(e),
        };
        if let Err(e) = inserted {
            let _ = self.inner.store.delete_snapshot(&snap_id).await;
            let _ = self.inner.runtime.delete_snapshot(&snap_id).await;
            return Err(match e {
                StoreError::AlreadyExists(what) => LifecycleError::Conflict(format!("{what} already exists")),
                other => other.into(),
            });
        }
        tracing::info!(sandbox = %id, snapshot = %snap_id, frozen_ms = stats.frozen_ms, bytes = stats.size_bytes, "snapshot taken");
        Ok(snap)
    }

    async fn delete_snapshot_row(&self, snap: &SnapshotRow) -> Result<()> {
        self.check_held_here(snap)?;
        match self.inner.runtime.delete_snapshot(&snap.id).await {
            Ok(()) | Err(stasis_runtime::RuntimeError::SnapshotNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.delete_snapshot(&snap.id).await?;
        let _ = self.inner.store.set_volume_mounts(&snap.id, &[]).await;
        Ok(())
    }

    /// Deletes this node's copies of shared snapshots whose row is gone (deleted through a
    /// node that did not hold them, or while this one was away): fetched copies, and
    /// snapshots this node took a while ago. Their layers stay while sandboxes here use
    /// them. Runs at start-up and every few heartbeats; returns the ids deleted.
    pub async fn drop_deleted_snapshots(&self) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        if !self.shares_layers() {
            return Ok(dropped);
        }
        for snap in self.inner.runtime.shared_snapshots().await {
            // Ids of the lifecycle's snapshots only (a template's layers have none).
            if SandboxId::parse(&snap).is_err() || self.inner.store.get_snapshot(&snap).await?.is_some() {
                continue;
            }
            match self.inner.runtime.delete_snapshot(&snap).await {
                Ok(()) => {
                    tracing::info!(snapshot = %snap, "deleted this node's copy of a snapshot deleted elsewhere");
                    dropped.push(snap);
                }
                Err(e) => tracing::warn!(snapshot = %snap, "cannot delete the copy of a deleted snapshot: {e}"),
            }
        }
        Ok(dropped)
    }

    /// Deletes a snapshot by id or name; sandboxes started from it keep working.
    pub async fn delete_snapshot(&self, reference: &str) -> Result<()> {
        let Some(snap) = self.resolve_snapshot(reference).await? else {
            return Err(LifecycleError::NotFound(format!("snapshot {reference}")));
        };
        self.delete_snapshot_row(&snap).await
    }

    pub async fn list_snapshots(&self, mut q: SnapshotQuery) -> Result<Page<SnapshotRow>> {
        q.name = q.name.map(|n| normalize(&n).to_string());
        Ok(self.inner.store.list_snapshots(&q).await?)
    }

    /// Forks running sandbox `id` into `count` new sandboxes, each continuing from this
    /// instant in its own copy; the source keeps running. One result per fork.
    pub async fn fork(&self, id: &SandboxId, count: u32, timeout_secs: u64) -> Result<Vec<Result<SandboxRow>>> {
        let snap_id = ids::snapshot_id();
        let source = {
            let lock = self.lock(id);
            let _g = lock.lock().await;
            let row = self.touched(self.row(id).await?).await?;
            if row.state != SandboxState::Running {
                return Err(LifecycleError::Conflict(format!(
                    "sandbox {id} is {}: only a running sandbox can be forked",
                    row.state
                )));
            }
            self.inner.runtime.snapshot(id, &snap_id, PauseMode::Memory).await?;
            row
        };
        let volumes = self.inner.store.volume_mounts(id).await?;
        let forks: Vec<_> = (0..count)
            .map(|_| {
                let lc = self.clone();
                let params = CreateParams {
                    template: source.template_id.clone(),
                    timeout_secs,
                    metadata: source.metadata.clone(),
                    env_vars: source.env_vars.clone(),
                    auto_pause: source.auto_pause,
                    pause_memory: source.pause_memory,
                    auto_resume: source.auto_resume,
                    secure: source.secure,
                    allow_internet_access: source.allow_internet_access,
                    network: source.network.clone(),
                    idle_timeout_secs: source.idle_timeout_secs,
                    memory_mb: source.memory_mb,
                    cpu_count: source.cpu_count,
                    disk_mb: source.disk_size_mb,
                    volumes: volumes.clone(),
                };
                let snap = snap_id.clone();
                tokio::spawn(async move { lc.create_with(params, Some(snap)).await })
            })
            .collect();
        let mut results = Vec::new();
        for f in forks {
            results.push(f.await.unwrap_or_else(|e| Err(LifecycleError::Conflict(format!("fork task failed: {e}")))));
        }
        // The capture served its purpose; the forks keep its layer alive as long as needed.
        if let Err(e) = self.inner.runtime.delete_snapshot(&snap_id).await {
            tracing::warn!(snapshot = %snap_id, "cannot release the fork snapshot: {e}");
        }
        Ok(results)
    }
}
