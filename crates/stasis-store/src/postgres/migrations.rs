//! The PostgreSQL schema, as an ordered list of migrations (the same tables and meaning as
//! SQLite's, in PostgreSQL's types: JSONB for maps, BIGINT for times in ms, BOOLEAN).
//! Migration `i` (0-based) takes a database from version `i` to `i + 1`, recorded in
//! `stasis_schema`. Append only.
//!
//! Several nodes may start at once on one database: the migration runs under a
//! transaction-level advisory lock, and the version is read under it, so it runs once.

use deadpool_postgres::Object;

use crate::StoreError;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: sandboxes, API keys, snapshots and their names, the last failed action.
    r#"
    CREATE TABLE sandboxes (
        id                    TEXT COLLATE "C" PRIMARY KEY,
        template_id           TEXT NOT NULL,
        alias                 TEXT,
        client_id             TEXT NOT NULL,
        state                 TEXT NOT NULL CHECK (state IN
            ('creating','running','pausing','paused','resuming','killing','killed')),
        metadata              JSONB NOT NULL DEFAULT '{}',
        env_vars              JSONB NOT NULL DEFAULT '{}',
        cpu_count             BIGINT NOT NULL,
        memory_mb             BIGINT NOT NULL,
        disk_size_mb          BIGINT NOT NULL,
        envd_access_token     TEXT,
        traffic_access_token  TEXT,
        started_at            BIGINT NOT NULL,
        end_at                BIGINT NOT NULL,
        timeout_secs          BIGINT NOT NULL,
        auto_pause            BOOLEAN NOT NULL,
        auto_resume           BOOLEAN NOT NULL,
        pause_memory          BOOLEAN NOT NULL,
        secure                BOOLEAN NOT NULL,
        allow_internet_access BOOLEAN NOT NULL,
        network               JSONB NOT NULL DEFAULT 'null',
        paused_at             BIGINT,
        idle_timeout_secs     BIGINT,
        created_at            BIGINT NOT NULL,
        updated_at            BIGINT NOT NULL,
        last_error            JSONB
    );
    CREATE INDEX sandboxes_by_start ON sandboxes (started_at, id);
    CREATE INDEX sandboxes_by_state ON sandboxes (state, started_at, id);
    CREATE INDEX sandboxes_by_metadata ON sandboxes USING GIN (metadata jsonb_path_ops);

    CREATE TABLE api_keys (
        id         BIGSERIAL PRIMARY KEY,
        key_hash   TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE snapshots (
        id                TEXT COLLATE "C" PRIMARY KEY,
        source_sandbox_id TEXT NOT NULL,
        template_id       TEXT NOT NULL,
        memory            BOOLEAN NOT NULL,
        size_bytes        BIGINT NOT NULL,
        created_at        BIGINT NOT NULL
    );
    CREATE INDEX snapshots_by_creation ON snapshots (created_at, id);
    CREATE INDEX snapshots_by_source ON snapshots (source_sandbox_id, created_at, id);

    CREATE TABLE snapshot_names (
        name        TEXT PRIMARY KEY,
        snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
        position    BIGINT NOT NULL
    );
    CREATE INDEX snapshot_names_by_snapshot ON snapshot_names (snapshot_id, position);
    "#,
    // 2: sandbox events (no foreign key: they outlive the sandbox's row).
    r#"
    CREATE TABLE sandbox_events (
        seq        BIGSERIAL PRIMARY KEY,
        sandbox_id TEXT COLLATE "C" NOT NULL,
        at         BIGINT NOT NULL,
        level      TEXT NOT NULL CHECK (level IN ('debug','info','warn','error')),
        kind       TEXT NOT NULL,
        message    TEXT NOT NULL,
        fields     JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX sandbox_events_by_sandbox ON sandbox_events (sandbox_id, seq);
    CREATE INDEX sandbox_events_by_time ON sandbox_events (at);
    "#,
    // 3: volumes and their mounts (as SQLite's migration 5).
    r#"
    CREATE TABLE volumes (
        id         TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        token      TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE volume_mounts (
        owner     TEXT COLLATE "C" NOT NULL,
        path      TEXT NOT NULL,
        volume_id TEXT COLLATE "C" NOT NULL REFERENCES volumes (id),
        PRIMARY KEY (owner, path)
    );
    CREATE INDEX volume_mounts_by_volume ON volume_mounts (volume_id);
    "#,
    // 4: secrets (as SQLite's migration 6). Names in "C" order, as SQLite compares them,
    // so both page through the same order.
    r#"
    CREATE TABLE secrets (
        id         TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL UNIQUE,
        version    BIGINT NOT NULL,
        metadata   JSONB NOT NULL,
        sealed     BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    "#,
    // 5: nodes (issue 17), the node each sandbox belongs to, and the state `lost` (as
    // SQLite's migration 7).
    r#"
    ALTER TABLE sandboxes DROP CONSTRAINT sandboxes_state_check;
    ALTER TABLE sandboxes ADD CONSTRAINT sandboxes_state_check CHECK (state IN
        ('creating','running','pausing','paused','resuming','killing','killed','lost'));
    ALTER TABLE sandboxes ADD COLUMN node_id TEXT COLLATE "C" NOT NULL DEFAULT 'local';
    CREATE INDEX sandboxes_by_node ON sandboxes (node_id, state);

    CREATE TABLE nodes (
        id               TEXT COLLATE "C" PRIMARY KEY,
        url              TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('active','draining','dead')),
        memory_mb        BIGINT NOT NULL,
        cpu_count        BIGINT NOT NULL,
        disk_mb          BIGINT NOT NULL,
        free_memory_mb   BIGINT NOT NULL,
        free_cpu_count   BIGINT NOT NULL,
        free_disk_mb     BIGINT NOT NULL,
        heartbeat_at     BIGINT NOT NULL,
        lease_until      BIGINT NOT NULL,
        joined_at        BIGINT NOT NULL
    );
    "#,
    // 6: the node that holds each snapshot's files (as SQLite's migration 8).
    r#"
    ALTER TABLE snapshots ADD COLUMN node_id TEXT COLLATE "C" NOT NULL DEFAULT 'local';
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Arbitrary, fixed: the advisory lock key of Stasis's migrations.
const MIGRATION_LOCK: i64 = 0x5_7a515;

/// Brings the database up to [`SCHEMA_VERSION`] in one transaction, or refuses a database
/// from a newer build.
pub(crate) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS stasis_schema (version BIGINT NOT NULL)").await?;
    let found: i64 = match tx.query_opt("SELECT version FROM stasis_schema", &[]).await? {
        Some(r) => r.get(0),
        None => {
            tx.execute("INSERT INTO stasis_schema (version) VALUES (0)", &[]).await?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("UPDATE stasis_schema SET version = $1", &[&((i + 1) as i64)]).await?;
    }
    tx.commit().await?;
    Ok(())
}
