//! The store's one error type. The HTTP layer maps it to wire errors once:
//! `NotFound` → 404, `Conflict`/`AlreadyExists`/`InUse` → 409, `InvalidQuery` → 400, the rest → 500.

use crate::model::SandboxState;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A compare-and-set lost: the row is in `current`, not in any of the expected states.
    #[error("sandbox is {current}")]
    Conflict { current: SandboxState },
    /// A compare-and-set of a node's state lost: it is in `current`.
    #[error("node is {current}")]
    NodeConflict { current: crate::nodes::NodeState },
    /// An insert hit an existing id or snapshot name.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A volume still mounted by the sandboxes named.
    #[error("{what} is mounted by sandbox(es) {}", by.join(", "))]
    InUse { what: String, by: Vec<String> },
    #[error(transparent)]
    InvalidQuery(#[from] QueryError),
    /// The database was written by a newer Stasis; opening it could corrupt it.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); \
         upgrade Stasis or point it at another data directory"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// A stored value that does not read back (hand-edited row, bad JSON).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A `--database` value that names no store.
    #[error("bad --database: {0}")]
    InvalidDatabase(String),
    /// No connection from the pool (the server is down or refuses us).
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking task running a query panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}
