//! Issue 17, item 3: two `stasis serve` nodes on this machine sharing one PostgreSQL
//! (started by the test), each with its own data dir. A create is placed on the node with
//! the most free memory; every call for a sandbox (REST, envd, a user port) works through
//! either node; a drain pauses a node's sandboxes and sends new ones elsewhere; a node
//! killed is declared dead once its lease runs out (its running sandbox reported lost,
//! its paused one kept), and takes its sandboxes up again when it comes back.

mod common;

use std::time::{Duration, Instant};

use common::api::{envd_run, id, wait_state, Api};
use common::{agent_binary, free_port, Host, Server, API_KEY};
use serde_json::{json, Value};

const SECRET: &str = "cluster-secret-for-the-node-test";

/// Starts node `name` on `port` (its data dir `host`), on database `db`.
fn node(host: Host, name: &str, port: u16, db: &str, memory: &str, secret_file: &std::path::Path) -> Server {
    let advertise = format!("http://127.0.0.1:{port}");
    let args = [
        "--database",
        db,
        "--node-id",
        name,
        "--advertise",
        &advertise,
        "--cluster-secret-file",
        secret_file.to_str().unwrap(),
        "--heartbeat-interval",
        "300ms",
        "--node-lease",
        "5s",
        "--node-memory",
        memory,
    ];
    Server::start_at(host, port, &args, &agent_binary())
}

