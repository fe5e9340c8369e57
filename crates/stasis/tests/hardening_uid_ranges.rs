//! Issue 13, item 5: every sandbox runs in a host id range of its own. Its user
//! namespace maps its ids to 65536 host ids no other sandbox has, so a file of one is
//! out of reach of the other's host ids, a pause and resume keeps the range, and a kill
//! frees it.
//!
//! Inotify: the kernel charges every sandbox's inotify instances and watches to one
//! count, host root's (the owner of every sandbox's user namespace, which CRIU needs);
//! `scripts/setup.sh` makes that count non-binding so one sandbox's exhaustion leaves the
//! others working, each bounded by its own memory cgroup (docs/security.md, item 5).

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

/// The host's `fs.inotify.<name>`: the one count every sandbox's instances (or watches)
/// are charged against, host root's (the owner of every sandbox's user namespace).
fn host_inotify_limit(name: &str) -> u64 {
    let path = format!("/proc/sys/fs/inotify/{name}");
    std::fs::read_to_string(&path).unwrap().trim().parse().unwrap()
}

/// Kernel memory charged to sandbox `id`'s memory cgroup (v1 `memory.kmem.usage_in_bytes`,
/// v2 `memory.stat` `kernel`).
fn kernel_memory(id: &str) -> u64 {
    let v1 = Path::new("/sys/fs/cgroup/memory/stasis").join(id).join("memory.kmem.usage_in_bytes");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim().parse().unwrap();
    }
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let stat = Path::new(root).join("stasis").join(id).join("memory.stat");
        if let Ok(s) = std::fs::read_to_string(&stat) {
            let kernel = s.lines().find_map(|l| l.strip_prefix("kernel "));
            return kernel.expect("memory.stat has no kernel line").trim().parse().unwrap();
        }
    }
    panic!("no memory cgroup for {id}");
}

/// In a sandbox: `python3 /tmp/hold.py TAG N FILES` takes N inotify instances, each
/// watching `/tmp/w/0..FILES`, writes "instances watches errno" to /tmp/held/TAG and
/// holds them.
const HOLD_PY: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
tag, n, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fds, watches, err = [], 0, 0
for _ in range(n):
    fd = libc.inotify_init1(0)
    if fd < 0:
        err = ctypes.get_errno(); break
    fds.append(fd)
for fd in fds:
    for i in range(files):
        if err or libc.inotify_add_watch(fd, b"/tmp/w/%d" % i, 0x2) < 0:
            err = err or ctypes.get_errno(); break
        watches += 1
if err and fds:
    os.close(fds.pop())  # room for the report
open(f"/tmp/held/{tag}.tmp", "w").write(f"{len(fds)} {watches} {err}")
os.rename(f"/tmp/held/{tag}.tmp", f"/tmp/held/{tag}")
time.sleep(3600)
"#;

