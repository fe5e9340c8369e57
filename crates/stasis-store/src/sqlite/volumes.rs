//! Volumes and their mounts in SQLite (`crate::volumes` says what they mean).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::rows::is_unique_violation;
use crate::volumes::{VolumeMount, VolumeRow};
use crate::StoreError;

const COLUMNS: &str = "id, name, token, created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow { id: r.get(0)?, name: r.get(1)?, token: r.get(2)?, created_at: r.get(3)? })
}

pub(super) fn insert(conn: &mut Connection, v: &VolumeRow) -> Result<(), StoreError> {
    match conn.execute(
        &format!("INSERT INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
        params![v.id, v.name, v.token, v.created_at],
    ) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("volume {:?}", v.name))),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn select_one(conn: &mut Connection, column: &str, value: &str) -> Result<Option<VolumeRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM volumes WHERE {column} = ?1");
    Ok(conn.query_row(&sql, [value], from_row).optional()?)
}

pub(super) fn select_all(conn: &mut Connection) -> Result<Vec<VolumeRow>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY created_at, id"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete(conn: &mut Connection, id: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let by: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT m.owner FROM volume_mounts m JOIN sandboxes s ON s.id = m.owner \
             WHERE m.volume_id = ?1 ORDER BY m.owner",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if !by.is_empty() {
        return Err(StoreError::InUse { what: format!("volume {id}"), by });
    }
    tx.execute("DELETE FROM volume_mounts WHERE volume_id = ?1", [id])?;
    let n = tx.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(n > 0)
}

pub(super) fn set_mounts(conn: &mut Connection, owner: &str, mounts: &[VolumeMount]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM volume_mounts WHERE owner = ?1", [owner])?;
    for m in mounts {
        match tx.execute(
            "INSERT INTO volume_mounts (owner, path, volume_id) VALUES (?1, ?2, ?3)",
            params![owner, m.path, m.volume_id],
        ) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                return Err(StoreError::NotFound)
            }
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("a mount at {:?}", m.path)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mounts(conn: &mut Connection, owner: &str) -> Result<Vec<VolumeMount>, StoreError> {
    let mut stmt = conn.prepare("SELECT volume_id, path FROM volume_mounts WHERE owner = ?1 ORDER BY path")?;
    let rows = stmt.query_map([owner], |r| Ok(VolumeMount { volume_id: r.get(0)?, path: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
