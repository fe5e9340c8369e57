//! Issue 17: a paused sandbox resumes on any node. Two `stasis serve` nodes on one real
//! PostgreSQL and one real S3 server (moto's), each with its own data dir (and the same
//! checkpoint key). Sandboxes with a file and a running process are paused on node-a;
//! node-a is drained, then killed with SIGKILL: a connect through node-b takes each over
//! (the row moves by a compare-and-set), fetches its layer and images and resumes it with
//! its file and the same process, memory included (s2 from a layer set that node-a's
//! recovery uploaded again, as after a daemon killed during a pause's upload). node-a
//! never resumes its stale copies:
//! it removes them (while draining, and when it starts again), and a kill removes the
//! objects.

mod common;

use std::time::{Duration, Instant};

use common::api::{id, wait_state, Api};
use common::s3::S3Server;
use common::{agent_binary, free_port, Host, Server};
use serde_json::{json, Value};

const SECRET: &str = "cluster-secret-for-the-takeover-test";

struct Cluster {
    db_url: String,
    secret: tempfile::NamedTempFile,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn node(&self, host: Host, name: &str, port: u16, memory: &str) -> Server {
        let advertise = format!("http://127.0.0.1:{port}");
        let args = [
            "--database",
            &self.db_url,
            "--node-id",
            name,
            "--advertise",
            &advertise,
            "--cluster-secret-file",
            self.secret.path().to_str().unwrap(),
            "--heartbeat-interval",
            "300ms",
            "--node-lease",
            "4s",
            "--node-memory",
            memory,
        ];
        Server::start_at_env(host, port, &args, &agent_binary(), &self.env)
    }
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

/// A counter in a Python process's memory, written out every 100 ms; its pid.
const COUNTER: &str = r#"cd /home/user && (nohup python3 -c '
import time
i = 0
while True:
    i += 1
    open("/home/user/count.tmp", "w").write(str(i))
    __import__("os").rename("/home/user/count.tmp", "/home/user/count")
    time.sleep(0.1)
' >/dev/null 2>&1 & echo $! > /home/user/counter.pid); sleep 0.5; cat /home/user/counter.pid"#;

async fn count(api: &Api, sbx: &Value) -> u64 {
    api.sh(sbx, "cat /home/user/count").await.trim().parse().unwrap()
}

/// A sandbox on node-a with a file and the counter running; (sandbox, counter pid).
async fn prepared(api: &Api, db: &tokio_postgres::Client) -> (Value, String) {
    let sbx = api.create(json!({"templateID": "base", "timeout": 600})).await;
    let sid = id(&sbx);
    assert_eq!(owner(db, &sid).await.0, "node-a", "placed on the node with the most memory");
    api.sh(&sbx, &format!("echo 'the file of {sid}' > /home/user/file.txt")).await;
    // Some real files too (as a package install writes): the layer then has data to move.
    api.sh(&sbx, "cp -r /usr/lib/python3*/email /usr/lib/python3*/json /home/user/ 2>/dev/null; sync").await;
    let pid = api.sh(&sbx, COUNTER).await.trim().to_string();
    assert!(!pid.is_empty());
    (sbx, pid)
}

/// After the takeover: node-b runs it, with its file, the same process and its memory
/// (the counter goes on from where the pause left it).
async fn check_moved(api: &Api, db: &tokio_postgres::Client, sbx: &Value, pid: &str, at_pause: u64, b: &Server) {
    let sid = id(sbx);
    assert_eq!(owner(db, &sid).await, ("node-b".into(), "running".into()));
    assert!(b.host.data_dir.join("sandboxes").join(&sid).join("record.json").exists(), "its files are on node-b now");
    assert_eq!(api.sh(sbx, "cat /home/user/file.txt").await, format!("the file of {sid}\n"));
    let cmd = api.sh(sbx, &format!("tr '\\0' ' ' < /proc/{pid}/cmdline")).await;
    assert!(cmd.starts_with("python3 -c"), "the same process (pid {pid}): {cmd:?}");
    let first = count(api, sbx).await;
    assert!(first >= at_pause, "the counter continues ({first} after {at_pause} at the pause)");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = count(api, sbx).await;
    assert!(later > first, "the counter runs on ({first} then {later})");
}

fn layer_figures(log: &str, sid: &str) -> String {
    log.lines()
        .filter(|l| l.contains(sid) && (l.contains("layer exported") || l.contains("/layer") && l.contains("uploaded")))
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_sandbox_resumes_on_another_node() {
    let s3 = S3Server::start("takeover");
    let bucket = s3.client();
    let prefix = common::unique_id("cl");
    let url = stasis_store::testing::fresh_database().await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), SECRET).unwrap();
    let cluster = Cluster { db_url: url.clone(), secret, env: s3.env(&prefix) };
    let (pa, pb) = (free_port(), free_port());
    let a = cluster.node(Host::new("tko-a"), "node-a", pa, "8GiB");
    // The nodes of a cluster share the checkpoint key (docs/architecture.md).
    let host_b = Host::new("tko-b");
    std::fs::copy(a.host.data_dir.join("checkpoint.key"), host_b.data_dir.join("checkpoint.key")).unwrap();
    let b = cluster.node(host_b, "node-b", pb, "2GiB");
    let api_b = Api::new(&b);

