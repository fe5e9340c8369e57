//! Issue 17, item 1: `stasis serve --database postgres://...` keeps the control plane's
//! state in a real PostgreSQL server (started by the test): sandboxes created, paused and
//! resumed through the API are rows there, and a restarted daemon finds them again.

mod common;

use std::time::Duration;

use common::api::{id, wait_state, Api};
use common::{Host, Server};
use serde_json::json;

#[tokio::test]
async fn a_daemon_on_postgres_keeps_its_sandboxes_across_a_restart() {
    let db = stasis_store::testing::fresh_database().await;
    let server = Server::start_on(Host::new("pg-store"), &["--database", &db]);
    let api = Api::new(&server);
    let sbx = api.create(json!({"templateID": "base", "timeout": 300, "metadata": {"store": "pg"}})).await;
    let sid = id(&sbx);
    api.sh(&sbx, "echo kept > /home/user/pg.txt").await;
    assert_eq!(api.pause(&sid).await, 204);

    // The rows are PostgreSQL's, not a SQLite file's.
    let host = server.terminate();
    assert!(!host.data_dir.join("stasis.db").exists(), "no SQLite file next to a PostgreSQL store");
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row =
        client.query_one("SELECT state, metadata ->> 'store' FROM sandboxes WHERE id = $1", &[&sid]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("paused".into(), "pg".into()));

    let server = Server::start_on(host, &["--database", &db]);
    let api = Api::new(&server);
    assert_eq!(api.state(&sid).await.as_deref(), Some("paused"));
    let (st, again) = api.connect(&sid, json!({"timeout": 120})).await;
    assert_eq!(st, 201, "{again}");
    wait_state(&api, &sid, Some("running"), Duration::from_secs(60)).await;
    assert_eq!(api.sh(&again, "cat /home/user/pg.txt").await, "kept\n");
    assert_eq!(api.kill(&sid).await, 204);
}

#[test]
fn a_database_url_that_names_no_store_is_refused_clearly() {
    let host = Host::new("pg-bad-url");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stasis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", "mysql://db/stasis"])
        .env("STASIS_DATA_DIR", &host.data_dir)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad --database") && err.contains("mysql://db/stasis"), "{err}");
}
