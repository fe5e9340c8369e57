//! Rows to and from PostgreSQL: the column list, the mapping of a row to its model type and
//! back, and the keyset pagination clause the list queries share.

use serde_json::Value as Json;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::model::{SandboxRow, SnapshotRow};
use crate::query::{Cursor, Order};
use crate::StoreError;

pub(super) const SANDBOX_COLUMNS: &str = "id, template_id, alias, client_id, state, metadata, env_vars, \
    cpu_count, memory_mb, disk_size_mb, envd_access_token, traffic_access_token, started_at, \
    end_at, timeout_secs, auto_pause, auto_resume, pause_memory, secure, \
    allow_internet_access, network, paused_at, idle_timeout_secs, created_at, updated_at, \
    last_error, node_id";

pub(super) const SNAPSHOT_COLUMNS: &str = "s.id, s.source_sandbox_id, s.template_id, s.memory, s.size_bytes, \
    s.created_at, ARRAY(SELECT n.name FROM snapshot_names n WHERE n.snapshot_id = s.id ORDER BY n.position), \
    s.node_id";

pub(super) fn sandbox_column_count() -> usize {
    SANDBOX_COLUMNS.split(',').count()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(v: Json, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| corrupt(what, e))
}

fn unsigned(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|e| corrupt(what, e))
}

pub(super) fn sandbox_from_row(r: &Row) -> Result<SandboxRow, StoreError> {
    let state: String = r.try_get(4)?;
    Ok(SandboxRow {
        id: r.try_get(0)?,
        template_id: r.try_get(1)?,
        alias: r.try_get(2)?,
        client_id: r.try_get(3)?,
        state: state.parse().map_err(|e| corrupt("state", e))?,
        metadata: json(r.try_get(5)?, "metadata")?,
        env_vars: json(r.try_get(6)?, "env_vars")?,
        cpu_count: u32::try_from(r.try_get::<_, i64>(7)?).map_err(|e| corrupt("cpu_count", e))?,
        memory_mb: unsigned(r.try_get(8)?, "memory_mb")?,
        disk_size_mb: unsigned(r.try_get(9)?, "disk_size_mb")?,
        envd_access_token: r.try_get(10)?,
        traffic_access_token: r.try_get(11)?,
        started_at: r.try_get(12)?,
        end_at: r.try_get(13)?,
        timeout_secs: unsigned(r.try_get(14)?, "timeout_secs")?,
        auto_pause: r.try_get(15)?,
        auto_resume: r.try_get(16)?,
        pause_memory: r.try_get(17)?,
        secure: r.try_get(18)?,
        allow_internet_access: r.try_get(19)?,
        network: r.try_get(20)?,
        paused_at: r.try_get(21)?,
        idle_timeout_secs: r.try_get::<_, Option<i64>>(22)?.map(|v| unsigned(v, "idle_timeout_secs")).transpose()?,
        created_at: r.try_get(23)?,
        updated_at: r.try_get(24)?,
        last_error: r.try_get::<_, Option<Json>>(25)?.map(|v| json(v, "last_error")).transpose()?,
        node_id: r.try_get(26)?,
    })
}

/// One value of a statement parameter (owned, so a query can be built up piece by piece).
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// The row's columns as parameters, in [`SANDBOX_COLUMNS`] order.
pub(super) fn sandbox_params(row: &SandboxRow) -> Result<Vec<Param>, StoreError> {
    fn int(name: &str, v: u64) -> Result<Param, StoreError> {
        i64::try_from(v).map(|v| Box::new(v) as Param).map_err(|_| corrupt(name, format!("out of range: {v}")))
    }
    fn to_json(v: &impl serde::Serialize) -> Result<Json, StoreError> {
        serde_json::to_value(v).map_err(|e| corrupt("json", e))
    }
    Ok(vec![
        Box::new(row.id.clone()),
        Box::new(row.template_id.clone()),
        Box::new(row.alias.clone()),
        Box::new(row.client_id.clone()),
        Box::new(row.state.as_str().to_owned()),
        Box::new(to_json(&row.metadata)?),
        Box::new(to_json(&row.env_vars)?),
        Box::new(i64::from(row.cpu_count)),
        int("memory_mb", row.memory_mb)?,
        int("disk_size_mb", row.disk_size_mb)?,
        Box::new(row.envd_access_token.clone()),
        Box::new(row.traffic_access_token.clone()),
        Box::new(row.started_at),
        Box::new(row.end_at),
        int("timeout_secs", row.timeout_secs)?,
        Box::new(row.auto_pause),
        Box::new(row.auto_resume),
        Box::new(row.pause_memory),
        Box::new(row.secure),
        Box::new(row.allow_internet_access),
        Box::new(row.network.clone()),
        Box::new(row.paused_at),
        match row.idle_timeout_secs {
            Some(v) => Box::new(Some(i64::try_from(v).map_err(|_| corrupt("idle_timeout_secs", v))?)),
            None => Box::new(None::<i64>),
        },
        Box::new(row.created_at),
        Box::new(row.updated_at),
        Box::new(row.last_error.as_ref().map(to_json).transpose()?),
        Box::new(row.node_id.clone()),
    ])
}

pub(super) fn snapshot_from_row(r: &Row) -> Result<SnapshotRow, StoreError> {
    Ok(SnapshotRow {
        id: r.try_get(0)?,
        source_sandbox_id: r.try_get(1)?,
        template_id: r.try_get(2)?,
        memory: r.try_get(3)?,
        size_bytes: unsigned(r.try_get(4)?, "size_bytes")?,
        created_at: r.try_get(5)?,
        names: r.try_get(6)?,
        node_id: r.try_get(7)?,
    })
}

/// `$1, $2, ...` from `from` on.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Appends the keyset condition and order for a page after `cursor`.
pub(super) fn page_clause(
    sql: &mut String,
    params: &mut Vec<Param>,
    time_col: &str,
    id_col: &str,
    order: Order,
    cursor: Option<Cursor>,
    limit: u32,
) {
    let (cmp, dir) = match order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    if let Some(c) = cursor {
        let n = params.len();
        sql.push_str(&format!(" AND ({time_col}, {id_col}) {cmp} (${}, ${})", n + 1, n + 2));
        params.push(Box::new(c.time));
        params.push(Box::new(c.id));
    }
    // One extra row tells whether another page exists. (Ids are `COLLATE "C"` columns:
    // they compare byte-wise, as in SQLite, whatever the database's locale.)
    sql.push_str(&format!(" ORDER BY {time_col} {dir}, {id_col} {dir} LIMIT {}", limit + 1));
}
