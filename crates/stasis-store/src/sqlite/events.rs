//! Sandbox events in SQLite: append, and read one sandbox's with its filters.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use crate::events::{EventQuery, Level, SandboxEvent, MAX_EVENTS};
use crate::StoreError;

pub(super) fn insert(conn: &mut Connection, e: &SandboxEvent) -> Result<i64, StoreError> {
    let fields = serde_json::to_string(&e.fields).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO sandbox_events (sandbox_id, at, level, kind, message, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.sandbox_id, e.at, e.level.as_str(), e.kind, e.message, fields],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn select(conn: &mut Connection, q: &EventQuery) -> Result<Vec<SandboxEvent>, StoreError> {
    let mut sql =
        "SELECT seq, sandbox_id, at, level, kind, message, fields FROM sandbox_events WHERE sandbox_id = ?".to_string();
    let mut args = vec![Value::Text(q.sandbox_id.clone())];
    if let Some(seq) = q.after_seq {
        sql.push_str(" AND seq > ?");
        args.push(Value::Integer(seq));
    }
    if let Some(t) = q.since {
        sql.push_str(" AND at >= ?");
        args.push(Value::Integer(t));
    }
    if let Some(t) = q.until {
        sql.push_str(" AND at <= ?");
        args.push(Value::Integer(t));
    }
    if let Some(min) = q.min_level {
        let levels: Vec<&str> = [Level::Debug, Level::Info, Level::Warn, Level::Error]
            .into_iter()
            .filter(|l| *l >= min)
            .map(Level::as_str)
            .collect();
        sql.push_str(&format!(" AND level IN ({})", vec!["?"; levels.len()].join(",")));
        args.extend(levels.into_iter().map(|l| Value::Text(l.to_string())));
    }
    if let Some(s) = &q.search {
        sql.push_str(" AND instr(message, ?) > 0");
        args.push(Value::Text(s.clone()));
    }
    sql.push_str(if q.newest_first { " ORDER BY seq DESC" } else { " ORDER BY seq ASC" });
    sql.push_str(" LIMIT ?");
    args.push(Value::Integer(i64::from(q.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS))));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, sandbox_id, at, level, kind, message, fields) = row?;
        out.push(SandboxEvent {
            seq,
            sandbox_id,
            at,
            level: Level::parse(&level).ok_or_else(|| StoreError::Corrupt(format!("event level {level:?}")))?,
            kind,
            message,
            fields: serde_json::from_str(&fields).map_err(|e| StoreError::Corrupt(format!("event fields: {e}")))?,
        });
    }
    Ok(out)
}
