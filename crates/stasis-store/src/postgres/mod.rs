//! [`Store`] on PostgreSQL, for several Stasis nodes sharing one control-plane state
//! (`stasis serve --database postgres://...`); SQLite stays the default on one machine.
//!
//! Same semantics as [`crate::SqliteStore`], proven by the same suite (`crate::suite`):
//! - compare-and-set transitions and guarded updates read the row `FOR UPDATE` in a
//!   transaction, so two nodes racing on one sandbox have exactly one winner;
//! - keyset pagination on `(time, id)` with ids in the "C" collation (byte order, as SQLite);
//! - metadata filters by JSONB containment (`metadata @> {"k": "v"}`), a GIN index away;
//! - durability: PostgreSQL's own (`synchronous_commit` as the server is configured; on by
//!   default, so a committed transition is on disk when the call returns).
//!
//! Connections come from a `deadpool-postgres` pool. TLS to the database is not supported
//! yet (a URL with `sslmode=require` fails to connect): run PostgreSQL on the nodes'
//! private network or behind a tunnel.

mod events;
mod migrations;
mod nodes;
mod rows;
mod secrets;
mod volumes;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

pub use migrations::SCHEMA_VERSION;

use crate::api_key::{constant_time_eq, hash_api_key};
use crate::model::{now_ms, ApiKeyRow, SandboxRow, SandboxState, SnapshotRow};
use crate::query::{effective_limit, finish_page, Cursor, ListQuery, Order, SnapshotQuery};
use crate::{Page, RowUpdate, Store, StoreError};

use rows::*;

/// Connections the pool keeps at most.
const POOL_SIZE: usize = 16;

