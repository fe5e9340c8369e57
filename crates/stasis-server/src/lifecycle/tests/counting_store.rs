//! The SQLite store, counting the sandbox reads the lifecycle makes: to show what a
//! proxied request costs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use stasis_store::{
    ApiKeyRow, EventQuery, ListQuery, Page, RowUpdate, SandboxEvent, SandboxRow, SandboxState, SnapshotQuery,
    SnapshotRow, SqliteStore, Store, StoreError,
};

pub(crate) struct CountingStore {
    pub inner: SqliteStore,
    pub sandbox_reads: Arc<AtomicUsize>,
}

type R<T> = Result<T, StoreError>;

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn insert_sandbox(&self, row: &SandboxRow) -> R<()> {
        self.inner.insert_sandbox(row).await
    }
    async fn get_sandbox(&self, id: &str) -> R<Option<SandboxRow>> {
        self.sandbox_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get_sandbox(id).await
    }
    async fn update_sandbox(&self, row: &SandboxRow) -> R<SandboxRow> {
        self.inner.update_sandbox(row).await
    }
    async fn transition_with(
        &self,
        id: &str,
        from: &[SandboxState],
        to: SandboxState,
        update: RowUpdate,
    ) -> R<SandboxRow> {
        self.inner.transition_with(id, from, to, update).await
    }
    async fn move_sandbox(&self, id: &str, from: (SandboxState, &str), to: (SandboxState, &str)) -> R<SandboxRow> {
        self.inner.move_sandbox(id, from, to).await
    }
    async fn delete_sandbox(&self, id: &str) -> R<bool> {
        self.inner.delete_sandbox(id).await
    }
    async fn list_sandboxes(&self, query: &ListQuery) -> R<Page<SandboxRow>> {
        self.sandbox_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.list_sandboxes(query).await
    }
    async fn sandboxes_in_states(&self, states: &[SandboxState]) -> R<Vec<SandboxRow>> {
        self.inner.sandboxes_in_states(states).await
    }
    async fn insert_snapshot(&self, row: &SnapshotRow) -> R<()> {
        self.inner.insert_snapshot(row).await
    }
    async fn get_snapshot(&self, id: &str) -> R<Option<SnapshotRow>> {
        self.inner.get_snapshot(id).await
    }
    async fn find_snapshot_by_name(&self, name: &str) -> R<Option<SnapshotRow>> {
        self.inner.find_snapshot_by_name(name).await
    }
    async fn list_snapshots(&self, query: &SnapshotQuery) -> R<Page<SnapshotRow>> {
        self.inner.list_snapshots(query).await
    }
    async fn delete_snapshot(&self, id: &str) -> R<bool> {
        self.inner.delete_snapshot(id).await
    }
    async fn add_api_key(&self, name: &str, key: &str) -> R<ApiKeyRow> {
        self.inner.add_api_key(name, key).await
    }
    async fn verify_api_key(&self, key: &str) -> R<bool> {
        self.inner.verify_api_key(key).await
    }
    async fn count_api_keys(&self) -> R<u64> {
        self.inner.count_api_keys().await
    }
    async fn add_event(&self, event: &SandboxEvent) -> R<i64> {
        self.inner.add_event(event).await
    }
    async fn events(&self, query: &EventQuery) -> R<Vec<SandboxEvent>> {
        self.inner.events(query).await
    }
    async fn prune_events(&self, before: i64) -> R<u64> {
        self.inner.prune_events(before).await
    }
    async fn insert_volume(&self, row: &stasis_store::VolumeRow) -> R<()> {
        self.inner.insert_volume(row).await
    }
    async fn get_volume(&self, id: &str) -> R<Option<stasis_store::VolumeRow>> {
        self.inner.get_volume(id).await
    }
    async fn find_volume_by_name(&self, name: &str) -> R<Option<stasis_store::VolumeRow>> {
        self.inner.find_volume_by_name(name).await
    }
    async fn list_volumes(&self) -> R<Vec<stasis_store::VolumeRow>> {
        self.inner.list_volumes().await
    }
    async fn delete_volume(&self, id: &str) -> R<bool> {
        self.inner.delete_volume(id).await
    }
    async fn set_volume_mounts(&self, owner: &str, mounts: &[stasis_store::VolumeMount]) -> R<()> {
        self.inner.set_volume_mounts(owner, mounts).await
    }
    async fn volume_mounts(&self, owner: &str) -> R<Vec<stasis_store::VolumeMount>> {
        self.inner.volume_mounts(owner).await
    }
    async fn insert_secret(&self, row: &stasis_store::SecretRow) -> R<()> {
        self.inner.insert_secret(row).await
    }
    async fn get_secret(&self, id: &str) -> R<Option<stasis_store::SecretRow>> {
        self.inner.get_secret(id).await
    }
    async fn find_secret_by_name(&self, name: &str) -> R<Option<stasis_store::SecretRow>> {
        self.inner.find_secret_by_name(name).await
    }
    async fn list_secrets(&self, token: Option<&str>, limit: u32) -> R<Page<stasis_store::SecretRow>> {
        self.inner.list_secrets(token, limit).await
    }
    async fn update_secret(&self, id: &str, update: &stasis_store::SecretUpdate) -> R<stasis_store::SecretRow> {
        self.inner.update_secret(id, update).await
    }
    async fn delete_secret(&self, id: &str) -> R<bool> {
        self.inner.delete_secret(id).await
    }
    async fn heartbeat(&self, hb: &stasis_store::Heartbeat) -> R<stasis_store::NodeRow> {
        self.inner.heartbeat(hb).await
    }
    async fn get_node(&self, id: &str) -> R<Option<stasis_store::NodeRow>> {
        self.inner.get_node(id).await
    }
    async fn list_nodes(&self) -> R<Vec<stasis_store::NodeRow>> {
        self.inner.list_nodes().await
    }
    async fn set_node_state(
        &self,
        id: &str,
        from: &[stasis_store::NodeState],
        to: stasis_store::NodeState,
    ) -> R<stasis_store::NodeRow> {
        self.inner.set_node_state(id, from, to).await
    }
    async fn expire_nodes(&self, now: stasis_store::UnixMillis) -> R<Vec<stasis_store::DeadNode>> {
        self.inner.expire_nodes(now).await
    }
}
