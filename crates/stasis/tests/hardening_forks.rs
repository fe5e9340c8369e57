//! Issue 13, item 4: copies made from one memory snapshot share what was in memory at
//! the snapshot, nothing more. What Stasis controls is each copy's own: its access token,
//! its environment, its boot id; the kernel's RNG is not in a checkpoint, so reads of
//! `/dev/urandom` (and `getrandom`) differ between copies. A user-space generator seeded
//! before the snapshot is cloned with its process: the test shows it, and
//! docs/security.md says what users must reseed.

mod common;

use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};

/// Python's `random`, seeded at start, and a fresh `os.urandom` read, on SIGUSR1.
const RNG_WORKER: &str = r#"nohup python3 -c '
import random, os, signal, time
def dump(*_):
    open("/tmp/rng.tmp", "w").write("%d %s" % (random.getrandbits(64), os.urandom(16).hex()))
    os.rename("/tmp/rng.tmp", "/tmp/rng")
signal.signal(signal.SIGUSR1, dump)
open("/tmp/rng-ready", "w").close()
while True:
    time.sleep(1)
' >/dev/null 2>&1 &"#;

/// (python's next `getrandbits(64)`, 16 bytes of `os.urandom`) in the worker of `sbx`.
async fn draw(api: &Api, sbx: &Value) -> (String, String) {
    for _ in 0..200 {
        let out = api
            .sh(sbx, "test -e /tmp/rng || pkill -USR1 -f 'getrandbit[s]'; sleep 0.05; cat /tmp/rng 2>/dev/null")
            .await;
        if let Some((a, b)) = out.trim().split_once(' ') {
            return (a.to_string(), b.to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the rng worker did not answer in {}", id(sbx));
}

async fn boot_id(api: &Api, sbx: &Value) -> String {
    api.sh(sbx, "cat /proc/sys/kernel/random/boot_id").await.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_snapshot_get_their_own_identity_and_kernel_randomness() {
    let s = Server::start("forks");
    let api = Api::new(&s);
    let src = api.create(json!({"timeout": 300})).await;
    api.sh(&src, RNG_WORKER).await;
    for _ in 0..100 {
        if api.sh(&src, "test -e /tmp/rng-ready && echo ok").await.trim() == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, snap) =
        api.call(reqwest::Method::POST, &format!("/sandboxes/{}/snapshots", id(&src)), Some(json!({}))).await;
    assert_eq!(st, 201, "{snap}");
    let snap_id = snap["snapshotID"].as_str().unwrap().to_string();
    let a = api.create(json!({"templateID": snap_id, "timeout": 300})).await;
    let b = api.create(json!({"templateID": snap_id, "timeout": 300})).await;

    let ids = [boot_id(&api, &src).await, boot_id(&api, &a).await, boot_id(&api, &b).await];
    eprintln!("boot ids: {ids:?}");
    assert!(ids.iter().all(|i| i.len() == 36), "{ids:?}");
    assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2], "copies share a boot id: {ids:?}");
    assert_ne!(a["envdAccessToken"], b["envdAccessToken"]);
    assert_ne!(a["envdAccessToken"], src["envdAccessToken"]);

    let (draw_a, draw_b) = (draw(&api, &a).await, draw(&api, &b).await);
    eprintln!("copy a: {draw_a:?}\ncopy b: {draw_b:?}");
    assert_ne!(draw_a.1, draw_b.1, "os.urandom must differ between copies (the kernel's RNG is not cloned)");
    // What users must reseed: a generator in a process's memory is cloned with it.
    assert_eq!(draw_a.0, draw_b.0, "python's random, seeded before the snapshot, is the same in both copies");
    for sbx in [&src, &a, &b] {
        api.kill(&id(sbx)).await;
    }
}
