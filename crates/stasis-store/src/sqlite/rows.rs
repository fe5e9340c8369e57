//! Rows to and from SQLite: the column lists, the mapping of each table's row to its model
//! type and back, and the keyset pagination clauses the list queries share.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, ErrorCode, OptionalExtension, Row};

use crate::model::{SandboxRow, SnapshotRow};
use crate::query::{Cursor, Order};
use crate::StoreError;

pub(super) const SANDBOX_COLUMNS: &str = "id, template_id, alias, client_id, state, metadata, env_vars, \
    cpu_count, memory_mb, disk_size_mb, envd_access_token, traffic_access_token, started_at, \
    end_at, timeout_secs, auto_pause, auto_resume, pause_memory, secure, \
    allow_internet_access, network, paused_at, idle_timeout_secs, created_at, updated_at, \
    last_error, node_id";

/// How many columns [`SANDBOX_COLUMNS`] names.
pub(super) fn sandbox_column_count() -> usize {
    SANDBOX_COLUMNS.split(',').count()
}

pub(super) fn conversion_error(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn get_json<T: serde::de::DeserializeOwned>(r: &Row, idx: usize) -> rusqlite::Result<T> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(idx, e))
}

pub(super) fn get_u64(r: &Row, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(idx)?;
    u64::try_from(v).map_err(|e| conversion_error(idx, e))
}

pub(super) fn sandbox_from_row(r: &Row) -> rusqlite::Result<SandboxRow> {
    let state: String = r.get(4)?;
    Ok(SandboxRow {
        id: r.get(0)?,
        template_id: r.get(1)?,
        alias: r.get(2)?,
        client_id: r.get(3)?,
        state: state.parse().map_err(|e| conversion_error(4, e))?,
        metadata: get_json(r, 5)?,
        env_vars: get_json(r, 6)?,
        cpu_count: r.get(7)?,
        memory_mb: get_u64(r, 8)?,
        disk_size_mb: get_u64(r, 9)?,
        envd_access_token: r.get(10)?,
        traffic_access_token: r.get(11)?,
        started_at: r.get(12)?,
        end_at: r.get(13)?,
        timeout_secs: get_u64(r, 14)?,
        auto_pause: r.get(15)?,
        auto_resume: r.get(16)?,
        pause_memory: r.get(17)?,
        secure: r.get(18)?,
        allow_internet_access: r.get(19)?,
        network: get_json(r, 20)?,
        paused_at: r.get(21)?,
        idle_timeout_secs: r
            .get::<_, Option<i64>>(22)?
            .map(u64::try_from)
            .transpose()
            .map_err(|e| conversion_error(22, e))?,
        created_at: r.get(23)?,
        updated_at: r.get(24)?,
        last_error: r
            .get::<_, Option<String>>(25)?
            .map(|text| serde_json::from_str(&text).map_err(|e| conversion_error(25, e)))
            .transpose()?,
        node_id: r.get(26)?,
    })
}

/// The row's columns as SQL values, in [`SANDBOX_COLUMNS`] order.
pub(super) fn sandbox_values(row: &SandboxRow) -> Result<Vec<Value>, StoreError> {
    fn int(name: &str, v: u64) -> Result<Value, StoreError> {
        i64::try_from(v).map(Value::Integer).map_err(|_| StoreError::Corrupt(format!("{name} out of range: {v}")))
    }
    fn json(v: &impl serde::Serialize) -> Result<Value, StoreError> {
        serde_json::to_string(v).map(Value::Text).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    let opt_text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    Ok(vec![
        Value::Text(row.id.clone()),
        Value::Text(row.template_id.clone()),
        opt_text(&row.alias),
        Value::Text(row.client_id.clone()),
        Value::Text(row.state.as_str().to_owned()),
        json(&row.metadata)?,
        json(&row.env_vars)?,
        Value::Integer(row.cpu_count.into()),
        int("memory_mb", row.memory_mb)?,
        int("disk_size_mb", row.disk_size_mb)?,
        opt_text(&row.envd_access_token),
        opt_text(&row.traffic_access_token),
        Value::Integer(row.started_at),
        Value::Integer(row.end_at),
        int("timeout_secs", row.timeout_secs)?,
        Value::Integer(row.auto_pause.into()),
        Value::Integer(row.auto_resume.into()),
        Value::Integer(row.pause_memory.into()),
        Value::Integer(row.secure.into()),
        Value::Integer(row.allow_internet_access.into()),
        json(&row.network)?,
        row.paused_at.map_or(Value::Null, Value::Integer),
        match row.idle_timeout_secs {
            Some(v) => int("idle_timeout_secs", v)?,
            None => Value::Null,
        },
        Value::Integer(row.created_at),
        Value::Integer(row.updated_at),
        match &row.last_error {
            Some(e) => json(e)?,
            None => Value::Null,
        },
        Value::Text(row.node_id.clone()),
    ])
}

pub(super) fn read_sandbox(conn: &Connection, id: &str) -> Result<Option<SandboxRow>, StoreError> {
    Ok(conn
        .query_row(&format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?1"), [id], sandbox_from_row)
        .optional()?)
}

/// Rewrites every column of an existing row (by id).
pub(super) fn write_sandbox(conn: &Connection, row: &SandboxRow) -> Result<(), StoreError> {
    let assignments = SANDBOX_COLUMNS
        .split(',')
        .map(str::trim)
        .skip(1)
        .enumerate()
        .map(|(i, col)| format!("{col} = ?{}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute(&format!("UPDATE sandboxes SET {assignments} WHERE id = ?1"), params_from_iter(sandbox_values(row)?))?;
    Ok(())
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation
        && matches!(f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE))
}

pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) fn snapshot_from_row(conn: &Connection, r: &Row) -> rusqlite::Result<SnapshotRow> {
    let id: String = r.get(0)?;
    let names = conn
        .prepare_cached("SELECT name FROM snapshot_names WHERE snapshot_id = ?1 ORDER BY position")?
        .query_map([&id], |n| n.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(SnapshotRow {
        id,
        names,
        source_sandbox_id: r.get(1)?,
        template_id: r.get(2)?,
        memory: r.get(3)?,
        size_bytes: get_u64(r, 4)?,
        created_at: r.get(5)?,
        node_id: r.get(6)?,
    })
}

pub(super) const SNAPSHOT_COLUMNS: &str = "s.id, s.source_sandbox_id, s.template_id, s.memory, \
    s.size_bytes, s.created_at, s.node_id";

pub(super) fn read_snapshot(
    conn: &Connection,
    where_clause: &str,
    key: &str,
) -> Result<Option<SnapshotRow>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s WHERE {where_clause}"))?;
    let mut rows = stmt.query([key])?;
    match rows.next()? {
        Some(r) => Ok(Some(snapshot_from_row(conn, r)?)),
        None => Ok(None),
    }
}

/// Appends the keyset condition and order for a page after `cursor`.
pub(super) fn page_clause(
    sql: &mut String,
    args: &mut Vec<Value>,
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
        sql.push_str(&format!(" AND ({time_col}, {id_col}) {cmp} (?, ?)"));
        args.push(Value::Integer(c.time));
        args.push(Value::Text(c.id));
    }
    // One extra row tells whether another page exists.
    sql.push_str(&format!(" ORDER BY {time_col} {dir}, {id_col} {dir} LIMIT {}", limit + 1));
}
