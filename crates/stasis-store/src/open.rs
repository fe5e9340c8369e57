//! Which store a `--database` value names.

use std::path::Path;
use std::sync::Arc;

use crate::{PostgresStore, SqliteStore, Store, StoreError};

/// Opens the store `database` names:
/// - `postgres://...` / `postgresql://...`, or a `key=value` connection string with a
///   `host=`: PostgreSQL (several nodes share it);
/// - `sqlite:PATH`: that SQLite file;
/// - none: SQLite at `default_sqlite` (one machine).
pub async fn open(database: Option<&str>, default_sqlite: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match database.map(str::trim) {
        None | Some("") => Ok(Arc::new(SqliteStore::open(default_sqlite).await?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains("host=") => {
            Ok(Arc::new(PostgresStore::open(url).await?))
        }
        Some(url) => match url.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Ok(Arc::new(SqliteStore::open(path).await?)),
            _ => Err(StoreError::InvalidDatabase(format!(
                "{url:?}: expected postgres://USER@HOST/DB, a key=value connection string with host=, or sqlite:PATH"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_each_store_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("default.db");
        open(None, &default).await.unwrap();
        assert!(default.exists());
        let other = dir.path().join("other.db");
        open(Some(&format!("sqlite:{}", other.display())), &default).await.unwrap();
        assert!(other.exists());
        let pg = crate::testing::fresh_database().await;
        let store = open(Some(&pg), &default).await.unwrap();
        assert_eq!(store.count_api_keys().await.unwrap(), 0);
        for bad in ["mysql://x/y", "sqlite:", "stasis.db"] {
            let e = open(Some(bad), &default).await.err().expect(bad);
            assert!(matches!(e, StoreError::InvalidDatabase(_)), "{bad}: {e}");
        }
    }
}
