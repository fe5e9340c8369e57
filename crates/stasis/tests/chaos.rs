//! Issue 5: 20 sandboxes hit by random concurrent connect / pause / kill / timeout calls
//! for 30 s: only documented statuses, and afterwards no leaked process, mount, cgroup
//! or file.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{id, Api};
use common::{cgroup_dirs, mounts_under, processes_inside, Rng, Server};
use serde_json::json;

const SANDBOXES: usize = 20;
const WORKERS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_concurrent_operations_leave_nothing_behind() {
    let s = Server::start("chaos");
    let api = Arc::new(Api::new(&s));
    let mut ids = Vec::new();
    for i in 0..SANDBOXES {
        let body = if i % 2 == 0 { json!({"timeout": 120, "autoPause": true}) } else { json!({"timeout": 120}) };
        ids.push(id(&api.create(body).await));
    }
    // Slots: a killed sandbox is replaced by a new one, so all 20 stay in play.
    let ids = Arc::new(std::sync::Mutex::new(ids));
    let all_ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (api, ids, ops, all_ids) = (api.clone(), ids.clone(), ops.clone(), all_ids.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) * 0x1234_5678_9ABC));
                let mut bad = Vec::new();
                while Instant::now() < deadline {
                    let slot = rng.below(SANDBOXES as u64) as usize;
                    let id = ids.lock().unwrap()[slot].clone();
                    let id = &id;
                    let (what, status) = match rng.below(12) {
                        0..=2 => {
                            let (st, body) = api.connect(id, json!({"timeout": 1 + rng.below(20)})).await;
                            if st >= 500 {
                                bad.push(format!("connect {id}: {body}"));
                            }
                            ("connect", st)
                        }
                        3..=5 => ("pause", api.pause(id).await),
                        6 => {
                            let st = api.kill(id).await;
                            if st == 204 {
                                let (cs, v) = api
                                    .call(
                                        reqwest::Method::POST,
                                        "/v2/sandboxes",
                                        Some(json!({"timeout": 1 + rng.below(30), "autoPause": rng.below(2) == 0})),
                                    )
                                    .await;
                                if cs == 201 {
                                    let new = v["sandboxID"].as_str().unwrap().to_string();
                                    all_ids.lock().unwrap().push(new.clone());
                                    ids.lock().unwrap()[slot] = new;
                                } else {
                                    bad.push(format!("create: {cs} {v}"));
                                }
                            }
                            ("kill", st)
                        }
                        7..=9 => {
                            let body = json!({"timeout": 1 + rng.below(3)});
                            (
                                "timeout",
                                api.call(reqwest::Method::POST, &format!("/sandboxes/{id}/timeout"), Some(body))
                                    .await
                                    .0,
                            )
                        }
                        _ => ("info", api.info(id).await.0),
                    };
                    ops.fetch_add(1, Ordering::Relaxed);
                    // Documented answers: success, not found (killed), conflict (paused, busy).
                    if ![200, 201, 204, 404, 409].contains(&status) {
                        bad.push(format!("{what} {id}: {status}"));
                    }
                }
                bad
            })
        })
        .collect();
    let mut bad = Vec::new();
    for w in workers {
        bad.extend(w.await.unwrap());
    }
    assert!(bad.is_empty(), "undocumented answers: {bad:?}\nserver log:\n{}", s.log());
    assert!(ops.load(Ordering::Relaxed) > 50, "too few operations ran: {}", ops.load(Ordering::Relaxed));

    let mut every: Vec<String> = ids.lock().unwrap().clone();
    every.extend(all_ids.lock().unwrap().iter().cloned());
    for id in every.iter() {
        let st = api.kill(id).await;
        assert!(st == 204 || st == 404, "final kill {id}: {st}");
    }
    // Nothing leaked: files, mounts, cgroups, processes.
    let left: Vec<_> =
        std::fs::read_dir(s.host.data_dir.join("sandboxes")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "sandbox dirs left: {left:?}");
    assert!(mounts_under(&s.host.data_dir).is_empty(), "mounts left: {:?}", mounts_under(&s.host.data_dir));
    for id in every.iter() {
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "cgroup left: {}", d.display());
        }
    }
    assert!(processes_inside(&s.host.data_dir).is_empty(), "processes left: {:?}", processes_inside(&s.host.data_dir));
    let (_, list) = api.call(reqwest::Method::GET, "/v2/sandboxes", None).await;
    assert_eq!(list, json!([]));
    assert!(!s.log().contains("panicked"), "{}", s.log());
    eprintln!("chaos: {} operations in {:?}", ops.load(Ordering::Relaxed), RUN_FOR);
}
