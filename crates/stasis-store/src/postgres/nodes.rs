//! Nodes in PostgreSQL (the same statements as `sqlite/nodes.rs`; rows read `FOR UPDATE`
//! so two nodes sweeping at once declare each dead node once).

use deadpool_postgres::Object;

use crate::model::now_ms;
use crate::nodes::{lost_error, DeadNode, Heartbeat, NodeRow, NodeState, Resources};
use crate::{StoreError, LOST_WITH_NODE};

const COLUMNS: &str = "id, url, state, memory_mb, cpu_count, disk_mb, free_memory_mb, free_cpu_count, \
    free_disk_mb, heartbeat_at, lease_until, joined_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("node {what}: {e}"))
}

fn unsigned(r: &tokio_postgres::Row, i: usize, what: &str) -> Result<u64, StoreError> {
    u64::try_from(r.try_get::<_, i64>(i)?).map_err(|e| corrupt(what, e))
}

fn cpus(r: &tokio_postgres::Row, i: usize) -> Result<u32, StoreError> {
    u32::try_from(r.try_get::<_, i64>(i)?).map_err(|e| corrupt("cpu_count", e))
}

fn from_row(r: &tokio_postgres::Row) -> Result<NodeRow, StoreError> {
    let state: String = r.try_get(2)?;
    Ok(NodeRow {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        state: state.parse().map_err(|e| corrupt("state", e))?,
        capacity: Resources {
            memory_mb: unsigned(r, 3, "memory_mb")?,
            cpu_count: cpus(r, 4)?,
            disk_mb: unsigned(r, 5, "disk_mb")?,
        },
        free: Resources {
            memory_mb: unsigned(r, 6, "free_memory_mb")?,
            cpu_count: cpus(r, 7)?,
            disk_mb: unsigned(r, 8, "free_disk_mb")?,
        },
        heartbeat_at: r.try_get(9)?,
        lease_until: r.try_get(10)?,
        joined_at: r.try_get(11)?,
    })
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) async fn heartbeat(client: &Object, hb: &Heartbeat) -> Result<NodeRow, StoreError> {
    let sql = format!(
        "INSERT INTO nodes ({COLUMNS}) VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9, $10, $9) \
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
    let row = client
        .query_one(
            &sql,
            &[
                &hb.id,
                &hb.url,
                &int(c.memory_mb),
                &i64::from(c.cpu_count),
                &int(c.disk_mb),
                &int(f.memory_mb),
                &i64::from(f.cpu_count),
                &int(f.disk_mb),
                &hb.at,
                &hb.lease_until,
            ],
        )
        .await?;
    from_row(&row)
}

pub(super) async fn get(client: &Object, id: &str) -> Result<Option<NodeRow>, StoreError> {
    client
        .query_opt(&format!("SELECT {COLUMNS} FROM nodes WHERE id = $1"), &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(super) async fn list(client: &Object) -> Result<Vec<NodeRow>, StoreError> {
    client.query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY id"), &[]).await?.iter().map(from_row).collect()
}

pub(super) async fn set_state(
    client: &mut Object,
    id: &str,
    from: &[NodeState],
    to: NodeState,
) -> Result<NodeRow, StoreError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(&format!("SELECT {COLUMNS} FROM nodes WHERE id = $1 FOR UPDATE"), &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(StoreError::NotFound)?;
    if !from.contains(&row.state) {
        return Err(StoreError::NodeConflict { current: row.state });
    }
    tx.execute("UPDATE nodes SET state = $2 WHERE id = $1", &[&id, &to.as_str()]).await?;
    tx.commit().await?;
    Ok(NodeRow { state: to, ..row })
}

pub(super) async fn expire(client: &mut Object, now: i64) -> Result<Vec<DeadNode>, StoreError> {
    let tx = client.transaction().await?;
    let expired = tx
        .query(
            &format!("SELECT {COLUMNS} FROM nodes WHERE state <> 'dead' AND lease_until < $1 ORDER BY id FOR UPDATE"),
            &[&now],
        )
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let states: Vec<String> = LOST_WITH_NODE.iter().map(|s| s.as_str().to_owned()).collect();
    let mut dead = Vec::new();
    for node in expired {
        tx.execute("UPDATE nodes SET state = 'dead' WHERE id = $1", &[&node.id]).await?;
        let error =
            serde_json::to_value(lost_error(&node.id, node.heartbeat_at, now)).map_err(|e| corrupt("error", e))?;
        let rows = tx
            .query(
                "UPDATE sandboxes SET state = 'lost', last_error = $2, updated_at = $3 \
                 WHERE node_id = $1 AND state = ANY($4) RETURNING id",
                &[&node.id, &error, &now_ms(), &states],
            )
            .await?;
        let mut lost: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        lost.sort();
        dead.push(DeadNode { node: NodeRow { state: NodeState::Dead, ..node }, lost });
    }
    tx.commit().await?;
    Ok(dead)
}
