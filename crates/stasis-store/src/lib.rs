//! Durable control-plane state for Stasis.
//!
//! This crate owns:
//! - the records the control plane must not lose: sandboxes (with their lifecycle state),
//!   snapshots, API keys ([`model`]), volumes with their mounts ([`volumes`]) and
//!   secrets, sealed ([`secrets`]: the store never holds a secret's value in the clear);
//! - the [`Store`] trait, [`SqliteStore`], its SQLite implementation (WAL,
//!   `synchronous=FULL`, versioned migrations), and [`PostgresStore`] for several nodes;
//! - the semantics of list requests: default states, metadata filters, ordering, limits
//!   and pagination tokens ([`query`]);
//! - an atomic compare-and-set on a sandbox's state ([`Store::transition`]), so two
//!   concurrent operations on one sandbox cannot both win.
//!
//! It must not decide anything about a sandbox's life (when to pause, kill, resume: that is
//! the lifecycle's job), call the runtime, or know about HTTP beyond parsing list queries.
//! The store records what the lifecycle decided, durably, before the lifecycle acts on it.

pub mod api_key;
pub mod error;
pub mod events;
pub mod model;
pub mod nodes;
pub mod open;
pub mod postgres;
pub mod query;
pub mod secrets;
pub mod sqlite;
pub mod volumes;

#[cfg(test)]
mod query_fuzz_tests;
#[cfg(test)]
mod suite;
#[cfg(any(test, feature = "test-postgres"))]
pub mod testing;

use async_trait::async_trait;

pub use api_key::{constant_time_eq, generate_api_key, hash_api_key};
pub use error::StoreError;
pub use events::{EventQuery, Level, SandboxEvent, MAX_EVENTS};
pub use model::{now_ms, ApiKeyRow, FailedAction, Operation, SandboxRow, SandboxState, SnapshotRow, UnixMillis};
pub use nodes::{DeadNode, Heartbeat, NodeRow, NodeState, Resources, LOCAL_NODE};
pub use postgres::PostgresStore;
pub use query::{Cursor, ListQuery, Order, QueryError, SnapshotQuery};
pub use secrets::{SecretRow, SecretUpdate};
pub use sqlite::SqliteStore;
pub use volumes::{VolumeMount, VolumeRow};

/// Changes applied to a row inside a state transition's transaction (e.g. set `paused_at`
/// together with the flip to `Paused`). It must not change `id`; `state` and `updated_at` are
/// set by the store after it runs.
pub type RowUpdate = Box<dyn FnOnce(&mut SandboxRow) + Send + 'static>;

/// One page of a listing and the token for the next one (`None` on the last page).
pub type Page<T> = (Vec<T>, Option<String>);