async fn nodes(s: &Server) -> Vec<Value> {
    let out = s.command(&["node", "ls", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

async fn node_state(s: &Server, name: &str) -> String {
    nodes(s).await.iter().find(|n| n["nodeID"] == name).map(|n| n["state"].as_str().unwrap().to_string()).unwrap()
}

async fn owner(db: &tokio_postgres::Client, id: &str) -> (String, String) {
    let r = db.query_one("SELECT node_id, state FROM sandboxes WHERE id = $1", &[&id]).await.unwrap();
    (r.get(0), r.get(1))
}

async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_sandboxes() {
    let url = stasis_store::testing::fresh_database().await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), SECRET).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = node(Host::new("node-a"), "node-a", pa, &url, "8GiB", secret.path());
    let b = node(Host::new("node-b"), "node-b", pb, &url, "2GiB", secret.path());
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));

    // Both registered, each says which one it is.
    let listed = nodes(&b).await;
    assert_eq!(listed.iter().map(|n| n["nodeID"].as_str().unwrap()).collect::<Vec<_>>(), ["node-a", "node-b"]);
    assert!(listed.iter().all(|n| n["state"] == "active"), "{listed:?}");
    assert_eq!(listed.iter().find(|n| n["self"] == true).unwrap()["nodeID"], "node-b");
    assert_eq!(listed[0]["capacity"]["memoryMb"], 8192);
    let table = b.command(&["node", "ls"]);
    assert!(table.stdout.contains("node-a") && table.stdout.contains("node-b*"), "{}", table.stdout);

    // Placed on node-a (the most free memory), though asked of node-b.
    let sbx = api_b.create(json!({"templateID": "base", "timeout": 300})).await;
    let sid = id(&sbx);
    assert_eq!(owner(&db, &sid).await, ("node-a".into(), "running".into()));
    assert!(a.host.data_dir.join("sandboxes").join(&sid).exists(), "it runs on node-a");
    assert!(!b.host.data_dir.join("sandboxes").join(&sid).exists());

    // Every call works through either node: info, envd, a user port.
    assert_eq!(api_b.state(&sid).await.as_deref(), Some("running"));
    assert_eq!(api_b.sh(&sbx, "echo through-b > /tmp/f; cat /tmp/f").await, "through-b\n");
    assert_eq!(api_a.sh(&sbx, "cat /tmp/f").await, "through-b\n");
    api_b.sh(&sbx, "cd /tmp && (nohup python3 -m http.server 8000 >/dev/null 2>&1 &); sleep 0").await;
    let http = reqwest::Client::new();
    let mut page = String::new();
    until("the sandbox's port 8000 answers through node-b", Duration::from_secs(20), async || {
        let r = http
            .get(format!("{}/f", b.url))
            .header("e2b-sandbox-id", &sid)
            .header("e2b-sandbox-port", "8000")
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                page = r.text().await.unwrap();
                true
            }
            _ => false,
        }
    })
    .await;
    assert_eq!(page, "through-b\n");

    // A forwarded claim without the secret is refused.
    let forged = http
        .get(format!("{}/sandboxes/{sid}", b.url))
        .header("x-api-key", API_KEY)
        .header("x-stasis-forwarded-by", "node-a")
        .header("x-stasis-node-auth", "not-the-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Pause and resume through node-b: node-a does them.
    assert_eq!(api_b.pause(&sid).await, 204);
    assert_eq!(owner(&db, &sid).await, ("node-a".into(), "paused".into()));
    let (st, again) = api_b.connect(&sid, json!({"timeout": 300})).await;
    assert_eq!(st, 201, "{again}");
    assert_eq!(api_b.sh(&again, "cat /tmp/f").await, "through-b\n");

    // Drain node-a: it pauses its sandbox, and creates go to node-b.
    let out = b.command(&["node", "drain", "node-a"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_state(&api_b, &sid, Some("paused"), Duration::from_secs(60)).await;
    let other = api_a.create(json!({"templateID": "base", "timeout": 300})).await;
    let oid = id(&other);
    assert_eq!(owner(&db, &oid).await.0, "node-b", "a draining node takes no new sandbox");
    assert_eq!(api_a.sh(&other, "echo on-b").await, "on-b\n");
    let (st, v) = api_b.connect(&sid, json!({})).await;
    assert_eq!(st, 409, "a draining node resumes nothing: {v}");
    assert!(v["message"].as_str().unwrap().contains("draining"), "{v}");
    assert_eq!(b.command(&["node", "activate", "node-a"]).code, 0);
    assert_eq!(node_state(&a, "node-a").await, "active");
    // Running again on node-a.
    let (st, again) = api_b.connect(&sid, json!({"timeout": 300})).await;
    assert_eq!(st, 201, "{again}");
    let kept = api_a.create(json!({"templateID": "base", "timeout": 300})).await;
    let kid = id(&kept);
    assert_eq!(owner(&db, &kid).await.0, "node-a");
    assert_eq!(api_a.pause(&kid).await, 204);

    // node-a dies (the daemon; its sandboxes' processes outlive it, as after a crash).
    let host_a = a.crash();
    until("node-a declared dead", Duration::from_secs(30), async || node_state(&b, "node-a").await == "dead").await;
    assert_eq!(owner(&db, &sid).await.1, "lost");
    let (st, v) = api_b.info(&sid).await;
    assert_eq!(st, 404, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("lost") && message.contains("node node-a"), "{message}");
    let (_, events) = api_b.call(reqwest::Method::GET, &format!("/stasis/sandboxes/{sid}/events"), None).await;
    assert!(events.to_string().contains("\"lost\""), "{events}");
    // The paused one stays paused (its files are on node-a), and says why it waits.
    assert_eq!(api_b.state(&kid).await.as_deref(), Some("paused"));
    let (st, v) = api_b.connect(&kid, json!({})).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("paused on node node-a"), "{v}");
    // node-b goes on answering for its own.
    assert_eq!(api_b.sh(&other, "echo still").await, "still\n");

    // node-a comes back: its lost sandbox (still running on the host) is taken up again.
    let a = node(host_a, "node-a", pa, &url, "8GiB", secret.path());
    let api_a = Api::new(&a);
    assert_eq!(node_state(&b, "node-a").await, "active");
    assert_eq!(owner(&db, &sid).await, ("node-a".into(), "running".into()));
    let token = again["envdAccessToken"].as_str().unwrap();
    assert_eq!(envd_run(&b.url, &sid, token, "cat /tmp/f").await, "through-b\n");

    for (api, id) in [(&api_b, &sid), (&api_a, &oid), (&api_b, &kid)] {
        assert_eq!(api.kill(id).await, 204, "kill {id}");
    }
}
