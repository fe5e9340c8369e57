//! The schema, as an ordered list of migrations. Migration `i` (0-based) takes a database
//! from `PRAGMA user_version = i` to `i + 1`. Append only: never edit a released migration,
//! since databases in the field have already run it.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: sandboxes and API keys.
    r#"
    CREATE TABLE sandboxes (
        id                    TEXT PRIMARY KEY,
        template_id           TEXT NOT NULL,
        alias                 TEXT,
        client_id             TEXT NOT NULL,
        state                 TEXT NOT NULL CHECK (state IN
            ('creating','running','pausing','paused','resuming','killing','killed')),
        metadata              TEXT NOT NULL DEFAULT '{}',
        env_vars              TEXT NOT NULL DEFAULT '{}',
        cpu_count             INTEGER NOT NULL,
        memory_mb             INTEGER NOT NULL,
        disk_size_mb          INTEGER NOT NULL,
        envd_access_token     TEXT,
        traffic_access_token  TEXT,
        started_at            INTEGER NOT NULL,
        end_at                INTEGER NOT NULL,
        timeout_secs          INTEGER NOT NULL,
        auto_pause            INTEGER NOT NULL,
        auto_resume           INTEGER NOT NULL,
        pause_memory          INTEGER NOT NULL,
        secure                INTEGER NOT NULL,
        allow_internet_access INTEGER NOT NULL,
        network               TEXT NOT NULL DEFAULT 'null',
        paused_at             INTEGER,
        idle_timeout_secs     INTEGER,
        created_at            INTEGER NOT NULL,
        updated_at            INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX sandboxes_by_start ON sandboxes (started_at, id);
    CREATE INDEX sandboxes_by_state ON sandboxes (state, started_at, id);

    CREATE TABLE api_keys (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        key_hash   TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 2: snapshots; names live in their own table so uniqueness is a primary key.
    r#"
    CREATE TABLE snapshots (
        id                TEXT PRIMARY KEY,
        source_sandbox_id TEXT NOT NULL,
        template_id       TEXT NOT NULL,
        memory            INTEGER NOT NULL,
        size_bytes        INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX snapshots_by_creation ON snapshots (created_at, id);
    CREATE INDEX snapshots_by_source ON snapshots (source_sandbox_id, created_at, id);

    CREATE TABLE snapshot_names (
        name        TEXT PRIMARY KEY,
        snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX snapshot_names_by_snapshot ON snapshot_names (snapshot_id, position);
    "#,
    // 3: the last failed lifecycle action of a sandbox (JSON `FailedAction`, NULL: none).
    r#"
    ALTER TABLE sandboxes ADD COLUMN last_error TEXT;
    "#,
    // 4: sandbox events (no foreign key: they outlive the sandbox's row).
    r#"
    CREATE TABLE sandbox_events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        at         INTEGER NOT NULL,
        level      TEXT NOT NULL CHECK (level IN ('debug','info','warn','error')),
        kind       TEXT NOT NULL,
        message    TEXT NOT NULL,
        fields     TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX sandbox_events_by_sandbox ON sandbox_events (sandbox_id, seq);
    CREATE INDEX sandbox_events_by_time ON sandbox_events (at);
    "#,
    // 5: volumes, and what each sandbox or snapshot (`owner`, no foreign key: either
    // table) mounts where; a mount keeps its volume from being deleted.
    r#"
    CREATE TABLE volumes (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        token      TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE volume_mounts (
        owner     TEXT NOT NULL,
        path      TEXT NOT NULL,
        volume_id TEXT NOT NULL REFERENCES volumes (id),
        PRIMARY KEY (owner, path)
    ) STRICT;
    CREATE INDEX volume_mounts_by_volume ON volume_mounts (volume_id);
    "#,
    // 6: secrets, the value sealed by the server's vault (never in the clear here);
    // names are unique and listed in name order.
    r#"
    CREATE TABLE secrets (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        version    INTEGER NOT NULL,
        metadata   TEXT NOT NULL,
        sealed     BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 7: nodes (issue 17), the node each sandbox belongs to (rows from before: the
    // single machine's `local`), and the state `lost`. SQLite cannot change a CHECK, so
    // the sandboxes table is rebuilt (nothing references it).
    r#"
    CREATE TABLE sandboxes_v7 (
        id                    TEXT PRIMARY KEY,
        template_id           TEXT NOT NULL,
        alias                 TEXT,
        client_id             TEXT NOT NULL,
        state                 TEXT NOT NULL CHECK (state IN
            ('creating','running','pausing','paused','resuming','killing','killed','lost')),
        metadata              TEXT NOT NULL DEFAULT '{}',
        env_vars              TEXT NOT NULL DEFAULT '{}',
        cpu_count             INTEGER NOT NULL,
        memory_mb             INTEGER NOT NULL,
        disk_size_mb          INTEGER NOT NULL,
        envd_access_token     TEXT,
        traffic_access_token  TEXT,
        started_at            INTEGER NOT NULL,
        end_at                INTEGER NOT NULL,
        timeout_secs          INTEGER NOT NULL,
        auto_pause            INTEGER NOT NULL,
        auto_resume           INTEGER NOT NULL,
        pause_memory          INTEGER NOT NULL,
        secure                INTEGER NOT NULL,
        allow_internet_access INTEGER NOT NULL,
        network               TEXT NOT NULL DEFAULT 'null',
        paused_at             INTEGER,
        idle_timeout_secs     INTEGER,
        created_at            INTEGER NOT NULL,
        updated_at            INTEGER NOT NULL,
        last_error            TEXT,
        node_id               TEXT NOT NULL DEFAULT 'local'
    ) STRICT;
    INSERT INTO sandboxes_v7 SELECT *, 'local' FROM sandboxes;
    DROP TABLE sandboxes;
    ALTER TABLE sandboxes_v7 RENAME TO sandboxes;
    CREATE INDEX sandboxes_by_start ON sandboxes (started_at, id);
    CREATE INDEX sandboxes_by_state ON sandboxes (state, started_at, id);
    CREATE INDEX sandboxes_by_node ON sandboxes (node_id, state);

    CREATE TABLE nodes (
        id               TEXT PRIMARY KEY,
        url              TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('active','draining','dead')),
        memory_mb        INTEGER NOT NULL,
        cpu_count        INTEGER NOT NULL,
        disk_mb          INTEGER NOT NULL,
        free_memory_mb   INTEGER NOT NULL,
        free_cpu_count   INTEGER NOT NULL,
        free_disk_mb     INTEGER NOT NULL,
        heartbeat_at     INTEGER NOT NULL,
        lease_until      INTEGER NOT NULL,
        joined_at        INTEGER NOT NULL
    ) STRICT;
    "#,
    // 8: the node that holds each snapshot's files (rows from before: the single
    // machine's `local`, as sandboxes' in migration 7).
    r#"
    ALTER TABLE snapshots ADD COLUMN node_id TEXT NOT NULL DEFAULT 'local';
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`] in one transaction, or refuses a database
/// from a newer build. The version is re-read under the write lock, so two processes
/// opening the same file at once migrate it only once.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies migrations up to version `target` (tests build old databases with it).
pub(crate) fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    let start = usize::try_from(found).map_err(|_| StoreError::Corrupt(format!("negative schema version {found}")))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(start) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