/// The PostgreSQL store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The URL without its password, for messages.
    display: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.display).finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`, or the key=value
    /// form; a `host=/path` is a Unix socket directory) and migrates the database to
    /// [`SCHEMA_VERSION`]. Fails with [`StoreError::SchemaTooNew`] on a database written by
    /// a newer build.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Pool(format!("bad database URL: {e}")))?;
        let display = redact(url);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(POOL_SIZE).build().map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = PostgresStore { pool, display };
        let mut client = store.client().await?;
        migrations::migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Pool(format!("{}: {e}", self.display)))
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.split_whitespace().filter(|kv| !kv.starts_with("password=")).collect::<Vec<_>>().join(" "),
    }
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

async fn read_sandbox_for_update(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<SandboxRow>, StoreError> {
    let sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&id]).await?.as_ref().map(sandbox_from_row).transpose()
}

async fn write_sandbox(tx: &tokio_postgres::Transaction<'_>, row: &SandboxRow) -> Result<(), StoreError> {
    let assignments = SANDBOX_COLUMNS
        .split(',')
        .map(str::trim)
        .enumerate()
        .skip(1)
        .map(|(i, col)| format!("{col} = ${}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let params = sandbox_params(row)?;
    tx.execute(&format!("UPDATE sandboxes SET {assignments} WHERE id = $1"), &refs(&params)).await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_sandbox(&self, row: &SandboxRow) -> Result<(), StoreError> {
        let mut row = row.clone();
        row.updated_at = now_ms();
        let sql =
            format!("INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES ({})", placeholders(1, sandbox_column_count()));
        let params = sandbox_params(&row)?;
        match self.client().await?.execute(&sql, &refs(&params)).await {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists(format!("sandbox {}", row.id))),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1");
        self.client().await?.query_opt(&sql, &[&id]).await?.as_ref().map(sandbox_from_row).transpose()
    }

    async fn update_sandbox(&self, row: &SandboxRow) -> Result<SandboxRow, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let current = read_sandbox_for_update(&tx, &row.id).await?.ok_or(StoreError::NotFound)?.state;
        if current != row.state {
            return Err(StoreError::Conflict { current });
        }
        let mut row = row.clone();
        row.updated_at = now_ms();
        write_sandbox(&tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn transition_with(
        &self,
        id: &str,
        from: &[SandboxState],
        to: SandboxState,
        update: RowUpdate,
    ) -> Result<SandboxRow, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut row = read_sandbox_for_update(&tx, id).await?.ok_or(StoreError::NotFound)?;
        if !from.contains(&row.state) {
            return Err(StoreError::Conflict { current: row.state });
        }
        update(&mut row);
        row.id = id.to_owned();
        row.state = to;
        row.updated_at = now_ms();
        write_sandbox(&tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn move_sandbox(
        &self,
        id: &str,
        from: (SandboxState, &str),
        to: (SandboxState, &str),
    ) -> Result<SandboxRow, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut row = read_sandbox_for_update(&tx, id).await?.ok_or(StoreError::NotFound)?;
        if row.state != from.0 || row.node_id != from.1 {
            return Err(StoreError::Conflict { current: row.state });
        }
        row.state = to.0;
        row.node_id = to.1.to_owned();
        row.updated_at = now_ms();
        write_sandbox(&tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn delete_sandbox(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.client().await?.execute("DELETE FROM sandboxes WHERE id = $1", &[&id]).await? > 0)
    }

    async fn list_sandboxes(&self, query: &ListQuery) -> Result<Page<SandboxRow>, StoreError> {
        let limit = effective_limit(query.limit)?;
        let cursor = query.next_token.as_deref().map(Cursor::decode).transpose()?;
        let states: Vec<String> = query.effective_states().iter().map(|s| s.as_str().to_owned()).collect();
        let mut params: Vec<Param> = vec![Box::new(states)];
        let mut sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes s WHERE s.state = ANY($1)");
        for (k, v) in &query.metadata {
            // Containment of {"k": "v"}: the value must be that string.
            params.push(Box::new(serde_json::json!({ k: v })));
            sql.push_str(&format!(" AND s.metadata @> ${}", params.len()));
        }
        if let Some(t) = &query.template {
            params.push(Box::new(t.clone()));
            let n = params.len();
            sql.push_str(&format!(" AND (s.template_id = ${n} OR s.alias = ${n})"));
        }
        if let Some(after) = query.started_after {
            params.push(Box::new(after));
            sql.push_str(&format!(" AND s.started_at >= ${}", params.len()));
        }
        page_clause(&mut sql, &mut params, "s.started_at", "s.id", query.order, cursor, limit);
        let rows = self.client().await?.query(&sql, &refs(&params)).await?;
        let rows = rows.iter().map(sandbox_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(rows, limit, |r: &SandboxRow| Cursor { time: r.started_at, id: r.id.clone() }))
    }

    async fn sandboxes_in_states(&self, states: &[SandboxState]) -> Result<Vec<SandboxRow>, StoreError> {
        let states: Vec<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
        let sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE state = ANY($1) ORDER BY started_at, id");
        let rows = self.client().await?.query(&sql, &[&states]).await?;
        rows.iter().map(sandbox_from_row).collect()
    }

    async fn insert_snapshot(&self, row: &SnapshotRow) -> Result<(), StoreError> {
        let size = i64::try_from(row.size_bytes)
            .map_err(|_| StoreError::Corrupt(format!("size_bytes out of range: {}", row.size_bytes)))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO snapshots (id, source_sandbox_id, template_id, memory, size_bytes, created_at, node_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&row.id, &row.source_sandbox_id, &row.template_id, &row.memory, &size, &row.created_at, &row.node_id],
        )
        .await
        .map_err(|e| match e {
            e if unique_violation(&e) => StoreError::AlreadyExists(format!("snapshot {}", row.id)),
            e => e.into(),
        })?;
        for (pos, name) in row.names.iter().enumerate() {
            tx.execute(
                "INSERT INTO snapshot_names (name, snapshot_id, position) VALUES ($1, $2, $3)",
                &[name, &row.id, &(pos as i64)],
            )
            .await
            .map_err(|e| match e {
                e if unique_violation(&e) => StoreError::AlreadyExists(format!("snapshot name {name:?}")),
                e => e.into(),
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, StoreError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s WHERE s.id = $1");
        self.client().await?.query_opt(&sql, &[&id]).await?.as_ref().map(snapshot_from_row).transpose()
    }

    async fn find_snapshot_by_name(&self, name: &str) -> Result<Option<SnapshotRow>, StoreError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s \
             WHERE s.id = (SELECT snapshot_id FROM snapshot_names WHERE name = $1)"
        );
        self.client().await?.query_opt(&sql, &[&name]).await?.as_ref().map(snapshot_from_row).transpose()
    }

    async fn list_snapshots(&self, query: &SnapshotQuery) -> Result<Page<SnapshotRow>, StoreError> {
        let limit = effective_limit(query.limit)?;
        let cursor = query.next_token.as_deref().map(Cursor::decode).transpose()?;
        let mut sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s WHERE TRUE");
        let mut params: Vec<Param> = Vec::new();
        if let Some(src) = &query.source_sandbox_id {
            params.push(Box::new(src.clone()));
            sql.push_str(&format!(" AND s.source_sandbox_id = ${}", params.len()));
        }
        if let Some(name) = &query.name {
            params.push(Box::new(name.clone()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM snapshot_names n WHERE n.snapshot_id = s.id AND n.name = ${})",
                params.len()
            ));
        }
        page_clause(&mut sql, &mut params, "s.created_at", "s.id", Order::Desc, cursor, limit);
        let rows = self.client().await?.query(&sql, &refs(&params)).await?;
        let rows = rows.iter().map(snapshot_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(rows, limit, |r: &SnapshotRow| Cursor { time: r.created_at, id: r.id.clone() }))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<bool, StoreError> {
        // Names go with it (ON DELETE CASCADE).
        Ok(self.client().await?.execute("DELETE FROM snapshots WHERE id = $1", &[&id]).await? > 0)
    }

    async fn add_api_key(&self, name: &str, key: &str) -> Result<ApiKeyRow, StoreError> {
        let key_hash = hash_api_key(key);
        let created_at = now_ms();
        match self
            .client()
            .await?
            .query_one(
                "INSERT INTO api_keys (key_hash, name, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&key_hash, &name, &created_at],
            )
            .await
        {
            Ok(r) => Ok(ApiKeyRow { id: r.try_get(0)?, key_hash, name: name.to_owned(), created_at }),
            Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists("api key".into())),
            Err(e) => Err(e.into()),
        }
    }

    async fn verify_api_key(&self, key: &str) -> Result<bool, StoreError> {
        let wanted = hash_api_key(key);
        let rows = self.client().await?.query("SELECT key_hash FROM api_keys", &[]).await?;
        // Compare against every key, without stopping at a match.
        let mut found = false;
        for r in rows {
            let h: String = r.try_get(0)?;
            found |= constant_time_eq(h.as_bytes(), wanted.as_bytes());
        }
        Ok(found)
    }

    async fn count_api_keys(&self) -> Result<u64, StoreError> {
        let n: i64 = self.client().await?.query_one("SELECT COUNT(*) FROM api_keys", &[]).await?.try_get(0)?;
        Ok(n as u64)
    }

    async fn add_event(&self, event: &crate::SandboxEvent) -> Result<i64, StoreError> {
        events::insert(&self.client().await?, event).await
    }

    async fn events(&self, query: &crate::EventQuery) -> Result<Vec<crate::SandboxEvent>, StoreError> {
        events::select(&self.client().await?, query).await
    }

    async fn prune_events(&self, before: crate::UnixMillis) -> Result<u64, StoreError> {
        Ok(self.client().await?.execute("DELETE FROM sandbox_events WHERE at < $1", &[&before]).await?)
    }
    async fn insert_volume(&self, row: &crate::VolumeRow) -> Result<(), StoreError> {
        volumes::insert(&self.client().await?, row).await
    }

    async fn get_volume(&self, id: &str) -> Result<Option<crate::VolumeRow>, StoreError> {
        volumes::select_one(&self.client().await?, "id", id).await
    }

    async fn find_volume_by_name(&self, name: &str) -> Result<Option<crate::VolumeRow>, StoreError> {
        volumes::select_one(&self.client().await?, "name", name).await
    }

    async fn list_volumes(&self) -> Result<Vec<crate::VolumeRow>, StoreError> {
        volumes::select_all(&self.client().await?).await
    }

    async fn delete_volume(&self, id: &str) -> Result<bool, StoreError> {
        volumes::delete(&mut self.client().await?, id).await
    }

    async fn set_volume_mounts(&self, owner: &str, mounts: &[crate::VolumeMount]) -> Result<(), StoreError> {
        volumes::set_mounts(&mut self.client().await?, owner, mounts).await
    }

    async fn volume_mounts(&self, owner: &str) -> Result<Vec<crate::VolumeMount>, StoreError> {
        volumes::mounts(&self.client().await?, owner).await
    }

    async fn insert_secret(&self, row: &crate::SecretRow) -> Result<(), StoreError> {
        secrets::insert(&self.client().await?, row).await
    }

    async fn get_secret(&self, id: &str) -> Result<Option<crate::SecretRow>, StoreError> {
        secrets::select_one(&self.client().await?, "id", id).await
    }

    async fn find_secret_by_name(&self, name: &str) -> Result<Option<crate::SecretRow>, StoreError> {
        secrets::select_one(&self.client().await?, "name", name).await
    }

    async fn list_secrets(&self, token: Option<&str>, limit: u32) -> Result<Page<crate::SecretRow>, StoreError> {
        secrets::page(&self.client().await?, token, limit).await
    }

    async fn update_secret(&self, id: &str, update: &crate::SecretUpdate) -> Result<crate::SecretRow, StoreError> {
        secrets::update(&self.client().await?, id, update).await
    }

    async fn delete_secret(&self, id: &str) -> Result<bool, StoreError> {
        secrets::delete(&self.client().await?, id).await
    }

    async fn heartbeat(&self, hb: &crate::Heartbeat) -> Result<crate::NodeRow, StoreError> {
        nodes::heartbeat(&self.client().await?, hb).await
    }

    async fn get_node(&self, id: &str) -> Result<Option<crate::NodeRow>, StoreError> {
        nodes::get(&self.client().await?, id).await
    }

    async fn list_nodes(&self) -> Result<Vec<crate::NodeRow>, StoreError> {
        nodes::list(&self.client().await?).await
    }

    async fn set_node_state(
        &self,
        id: &str,
        from: &[crate::NodeState],
        to: crate::NodeState,
    ) -> Result<crate::NodeRow, StoreError> {
        nodes::set_state(&mut self.client().await?, id, from, to).await
    }

    async fn expire_nodes(&self, now: crate::UnixMillis) -> Result<Vec<crate::DeadNode>, StoreError> {
        nodes::expire(&mut self.client().await?, now).await
    }
}

#[cfg(test)]
mod tests;
