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

/// What two nodes share: a fresh PostgreSQL database (its URL and a client of it), the
/// cluster secret's file; and a port for each.
async fn cluster_base() -> (String, tokio_postgres::Client, tempfile::NamedTempFile, (u16, u16)) {
    let url = stasis_store::testing::fresh_database().await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), SECRET).unwrap();
    (url, db, secret, (free_port(), free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_sandboxes() {
    let (url, db, secret, (pa, pb)) = cluster_base().await;
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

async fn snapshot(api: &Api, id: &str, name: &str) -> (String, String) {
    let (st, v) =
        api.call(reqwest::Method::POST, &format!("/sandboxes/{id}/snapshots"), Some(json!({"name": name}))).await;
    assert_eq!(st, 201, "snapshot: {v}");
    (v["snapshotID"].as_str().unwrap().to_string(), v["names"][0].as_str().unwrap().to_string())
}

/// The snapshot's raw id (its files' directory) and the node its row names.
async fn held_by(db: &tokio_postgres::Client, name: &str) -> (String, String) {
    let r = db
        .query_one(
            "SELECT s.id, s.node_id FROM snapshots s JOIN snapshot_names n ON n.snapshot_id = s.id WHERE n.name = $1",
            &[&name],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn delete_path(reference: &str) -> String {
    format!("/templates/{}", reference.replace('/', "%2F").replace(':', "%3A"))
}

/// A snapshot's files are on the node that took it: a create from it through any node runs
/// there (placement would pick the other node), as does its delete; a fork through the
/// other node runs on the source's node; when the holder is gone, the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_from_a_snapshot_go_to_the_node_that_holds_it() {
    let (url, db, secret, (pa, pb)) = cluster_base().await;
    // node-a alone: the source sandbox and its snapshots are there.
    let a = node(Host::new("aff-a"), "node-a", pa, &url, "2GiB", secret.path());
    let api_a = Api::new(&a);
    let src = api_a.create(json!({"templateID": "base", "timeout": 300})).await;
    let src_id = id(&src);
    api_a.sh(&src, "echo from-the-snapshot > /home/user/mark").await;
    let (warm_id, warm_name) = snapshot(&api_a, &src_id, "warm").await;
    let (warm_raw, holder) = held_by(&db, "warm").await;
    assert_eq!(holder, "node-a", "the row names the node whose runtime took it");
    assert!(a.host.data_dir.join("snapshots").join(&warm_raw).exists());

    // node-b joins with more free memory: placement picks it from now on.
    let b = node(Host::new("aff-b"), "node-b", pb, &url, "8GiB", secret.path());
    let api_b = Api::new(&b);
    let plain = api_a.create(json!({"templateID": "base", "timeout": 300})).await;
    assert_eq!(owner(&db, &id(&plain)).await.0, "node-b", "placement picks node-b");
    assert_eq!(api_a.kill(&id(&plain)).await, 204);

    // From the snapshot through node-b, by id and by name (v1 and v2), and through
    // node-a: every copy runs on node-a, with the snapshot's files.
    let mut copies = Vec::new();
    for (api, path, template) in [
        (&api_b, "/v2/sandboxes", warm_id.as_str()),
        (&api_b, "/sandboxes", "warm"),
        (&api_b, "/v2/sandboxes", warm_name.as_str()),
        (&api_a, "/v2/sandboxes", "warm"),
    ] {
        let (st, v) =
            api.call(reqwest::Method::POST, path, Some(json!({"templateID": template, "timeout": 300}))).await;
        assert_eq!(st, 201, "create from {template} through {path}: {v}");
        let cid = id(&v);
        assert_eq!(owner(&db, &cid).await, ("node-a".into(), "running".into()), "{template}");
        assert_eq!(api.sh(&v, "cat /home/user/mark").await, "from-the-snapshot\n");
        copies.push(v);
    }
    // Killed through node-b.
    for c in &copies {
        assert_eq!(api_b.kill(&id(c)).await, 204);
        assert!(!a.host.data_dir.join("sandboxes").join(id(c)).exists());
    }

    // A fork through node-b runs on node-a, the source's node.
    let (st, forks) =
        api_b.call(reqwest::Method::POST, &format!("/sandboxes/{src_id}/fork"), Some(json!({"count": 1}))).await;
    assert_eq!(st, 201, "{forks}");
    let fork = &forks[0]["sandbox"];
    assert_eq!(owner(&db, &id(fork)).await.0, "node-a", "{forks}");
    assert_eq!(api_b.sh(fork, "cat /home/user/mark").await, "from-the-snapshot\n");
    assert_eq!(api_b.kill(&id(fork)).await, 204);

    // Deleted through node-b: node-a removes its files.
    let (doomed_id, _) = snapshot(&api_b, &src_id, "doomed").await;
    let (doomed_raw, holder) = held_by(&db, "doomed").await;
    assert_eq!(holder, "node-a", "taken through node-b, by node-a's runtime");
    let doomed_dir = a.host.data_dir.join("snapshots").join(&doomed_raw);
    assert!(doomed_dir.exists());
    let (st, v) = api_b.call(reqwest::Method::DELETE, &delete_path(&doomed_id), None).await;
    assert_eq!(st, 204, "{v}");
    let (st, _) = api_b.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"templateID": "doomed"}))).await;
    assert_eq!(st, 404, "a deleted snapshot seeds nothing");
    // Its layer is the source's lower layer too: the files go with their last user.
    assert_eq!(api_b.kill(&src_id).await, 204);
    until("node-a removes the deleted snapshot's files", Duration::from_secs(10), async || !doomed_dir.exists()).await;
    assert!(a.host.data_dir.join("snapshots").join(&warm_raw).exists(), "the other snapshot stays");

    // A draining node-a makes nothing new, from its snapshots neither.
    assert_eq!(b.command(&["node", "drain", "node-a"]).code, 0);
    let (st, v) = api_b.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"templateID": "warm"}))).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("held by node node-a, which is draining"), "{v}");
    assert_eq!(b.command(&["node", "activate", "node-a"]).code, 0);

    // node-a killed -9: its snapshot cannot be used or deleted elsewhere, and the answer
    // says why (at once, while its lease still holds, and once it is declared dead).
    let _host_a = a.crash();
    for phase in ["lease still held", "declared dead"] {
        if phase == "declared dead" {
            until("node-a declared dead", Duration::from_secs(30), async || node_state(&b, "node-a").await == "dead")
                .await;
        }
        let (st, v) = api_b
            .call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"templateID": "warm", "timeout": 60})))
            .await;
        assert_eq!(st, 503, "{phase}: {v}");
        let want = format!("snapshot {warm_raw} is held by node node-a, which does not answer");
        assert!(v["message"].as_str().unwrap().contains(&want), "{phase}: {v}");
        let (st, v) = api_b.call(reqwest::Method::DELETE, &delete_path(&warm_id), None).await;
        assert_eq!(st, 503, "{phase}: {v}");
        assert!(v["message"].as_str().unwrap().contains(&want), "{phase}: {v}");
    }
    // Nothing was made on node-b meanwhile; plain creates still go there.
    let n: i64 = db
        .query_one("SELECT COUNT(*) FROM sandboxes WHERE node_id = 'node-b' AND state <> 'killed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let plain = api_b.create(json!({"templateID": "base", "timeout": 60})).await;
    assert_eq!(api_b.kill(&id(&plain)).await, 204);
}
