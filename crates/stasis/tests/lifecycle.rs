//! Issue 5: lifecycle rules with real sandboxes behind a real `stasis serve`: timeouts,
//! auto-pause, auto-resume, idle timeout, serialised operations, restarts and crashes.

mod common;

use std::time::Duration;

use common::api::{envd_run, id, wait_state, Api};
use common::Server;
use serde_json::json;

#[tokio::test]
async fn timeout_kills_or_pauses_and_the_policy_survives_resume() {
    let s = Server::start("lcto");
    let api = Api::new(&s);
    let killed = api.create(json!({"timeout": 2})).await;
    let paused = api.create(json!({"timeout": 2, "autoPause": true})).await;
    let v2 = api.create(json!({"timeout": 2, "lifecycle": {"onTimeout": "pause"}})).await;
    wait_state(&api, &id(&killed), None, Duration::from_secs(10)).await;
    wait_state(&api, &id(&paused), Some("paused"), Duration::from_secs(10)).await;
    wait_state(&api, &id(&v2), Some("paused"), Duration::from_secs(10)).await;
    assert!(!s.host.sandbox_dir(&id(&killed)).exists(), "a timed-out sandbox leaves no files");

    // Resumed with a new 2 s timeout: it pauses again at its next end.
    let (st, _) = api.connect(&id(&paused), json!({"timeout": 2})).await;
    assert_eq!(st, 201);
    assert_eq!(api.state(&id(&paused)).await.as_deref(), Some("running"));
    wait_state(&api, &id(&paused), Some("paused"), Duration::from_secs(10)).await;
    api.kill(&id(&paused)).await;
    api.kill(&id(&v2)).await;
}

#[tokio::test]
async fn paused_time_does_not_count_and_connect_never_shortens() {
    let s = Server::start("lcpt");
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 4, "autoPause": true})).await;
    let id = id(&sbx);
    assert_eq!(api.pause(&id).await, 204);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The 4 s timeout applies from the resume: 5 s paused did not use it up.
    assert_eq!(api.connect(&id, json!({})).await.0, 201);
    let left = api.secs_left(&id).await;
    assert!(left > 2.5 && left <= 4.1, "after resume the end is 4 s away, got {left}");

    // Connect with a timeout extends but never shortens a running sandbox.
    assert_eq!(api.connect(&id, json!({"timeout": 100})).await.0, 200);
    let long = api.secs_left(&id).await;
    assert!(long > 95.0, "{long}");
    assert_eq!(api.connect(&id, json!({"timeout": 5})).await.0, 200);
    assert!(api.secs_left(&id).await > 90.0, "connect must not shorten");
    // setTimeout may shorten.
    let (st, _) =
        api.call(reqwest::Method::POST, &format!("/sandboxes/{id}/timeout"), Some(json!({"timeout": 30}))).await;
    assert_eq!(st, 204);
    let left = api.secs_left(&id).await;
    assert!(left > 25.0 && left <= 30.5, "{left}");
    api.kill(&id).await;
}

