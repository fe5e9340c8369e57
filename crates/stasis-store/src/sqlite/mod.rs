//! [`Store`] on one SQLite file.
//!
//! One connection, behind a mutex, used from `spawn_blocking`: SQLite serialises writers
//! anyway, the control plane's write rate is small, and one connection makes every
//! operation trivially ordered within the process. Writes that read before they write
//! (transitions, updates) take the write lock up front (`BEGIN IMMEDIATE`), so they stay
//! correct when another process opens the same file.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction (a state flip) has
//! been fsynced to the WAL when the call returns, and survives power loss.

mod events;
mod migrations;
mod nodes;
mod rows;
mod secrets;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

pub use migrations::SCHEMA_VERSION;

use crate::api_key::{constant_time_eq, hash_api_key};
use crate::model::{now_ms, ApiKeyRow, SandboxRow, SandboxState, SnapshotRow};
use crate::query::{effective_limit, finish_page, Cursor, ListQuery, Order, SnapshotQuery};
use crate::{Page, RowUpdate, Store, StoreError};

use rows::*;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if needed) the database at `path`,
    /// e.g. `DATA/stasis.db`, and migrates it to [`SCHEMA_VERSION`]. Fails with
    /// [`StoreError::SchemaTooNew`] on a database written by a newer build.
    pub async fn open(path: impl Into<PathBuf>) -> Result<SqliteStore, StoreError> {
        let path = path.into();
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`SqliteStore::open`] for callers outside an async context.
    pub fn open_blocking(path: impl Into<PathBuf>) -> Result<SqliteStore, StoreError> {
        let path = path.into();
        let conn = open_connection(&path)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolled its transaction back while unwinding, so the
            // connection behind a poisoned lock is still consistent.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Refuse a newer database before touching anything in it.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!("could not enable WAL (journal_mode is {mode})")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrations::migrate(&mut conn)?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_sandbox(&self, row: &SandboxRow) -> Result<(), StoreError> {
        let mut row = row.clone();
        self.call(move |conn| {
            row.updated_at = now_ms();
            let sql =
                format!("INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES ({})", placeholders(sandbox_column_count()));
            match conn.execute(&sql, params_from_iter(sandbox_values(&row)?)) {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("sandbox {}", row.id))),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn get_sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| read_sandbox(conn, &id)).await
    }

    async fn update_sandbox(&self, row: &SandboxRow) -> Result<SandboxRow, StoreError> {
        let mut row = row.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<String> =
                tx.query_row("SELECT state FROM sandboxes WHERE id = ?1", [&row.id], |r| r.get(0)).optional()?;
            let current: SandboxState = current
                .ok_or(StoreError::NotFound)?
                .parse()
                .map_err(|e: crate::model::UnknownState| StoreError::Corrupt(e.to_string()))?;
            if current != row.state {
                return Err(StoreError::Conflict { current });
            }
            row.updated_at = now_ms();
            write_sandbox(&tx, &row)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    async fn transition_with(
        &self,
        id: &str,
        from: &[SandboxState],
        to: SandboxState,
        update: RowUpdate,
    ) -> Result<SandboxRow, StoreError> {
        let id = id.to_owned();
        let from = from.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut row = read_sandbox(&tx, &id)?.ok_or(StoreError::NotFound)?;
            if !from.contains(&row.state) {
                return Err(StoreError::Conflict { current: row.state });
            }
            update(&mut row);
            row.id = id;
            row.state = to;
            row.updated_at = now_ms();
            write_sandbox(&tx, &row)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    async fn move_sandbox(
        &self,
        id: &str,
        from: (SandboxState, &str),
        to: (SandboxState, &str),
    ) -> Result<SandboxRow, StoreError> {
        let (id, from_node, to_node) = (id.to_owned(), from.1.to_owned(), to.1.to_owned());
        let (from_state, to_state) = (from.0, to.0);
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut row = read_sandbox(&tx, &id)?.ok_or(StoreError::NotFound)?;
            if row.state != from_state || row.node_id != from_node {
                return Err(StoreError::Conflict { current: row.state });
            }
            row.state = to_state;
            row.node_id = to_node;
            row.updated_at = now_ms();
            write_sandbox(&tx, &row)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    async fn delete_sandbox(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| Ok(conn.execute("DELETE FROM sandboxes WHERE id = ?1", [&id])? > 0)).await
    }

    async fn list_sandboxes(&self, query: &ListQuery) -> Result<Page<SandboxRow>, StoreError> {
        let limit = effective_limit(query.limit)?;
        let cursor = query.next_token.as_deref().map(Cursor::decode).transpose()?;
        let states = query.effective_states();
        let query = query.clone();
        self.call(move |conn| {
            let mut args: Vec<Value> = states.iter().map(|s| Value::Text(s.as_str().to_owned())).collect();
            let mut sql =
                format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes s WHERE s.state IN ({})", placeholders(states.len()));
            for (k, v) in query.metadata {
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM json_each(s.metadata) m \
                     WHERE m.key = ? AND m.type = 'text' AND m.value = ?)",
                );
                args.push(Value::Text(k));
                args.push(Value::Text(v));
            }
            if let Some(t) = query.template {
                sql.push_str(" AND (s.template_id = ? OR s.alias = ?)");
                args.push(Value::Text(t.clone()));
                args.push(Value::Text(t));
            }
            if let Some(after) = query.started_after {
                sql.push_str(" AND s.started_at >= ?");
                args.push(Value::Integer(after));
            }
            page_clause(&mut sql, &mut args, "s.started_at", "s.id", query.order, cursor, limit);
            let rows = conn
                .prepare(&sql)?
                .query_map(params_from_iter(args), sandbox_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(finish_page(rows, limit, |r: &SandboxRow| Cursor { time: r.started_at, id: r.id.clone() }))
        })
        .await
    }

    async fn sandboxes_in_states(&self, states: &[SandboxState]) -> Result<Vec<SandboxRow>, StoreError> {
        let states: Vec<Value> = states.iter().map(|s| Value::Text(s.as_str().to_owned())).collect();
        self.call(move |conn| {
            if states.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE state IN ({}) \
                 ORDER BY started_at, id",
                placeholders(states.len())
            );
            let rows = conn
                .prepare(&sql)?
                .query_map(params_from_iter(states), sandbox_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_snapshot(&self, row: &SnapshotRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.call(move |conn| {
            let size = i64::try_from(row.size_bytes)
                .map_err(|_| StoreError::Corrupt(format!("size_bytes out of range: {}", row.size_bytes)))?;
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO snapshots (id, source_sandbox_id, template_id, memory, size_bytes, \
                 created_at, node_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.id, row.source_sandbox_id, row.template_id, row.memory, size, row.created_at, row.node_id],
            )
            .map_err(|e| match e {
                e if is_unique_violation(&e) => StoreError::AlreadyExists(format!("snapshot {}", row.id)),
                e => e.into(),
            })?;
            for (pos, name) in row.names.iter().enumerate() {
                tx.execute(
                    "INSERT INTO snapshot_names (name, snapshot_id, position) VALUES (?1, ?2, ?3)",
                    params![name, row.id, pos as i64],
                )
                .map_err(|e| match e {
                    e if is_unique_violation(&e) => StoreError::AlreadyExists(format!("snapshot name {name:?}")),
                    e => e.into(),
                })?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| read_snapshot(conn, "s.id = ?1", &id)).await
    }

    async fn find_snapshot_by_name(&self, name: &str) -> Result<Option<SnapshotRow>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| {
            read_snapshot(conn, "s.id = (SELECT snapshot_id FROM snapshot_names WHERE name = ?1)", &name)
        })
        .await
    }

    async fn list_snapshots(&self, query: &SnapshotQuery) -> Result<Page<SnapshotRow>, StoreError> {
        let limit = effective_limit(query.limit)?;
        let cursor = query.next_token.as_deref().map(Cursor::decode).transpose()?;
        let query = query.clone();
        self.call(move |conn| {
            let mut sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s WHERE 1 = 1");
            let mut args = Vec::new();
            if let Some(src) = query.source_sandbox_id {
                sql.push_str(" AND s.source_sandbox_id = ?");
                args.push(Value::Text(src));
            }
            if let Some(name) = query.name {
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM snapshot_names n \
                     WHERE n.snapshot_id = s.id AND n.name = ?)",
                );
                args.push(Value::Text(name));
            }
            page_clause(&mut sql, &mut args, "s.created_at", "s.id", Order::Desc, cursor, limit);
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(snapshot_from_row(conn, r)?);
            }
            Ok(finish_page(out, limit, |r: &SnapshotRow| Cursor { time: r.created_at, id: r.id.clone() }))
        })
        .await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        // Names go with it (ON DELETE CASCADE).
        self.call(move |conn| Ok(conn.execute("DELETE FROM snapshots WHERE id = ?1", [&id])? > 0)).await
    }

    async fn add_api_key(&self, name: &str, key: &str) -> Result<ApiKeyRow, StoreError> {
        let name = name.to_owned();
        let key_hash = hash_api_key(key);
        self.call(move |conn| {
            let created_at = now_ms();
            match conn.execute(
                "INSERT INTO api_keys (key_hash, name, created_at) VALUES (?1, ?2, ?3)",
                params![key_hash, name, created_at],
            ) {
                Ok(_) => Ok(ApiKeyRow { id: conn.last_insert_rowid(), key_hash, name, created_at }),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists("api key".into())),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn verify_api_key(&self, key: &str) -> Result<bool, StoreError> {
        let wanted = hash_api_key(key);
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT key_hash FROM api_keys")?;
            let hashes = stmt.query_map([], |r| r.get::<_, String>(0))?;
            // Compare against every key, without stopping at a match.
            let mut found = false;
            for h in hashes {
                found |= constant_time_eq(h?.as_bytes(), wanted.as_bytes());
            }
            Ok(found)
        })
        .await
    }

    async fn add_event(&self, event: &crate::SandboxEvent) -> Result<i64, StoreError> {
        let event = event.clone();
        self.call(move |conn| events::insert(conn, &event)).await
    }

    async fn events(&self, query: &crate::EventQuery) -> Result<Vec<crate::SandboxEvent>, StoreError> {
        let query = query.clone();
        self.call(move |conn| events::select(conn, &query)).await
    }

    async fn prune_events(&self, before: crate::UnixMillis) -> Result<u64, StoreError> {
        self.call(move |conn| Ok(conn.execute("DELETE FROM sandbox_events WHERE at < ?1", [before])? as u64)).await
    }

    async fn count_api_keys(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }
    async fn insert_volume(&self, row: &crate::VolumeRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.call(move |conn| volumes::insert(conn, &row)).await
    }

    async fn get_volume(&self, id: &str) -> Result<Option<crate::VolumeRow>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| volumes::select_one(conn, "id", &id)).await
    }

    async fn find_volume_by_name(&self, name: &str) -> Result<Option<crate::VolumeRow>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| volumes::select_one(conn, "name", &name)).await
    }

    async fn list_volumes(&self) -> Result<Vec<crate::VolumeRow>, StoreError> {
        self.call(volumes::select_all).await
    }

    async fn delete_volume(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| volumes::delete(conn, &id)).await
    }

    async fn set_volume_mounts(&self, owner: &str, mounts: &[crate::VolumeMount]) -> Result<(), StoreError> {
        let (owner, mounts) = (owner.to_owned(), mounts.to_vec());
        self.call(move |conn| volumes::set_mounts(conn, &owner, &mounts)).await
    }

    async fn volume_mounts(&self, owner: &str) -> Result<Vec<crate::VolumeMount>, StoreError> {
        let owner = owner.to_owned();
        self.call(move |conn| volumes::mounts(conn, &owner)).await
    }

    async fn insert_secret(&self, row: &crate::SecretRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.call(move |conn| secrets::insert(conn, &row)).await
    }

    async fn get_secret(&self, id: &str) -> Result<Option<crate::SecretRow>, StoreError> {
        let id = id.to_string();
        self.call(move |conn| secrets::select_one(conn, "id", &id)).await
    }

    async fn find_secret_by_name(&self, name: &str) -> Result<Option<crate::SecretRow>, StoreError> {
        let name = name.to_string();
        self.call(move |conn| secrets::select_one(conn, "name", &name)).await
    }

    async fn list_secrets(&self, token: Option<&str>, limit: u32) -> Result<Page<crate::SecretRow>, StoreError> {
        let token = token.map(str::to_string);
        self.call(move |conn| secrets::page(conn, token.as_deref(), limit)).await
    }

    async fn update_secret(&self, id: &str, update: &crate::SecretUpdate) -> Result<crate::SecretRow, StoreError> {
        let (id, update) = (id.to_string(), update.clone());
        self.call(move |conn| secrets::update(conn, &id, &update)).await
    }

    async fn delete_secret(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |conn| secrets::delete(conn, &id)).await
    }

    async fn heartbeat(&self, hb: &crate::Heartbeat) -> Result<crate::NodeRow, StoreError> {
        let hb = hb.clone();
        self.call(move |conn| nodes::heartbeat(conn, &hb)).await
    }

    async fn get_node(&self, id: &str) -> Result<Option<crate::NodeRow>, StoreError> {
        let id = id.to_string();
        self.call(move |conn| nodes::get(conn, &id)).await
    }

    async fn list_nodes(&self) -> Result<Vec<crate::NodeRow>, StoreError> {
        self.call(nodes::list).await
    }

    async fn set_node_state(
        &self,
        id: &str,
        from: &[crate::NodeState],
        to: crate::NodeState,
    ) -> Result<crate::NodeRow, StoreError> {
        let (id, from) = (id.to_string(), from.to_vec());
        self.call(move |conn| nodes::set_state(conn, &id, &from, to)).await
    }

    async fn expire_nodes(&self, now: crate::UnixMillis) -> Result<Vec<crate::DeadNode>, StoreError> {
        self.call(move |conn| nodes::expire(conn, now)).await
    }
}

#[cfg(test)]
mod tests;
