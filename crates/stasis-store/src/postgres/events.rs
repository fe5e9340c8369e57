//! Sandbox events in PostgreSQL: append, and read one sandbox's with its filters (the same
//! query as SQLite's, `sqlite/events.rs`, in PostgreSQL's parameters).

use deadpool_postgres::Object;
use tokio_postgres::types::{Json, ToSql};

use crate::events::{EventQuery, Level, SandboxEvent, MAX_EVENTS};
use crate::StoreError;

pub(super) async fn insert(client: &Object, e: &SandboxEvent) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "INSERT INTO sandbox_events (sandbox_id, at, level, kind, message, fields) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
            &[&e.sandbox_id, &e.at, &e.level.as_str(), &e.kind, &e.message, &Json(&e.fields)],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub(super) async fn select(client: &Object, q: &EventQuery) -> Result<Vec<SandboxEvent>, StoreError> {
    let mut sql = String::from(
        "SELECT seq, sandbox_id, at, level, kind, message, fields FROM sandbox_events WHERE sandbox_id = $1",
    );
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(q.sandbox_id.clone())];
    let mut push = |sql: &mut String, clause: &str, arg: Box<dyn ToSql + Sync + Send>| {
        args.push(arg);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(seq) = q.after_seq {
        push(&mut sql, " AND seq > ?", Box::new(seq));
    }
    if let Some(t) = q.since {
        push(&mut sql, " AND at >= ?", Box::new(t));
    }
    if let Some(t) = q.until {
        push(&mut sql, " AND at <= ?", Box::new(t));
    }
    if let Some(min) = q.min_level {
        let levels: Vec<String> = [Level::Debug, Level::Info, Level::Warn, Level::Error]
            .into_iter()
            .filter(|l| *l >= min)
            .map(|l| l.as_str().to_string())
            .collect();
        push(&mut sql, " AND level = ANY(?)", Box::new(levels));
    }
    if let Some(s) = &q.search {
        push(&mut sql, " AND strpos(message, ?) > 0", Box::new(s.clone()));
    }
    sql.push_str(if q.newest_first { " ORDER BY seq DESC" } else { " ORDER BY seq ASC" });
    let limit = i64::from(q.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS));
    push(&mut sql, " LIMIT ?", Box::new(limit));
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
    let mut out = Vec::new();
    for r in client.query(&sql, &params).await? {
        let level: String = r.try_get(3)?;
        let Json(fields) = r.try_get(6)?;
        out.push(SandboxEvent {
            seq: r.try_get(0)?,
            sandbox_id: r.try_get(1)?,
            at: r.try_get(2)?,
            level: Level::parse(&level).ok_or_else(|| StoreError::Corrupt(format!("event level {level:?}")))?,
            kind: r.try_get(4)?,
            message: r.try_get(5)?,
            fields,
        });
    }
    Ok(out)
}