#[tokio::test]
async fn auto_resume_on_proxy_traffic_only_when_asked() {
    let s = Server::start("lcar");
    let api = Api::new(&s);
    let auto = api.create(json!({"timeout": 60, "autoResume": {"enabled": true}})).await;
    let legacy = api.create(json!({"timeout": 60, "metadata": {"auto_resume": "true"}})).await;
    let plain = api.create(json!({"timeout": 60})).await;
    for sbx in [&auto, &legacy, &plain] {
        api.sh(sbx, "echo before > /tmp/mark").await;
        assert_eq!(api.pause(&id(sbx)).await, 204);
    }
    // Auto-resume: the request resumes it and is then served, with its files.
    assert_eq!(api.sh(&auto, "cat /tmp/mark").await.trim(), "before");
    assert_eq!(api.state(&id(&auto)).await.as_deref(), Some("running"));
    // After an auto-resume the sandbox lives at least 5 minutes.
    assert!(api.secs_left(&id(&auto)).await > 290.0);
    assert_eq!(api.sh(&legacy, "cat /tmp/mark").await.trim(), "before");

    // Without auto-resume: 502, still paused.
    let resp = reqwest::Client::new()
        .get(format!("{}/health", s.url))
        .header("e2b-sandbox-id", id(&plain))
        .header("x-access-token", plain["envdAccessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(api.state(&id(&plain)).await.as_deref(), Some("paused"));
    // And a request without the token never resumes anything.
    assert_eq!(api.pause(&id(&auto)).await, 204);
    let resp = reqwest::Client::new()
        .get(format!("{}/health", s.url))
        .header("e2b-sandbox-id", id(&auto))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(api.state(&id(&auto)).await.as_deref(), Some("paused"));
    for sbx in [&auto, &legacy, &plain] {
        api.kill(&id(sbx)).await;
    }
}

#[tokio::test]
async fn idle_timeout_moves_the_end_while_no_client_is_connected() {
    let s = Server::start("lcid");
    let api = Api::new(&s);
    let (st, body) =
        api.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"metadata": {"idle_timeout": "30"}}))).await;
    assert_eq!(st, 400, "idle_timeout below 60 s is refused: {body}");
    let sbx = api.create(json!({"timeout": 3000, "metadata": {"idle_timeout": "60"}})).await;
    let id = id(&sbx);
    let idle_left = api.secs_left(&id).await;
    assert!(idle_left > 55.0 && idle_left <= 60.5, "no client: end = idle start + 60 s, got {idle_left}");
    // While a client connection is open (a command streaming), the normal end applies.
    let (url, token, sid) = (s.url.clone(), sbx["envdAccessToken"].as_str().unwrap().to_string(), id.clone());
    let streaming = tokio::spawn(async move { envd_run(&url, &sid, &token, "sleep 3; echo done").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy_left = api.secs_left(&id).await;
    assert!(busy_left > 2900.0, "with a client connected the end is the normal one, got {busy_left}");
    assert_eq!(streaming.await.unwrap().trim(), "done");
    let after = api.secs_left(&id).await;
    assert!(after > 55.0 && after <= 60.5, "idle again: end = now + 60 s, got {after}");
    api.kill(&id).await;
}

#[tokio::test]
async fn concurrent_operations_on_one_sandbox_end_in_defined_states() {
    let s = Server::start("lccc");
    let api = std::sync::Arc::new(Api::new(&s));
    for round in 0..3 {
        let sbx = api.create(json!({"timeout": 120})).await;
        let id = id(&sbx);
        let ops = (0..6).map(|i| {
            let (api, id) = (api.clone(), id.clone());
            tokio::spawn(async move {
                match (i + round) % 3 {
                    0 => api.pause(&id).await,
                    1 => api.connect(&id, json!({"timeout": 60})).await.0,
                    _ => api.call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None).await.0,
                }
            })
        });
        for op in ops {
            let st = op.await.unwrap();
            assert!([200, 201, 204, 409].contains(&st), "round {round}: unexpected status {st}");
        }
        let state = api.state(&id).await.expect("sandbox still exists");
        assert!(state == "running" || state == "paused", "{state}");
        // Kill racing a pause: one of them wins cleanly, the sandbox ends up gone.
        let (a, b) = tokio::join!(api.pause(&id), api.kill(&id));
        assert!([204, 409, 404].contains(&a) && [204, 409].contains(&b), "pause {a}, kill {b}");
        if b != 204 {
            assert_eq!(api.kill(&id).await, 204);
        }
        assert_eq!(api.state(&id).await, None);
        assert!(!s.host.sandbox_dir(&id).exists());
    }
}

#[tokio::test]
async fn paused_sandboxes_are_kept_unless_the_operator_sets_a_retention() {
    // Default: no expiry. A paused sandbox outlives any timeout.
    let s = Server::start("lcret0");
    let api = Api::new(&s);
    let kept = api.create(json!({"timeout": 1, "autoPause": true})).await;
    wait_state(&api, &id(&kept), Some("paused"), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.state(&id(&kept)).await.as_deref(), Some("paused"), "paused sandboxes have no expiry by default");
    api.kill(&id(&kept)).await;
    drop(s);

    // With --paused-retention, a sandbox paused longer than that is killed.
    let s = Server::start_on(common::Host::new("lcret"), &["--paused-retention", "2s"]);
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300})).await;
    assert_eq!(api.pause(&id(&sbx)).await, 204);
    wait_state(&api, &id(&sbx), None, Duration::from_secs(15)).await;
    // The row goes first (killing is not listed), the files right after.
    common::wait_for("a retired sandbox's files to go", || !s.host.sandbox_dir(&id(&sbx)).exists());
}

#[tokio::test]
async fn metrics_report_cpu_memory_and_disk_from_cgroups() {
    let s = Server::start("lcmet");
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 120, "memoryMB": 768})).await;
    api.sh(&sbx, "head -c 20000000 /dev/urandom > /home/user/blob").await;
    let (st, m) = api.call(reqwest::Method::GET, &format!("/sandboxes/{}/metrics", id(&sbx)), None).await;
    assert_eq!(st, 200, "{m}");
    let m = &m[0];
    for k in [
        "timestamp",
        "timestampUnix",
        "cpuCount",
        "cpuUsedPct",
        "memUsed",
        "memTotal",
        "memCache",
        "diskUsed",
        "diskTotal",
    ] {
        assert!(!m[k].is_null(), "metric field {k} missing: {m}");
    }
    assert_eq!(m["memTotal"].as_u64(), Some(768 << 20));
    assert!(m["memUsed"].as_u64().unwrap() > 0);
    assert!(m["diskUsed"].as_u64().unwrap() >= 20_000_000, "the 20 MB file counts: {m}");
    assert_eq!(m["diskTotal"].as_u64(), Some(4096 << 20));
    // Paused: no metrics (nothing runs).
    assert_eq!(api.pause(&id(&sbx)).await, 204);
    let (st, m) = api.call(reqwest::Method::GET, &format!("/sandboxes/{}/metrics", id(&sbx)), None).await;
    assert_eq!((st, m), (200, json!([])));
    api.kill(&id(&sbx)).await;
}