/// A new inotify instance with a watch on /tmp, in the sandbox: "ok" or the error.
const PROBE: &str = "python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
wd = libc.inotify_add_watch(fd, b\"/tmp\", 0x100) if fd >= 0 else -1
print(\"ok\" if wd >= 0 else \"errno %d\" % ctypes.get_errno())'";

/// The agent's own inotify (the SDK's `files.watch`, polled form) in `sbx`: a watcher on a
/// new directory sees a file made in it.
async fn agent_watch_works(api: &Api, sbx: &Value, dir: &str) {
    api.sh(sbx, &format!("mkdir -p {dir}")).await;
    let (st, v) = api.envd(sbx, "filesystem.Filesystem/CreateWatcher", json!({"path": dir})).await;
    assert_eq!(st, 200, "{} CreateWatcher: {v}", id(sbx));
    let watcher = v["watcherId"].as_str().unwrap().to_string();
    api.sh(sbx, &format!("echo hi > {dir}/seen")).await;
    let mut events = Value::Null;
    for _ in 0..100 {
        let (st, v) = api.envd(sbx, "filesystem.Filesystem/GetWatcherEvents", json!({"watcherId": watcher})).await;
        assert_eq!(st, 200, "{} GetWatcherEvents: {v}", id(sbx));
        events = v["events"].clone();
        if events.as_array().is_some_and(|e| e.iter().any(|e| e["name"] == "seen")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: the agent's watcher saw no event for {dir}/seen: {events}", id(sbx));
}

/// Inotify exhaustion in one sandbox leaves another (and every agent, and host root)
/// working. The kernel charges every sandbox's instances and watches to host root's one
/// count (`fs.inotify.max_user_*`, owner of their user namespaces); `scripts/setup.sh`
/// makes that count non-binding (INT_MAX), so what binds is the sandbox's own memory
/// cgroup, which the kernel charges for them: shown here by the kernel memory it gains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inotify_exhaustion_in_one_sandbox_leaves_another_working() {
    const HOLDERS: u64 = 6;
    const PER_HOLDER: u64 = 1000;
    // One process: 50 instances each watching 5000 files.
    const WATCHERS: u64 = 50;
    const FILES: u64 = 5000;
    let (instances, watches) = (HOLDERS * PER_HOLDER + WATCHERS, WATCHERS * FILES);
    for (name, need) in [("max_user_instances", instances * 2), ("max_user_watches", watches * 2)] {
        let have = host_inotify_limit(name);
        assert!(
            have >= need,
            "fs.inotify.{name} is {have} on this host: every sandbox shares that one count, so one \
             sandbox can take all of it. scripts/setup.sh raises it (/etc/sysctl.d/60-stasis.conf); \
             run it, or `sysctl -w fs.inotify.{name}=2147483647`"
        );
    }
    let s = Server::start("uidinotify");
    let api = Api::new(&s);
    let a = api.create(json!({"timeout": 300})).await;
    let b = api.create(json!({"timeout": 300})).await;

    // a: many processes holding far more instances, and watches, than the host's old
    // shared budget (128 instances; the watches default is 1% of RAM's worth).
    let setup = format!(
        "mkdir -p /tmp/held /tmp/w && cd /tmp/w && seq 0 {} | xargs touch && cat > /tmp/hold.py <<'EOF'\n{HOLD_PY}\nEOF",
        FILES - 1
    );
    api.sh(&a, &setup).await;
    let kmem_before = kernel_memory(&id(&a));
    let mut start = format!("nohup python3 /tmp/hold.py w {WATCHERS} {FILES} >/dev/null 2>&1 &");
    for h in 0..HOLDERS {
        start.push_str(&format!("\nnohup python3 /tmp/hold.py h{h} {PER_HOLDER} 0 >/dev/null 2>&1 &"));
    }
    api.sh(&a, &start).await;
    let mut held = String::new();
    for _ in 0..1200 {
        held = api.sh(&a, "for f in /tmp/held/*; do [ -f \"$f\" ] && echo \"$(cat \"$f\")\"; done").await;
        if held.split_whitespace().count() == 3 * (HOLDERS as usize + 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nums: Vec<u64> = held.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let got: (u64, u64, u64) = nums.chunks(3).fold((0, 0, 0), |t, c| (t.0 + c[0], t.1 + c[1], t.2.max(c[2])));
    eprintln!("a holds {} inotify instances and {} watches (max errno {})", got.0, got.1, got.2);
    assert_eq!(got, (instances, watches, 0), "a could not take them all: {held:?}");

    // Charged to a's memory cgroup: a's memory limit bounds them.
    let kmem_gain = kernel_memory(&id(&a)).saturating_sub(kmem_before);
    eprintln!("a's memory cgroup gained {kmem_gain} bytes of kernel memory");
    let floor = instances * 512 + watches * 32;
    assert!(kmem_gain >= floor, "a's memory cgroup gained {kmem_gain} bytes of kernel memory, under {floor}");

    // Meanwhile: b, a itself, both agents and host root still get instances and watches.
    assert_eq!(api.sh(&b, PROBE).await.trim(), "ok", "b's inotify starved by a's");
    assert_eq!(api.sh(&a, PROBE).await.trim(), "ok", "a's next process starved");
    agent_watch_works(&api, &b, "/tmp/watched").await;
    agent_watch_works(&api, &a, "/tmp/watched").await;
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0, "host root's inotify starved: {}", std::io::Error::last_os_error());
    unsafe { libc::close(fd) };

    // a dies with them (each watched instance's teardown waits for an SRCU grace period,
    // so the kill may take a retry).
    let t = std::time::Instant::now();
    let mut killed = api.kill(&id(&a)).await;
    while killed != 204 && killed != 404 && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        killed = api.kill(&id(&a)).await;
    }
    eprintln!("a killed in {:.1} s ({killed})", t.elapsed().as_secs_f64());
    assert!(killed == 204 || killed == 404, "kill a: {killed}; the server log:\n{}", s.log());
    assert_eq!(api.kill(&id(&b)).await, 204);
}
