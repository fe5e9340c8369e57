//! Issue 6: one saved state, many sandboxes. Snapshots capture files and memory while the
//! source keeps running; sandboxes started from one continue from that instant, each in
//! its own copy; killing the source or deleting the snapshot breaks none of them.

mod common;

use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};

/// A worker with a 64 MiB in-memory table and a counter; SIGUSR1 dumps (a dump is not
/// re-entered: signals re-sent while it hashes are ignored)
/// "counter sha256(table)" to /tmp/state, SIGUSR2 changes the table.
const WORKER: &str = r#"nohup python3 -c '
import hashlib, os, signal, time
table = bytearray(os.urandom(1 << 20)) * 64
n = 0
busy = False
def dump(*_):
    global busy
    if busy: return
    busy = True
    open("/tmp/state.tmp", "w").write("%d %s" % (n, hashlib.sha256(table).hexdigest())); os.rename("/tmp/state.tmp", "/tmp/state")
    busy = False
def mutate(*_):
    table[0:8] = b"MUTATED!"
signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, mutate)
while True:
    n += 1
    open("/tmp/count.tmp", "w").write(str(n)); os.rename("/tmp/count.tmp", "/tmp/count")
    time.sleep(0.05)
' >/tmp/worker.log 2>&1 &"#;

