//! Nodes in SQLite (`crate::nodes` says what they mean). One machine has one node, but
//! the statements are the cluster's, so the suite proves both stores alike.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::rows::{conversion_error, get_u64, placeholders};
use crate::model::now_ms;
use crate::nodes::{lost_error, DeadNode, Heartbeat, NodeRow, NodeState, Resources};
use crate::{StoreError, LOST_WITH_NODE};

const COLUMNS: &str = "id, url, state, memory_mb, cpu_count, disk_mb, free_memory_mb, free_cpu_count, \
    free_disk_mb, heartbeat_at, lease_until, joined_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    let state: String = r.get(2)?;
    Ok(NodeRow {
        id: r.get(0)?,
        url: r.get(1)?,
        state: state.parse().map_err(|e: String| conversion_error(2, std::io::Error::other(e)))?,
        capacity: Resources { memory_mb: get_u64(r, 3)?, cpu_count: r.get(4)?, disk_mb: get_u64(r, 5)? },
        free: Resources { memory_mb: get_u64(r, 6)?, cpu_count: r.get(7)?, disk_mb: get_u64(r, 8)? },
        heartbeat_at: r.get(9)?,
        lease_until: r.get(10)?,
        joined_at: r.get(11)?,
    })
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn heartbeat(conn: &mut Connection, hb: &Heartbeat) -> Result<NodeRow, StoreError> {
    let sql = format!(
        "INSERT INTO nodes ({COLUMNS}) VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?9) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, memory_mb = excluded.memory_mb, \
         cpu_count = excluded.cpu_count, disk_mb = excluded.disk_mb, \
         free_memory_mb = excluded.free_memory_mb, free_cpu_count = excluded.free_cpu_count, \
         free_disk_mb = excluded.free_disk_mb, heartbeat_at = excluded.heartbeat_at, \
         lease_until = excluded.lease_until, \
         joined_at = CASE WHEN nodes.state = 'dead' THEN excluded.joined_at ELSE nodes.joined_at END, \
         state = CASE WHEN nodes.state = 'dead' THEN 'active' ELSE nodes.state END \
         RETURNING {COLUMNS}"
    );
    let (c, f) = (hb.capacity, hb.free);
    Ok(conn.query_row(
        &sql,
        params![
            hb.id,
            hb.url,
            int(c.memory_mb),
            c.cpu_count,
            int(c.disk_mb),
            int(f.memory_mb),
            f.cpu_count,
            int(f.disk_mb),
            hb.at,
            hb.lease_until
        ],
        from_row,
    )?)
}

pub(super) fn get(conn: &mut Connection, id: &str) -> Result<Option<NodeRow>, StoreError> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM nodes WHERE id = ?1"), [id], from_row).optional()?)
}

pub(super) fn list(conn: &mut Connection) -> Result<Vec<NodeRow>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM nodes ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(super) fn set_state(
    conn: &mut Connection,
    id: &str,
    from: &[NodeState],
    to: NodeState,
) -> Result<NodeRow, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = tx
        .query_row(&format!("SELECT {COLUMNS} FROM nodes WHERE id = ?1"), [id], from_row)
        .optional()?
        .ok_or(StoreError::NotFound)?;
    if !from.contains(&row.state) {
        return Err(StoreError::NodeConflict { current: row.state });
    }
    tx.execute("UPDATE nodes SET state = ?2 WHERE id = ?1", params![id, to.as_str()])?;
    tx.commit()?;
    Ok(NodeRow { state: to, ..row })
}

pub(super) fn expire(conn: &mut Connection, now: i64) -> Result<Vec<DeadNode>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let expired = tx
        .prepare(&format!("SELECT {COLUMNS} FROM nodes WHERE state <> 'dead' AND lease_until < ?1 ORDER BY id"))?
        .query_map([now], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut dead = Vec::new();
    for node in expired {
        tx.execute("UPDATE nodes SET state = 'dead' WHERE id = ?1", [&node.id])?;
        let error = serde_json::to_string(&lost_error(&node.id, node.heartbeat_at, now))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut args = vec![Value::Text(node.id.clone()), Value::Text(error), Value::Integer(now_ms())];
        args.extend(LOST_WITH_NODE.iter().map(|s| Value::Text(s.as_str().to_owned())));
        let sql = format!(
            "UPDATE sandboxes SET state = 'lost', last_error = ?2, updated_at = ?3 \
             WHERE node_id = ?1 AND state IN ({}) RETURNING id",
            placeholders(LOST_WITH_NODE.len())
        );
        let mut lost = tx
            .prepare(&sql)?
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        lost.sort();
        dead.push(DeadNode { node: NodeRow { state: NodeState::Dead, ..node }, lost });
    }
    tx.commit()?;
    Ok(dead)
}
