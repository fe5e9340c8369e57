//! The store suite on a real PostgreSQL server (`crate::testing`), each test on a database
//! of its own; plus what is PostgreSQL's own.

use async_trait::async_trait;

use super::*;
use crate::suite::{sandbox, Backend};
use crate::testing::fresh_database;

/// A database of its own; every `open` is another pool on it, as another node's.
struct Postgres(String);

#[async_trait]
impl Backend for Postgres {
    type S = PostgresStore;
    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.0).await.unwrap()
    }
}

async fn postgres() -> Postgres {
    Postgres(fresh_database().await)
}

crate::store_suite!(postgres());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_once() {
    let url = fresh_database().await;
    let opens: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { PostgresStore::open(&url).await }
            })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let store = PostgresStore::open(&url).await.unwrap();
    let client = store.client().await.unwrap();
    let versions = client.query("SELECT version FROM stasis_schema", &[]).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].get::<_, i64>(0), SCHEMA_VERSION);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let url = fresh_database().await;
    let store = PostgresStore::open(&url).await.unwrap();
    store.client().await.unwrap().execute("UPDATE stasis_schema SET version = version + 1", &[]).await.unwrap();
    match PostgresStore::open(&url).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn only_the_hash_of_an_api_key_is_stored_and_rows_are_json() {
    let store = PostgresStore::open(&fresh_database().await).await.unwrap();
    let key = crate::generate_api_key().unwrap();
    store.add_api_key("default", &key).await.unwrap();
    let client = store.client().await.unwrap();
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM api_keys WHERE key_hash = $1 OR name = $1", &[&key])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let mut row = sandbox("j1", SandboxState::Running, 1);
    row.metadata.insert("team".into(), "a".into());
    store.insert_sandbox(&row).await.unwrap();
    let team: String =
        client.query_one("SELECT metadata ->> 'team' FROM sandboxes WHERE id = 'j1'", &[]).await.unwrap().get(0);
    assert_eq!(team, "a", "metadata is JSONB, queryable by hand");
}

#[test]
fn passwords_never_reach_messages() {
    assert_eq!(redact("postgres://stasis:s3cret@db:5432/stasis"), "postgres://stasis:***@db:5432/stasis");
    assert_eq!(redact("postgres://stasis@db/stasis"), "postgres://stasis@db/stasis");
    assert_eq!(redact("host=db user=stasis password=s3cret dbname=x"), "host=db user=stasis dbname=x");
}
