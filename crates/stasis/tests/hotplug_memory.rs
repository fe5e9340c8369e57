//! Novita's `hotplugMemory`: a running sandbox's memory limit raised in place. A program
//! that needed more than the sandbox had runs after the raise, without a restart, and the
//! new limit is the one a resume restores; lowering is refused.

mod common;

use common::api::{id, Api};
use common::Server;
use serde_json::json;

/// Touches `mib` MiB (a string of that size is written, not just reserved).
fn allocate(mib: u64) -> String {
    format!("python3 -c \"s = 'x' * ({mib} << 20); print('allocated', len(s) >> 20)\" 2>/dev/null || echo killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_memory_for_a_running_sandbox_and_after_its_resume() {
    let s = Server::start("hotplug");
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300, "memoryMB": 256})).await;
    let sid = id(&sbx);
    api.sh(&sbx, "echo started > /tmp/pid-of-the-shell").await;
    let need = 384;
    assert_eq!(api.sh(&sbx, &allocate(need)).await.trim(), "killed", "256 MiB cannot hold {need} MiB");

    let hotplug = format!("/sandboxes/{sid}/hotplug-memory");
    let (status, body) = api.call(reqwest::Method::POST, &hotplug, Some(json!({"requested_size_mib": 768}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(api.sh(&sbx, &allocate(need)).await.trim(), format!("allocated {need}"), "after the raise");
    assert_eq!(api.info(&sid).await.1["memoryMB"], 768);
    assert_eq!(api.sh(&sbx, "cat /tmp/pid-of-the-shell").await.trim(), "started", "the same sandbox, not a new one");

    assert_eq!(api.pause(&sid).await, 204);
    assert_eq!(api.connect(&sid, json!({})).await.0, 201);
    assert_eq!(api.sh(&sbx, &allocate(need)).await.trim(), format!("allocated {need}"), "the resume keeps the raise");

    let (status, body) = api.call(reqwest::Method::POST, &hotplug, Some(json!({"requested_size_mib": 512}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("memory can only grow"), "{body}");
    assert_eq!(api.info(&sid).await.1["memoryMB"], 768);
    api.kill(&sid).await;
}
