use async_trait::async_trait;

use super::migrations::{migrate_to, MIGRATIONS};
use super::*;
use crate::model::{FailedAction, Operation};
use crate::suite::{sandbox, snapshot, Backend};

/// A fresh SQLite file; every `open` is another connection on it.
struct Sqlite(std::sync::Arc<tempfile::TempDir>);

#[async_trait]
impl Backend for Sqlite {
    type S = SqliteStore;
    async fn open(&self) -> SqliteStore {
        SqliteStore::open(self.0.path().join("data/stasis.db")).await.unwrap()
    }
}

async fn sqlite() -> Sqlite {
    Sqlite(std::sync::Arc::new(tempfile::tempdir().unwrap()))
}

crate::store_suite!(sqlite());

async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("data/stasis.db")).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn open_sets_durability_pragmas() {
    let (_dir, store) = temp_store().await;
    let conn = store.conn.lock().unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    assert_eq!(fk, 1);
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn opening_an_old_database_migrates_it_and_keeps_its_rows() {
    assert!(MIGRATIONS.len() >= 2, "test needs an older version to start from");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stasis.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, 1).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
        // Version 1's columns: the ones later migrations added are left out.
        let row = sandbox("old1", SandboxState::Paused, 1000);
        let v1_columns: Vec<&str> =
            SANDBOX_COLUMNS.split(',').map(str::trim).filter(|c| !["last_error", "node_id"].contains(c)).collect();
        let mut values = sandbox_values(&row).unwrap();
        values.truncate(v1_columns.len());
        conn.execute(
            &format!("INSERT INTO sandboxes ({}) VALUES ({})", v1_columns.join(", "), placeholders(v1_columns.len())),
            params_from_iter(values),
        )
        .unwrap();
        // A snapshot from before snapshots recorded their node (version 7).
        migrate_to(&mut conn, 7).unwrap();
        conn.execute(
            "INSERT INTO snapshots (id, source_sandbox_id, template_id, memory, size_bytes, created_at) \
             VALUES ('old-snap', 'old1', 'base', 1, 10, 5)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let v: i64 = store.conn.lock().unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let row = store.get_sandbox("old1").await.unwrap().unwrap();
    assert_eq!(row.state, SandboxState::Paused);
    assert_eq!(row.last_error, None, "an old row has no failed action");
    assert_eq!(row.node_id, crate::LOCAL_NODE, "an old row is the single machine's");
    let snap = store.get_snapshot("old-snap").await.unwrap().unwrap();
    assert_eq!(snap.node_id, crate::LOCAL_NODE, "an old snapshot is the single machine's");
    // The rebuilt table (migration 7) takes the new state.
    store.transition("old1", &[SandboxState::Paused], SandboxState::Lost).await.unwrap();
    // The tables of later migrations are usable.
    store.insert_snapshot(&snapshot("snap1", &["n1"], 5)).await.unwrap();
    // Opening again is a no-op.
    drop(store);
    SqliteStore::open(&path).await.unwrap();
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stasis.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    match &err {
        StoreError::SchemaTooNew { found, supported } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("newer than this build supports"), "{err}");
    // The refused database was not touched.
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1);
}

#[tokio::test]
async fn a_failed_action_is_stored_as_the_models_json() {
    let (_dir, store) = temp_store().await;
    store.insert_sandbox(&sandbox("f1", SandboxState::Running, 1)).await.unwrap();
    let mut row = store.get_sandbox("f1").await.unwrap().unwrap();
    row.last_error = Some(FailedAction {
        operation: Operation::Pause,
        message: "dump failed".into(),
        at: 1,
        attempts: 1,
        next_attempt_at: Some(2),
    });
    store.update_sandbox(&row).await.unwrap();
    // Readable by hand and by a later schema.
    let text: String = store
        .conn
        .lock()
        .unwrap()
        .query_row("SELECT last_error FROM sandboxes WHERE id = 'f1'", [], |r| r.get(0))
        .unwrap();
    assert!(text.contains("\"operation\":\"pause\"") && text.contains("\"nextAttemptAt\""), "{text}");
}

#[tokio::test]
async fn only_the_hash_of_an_api_key_is_stored() {
    let (_dir, store) = temp_store().await;
    let key = crate::generate_api_key().unwrap();
    store.add_api_key("default", &key).await.unwrap();
    let conn = store.conn.lock().unwrap();
    let n: i64 =
        conn.query_row("SELECT COUNT(*) FROM api_keys WHERE key_hash = ?1 OR name = ?1", [&key], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
}
