//! Secrets in SQLite (`crate::secrets` says what they mean; the value stays sealed).

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::is_unique_violation;
use crate::secrets::{page_token, parse_page_token, SecretRow, SecretUpdate};
use crate::{Page, QueryError, StoreError};

const COLUMNS: &str = "id, name, version, metadata, sealed, created_at, updated_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRow> {
    let metadata: String = r.get(3)?;
    Ok(SecretRow {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?,
        sealed: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

fn json(m: &std::collections::BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(m).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn insert(conn: &mut Connection, s: &SecretRow) -> Result<(), StoreError> {
    match conn.execute(
        &format!("INSERT INTO secrets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![s.id, s.name, s.version, json(&s.metadata)?, s.sealed, s.created_at, s.updated_at],
    ) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("secret {:?}", s.name))),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn select_one(conn: &mut Connection, column: &str, value: &str) -> Result<Option<SecretRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM secrets WHERE {column} = ?1");
    Ok(conn.query_row(&sql, [value], from_row).optional()?)
}

pub(super) fn page(conn: &mut Connection, token: Option<&str>, limit: u32) -> Result<Page<SecretRow>, StoreError> {
    let after = match token {
        Some(t) => parse_page_token(t).ok_or(QueryError::BadNextToken)?,
        None => String::new(),
    };
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM secrets WHERE name > ?1 ORDER BY name LIMIT ?2"))?;
    let rows = stmt.query_map(params![after, i64::from(limit) + 1], from_row)?;
    let mut rows: Vec<SecretRow> = rows.collect::<Result<_, _>>()?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(page_token)
    });
    Ok((rows, next.flatten()))
}

pub(super) fn update(conn: &mut Connection, id: &str, u: &SecretUpdate) -> Result<SecretRow, StoreError> {
    let metadata = u.metadata.as_ref().map(json).transpose()?;
    let sql = format!(
        "UPDATE secrets SET sealed = ?2, version = version + 1, updated_at = ?3, \
         metadata = COALESCE(?4, metadata) WHERE id = ?1 RETURNING {COLUMNS}"
    );
    conn.query_row(&sql, params![id, u.sealed, u.updated_at, metadata], from_row)
        .optional()?
        .ok_or(StoreError::NotFound)
}

pub(super) fn delete(conn: &mut Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM secrets WHERE id = ?1", [id])? > 0)
}
