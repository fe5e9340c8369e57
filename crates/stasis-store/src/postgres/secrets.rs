//! Secrets in PostgreSQL (the same statements as `sqlite/secrets.rs`).

use deadpool_postgres::Object;

use super::unique_violation;
use crate::secrets::{page_token, parse_page_token, SecretRow, SecretUpdate};
use crate::{Page, QueryError, StoreError};

const COLUMNS: &str = "id, name, version, metadata, sealed, created_at, updated_at";

fn from_row(r: &tokio_postgres::Row) -> Result<SecretRow, StoreError> {
    let metadata: serde_json::Value = r.try_get(3)?;
    Ok(SecretRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        version: r.try_get(2)?,
        metadata: serde_json::from_value(metadata).map_err(|e| StoreError::Corrupt(format!("secret metadata: {e}")))?,
        sealed: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

fn json(m: &std::collections::BTreeMap<String, String>) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(m).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) async fn insert(client: &Object, s: &SecretRow) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO secrets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
    let metadata = json(&s.metadata)?;
    match client.execute(&sql, &[&s.id, &s.name, &s.version, &metadata, &s.sealed, &s.created_at, &s.updated_at]).await
    {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists(format!("secret {:?}", s.name))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn select_one(client: &Object, column: &str, value: &str) -> Result<Option<SecretRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM secrets WHERE {column} = $1");
    client.query_opt(&sql, &[&value]).await?.as_ref().map(from_row).transpose()
}

pub(super) async fn page(client: &Object, token: Option<&str>, limit: u32) -> Result<Page<SecretRow>, StoreError> {
    let after = match token {
        Some(t) => parse_page_token(t).ok_or(QueryError::BadNextToken)?,
        None => String::new(),
    };
    let sql = format!("SELECT {COLUMNS} FROM secrets WHERE name > $1 ORDER BY name LIMIT $2");
    let mut rows: Vec<SecretRow> =
        client.query(&sql, &[&after, &(i64::from(limit) + 1)]).await?.iter().map(from_row).collect::<Result<_, _>>()?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(page_token)
    });
    Ok((rows, next.flatten()))
}

pub(super) async fn update(client: &Object, id: &str, u: &SecretUpdate) -> Result<SecretRow, StoreError> {
    let metadata = u.metadata.as_ref().map(json).transpose()?;
    let sql = format!(
        "UPDATE secrets SET sealed = $2, version = version + 1, updated_at = $3, \
         metadata = COALESCE($4, metadata) WHERE id = $1 RETURNING {COLUMNS}"
    );
    client
        .query_opt(&sql, &[&id, &u.sealed, &u.updated_at, &metadata])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

pub(super) async fn delete(client: &Object, id: &str) -> Result<bool, StoreError> {
    Ok(client.execute("DELETE FROM secrets WHERE id = $1", &[&id]).await? > 0)
}
