//! Volumes and their mounts in PostgreSQL (the same statements as `sqlite/volumes.rs`).

use deadpool_postgres::Object;

use super::unique_violation;
use crate::volumes::{VolumeMount, VolumeRow};
use crate::StoreError;

const COLUMNS: &str = "id, name, token, created_at";

fn from_row(r: &tokio_postgres::Row) -> Result<VolumeRow, StoreError> {
    Ok(VolumeRow { id: r.try_get(0)?, name: r.try_get(1)?, token: r.try_get(2)?, created_at: r.try_get(3)? })
}

fn foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
}

pub(super) async fn insert(client: &Object, v: &VolumeRow) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO volumes ({COLUMNS}) VALUES ($1, $2, $3, $4)");
    match client.execute(&sql, &[&v.id, &v.name, &v.token, &v.created_at]).await {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists(format!("volume {:?}", v.name))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn select_one(client: &Object, column: &str, value: &str) -> Result<Option<VolumeRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM volumes WHERE {column} = $1");
    client.query_opt(&sql, &[&value]).await?.as_ref().map(from_row).transpose()
}

pub(super) async fn select_all(client: &Object) -> Result<Vec<VolumeRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM volumes ORDER BY created_at, id");
    client.query(&sql, &[]).await?.iter().map(from_row).collect()
}

pub(super) async fn delete(client: &mut Object, id: &str) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    // The volume's row is locked first: a concurrent mount (whose foreign key check
    // locks it too) waits for this delete, then fails on the missing volume.
    if tx.query_opt("SELECT id FROM volumes WHERE id = $1 FOR UPDATE", &[&id]).await?.is_none() {
        return Ok(false);
    }
    let by: Vec<String> = tx
        .query(
            "SELECT m.owner FROM volume_mounts m JOIN sandboxes s ON s.id = m.owner \
             WHERE m.volume_id = $1 ORDER BY m.owner",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if !by.is_empty() {
        return Err(StoreError::InUse { what: format!("volume {id}"), by });
    }
    tx.execute("DELETE FROM volume_mounts WHERE volume_id = $1", &[&id]).await?;
    let n = tx.execute("DELETE FROM volumes WHERE id = $1", &[&id]).await?;
    tx.commit().await?;
    Ok(n > 0)
}

pub(super) async fn set_mounts(client: &mut Object, owner: &str, mounts: &[VolumeMount]) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM volume_mounts WHERE owner = $1", &[&owner]).await?;
    for m in mounts {
        match tx
            .execute(
                "INSERT INTO volume_mounts (owner, path, volume_id) VALUES ($1, $2, $3)",
                &[&owner, &m.path, &m.volume_id],
            )
            .await
        {
            Ok(_) => {}
            Err(e) if foreign_key_violation(&e) => return Err(StoreError::NotFound),
            Err(e) if unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("a mount at {:?}", m.path)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn mounts(client: &Object, owner: &str) -> Result<Vec<VolumeMount>, StoreError> {
    let rows =
        client.query("SELECT volume_id, path FROM volume_mounts WHERE owner = $1 ORDER BY path", &[&owner]).await?;
    rows.iter().map(|r| Ok(VolumeMount { volume_id: r.try_get(0)?, path: r.try_get(1)? })).collect()
}