/// The control plane's persistent state. Every write is durable when the call returns.
///
/// Implementations: [`SqliteStore`] for one node, [`PostgresStore`] for several nodes
/// sharing one state; both pass the same suite (`suite.rs`).
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts a new sandbox. `AlreadyExists` when the id is taken.
    async fn insert_sandbox(&self, row: &SandboxRow) -> Result<(), StoreError>;

    async fn get_sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError>;

    /// Overwrites every field of an existing sandbox except `state`, which only
    /// [`Store::transition`] changes: if the stored state differs from `row.state` (someone
    /// transitioned it since `row` was read), nothing is written and the result is
    /// `Conflict { current }`. Sets `updated_at`; returns the row as stored.
    async fn update_sandbox(&self, row: &SandboxRow) -> Result<SandboxRow, StoreError>;

    /// Compare-and-set of a sandbox's state in one transaction: moves it to `to` if it is in
    /// one of `from`, else fails with `Conflict { current }` (`NotFound` if there is no such
    /// sandbox). Returns the row as stored.
    async fn transition(&self, id: &str, from: &[SandboxState], to: SandboxState) -> Result<SandboxRow, StoreError> {
        self.transition_with(id, from, to, Box::new(|_| {})).await
    }

    /// [`Store::transition`] that also applies `update` to the row in the same transaction.
    async fn transition_with(
        &self,
        id: &str,
        from: &[SandboxState],
        to: SandboxState,
        update: RowUpdate,
    ) -> Result<SandboxRow, StoreError>;

    /// Compare-and-set of a sandbox's state *and node* in one transaction: a takeover of a
    /// paused sandbox by another node (`(Paused, old) -> (Resuming, new)`), or its undo.
    /// `Conflict { current }` unless the row is in state `from.0` on node `from.1`.
    async fn move_sandbox(
        &self,
        id: &str,
        from: (SandboxState, &str),
        to: (SandboxState, &str),
    ) -> Result<SandboxRow, StoreError>;

    /// Deletes a sandbox's row. Returns whether it existed.
    async fn delete_sandbox(&self, id: &str) -> Result<bool, StoreError>;

    /// One page of sandboxes matching `query`, in its order.
    async fn list_sandboxes(&self, query: &ListQuery) -> Result<Page<SandboxRow>, StoreError>;

    /// Every sandbox in one of `states`, unpaginated, oldest first: for recovery at start-up
    /// (rows left in `Pausing`, `Killing`, ...) and for re-arming timers.
    async fn sandboxes_in_states(&self, states: &[SandboxState]) -> Result<Vec<SandboxRow>, StoreError>;

    /// Inserts a snapshot and its names. `AlreadyExists` when the id or any name is taken.
    async fn insert_snapshot(&self, row: &SnapshotRow) -> Result<(), StoreError>;

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, StoreError>;

    async fn find_snapshot_by_name(&self, name: &str) -> Result<Option<SnapshotRow>, StoreError>;

    /// A snapshot by id, or else by name (the API accepts either where a template id goes).
    async fn resolve_snapshot(&self, id_or_name: &str) -> Result<Option<SnapshotRow>, StoreError> {
        match self.get_snapshot(id_or_name).await? {
            Some(s) => Ok(Some(s)),
            None => self.find_snapshot_by_name(id_or_name).await,
        }
    }

    /// One page of snapshots, newest first (`created_at` then id, descending).
    async fn list_snapshots(&self, query: &SnapshotQuery) -> Result<Page<SnapshotRow>, StoreError>;

    /// Deletes a snapshot and frees its names. Returns whether it existed.
    async fn delete_snapshot(&self, id: &str) -> Result<bool, StoreError>;

    /// Records a key (only its hash is stored). `AlreadyExists` when the same key was added.
    async fn add_api_key(&self, name: &str, key: &str) -> Result<ApiKeyRow, StoreError>;

    /// Whether `key` is one of the recorded keys.
    async fn verify_api_key(&self, key: &str) -> Result<bool, StoreError>;

    async fn count_api_keys(&self) -> Result<u64, StoreError>;

    /// Appends an event (its `seq` is assigned; the one given is ignored). Returns the seq.
    async fn add_event(&self, event: &SandboxEvent) -> Result<i64, StoreError>;

    /// The events `query` selects.
    async fn events(&self, query: &EventQuery) -> Result<Vec<SandboxEvent>, StoreError>;

    /// Deletes the events older than `before`; returns how many.
    async fn prune_events(&self, before: UnixMillis) -> Result<u64, StoreError>;

    /// Inserts a volume. `AlreadyExists` when its id or name is taken.
    async fn insert_volume(&self, row: &VolumeRow) -> Result<(), StoreError>;

    async fn get_volume(&self, id: &str) -> Result<Option<VolumeRow>, StoreError>;

    async fn find_volume_by_name(&self, name: &str) -> Result<Option<VolumeRow>, StoreError>;

    /// Every volume, oldest first.
    async fn list_volumes(&self) -> Result<Vec<VolumeRow>, StoreError>;

    /// Deletes a volume and the mounts snapshots had of it. `InUse` (naming them) while a
    /// sandbox row mounts it; `Ok(false)` when there was no such volume.
    async fn delete_volume(&self, id: &str) -> Result<bool, StoreError>;

    /// Replaces what `owner` (a sandbox or snapshot id) mounts; empty: nothing. `NotFound`
    /// when a volume named in `mounts` does not exist (deleted meanwhile).
    async fn set_volume_mounts(&self, owner: &str, mounts: &[VolumeMount]) -> Result<(), StoreError>;

    /// What `owner` mounts, by path.
    async fn volume_mounts(&self, owner: &str) -> Result<Vec<VolumeMount>, StoreError>;

    /// Inserts a secret. `AlreadyExists` when its id or name is taken.
    async fn insert_secret(&self, row: &SecretRow) -> Result<(), StoreError>;

    async fn get_secret(&self, id: &str) -> Result<Option<SecretRow>, StoreError>;

    async fn find_secret_by_name(&self, name: &str) -> Result<Option<SecretRow>, StoreError>;

    /// Up to `limit` secrets by name, after the one `token` names (`None`: from the first),
    /// and the token of the next page (`None`: this was the last).
    async fn list_secrets(&self, token: Option<&str>, limit: u32) -> Result<Page<SecretRow>, StoreError>;

    /// Replaces a secret's sealed value (and metadata, when given) and adds one to its
    /// version, in one statement. `NotFound` when there is no such secret.
    async fn update_secret(&self, id: &str, update: &SecretUpdate) -> Result<SecretRow, StoreError>;

    /// Deletes a secret. Returns whether it existed.
    async fn delete_secret(&self, id: &str) -> Result<bool, StoreError>;

    /// Registers node `hb.id` (state `active`) or renews its lease with what it says of
    /// itself. A `dead` node that beats again is `active` again (and `joined_at` is this
    /// beat); a `draining` one stays draining. Returns the row as stored.
    async fn heartbeat(&self, hb: &Heartbeat) -> Result<NodeRow, StoreError>;

    async fn get_node(&self, id: &str) -> Result<Option<NodeRow>, StoreError>;

    /// Every node, by id.
    async fn list_nodes(&self) -> Result<Vec<NodeRow>, StoreError>;

    /// Compare-and-set of a node's state: `NodeConflict { current }` when it is in none
    /// of `from`, `NotFound` when there is no such node.
    async fn set_node_state(&self, id: &str, from: &[NodeState], to: NodeState) -> Result<NodeRow, StoreError>;

    /// In one transaction: every node not yet dead whose lease ended before `now` becomes
    /// `dead`, and its sandboxes in `creating`, `running`, `pausing`, `resuming` or
    /// `killing` become `lost` (with `nodes::lost_error` as their `last_error`); paused ones
    /// stay. Each node is declared dead once, whichever node calls this first.
    async fn expire_nodes(&self, now: UnixMillis) -> Result<Vec<DeadNode>, StoreError>;
}

/// The states of a sandbox whose node's death makes it lost (`Store::expire_nodes`).
pub const LOST_WITH_NODE: [SandboxState; 5] = [
    SandboxState::Creating,
    SandboxState::Running,
    SandboxState::Pausing,
    SandboxState::Resuming,
    SandboxState::Killing,
];