    // Two sandboxes on node-a, paused there (asked through node-b).
    let (s1, pid1) = prepared(&api_b, &db).await;
    let (s2, pid2) = prepared(&api_b, &db).await;
    let (id1, id2) = (id(&s1), id(&s2));
    let mut at_pause = Vec::new();
    for sbx in [&s1, &s2] {
        at_pause.push(count(&api_b, sbx).await);
        assert_eq!(api_b.pause(&id(sbx)).await, 204);
        assert_eq!(owner(&db, &id(sbx)).await, ("node-a".into(), "paused".into()));
    }
    // The layer set is in the bucket with the images, its manifest last.
    let objects = bucket.list(&format!("{prefix}/sandboxes/{id1}")).await.unwrap();
    let names: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    for want in ["layer/disk-data.img", "layer/disk-map.img", "layer/checksums.json", "checksums.json"] {
        assert!(names.iter().any(|k| k.ends_with(want)), "{want} in {names:?}");
    }
    let data = objects.iter().find(|(k, _)| k.ends_with("layer/disk-data.img")).unwrap().1;
    eprintln!("layer of {id1}: {data} bytes of disk data; {}", layer_figures(&a.log(), &id1));
    if let Ok(out) = std::env::var("STASIS_TEST_LAYER_OUT") {
        // For measuring (compression): the layer's data as uploaded.
        let key = objects.iter().find(|(k, _)| k.ends_with("layer/disk-data.img")).unwrap().0.clone();
        std::fs::write(out, bucket.get(&key).await).unwrap();
    }

    // A daemon killed during a pause's upload may leave the layer set out of the bucket:
    // node-a's recovery at start-up sees it missing and uploads it again.
    let layer_of = |sid: &str| format!("{prefix}/sandboxes/{sid}/layer");
    for (key, _) in bucket.list(&layer_of(&id2)).await.unwrap() {
        bucket.delete(&key).await;
    }
    let host_a = a.crash();
    let a = cluster.node(host_a, "node-a", pa, "8GiB");
    let api_a = Api::new(&a);
    until("node-a's recovery to upload s2's layer set again", Duration::from_secs(30), async || {
        let objs = bucket.list(&layer_of(&id2)).await.unwrap();
        objs.iter().any(|(k, _)| k.ends_with("layer/checksums.json"))
    })
    .await;
    assert!(a.log().contains("layer set uploaded after an interrupted pause"), "said in node-a's log");

    // Drained: a connect through node-b takes s1 over and resumes it there.
    assert_eq!(b.command(&["node", "drain", "node-a"]).code, 0);
    let t = Instant::now();
    let (st, again) = api_b.connect(&id1, json!({"timeout": 600})).await;
    assert_eq!(st, 201, "{again}");
    eprintln!("takeover of {id1} (fetch + import + restore) took {:?}", t.elapsed());
    check_moved(&api_b, &db, &s1, &pid1, at_pause[0], &b).await;
    let (_, events) = api_b.call(reqwest::Method::GET, &format!("/stasis/sandboxes/{id1}/events"), None).await;
    assert!(events.to_string().contains("taken_over"), "{events}");
    // node-a never resumes its stale copy: it removes it at a heartbeat while draining
    // (and leaves the objects: node-b's now); s2, still its own, stays.
    let sandboxes_a = a.host.data_dir.join("sandboxes");
    until("node-a removes its stale copy", Duration::from_secs(10), async || !sandboxes_a.join(&id1).exists()).await;
    assert!(sandboxes_a.join(&id2).join("record.json").exists(), "node-a's own paused sandbox stays");
    assert!(a.log().contains("removed the stale copy of a sandbox taken over"), "said in node-a's log");
    // Through node-a the request goes to node-b.
    assert_eq!(a.command(&["node", "activate", "node-a"]).code, 0);
    let (st, v) = api_a.connect(&id1, json!({"timeout": 600})).await;
    assert_eq!(st, 200, "already running (on node-b): {v}");
    assert_eq!(owner(&db, &id1).await, ("node-b".into(), "running".into()));
    // The stale checkpoint and layer in the bucket went once it ran again elsewhere.
    until("the resumed sandbox's objects deleted", Duration::from_secs(20), async || {
        bucket.list(&format!("{prefix}/sandboxes/{id1}")).await.unwrap().is_empty()
    })
    .await;

    // node-a killed (SIGKILL), its lease runs out: s2 resumes on node-b.
    let host_a = a.crash();
    until("node-a declared dead", Duration::from_secs(30), async || {
        let out = b.command(&["node", "ls", "--json"]);
        out.stdout.contains("\"dead\"")
    })
    .await;
    assert_eq!(owner(&db, &id2).await, ("node-a".into(), "paused".into()), "a paused sandbox is not lost");
    let (st, again2) = api_b.connect(&id2, json!({"timeout": 600})).await;
    assert_eq!(st, 201, "{again2}");
    check_moved(&api_b, &db, &s2, &pid2, at_pause[1], &b).await;

    // node-a back: it takes up nothing of what moved, and removes its stale copy of s2
    // at start-up.
    let a = cluster.node(host_a, "node-a", pa, "8GiB");
    let api_a = Api::new(&a);
    for sid in [&id1, &id2] {
        assert_eq!(owner(&db, sid).await, ("node-b".into(), "running".into()));
    }
    assert!(!a.host.data_dir.join("sandboxes").join(&id2).exists(), "node-a's stale copy of {id2} is removed");
    // A pause on node-b and a kill through node-a: the objects go.
    assert_eq!(api_a.pause(&id2).await, 204);
    assert!(!bucket.list(&format!("{prefix}/sandboxes/{id2}")).await.unwrap().is_empty());
    for sid in [&id1, &id2] {
        assert_eq!(api_a.kill(sid).await, 204, "kill {sid}");
    }
    until("the killed sandboxes' objects deleted", Duration::from_secs(20), async || {
        bucket.list(&format!("{prefix}/sandboxes")).await.unwrap().is_empty()
    })
    .await;
    wait_state(&api_b, &id2, None, Duration::from_secs(10)).await;
}