/// Starts the worker and waits until its signal handlers are in place.
async fn start_worker(api: &Api, sbx: &Value) {
    api.sh(sbx, WORKER).await;
    for _ in 0..200 {
        if api.sh(sbx, "test -e /tmp/count && echo ok").await.trim() == "ok" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("worker did not start in {}", id(sbx));
}

/// The worker's state; the signal is re-sent on every poll (see restart.rs: command
/// lines read as empty while a lazy restore fills memory in).
async fn state(api: &Api, sbx: &Value) -> (u64, String) {
    api.sh(sbx, "rm -f /tmp/state").await;
    for _ in 0..200 {
        let s = api
            .sh(sbx, "test -e /tmp/state || pkill -USR1 -f 'import hashli[b]'; sleep 0.05; cat /tmp/state 2>/dev/null")
            .await;
        if let Some((n, h)) = s.trim().split_once(' ') {
            return (n.parse().unwrap(), h.to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ps = api.sh(sbx, "ps -eo stat,pid,args | cut -c1-80; ls -la /tmp; cat /tmp/worker.log").await;
    panic!("worker did not answer in {}:\n{ps}", id(sbx));
}

async fn snapshot(api: &Api, id: &str, body: Value) -> Value {
    let (st, v) = api.call(reqwest::Method::POST, &format!("/sandboxes/{id}/snapshots"), Some(body)).await;
    assert_eq!(st, 201, "snapshot: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_sandboxes_from_one_snapshot_continue_independently() {
    let s = Server::start("snap");
    let api = std::sync::Arc::new(Api::new(&s));
    let src = api.create(json!({"timeout": 600})).await;
    start_worker(&api, &src).await;
    api.sh(&src, "echo before > /home/user/before.txt").await;
    let (n0, table) = state(&api, &src).await;
    let snap = snapshot(&api, &id(&src), json!({"name": "warm"})).await;
    let snap_id = snap["snapshotID"].as_str().unwrap().to_string();
    assert_eq!(snap["names"], json!(["stasis/warm:default"]));
    // The source kept running through the capture.
    let (n1, _) = state(&api, &src).await;
    assert!(n1 > n0, "source counter stopped: {n0} -> {n1}");
    api.sh(&src, "echo after > /home/user/after.txt").await;

    // Five at once, by snapshot id (and one more by name below).
    let creates: Vec<_> = (0..5)
        .map(|_| {
            let (api, t) = (api.clone(), snap_id.clone());
            tokio::spawn(async move { api.create(json!({"templateID": t, "timeout": 600})).await })
        })
        .collect();
    let mut copies = Vec::new();
    for c in creates {
        copies.push(c.await.unwrap());
    }
    for c in &copies {
        assert_eq!(c["templateID"], snap_id.as_str());
        let (n, h) = state(&api, c).await;
        assert_eq!(h, table, "the 64 MiB table is in every copy");
        assert!(n >= n0, "the counter continues from the snapshot's value ({n0}), got {n}");
        assert_eq!(api.sh(c, "cat /home/user/before.txt").await.trim(), "before");
        assert_eq!(
            api.sh(c, "test -e /home/user/after.txt && echo yes || echo no").await.trim(),
            "no",
            "a file written after the snapshot leaked into a copy"
        );
    }
    // Changes in one copy are seen nowhere else.
    api.sh(&copies[0], "echo mine > /home/user/only-0.txt").await;
    let mut mutated = false;
    for _ in 0..100 {
        api.sh(&copies[0], "pkill -USR2 -f 'import hashli[b]'").await;
        if state(&api, &copies[0]).await.1 != table {
            mutated = true;
            break;
        }
    }
    assert!(mutated, "mutation did not happen");
    for other in copies.iter().skip(1).chain(std::iter::once(&src)) {
        assert_eq!(state(&api, other).await.1, table, "a change in copy 0 was seen in {}", id(other));
        assert_eq!(api.sh(other, "test -e /home/user/only-0.txt && echo yes || echo no").await.trim(), "no");
    }
    // Counters run on their own.
    let a = state(&api, &copies[1]).await.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(state(&api, &copies[1]).await.0 > a);

    // By name too; then kill the source and delete the snapshot: copies keep working,
    // including through a pause and resume.
    let by_name = api.create(json!({"templateID": "warm", "timeout": 600})).await;
    assert_eq!(state(&api, &by_name).await.1, table);
    assert_eq!(api.kill(&id(&src)).await, 204);
    let (st, _) = api
        .call(reqwest::Method::DELETE, &format!("/templates/{}", snap_id.replace('/', "%2F").replace(':', "%3A")), None)
        .await;
    assert_eq!(st, 204);
    let (st, v) = api.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"templateID": snap_id}))).await;
    assert_eq!(st, 404, "a deleted snapshot cannot seed new sandboxes: {v}");
    for c in copies.iter().chain(std::iter::once(&by_name)) {
        assert_eq!(api.sh(c, "cat /home/user/before.txt").await.trim(), "before");
        assert_eq!(api.pause(&id(c)).await, 204);
        let (st, body) = api.connect(&id(c), json!({})).await;
        assert_eq!(st, 201, "resume of a copy: {body}");
        assert!(state(&api, c).await.0 > n0);
    }
    for c in copies.iter().chain(std::iter::once(&by_name)) {
        api.kill(&id(c)).await;
    }
    // Once nothing uses it, the deleted snapshot's files are gone.
    let left: Vec<_> =
        std::fs::read_dir(s.host.data_dir.join("snapshots")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "snapshot files left after their last user died: {left:?}");
}

#[tokio::test]
async fn fork_and_filesystem_only_snapshots_and_listing() {
    let s = Server::start("fork");
    let api = Api::new(&s);
    let src = api.create(json!({"timeout": 600, "metadata": {"app": "fork-test"}})).await;
    start_worker(&api, &src).await;
    let (n0, table) = state(&api, &src).await;
    let (st, forks) = api
        .call(
            reqwest::Method::POST,
            &format!("/sandboxes/{}/fork", id(&src)),
            Some(json!({"count": 3, "timeout": 120})),
        )
        .await;
    assert_eq!(st, 201, "{forks}");
    let forks: Vec<Value> = forks.as_array().unwrap().iter().map(|f| f["sandbox"].clone()).collect();
    assert_eq!(forks.len(), 3);
    for f in &forks {
        assert!(f["sandboxID"].is_string(), "fork failed: {f}");
        assert_ne!(f["envdAccessToken"], src["envdAccessToken"], "each fork has its own access token");
        let (n, h) = state(&api, f).await;
        assert!(n >= n0);
        assert_eq!(h, table);
        let (_, info) = api.info(&id(f)).await;
        assert_eq!(info["metadata"]["app"], "fork-test");
    }
    assert_eq!(api.state(&id(&src)).await.as_deref(), Some("running"), "the source keeps running");
    // The source's token no longer opens a fork.
    let resp = reqwest::Client::new()
        .get(format!("{}/health", s.url))
        .header("e2b-sandbox-id", id(&forks[0]))
        .header("x-access-token", src["envdAccessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Filesystem-only: files yes, processes no (a fresh boot).
    api.sh(&src, "echo kept > /home/user/fs.txt").await;
    let fs_snap = snapshot(&api, &id(&src), json!({"memory": false})).await;
    let fresh = api.create(json!({"templateID": fs_snap["snapshotID"]})).await;
    assert_eq!(api.sh(&fresh, "cat /home/user/fs.txt").await.trim(), "kept");
    assert_eq!(
        api.sh(&fresh, "pgrep -f 'import hashli[b]' || echo none").await.trim(),
        "none",
        "a filesystem-only copy runs no process of the source"
    );

    // Listing, filtered by source, paginated.
    let second = snapshot(&api, &id(&src), json!({"name": "second"})).await;
    let (st, all) = api.call(reqwest::Method::GET, &format!("/snapshots?sandboxID={}", id(&src)), None).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|s| s["snapshotID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{all}");
    assert!(ids.contains(&second["snapshotID"].as_str().unwrap()));
    let resp = reqwest::Client::new()
        .get(format!("{}/snapshots?limit=1", s.url))
        .header("x-api-key", common::API_KEY)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-next-token").is_some(), "a first page of 1 of 2 has a next token");
    let (st, one) = api.call(reqwest::Method::GET, "/snapshots?name=second", None).await;
    assert_eq!((st, one.as_array().unwrap().len()), (200, 1));
    let (st, _) = api.call(reqwest::Method::DELETE, "/templates/nosuchsnapshot", None).await;
    assert_eq!(st, 404);
    for sbx in forks.iter().chain([&src, &fresh]) {
        api.kill(&id(sbx)).await;
    }
}

#[test]
fn cli_takes_lists_uses_and_removes_snapshots() {
    let s = Server::start("snapcli");
    let id = s.cli(&["create"]).stdout.trim().to_string();
    assert_eq!(s.cli(&["exec", &id, "echo from-cli > /home/user/f.txt"]).code, 0);
    let out = s.command(&["snapshot", "create", &id, "--name", "clisnap"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "stasis/clisnap:default");
    let out = s.command(&["snapshot", "ls", "--sandbox", &id]);
    assert!(out.stdout.contains("stasis/clisnap:default"), "{}", out.stdout);
    let copy = s.cli(&["create", "--from", "clisnap"]);
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    let copy = copy.stdout.trim().to_string();
    assert_eq!(s.cli(&["exec", &copy, "cat /home/user/f.txt"]).stdout.trim(), "from-cli");
    assert_eq!(s.command(&["snapshot", "rm", "stasis/clisnap:default"]).code, 0);
    let out = s.command(&["snapshot", "rm", "clisnap"]);
    assert_eq!(out.code, 3, "removing it again: not found: {}", out.stderr);
    assert!(!s.command(&["snapshot", "ls"]).stdout.contains("clisnap"));
    assert_eq!(
        s.cli(&["exec", &copy, "cat /home/user/f.txt"]).stdout.trim(),
        "from-cli",
        "the copy outlives the snapshot"
    );
    for sbx in [&id, &copy] {
        assert_eq!(s.cli(&["kill", sbx]).code, 0);
    }
}
