//! Issue 13, item 8: sandbox disks are sparse, so the host's filesystem is overcommitted
//! by design; a disk reserve keeps what runs safe. Creates, pauses and snapshots that
//! would cut into it are refused with 507 and a message that says so, and a sandbox
//! whose pause was refused keeps running. See docs/security.md.

mod common;

use common::api::{id, Api};
use common::Server;
use serde_json::json;

/// Bytes free on the filesystem of `dir`, as `df` sees them.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_would_cut_into_the_disk_reserve_is_refused_and_running_sandboxes_stay() {
    let s = Server::start("reserve");
    let api = Api::new(&s);
    let sbx = api.create(json!({"templateID": "base", "timeout": 600})).await;
    api.sh(&sbx, "echo before > /home/user/f").await;
    let host = s.terminate();

    // Restarted with a reserve larger than what is free: nothing new may be written.
    let reserve = (free_bytes(&host.data_dir) + (10 << 30)).to_string();
    let s = Server::start_on(host, &["--disk-reserve", &reserve]);
    let api = Api::new(&s);
    let (status, body) = api.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"templateID": "base"}))).await;
    assert_eq!(status, 507, "create: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk reserve") && message.contains("create"), "{body}");

    let (status, body) = api.call(reqwest::Method::POST, &format!("/sandboxes/{}/pause", id(&sbx)), None).await;
    assert_eq!(status, 507, "pause: {body}");
    let (status, body) =
        api.call(reqwest::Method::POST, &format!("/sandboxes/{}/snapshots", id(&sbx)), Some(json!({}))).await;
    assert_eq!(status, 507, "snapshot: {body}");
    // Refused, not broken: it runs, with its files, and nothing was left behind.
    assert_eq!(api.state(&id(&sbx)).await.as_deref(), Some("running"));
    assert_eq!(api.sh(&sbx, "cat /home/user/f").await.trim(), "before");
    let snapshots = std::fs::read_dir(s.host.data_dir.join("snapshots")).unwrap().count();
    assert_eq!(snapshots, 0, "a refused snapshot left files");
    let (_, list) = api.call(reqwest::Method::GET, "/sandboxes", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "a refused create left a sandbox: {list}");

    // With room again, the same pause works.
    let host = s.terminate();
    let s = Server::start_on(host, &["--disk-reserve", "0"]);
    let api = Api::new(&s);
    assert_eq!(api.pause(&id(&sbx)).await, 204);
    api.kill(&id(&sbx)).await;
}
