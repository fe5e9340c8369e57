//! Issue 5: `stasis serve` restarting (crash, upgrade, SIGKILL mid-pause) loses nothing:
//! paused sandboxes stay paused, running ones keep running (re-adopted), and a pause cut
//! short ends consistent and resumable with its memory.

mod common;

use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};

/// A python3 process holding a random value (and optionally `mib` MiB of touched memory);
/// SIGUSR1 makes it write the value to /tmp/pyval.
fn pyvar_cmd(mib: u32) -> String {
    format!(
        r#"nohup python3 -c '
import os, random, signal, time
ballast = b"x" * ({mib} << 20)
v = random.getrandbits(62)
open("/tmp/py-initial", "w").write(str(v))
def dump(*_):
    open("/tmp/pyval.tmp", "w").write(str(v)); os.rename("/tmp/pyval.tmp", "/tmp/pyval")
signal.signal(signal.SIGUSR1, dump)
while True: time.sleep(1)
' >/dev/null 2>&1 &"#
    )
}

async fn start_pyvar(api: &Api, sbx: &Value, mib: u32) -> String {
    api.sh(sbx, &pyvar_cmd(mib)).await;
    for _ in 0..200 {
        let v = api.sh(sbx, "cat /tmp/py-initial 2>/dev/null").await;
        if v.trim().len() > 3 {
            return v.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("python never started");
}

/// Asks the python process for its value. The signal is re-sent on every poll: right
/// after a lazy restore, another process's command line can read as empty until its
/// pages are in, so one `pkill -f` may match nothing.
async fn pyvar_now(api: &Api, sbx: &Value) -> String {
    api.sh(sbx, "rm -f /tmp/pyval").await;
    for _ in 0..200 {
        let v = api.sh(sbx, "pkill -USR1 -f 'random.getrandbit[s]'; sleep 0.05; cat /tmp/pyval 2>/dev/null").await;
        if v.trim().len() > 3 {
            return v.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("python did not answer");
}

#[tokio::test]
async fn a_crashed_server_readopts_running_sandboxes_and_keeps_paused_ones() {
    let s = Server::start("rsx");
    let api = Api::new(&s);
    let running = api.create(json!({"timeout": 600})).await;
    let paused = api.create(json!({"timeout": 600})).await;
    let run_val = start_pyvar(&api, &running, 0).await;
    let run_pid = api.sh(&running, "pgrep -f 'random.getrandbit[s]'").await;
    let paused_val = start_pyvar(&api, &paused, 0).await;
    assert_eq!(api.pause(&id(&paused)).await, 204);

    let host = s.crash();
    let s = Server::start_on(host, &[]);
    let api = Api::new(&s);
    // Re-adopted: the same process, same memory, never restarted.
    assert_eq!(api.state(&id(&running)).await.as_deref(), Some("running"));
    assert_eq!(
        api.sh(&running, "pgrep -f 'random.getrandbit[s]'").await,
        run_pid,
        "the running sandbox's process was restarted"
    );
    assert_eq!(pyvar_now(&api, &running).await, run_val);
    // Paused stays paused, and resumes with its memory.
    assert_eq!(api.state(&id(&paused)).await.as_deref(), Some("paused"));
    assert_eq!(api.connect(&id(&paused), json!({})).await.0, 201);
    assert_eq!(pyvar_now(&api, &paused).await, paused_val);
    api.kill(&id(&running)).await;
    api.kill(&id(&paused)).await;
}

#[tokio::test]
async fn sigterm_with_pause_on_shutdown_pauses_all_and_the_next_start_resumes_them() {
    let s = Server::start_on(common::Host::new("rsp"), &["--pause-on-shutdown"]);
    let api = Api::new(&s);
    let a = api.create(json!({"timeout": 600})).await;
    let b = api.create(json!({"timeout": 600})).await;
    let c = api.create(json!({"timeout": 600})).await;
    let (va, vb) = (start_pyvar(&api, &a, 0).await, start_pyvar(&api, &b, 0).await);
    assert_eq!(api.pause(&id(&c)).await, 204, "c was paused by the user: it must stay paused");

    let host = s.terminate();
    // Between the two runs every sandbox is on disk, none runs.
    for sbx in [&a, &b, &c] {
        let rec: Value =
            serde_json::from_slice(&std::fs::read(host.sandbox_dir(&id(sbx)).join("record.json")).unwrap()).unwrap();
        assert_eq!(rec["state"], "paused", "{}", id(sbx));
    }
    let s = Server::start_on(host, &[]);
    let api = Api::new(&s);
    assert_eq!(api.state(&id(&a)).await.as_deref(), Some("running"));
    assert_eq!(api.state(&id(&b)).await.as_deref(), Some("running"));
    assert_eq!(api.state(&id(&c)).await.as_deref(), Some("paused"));
    assert_eq!(pyvar_now(&api, &a).await, va);
    assert_eq!(pyvar_now(&api, &b).await, vb);
    for sbx in [&a, &b, &c] {
        api.kill(&id(sbx)).await;
    }
}

#[tokio::test]
async fn sigkill_during_a_pause_leaves_a_consistent_resumable_sandbox() {
    // Several kill points: early in the dump, mid-dump, around the commit.
    for (round, delay_ms) in [40u64, 150, 400].into_iter().enumerate() {
        let s = Server::start("rsk");
        let api = Api::new(&s);
        let sbx = api.create(json!({"timeout": 600})).await;
        let val = start_pyvar(&api, &sbx, 256).await;
        let (url, sid) = (s.url.clone(), id(&sbx));
        let pause = tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{url}/sandboxes/{sid}/pause"))
                .header("x-api-key", common::API_KEY)
                .send()
                .await;
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let host = s.crash();
        let _ = pause.await;

        let s = Server::start_on(host, &[]);
        let api = Api::new(&s);
        let state = api.state(&id(&sbx)).await;
        assert!(matches!(state.as_deref(), Some("running") | Some("paused")), "round {round}: state {state:?}");
        if state.as_deref() == Some("paused") {
            assert_eq!(api.connect(&id(&sbx), json!({})).await.0, 201, "round {round}: resume after the crash");
        }
        assert_eq!(
            pyvar_now(&api, &sbx).await,
            val,
            "round {round} (killed {delay_ms} ms into the pause): memory lost"
        );
        // And it still pauses and resumes normally.
        assert_eq!(api.pause(&id(&sbx)).await, 204);
        assert_eq!(api.connect(&id(&sbx), json!({})).await.0, 201);
        assert_eq!(pyvar_now(&api, &sbx).await, val);
        api.kill(&id(&sbx)).await;
    }
}
