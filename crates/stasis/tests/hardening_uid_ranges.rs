//! Issue 13, item 5: every sandbox runs in a host id range of its own. Its user
//! namespace maps its ids to 65536 host ids no other sandbox has, so a file of one is
//! out of reach of the other's host ids, a pause and resume keeps the range, and a kill
//! frees it.
//!
//! Not achieved (ignored test below, evidence in docs/security.md): the kernel's
//! per-user counts (inotify instances) of one sandbox not starving another. They are
//! charged to the owner of the sandbox's user namespace, which must stay host root for
//! CRIU to checkpoint it on a host whose root lacks CAP_SYS_RESOURCE.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};

/// (in-sandbox first id, host first id, count) of the sandbox's `/proc/self/uid_map`.
async fn uid_map(api: &Api, sbx: &Value) -> (u32, u32, u32) {
    let out = api.sh(sbx, "cat /proc/self/uid_map").await;
    let f: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(f.len(), 3, "one mapping line: {out:?}");
    (f[0], f[1], f[2])
}

/// Whether host uid (and gid) `ids` can read `path`: `Ok` or the error `cat` reports.
fn read_as(ids: u32, path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("cat").arg(path).uid(ids).gid(ids).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn claim_file(base: u32) -> PathBuf {
    let dir = std::env::var_os("STASIS_ID_RANGES_DIR").map(PathBuf::from);
    dir.unwrap_or_else(|| PathBuf::from("/run/stasis/id-ranges")).join(base.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_run_in_ranges_of_their_own_kept_across_pause_and_freed_at_kill() {
    let s = Server::start("uidranges");
    let api = Api::new(&s);
    let a = api.create(json!({"timeout": 300})).await;
    let b = api.create(json!({"timeout": 300})).await;
    let (ma, mb) = (uid_map(&api, &a).await, uid_map(&api, &b).await);
    eprintln!("uid maps: {ma:?} {mb:?}");
    assert_eq!((ma.0, ma.2, mb.0, mb.2), (0, 65536, 0, 65536), "{ma:?} {mb:?}");
    assert!(ma.1 >= 200_000 && mb.1 >= 200_000, "above the legacy range: {ma:?} {mb:?}");
    assert!(ma.1.abs_diff(mb.1) >= 65536, "the ranges overlap: {ma:?} {mb:?}");

    // A file of a's user, private to it: readable by a's host ids, not by b's (the same
    // user, or root, of the other sandbox).
    let who = api.sh(&a, "umask 077; echo secret-of-a > /tmp/secret; id -u").await;
    let uid: u32 = who.trim().parse().unwrap();
    let file = s.host.data_dir.join("sandboxes").join(id(&a)).join("rootfs/tmp/secret");
    assert_eq!(read_as(ma.1 + uid, &file).as_deref(), Ok("secret-of-a"), "the path is reachable by a's own ids");
    for other in [mb.1 + uid, mb.1] {
        let e = read_as(other, &file).expect_err("b's host ids read a's file");
        assert!(e.contains("Permission denied"), "{other}: {e}");
    }

    // Paused and resumed: the same range.
    assert_eq!(api.pause(&id(&b)).await, 204, "pause; the server log:\n{}", s.log());
    let (st, _) = api.connect(&id(&b), json!({"timeout": 300})).await;
    assert!(st == 200 || st == 201, "resume: {st}");
    assert_eq!(uid_map(&api, &b).await, mb, "b resumed in another range");

    // Killed: its claim on the range is gone.
    let data_dir = s.host.data_dir.display().to_string();
    for (sbx, m) in [(&a, ma), (&b, mb)] {
        let claim = claim_file(m.1);
        let before = std::fs::read_to_string(&claim).unwrap_or_default();
        assert!(before.contains(&id(sbx)), "range {} is not claimed for {}: {before:?}", m.1, id(sbx));
        assert_eq!(api.kill(&id(sbx)).await, 204);
        let after = std::fs::read_to_string(&claim).unwrap_or_default();
        assert!(!after.contains(&data_dir) || !after.contains(&id(sbx)), "range {} still claimed: {after:?}", m.1);
    }
}

/// Every inotify instance one sandbox can get, held, leaves another its own. Fails here:
/// both sandboxes' user namespaces are owned by host root, so their instances count
/// against host root's one per-user limit (`fs.inotify.max_user_instances`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not achieved: the user namespace must be owned by host root for CRIU (docs/security.md, item 5)"]
async fn inotify_exhaustion_in_one_sandbox_leaves_another_working() {
    let s = Server::start("uidinotify");
    let api = Api::new(&s);
    let a = api.create(json!({"timeout": 300})).await;
    let b = api.create(json!({"timeout": 300})).await;

    // Every inotify instance a can get, held; b still gets its own.
    let exhaust = r#"nohup python3 -c '
import ctypes, time
libc = ctypes.CDLL(None)
n = 0
while libc.inotify_init() >= 0:
    n += 1
open("/tmp/held.tmp", "w").write(str(n))
import os; os.rename("/tmp/held.tmp", "/tmp/held")
time.sleep(600)
' >/dev/null 2>&1 &"#;
    api.sh(&a, exhaust).await;
    let mut held = String::new();
    for _ in 0..200 {
        held = api.sh(&a, "cat /tmp/held 2>/dev/null").await;
        if !held.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("a holds {} inotify instances", held.trim());
    assert!(held.trim().parse::<u32>().is_ok_and(|n| n > 0), "{held:?}");
    let probe = "python3 -c 'import ctypes; print(ctypes.CDLL(None).inotify_init())'";
    assert_eq!(api.sh(&a, probe).await.trim(), "-1", "a is out of inotify instances");
    let fd: i32 = api.sh(&b, probe).await.trim().parse().unwrap();
    assert!(fd >= 0, "b's inotify starved by a's: {fd}");
}
