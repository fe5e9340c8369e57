//! Issue 9, "Faults": what happens when the host misbehaves under a sandbox operation.
//!
//! - the disk fills up during a pause (a loop-mounted ext4 of the test's own);
//! - a checkpoint is truncated or has a flipped byte when it is resumed;
//! - CRIU is missing, or its dump / restore fails (a wrapper script as `STASIS_CRIU`);
//! - `stasis serve` is SIGKILLed at a random point of create / pause / resume / kill,
//!   over and over, and every sandbox must come back consistent with nothing leaked.
//!   `STASIS_FAULT_ITERATIONS` sets the rounds (8 here; `scripts/fault-loop.sh` runs 50).
//!
//! Every server here is this file's own (its own environment: `STASIS_CRIU`), on
//! 127.0.0.1; nothing else is contacted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::envd_run;
use common::{agent_binary, cgroup_dirs, mounts_under, processes_inside, unique_id, Host, API_KEY};
use serde_json::{json, Value};

const TEST_ROOT: &str = "/var/lib/stasis-test";
const SYSTEM_BASE: &str = "/var/lib/stasis/templates/base";
const REAL_CRIU: &str = "/usr/local/sbin/criu";

// ------------------------------------------------------------------ data dirs and servers

/// A data dir at `dir` (created, base template linked); cleaned by `Host`'s drop.
fn host_at(dir: &Path) -> Host {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    assert!(Path::new(SYSTEM_BASE).join("rootfs").is_dir(), "base template missing: run scripts/setup.sh");
    std::os::unix::fs::symlink(SYSTEM_BASE, dir.join("templates/base")).unwrap();
    Host { data_dir: dir.to_path_buf() }
}

fn test_root() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = PathBuf::from(TEST_ROOT);
    std::fs::create_dir_all(&root).unwrap();
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    root
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small ext4 of the test's own, loop-mounted; unmounted and deleted on drop (panics
/// included). `-m 0`: nothing reserved for root (the server and CRIU run as root).
struct LoopFs {
    dir: PathBuf,
    mnt: PathBuf,
}

impl LoopFs {
    fn new(size_mb: u64) -> Self {
        let dir = test_root().join(unique_id("fsfull"));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let img = dir.join("img");
        let fs = LoopFs { dir, mnt };
        run("truncate", &["-s", &format!("{size_mb}M"), img.to_str().unwrap()]);
        run("mkfs.ext4", &["-q", "-F", "-m", "0", img.to_str().unwrap()]);
        run("mount", &["-o", "loop", img.to_str().unwrap(), fs.mnt.to_str().unwrap()]);
        run("chmod", &["0711", fs.mnt.to_str().unwrap()]);
        fs
    }

    /// Bytes free for root.
    fn avail(&self) -> u64 {
        let out = run("df", &["-B1", "--output=avail", self.mnt.to_str().unwrap()]);
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Whatever a failed test left mounted below first, then the fs itself.
        let mut below: Vec<String> = mounts_under(&self.mnt).into_iter().filter(|m| Path::new(m) != self.mnt).collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `stasis serve` of this file's own: like `common::Server`, plus an environment and a
/// start that may fail (returned with the log).
struct Srv {
    host: Option<Host>,
    url: String,
    child: Child,
}

impl Srv {
    fn start(host: Host, env: &[(&str, &str)]) -> Result<Srv, (Host, String)> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stasis"));
        cmd.env("STASIS_AGENT", agent_binary());
        Self::spawn(host, env, cmd)
    }

    /// `wrap`: the program (with its args) that execs `stasis serve ...` appended to it.
    fn spawn(host: Host, env: &[(&str, &str)], mut cmd: Command) -> Result<Srv, (Host, String)> {
        // Port 0: the kernel picks, the log says which (see common::Server::start_with_agent).
        let logp = host.data_dir.join("serve.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&logp).unwrap();
        let before = log.metadata().unwrap().len() as usize;
        if cmd.get_program() != env!("CARGO_BIN_EXE_stasis") {
            cmd.arg(env!("CARGO_BIN_EXE_stasis"));
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--api-key", API_KEY])
            .env("STASIS_DATA_DIR", &host.data_dir)
            .env("STASIS_AGENT", agent_binary())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd.spawn().expect("start stasis serve");
        let start = Instant::now();
        loop {
            let log = std::fs::read(&logp).unwrap_or_default();
            let port = common::serving_port(&String::from_utf8_lossy(log.get(before..).unwrap_or_default()));
            if let Some(port) = port.filter(|p| common::listening(("127.0.0.1", *p))) {
                return Ok(Srv { host: Some(host), url: format!("http://127.0.0.1:{port}"), child });
            }
            if let Ok(Some(st)) = child.try_wait() {
                let log = std::fs::read_to_string(&logp).unwrap_or_default();
                return Err((host, format!("serve exited ({st}):\n{log}")));
            }
            // Recovery may wait for a CRIU a crashed server left running (<= 120 s).
            if start.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not listen within 180 s:\n{}", std::fs::read_to_string(&logp).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn host(&self) -> &Host {
        self.host.as_ref().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.host().data_dir.join("serve.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash; gives the data dir back.
    fn crash(mut self) -> Host {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.host.take().unwrap()
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ API client

struct Ctl {
    url: String,
    http: reqwest::Client,
}

impl Ctl {
    fn new(s: &Srv) -> Self {
        Ctl { url: s.url.clone(), http: reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).header("x-api-key", API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn create(&self, body: Value) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, "/v2/sandboxes", Some(body)).await;
        assert_eq!(s, 201, "create: {v}");
        v
    }

    async fn state(&self, id: &str) -> Option<String> {
        let (s, v) = self.call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None).await;
        (s == 200).then(|| v["state"].as_str().unwrap_or("?").to_string())
    }

    async fn pause(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/sandboxes/{id}/pause"), None).await
    }

    async fn connect(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/v2/sandboxes/{id}/connect"), Some(json!({}))).await
    }

    async fn kill(&self, id: &str) -> u16 {
        self.call(reqwest::Method::DELETE, &format!("/sandboxes/{id}"), None).await.0
    }

    async fn sh(&self, sbx: &Sbx, cmd: &str) -> String {
        envd_run(&self.url, &sbx.id, &sbx.token, cmd).await
    }
}

#[derive(Clone, Debug)]
struct Sbx {
    id: String,
    token: String,
}

impl Sbx {
    fn of(v: &Value) -> Self {
        Sbx {
            id: v["sandboxID"].as_str().unwrap().to_string(),
            token: v["envdAccessToken"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// A python3 process holding a random value and `mib` MiB of touched memory; SIGUSR1
/// makes it write the value to /tmp/pyval (as in restart.rs).
fn pyvar_cmd(mib: u32) -> String {
    format!(
        r#"nohup python3 -c '
import os, random, signal, time
ballast = bytearray(os.urandom(1 << 20)) * {mib}
v = random.getrandbits(62)
open("/tmp/py-initial", "w").write(str(v))
def dump(*_):
    open("/tmp/pyval.tmp", "w").write(str(v)); os.rename("/tmp/pyval.tmp", "/tmp/pyval")
signal.signal(signal.SIGUSR1, dump)
while True: time.sleep(1)
' >/dev/null 2>&1 &"#
    )
}

async fn start_pyvar(c: &Ctl, sbx: &Sbx, mib: u32) -> String {
    c.sh(sbx, &pyvar_cmd(mib)).await;
    for _ in 0..600 {
        let v = c.sh(sbx, "cat /tmp/py-initial 2>/dev/null").await;
        if v.trim().len() > 3 {
            return v.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("python never started");
}

/// The python process's value now (re-signalled on every poll: see restart.rs).
async fn pyvar_now(c: &Ctl, sbx: &Sbx) -> String {
    c.sh(sbx, "rm -f /tmp/pyval").await;
    for _ in 0..200 {
        let v = c.sh(sbx, "pkill -USR1 -f 'random.getrandbit[s]'; sleep 0.05; cat /tmp/pyval 2>/dev/null").await;
        if v.trim().len() > 3 {
            return v.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("python did not answer");
}

/// Checkpoint generations present under a sandbox dir.
fn generations(sandbox_dir: &Path) -> Vec<String> {
    std::fs::read_dir(sandbox_dir.join("checkpoints"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn record_state(sandbox_dir: &Path) -> Option<String> {
    let rec: Value = serde_json::from_slice(&std::fs::read(sandbox_dir.join("record.json")).ok()?).ok()?;
    rec["state"].as_str().map(str::to_string)
}

fn msg(v: &Value) -> String {
    v["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

// ------------------------------------------------------------------ 1. disk full

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_during_pause_fails_cleanly_and_the_sandbox_keeps_running() {
    let fs = LoopFs::new(1024);
    // No disk reserve: this test is about what happens when the disk does fill.
    let s = Srv::start(host_at(&fs.mnt.join("data")), &[("STASIS_DISK_RESERVE", "0")]).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600, "memoryMB": 1024})).await);
    let val = start_pyvar(&c, &sbx, 300).await;
    let pid_before = c.sh(&sbx, "pgrep -f 'random.getrandbit[s]'").await;

    // Leave ~100 MiB: less than the 300 MiB the dump must write.
    let filler = fs.mnt.join("filler");
    let fill = fs.avail().saturating_sub(100 << 20);
    run("fallocate", &["-l", &fill.to_string(), filler.to_str().unwrap()]);
    assert!(fs.avail() < 150 << 20, "could not fill the fs: {} bytes free", fs.avail());

    let (status, body) = c.pause(&sbx.id).await;
    assert!((500..600).contains(&status), "pause on a full disk: {status} {body}");
    assert!(body.is_object() && body["code"].as_u64() == Some(status as u64), "not a JSON error: {body}");
    let m = msg(&body).to_lowercase();
    assert!(m.contains("no space") || m.contains("enospc"), "the error does not say why: {m}");

    // Still running, same process, same memory; nothing of the attempt kept.
    assert_eq!(c.state(&sbx.id).await.as_deref(), Some("running"));
    let dir = s.host().sandbox_dir(&sbx.id);
    assert_eq!(record_state(&dir).as_deref(), Some("running"));
    assert_eq!(c.sh(&sbx, "pgrep -f 'random.getrandbit[s]'").await, pid_before, "process restarted");
    assert_eq!(pyvar_now(&c, &sbx).await, val, "memory changed by the failed pause");
    assert_eq!(generations(&dir), Vec::<String>::new(), "a partial checkpoint was left");
    assert!(c.sh(&sbx, "echo alive").await.contains("alive"));

    // Room again: the same sandbox pauses and resumes with its memory.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = c.pause(&sbx.id).await;
    assert_eq!(status, 204, "pause after freeing space: {body}");
    assert_eq!(c.connect(&sbx.id).await.0, 201);
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert_eq!(c.kill(&sbx.id).await, 204);
}

// ------------------------------------------------------------------ 2. damaged checkpoints

/// The biggest `pages-*.img` of the sandbox's (single) checkpoint.
fn biggest_pages_image(sandbox_dir: &Path) -> PathBuf {
    let gens = generations(sandbox_dir);
    assert_eq!(gens.len(), 1, "checkpoints: {gens:?}");
    let images = sandbox_dir.join("checkpoints").join(&gens[0]);
    std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .max_by_key(|e| e.metadata().unwrap().len())
        .map(|e| e.path())
        .expect("no pages image")
}

/// Pauses a sandbox holding 64 MiB, damages its pages image with `damage`, resumes:
/// the resume must fail clearly and keep everything; undoing the damage must then give
/// a normal resume with the same memory (so nothing was deleted).
async fn damaged_checkpoint_case(name: &str, damage: impl FnOnce(&Path) -> Box<dyn FnOnce()>) {
    let s = Srv::start(Host::new(name), &[]).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600})).await);
    let val = start_pyvar(&c, &sbx, 64).await;
    let home = c.sh(&sbx, "echo keep-me > ~/file-on-disk && echo ~").await.trim().to_string();
    assert!(home.starts_with('/'), "no home: {home:?}");
    assert_eq!(c.pause(&sbx.id).await.0, 204);
    let dir = s.host().sandbox_dir(&sbx.id);
    let pages = biggest_pages_image(&dir);
    let undo = damage(&pages);

    let (status, body) = c.connect(&sbx.id).await;
    eprintln!("{name}: resume of the damaged checkpoint: {status} {body}");
    let after = c.state(&sbx.id).await;
    let verdict = if (200..300).contains(&status) {
        // "Resumed": what does the sandbox hold now?
        let alive =
            tokio::time::timeout(Duration::from_secs(20), c.sh(&sbx, "pgrep -f 'random.getrandbit[s]' || echo gone"))
                .await;
        format!("resume of a damaged checkpoint succeeded ({status}); state {after:?}; python: {alive:?}")
    } else {
        String::new()
    };
    assert!(verdict.is_empty(), "{verdict}\nserver log:\n{}", s.log());
    assert!((500..600).contains(&status), "resume of a damaged checkpoint: {status} {body}");
    assert!(!msg(&body).is_empty(), "no error message: {body}");
    assert_eq!(after.as_deref(), Some("paused"), "after a failed resume");
    assert_eq!(record_state(&dir).as_deref(), Some("paused"));
    assert!(pages.exists(), "the checkpoint was deleted");
    // The writable layer: on the sandbox's disk image (unmounted while paused), or in
    // upper/ directly for a sandbox without one. Its content is proven by the resume below.
    let file = Path::new("upper").join(home.trim_start_matches('/')).join("file-on-disk");
    assert!(
        dir.join("disk.img").is_file() || dir.join("disk").join(&file).exists() || dir.join(&file).exists(),
        "the writable layer was deleted: {:?}",
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(mounts_under(&dir).is_empty(), "a failed resume left mounts: {:?}", mounts_under(&dir));

    // Repaired, it resumes as if nothing happened.
    undo();
    assert_eq!(c.connect(&sbx.id).await.0, 201, "resume after repair\n{}", s.log());
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert_eq!(c.sh(&sbx, "cat ~/file-on-disk").await.trim(), "keep-me");
    assert_eq!(c.kill(&sbx.id).await, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_checkpoint_fails_resume_clearly_and_keeps_the_sandbox_paused() {
    damaged_checkpoint_case("ftrunc", |pages| {
        let data = std::fs::read(pages).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(pages).unwrap();
        f.set_len(data.len() as u64 / 2).unwrap();
        let p = pages.to_path_buf();
        Box::new(move || std::fs::write(&p, &data).unwrap())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_checkpoint_fails_resume_clearly_and_keeps_the_sandbox_paused() {
    damaged_checkpoint_case("fflip", |pages| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(pages).unwrap();
        let len = f.metadata().unwrap().len();
        let at = len / 2 + 123;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
        f.sync_all().unwrap();
        let p = pages.to_path_buf();
        Box::new(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&b, at).unwrap();
        })
    })
    .await;
}

// ------------------------------------------------------------------ 3. CRIU missing or failing

/// CRIU hidden from the server (a private mount namespace with /dev/null over every
/// criu binary; `STASIS_CRIU` pointing nowhere): start, or the first create/pause, must
/// say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_criu_is_a_clear_error() {
    let mut hide = String::from("set -e; ");
    for p in ["/usr/local/sbin/criu", "/usr/sbin/criu", "/sbin/criu", "/usr/bin/criu", "/bin/criu"] {
        hide.push_str(&format!("if [ -f {p} ] && [ ! -L {p} ]; then mount --bind /dev/null {p}; fi; "));
    }
    hide.push_str("exec \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &hide, "sh"]);
    match Srv::spawn(Host::new("fnocriu"), &[("STASIS_CRIU", "/nonexistent")], cmd) {
        Err((_, log)) => assert!(log.to_lowercase().contains("criu"), "serve failed without naming CRIU:\n{log}"),
        Ok(s) => {
            let c = Ctl::new(&s);
            let (st, v) = c.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"timeout": 60}))).await;
            if st == 201 {
                let sbx = Sbx::of(&v);
                let (ps, pv) = c.pause(&sbx.id).await;
                c.kill(&sbx.id).await;
                assert!(ps >= 500 && msg(&pv).to_lowercase().contains("criu"), "pause without CRIU: {ps} {pv}");
            } else {
                assert!(st >= 500 && msg(&v).to_lowercase().contains("criu"), "create without CRIU: {st} {v}");
            }
        }
    }
}

/// `STASIS_CRIU` set to a path that does not exist is a configuration error: it must not
/// silently run another CRIU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stasis_criu_pointing_nowhere_is_an_error_not_a_silent_fallback() {
    match Srv::start(Host::new("fcriuenv"), &[("STASIS_CRIU", "/nonexistent")]) {
        Err((_, log)) => assert!(log.contains("/nonexistent") || log.to_lowercase().contains("criu"), "{log}"),
        Ok(s) => {
            let c = Ctl::new(&s);
            let (st, v) = c.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"timeout": 60}))).await;
            let (ps, pv) = if st == 201 { c.pause(v["sandboxID"].as_str().unwrap()).await } else { (st, v.clone()) };
            if st == 201 {
                c.kill(v["sandboxID"].as_str().unwrap()).await;
            }
            assert!(
                ps >= 500 && msg(&pv).to_lowercase().contains("criu"),
                "STASIS_CRIU=/nonexistent, yet: create {st}, pause {ps} {pv}"
            );
        }
    }
}

/// A CRIU wrapper whose dump or restore fails on demand (`mode` file: ok, fail-dump,
/// fail-restore; crash-before-restore SIGKILLs the server as it is about to restore). Named `criu` so the runtime sees it as one.
fn criu_wrapper(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mode = dir.join("criu-mode");
    std::fs::write(&mode, "ok").unwrap();
    let script = format!(
        "#!/bin/sh\nmode=$(cat {mode} 2>/dev/null)\n\
         if [ \"$1\" = dump ] && [ \"$mode\" = fail-dump ]; then echo 'injected failure: criu dump disabled by the test' >&2; exit 1; fi\n\
         if [ \"$1\" = restore ] && [ \"$mode\" = fail-restore ]; then echo 'injected failure: criu restore disabled by the test' >&2; exit 1; fi\n\
         if [ \"$1\" = restore ] && [ \"$mode\" = crash-before-restore ]; then kill -9 $PPID; exit 1; fi\n\
         exec {REAL_CRIU} \"$@\"\n",
        mode = mode.display()
    );
    let path = bin.join("criu");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_criu_dump_or_restore_never_loses_the_sandbox() {
    let host = Host::new("fcriufail");
    let (wrapper, mode) = criu_wrapper(&host.data_dir);
    // No disk reserve: the 768 MiB volume is smaller than the default one.
    let env = [("STASIS_CRIU", wrapper.to_str().unwrap()), ("STASIS_DISK_RESERVE", "0")];
    let s = Srv::start(host, &env).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600})).await);
    let val = start_pyvar(&c, &sbx, 16).await;
    let dir = s.host().sandbox_dir(&sbx.id);

    // Dump fails: pause is a clear 5xx, the sandbox runs on with its memory.
    std::fs::write(&mode, "fail-dump").unwrap();
    let (st, body) = c.pause(&sbx.id).await;
    assert!((500..600).contains(&st), "pause with a failing dump: {st} {body}");
    let m = msg(&body);
    assert!(m.contains("dump") && m.contains("injected failure"), "the error does not say what failed: {m}");
    assert_eq!(c.state(&sbx.id).await.as_deref(), Some("running"));
    assert_eq!(record_state(&dir).as_deref(), Some("running"));
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert!(generations(&dir).is_empty(), "failed dump left {:?}", generations(&dir));
    // And the sandbox says so (issue 12.3): which operation failed, why, how many times.
    let (_, info) = c.call(reqwest::Method::GET, &format!("/sandboxes/{}", sbx.id), None).await;
    let e = &info["lastError"];
    assert_eq!((e["operation"].as_str(), e["attempts"].as_u64()), (Some("pause"), Some(1)), "{info}");
    assert!(e["message"].as_str().unwrap_or_default().contains("injected failure"), "{info}");

    // Restore fails: connect is a clear 5xx, the sandbox stays paused with its images.
    std::fs::write(&mode, "ok").unwrap();
    assert_eq!(c.pause(&sbx.id).await.0, 204);
    let (_, info) = c.call(reqwest::Method::GET, &format!("/sandboxes/{}", sbx.id), None).await;
    assert!(info.get("lastError").is_none(), "a successful pause clears the error: {info}");
    std::fs::write(&mode, "fail-restore").unwrap();
    for attempt in 0..2 {
        let (st, body) = c.connect(&sbx.id).await;
        assert!((500..600).contains(&st), "resume #{attempt} with a failing restore: {st} {body}");
        let m = msg(&body);
        assert!(m.contains("restore") && m.contains("injected failure"), "the error does not say what failed: {m}");
        assert_eq!(c.state(&sbx.id).await.as_deref(), Some("paused"));
        assert_eq!(record_state(&dir).as_deref(), Some("paused"));
        assert_eq!(generations(&dir).len(), 1, "the checkpoint is gone");
        assert!(mounts_under(&dir).is_empty(), "failed restore left mounts: {:?}", mounts_under(&dir));
        for d in cgroup_dirs(&sbx.id) {
            assert!(!d.exists(), "failed restore left cgroup {}", d.display());
        }
    }
    // CRIU works again: resumable, memory intact.
    std::fs::write(&mode, "ok").unwrap();
    let (st, body) = c.connect(&sbx.id).await;
    assert_eq!(st, 201, "resume once CRIU works: {body}");
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert_eq!(c.kill(&sbx.id).await, 204);
}

// ------------------------------------------------------------------ 3b. past the point of no return

/// A CRIU whose dump, once it has succeeded, fills the filesystem of `fill_dir`: every
/// step after the dump (fsync, checksums, the record) then meets ENOSPC.
fn criu_filling_after_dump(dir: &Path, fill_dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fill-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let filler = fill_dir.join("filler");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = dump ] && [ ! -e {filler}.done ]; then\n  {REAL_CRIU} \"$@\"; rc=$?\n  \
         if [ $rc = 0 ]; then touch {filler}.done; fallocate -l $(( $(stat -f -c '%a*%S' {dir}) )) {filler}; fi\n  exit $rc\nfi\n\
         exec {REAL_CRIU} \"$@\"\n",
        filler = filler.display(),
        dir = fill_dir.display()
    );
    let path = bin.join("criu");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_after_a_successful_dump_is_never_reported_running_and_resumes_with_its_memory() {
    // The sandboxes (and their checkpoints) on a small volume of their own, the database
    // on the data dir's disk: the pause's own steps meet ENOSPC, the store does not.
    let fs = LoopFs::new(768);
    let host = Host::new("fenospc");
    let sandboxes = host.data_dir.join("sandboxes");
    std::fs::create_dir_all(&sandboxes).unwrap();
    run("mount", &["--bind", fs.mnt.to_str().unwrap(), sandboxes.to_str().unwrap()]);
    let wrapper = criu_filling_after_dump(&fs.dir, &fs.mnt);
    // No disk reserve: the 768 MiB volume is smaller than the default one.
    let env = [("STASIS_CRIU", wrapper.to_str().unwrap()), ("STASIS_DISK_RESERVE", "0")];
    let s = Srv::start(host, &env).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600})).await);
    let val = start_pyvar(&c, &sbx, 16).await;

    let (status, body) = c.pause(&sbx.id).await;
    assert!((500..600).contains(&status), "pause whose checkpoint cannot be made durable: {status} {body}");
    let m = msg(&body);
    assert!(m.contains("could not be made durable"), "the error does not say what happened: {m}");
    // Its processes are gone: it must not read running.
    assert_eq!(
        c.state(&sbx.id).await.as_deref(),
        Some("paused"),
        "after a pause that failed past its point of no return: {}",
        std::fs::read_to_string(s.host().data_dir.join("serve.log")).unwrap_or_default()
    );
    let (_, info) = c.call(reqwest::Method::GET, &format!("/sandboxes/{}", sbx.id), None).await;
    assert_eq!(info["lastError"]["operation"], "pause", "the failure is visible: {info}");

    // Room again: the resume completes the checkpoint and the memory is all there.
    std::fs::remove_file(fs.mnt.join("filler")).unwrap();
    let (st, body) = c.connect(&sbx.id).await;
    assert_eq!(st, 201, "resume after freeing space: {body}");
    assert_eq!(pyvar_now(&c, &sbx).await, val, "memory kept through the incomplete pause");
    assert_eq!(c.pause(&sbx.id).await.0, 204, "and it pauses normally again");
    assert_eq!(c.connect(&sbx.id).await.0, 201);
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert_eq!(c.kill(&sbx.id).await, 204);
    // Unmounted before the data dir is removed (the host's drop), or the dir stays behind.
    let host = s.crash();
    run("umount", &[sandboxes.to_str().unwrap()]);
    drop(host);
}

fn record_init_pid(sandbox_dir: &Path) -> Option<u32> {
    let v: Value = serde_json::from_slice(&std::fs::read(sandbox_dir.join("record.json")).ok()?).ok()?;
    v["initPid"].as_u64().map(|p| p as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_killed_from_outside_is_noticed_at_once_and_its_files_are_kept() {
    let host = Host::new("finitkill");
    let s = Srv::start(host, &[]).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600})).await);
    c.sh(&sbx, "echo kept > /home/user/kept.txt; sync").await;
    let boot = c.sh(&sbx, "cat /proc/sys/kernel/random/boot_id").await;
    let dir = s.host().sandbox_dir(&sbx.id);
    let pid = record_init_pid(&dir).expect("a running sandbox records its init");

    // The host (the OOM killer, an operator) kills the sandbox's init.
    run("kill", &["-9", &pid.to_string()]);
    let start = Instant::now();
    while c.state(&sbx.id).await.as_deref() != Some("paused") {
        assert!(start.elapsed() < Duration::from_secs(20), "the dead sandbox still reads {:?}", c.state(&sbx.id).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(record_state(&dir).as_deref(), Some("paused"));
    let (_, info) = c.call(reqwest::Method::GET, &format!("/sandboxes/{}", sbx.id), None).await;
    assert_eq!(info["lastError"]["operation"], "run", "why it stopped is visible: {info}");
    let why = info["lastError"]["message"].as_str().unwrap_or_default();
    assert!(why.contains(&format!("pid {pid}")) && why.contains("files are kept"), "{why}");
    assert!(processes_inside(&dir).is_empty(), "nothing of it runs");

    // Connect boots it afresh on its files.
    let (st, body) = c.connect(&sbx.id).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(c.sh(&sbx, "cat /home/user/kept.txt").await.trim(), "kept");
    assert_ne!(c.sh(&sbx, "cat /proc/sys/kernel/random/boot_id").await, boot, "a fresh boot");
    assert_eq!(c.kill(&sbx.id).await, 204);
}

// ------------------------------------------------------------------ 4. SIGKILL loop

/// xorshift64, seeded from /dev/urandom (the seed is printed; `STASIS_FAULT_SEED` replays).
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = std::env::var("STASIS_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let mut b = [0u8; 8];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
            u64::from_le_bytes(b) | 1
        });
        eprintln!("sigkill loop: STASIS_FAULT_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Start time of a process (clock ticks since boot), from /proc/PID/stat.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.split(' ').nth(19)?.parse().ok()
}

/// CRIU processes working on `dir` that were started before `server_pid` (so before the
/// restart) and are still alive once it listens: recovery waits (up to 120 s) for a CRIU a
/// dead server left running to finish, so one still there is stuck and leaked.
fn stale_criu(dir: &Path, server_pid: u32) -> Vec<String> {
    let Some(server_start) = proc_start(server_pid) else { return vec![] };
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if argv0.ends_with(b"criu")
            && cmdline.windows(needle.len()).any(|w| w == needle.as_slice())
            && proc_start(pid).is_some_and(|t| t < server_start)
        {
            found.push(format!("{pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Every id the store knows, in any state (read while the server is down).
async fn store_ids(data_dir: &Path) -> BTreeSet<String> {
    let db = data_dir.join("stasis.db");
    if !db.exists() {
        return BTreeSet::new();
    }
    let store = stasis_store::SqliteStore::open(db).await.expect("open the state database");
    use stasis_store::Store;
    store.sandboxes_in_states(&stasis_store::SandboxState::ALL).await.unwrap().into_iter().map(|r| r.id).collect()
}

fn dir_ids(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_dir.join("sandboxes"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// What the loop knows of a sandbox: its token and the python value in its memory.
#[derive(Clone, Debug)]
struct Known {
    sbx: Sbx,
    val: Option<String>,
}

/// Everything that must hold for `id` after a restart. Returns its state, or None if
/// it is cleanly gone. Failures are collected in `bad`.
async fn check_one(
    c: &Ctl,
    server_pid: u32,
    data_dir: &Path,
    id: &str,
    known: Option<&Known>,
    bad: &mut Vec<String>,
) -> Option<String> {
    let dir = data_dir.join("sandboxes").join(id);
    let criu = stale_criu(&dir, server_pid);
    if !criu.is_empty() {
        bad.push(format!("{id}: CRIU processes from before the restart are still running after recovery: {criu:?}"));
    }
    let state = c.state(id).await;
    let netns = PathBuf::from(format!("/run/netns/stasis-{id}"));
    let cgroups: Vec<_> = cgroup_dirs(id).into_iter().filter(|d| d.exists()).collect();
    match state.as_deref() {
        None => {
            if dir.exists() {
                bad.push(format!(
                    "{id}: unknown to the server, but its dir is left ({:?})",
                    std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                ));
            }
            if !cgroups.is_empty() {
                bad.push(format!("{id}: unknown to the server, but cgroups are left: {cgroups:?}"));
            }
            if netns.exists() {
                bad.push(format!("{id}: unknown to the server, but netns {} is left", netns.display()));
            }
            if !mounts_under(&dir).is_empty() {
                bad.push(format!("{id}: unknown to the server, but mounts are left: {:?}", mounts_under(&dir)));
            }
            let procs = processes_inside(&dir);
            if !procs.is_empty() {
                bad.push(format!("{id}: unknown to the server, but processes are left: {procs:?}"));
            }
            None
        }
        Some("running") => {
            if record_state(&dir).as_deref() != Some("running") {
                bad.push(format!("{id}: running, but record.json says {:?}", record_state(&dir)));
            }
            if let Some(k) = known {
                let out = tokio::time::timeout(Duration::from_secs(30), c.sh(&k.sbx, "echo ok")).await;
                if !matches!(&out, Ok(o) if o.trim() == "ok") {
                    bad.push(format!("{id}: running, but does not answer: {out:?}"));
                } else if let Some(v) = &k.val {
                    let now = pyvar_now(c, &k.sbx).await;
                    if &now != v {
                        bad.push(format!("{id}: running, memory lost (value {now} != {v})"));
                    }
                }
            }
            state
        }
        Some("paused") => {
            if record_state(&dir).as_deref() != Some("paused") {
                bad.push(format!("{id}: paused, but record.json says {:?}", record_state(&dir)));
            }
            if !cgroups.is_empty() {
                bad.push(format!("{id}: paused, but cgroups are left: {cgroups:?}"));
            }
            if !mounts_under(&dir).is_empty() {
                bad.push(format!("{id}: paused, but mounts are left: {:?}", mounts_under(&dir)));
            }
            if netns.exists() {
                bad.push(format!("{id}: paused, but netns {} is left", netns.display()));
            }
            state
        }
        Some(other) => {
            bad.push(format!("{id}: left in state {other}"));
            state
        }
    }
}

/// Resumes a paused sandbox and checks its memory.
async fn resume_and_check(c: &Ctl, k: &Known, bad: &mut Vec<String>) {
    let (st, body) = c.connect(&k.sbx.id).await;
    if st != 201 {
        bad.push(format!("{}: paused, but resume fails: {st} {body}", k.sbx.id));
        return;
    }
    if let Some(v) = &k.val {
        let now = pyvar_now(c, &k.sbx).await;
        if &now != v {
            bad.push(format!("{}: resumed, memory lost (value {now} != {v})", k.sbx.id));
        }
    }
}

fn iterations() -> usize {
    std::env::var("STASIS_FAULT_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_serve_at_random_points_leaves_every_sandbox_consistent() {
    let n = iterations();
    let mut rng = Rng::new();
    let mut host = Host::new("fkill");
    let data_dir = host.data_dir.clone();
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    let mut ever: BTreeSet<String> = BTreeSet::new();
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    let mut ops: BTreeMap<&'static str, usize> = BTreeMap::new();
    let started = Instant::now();

    for it in 0..n {
        let s = Srv::start(host, &[]).map_err(|(_, l)| l).unwrap();
        let c = Ctl::new(&s);
        // Keep 2-4 sandboxes in play; every running one holds a value in memory.
        while states.len() < 2 {
            let sbx = Sbx::of(&c.create(json!({"timeout": 3600})).await);
            states.insert(sbx.id.clone(), "running".into());
            known.insert(sbx.id.clone(), Known { sbx, val: None });
        }
        for (id, st) in &states {
            let k = known.get_mut(id).unwrap();
            if st == "running" && k.val.is_none() {
                k.val = Some(start_pyvar(&c, &k.sbx, 32).await);
            }
        }
        ever.extend(states.keys().cloned());

        // One operation, cut short by a SIGKILL 0-600 ms in.
        let running: Vec<String> = states.iter().filter(|(_, s)| *s == "running").map(|(i, _)| i.clone()).collect();
        let paused: Vec<String> = states.iter().filter(|(_, s)| *s == "paused").map(|(i, _)| i.clone()).collect();
        let pick = |v: &Vec<String>, r: &mut Rng| v[r.below(v.len() as u64) as usize].clone();
        let mut choices = vec!["kill"];
        if states.len() < 4 {
            choices.push("create");
        }
        if !running.is_empty() {
            choices.extend(["pause", "pause"]);
        }
        if !paused.is_empty() {
            choices.extend(["resume", "resume"]);
        }
        let op = choices[rng.below(choices.len() as u64) as usize];
        let target = match op {
            "pause" => pick(&running, &mut rng),
            "resume" => pick(&paused, &mut rng),
            "kill" => pick(&states.keys().cloned().collect(), &mut rng),
            _ => String::new(),
        };
        *ops.entry(op).or_default() += 1;
        let (method, path, body) = match op {
            "create" => (reqwest::Method::POST, "/v2/sandboxes".to_string(), Some(json!({"timeout": 3600}))),
            "pause" => (reqwest::Method::POST, format!("/sandboxes/{target}/pause"), None),
            "resume" => (reqwest::Method::POST, format!("/v2/sandboxes/{target}/connect"), Some(json!({}))),
            _ => (reqwest::Method::DELETE, format!("/sandboxes/{target}"), None),
        };
        let url = format!("{}{path}", s.url);
        let inflight = tokio::spawn(async move {
            let mut req = reqwest::Client::new().request(method, url).header("x-api-key", API_KEY);
            if let Some(b) = body {
                req = req.json(&b);
            }
            match req.send().await {
                Ok(r) => {
                    let st = r.status().as_u16();
                    (Some(st), r.json::<Value>().await.ok())
                }
                Err(_) => (None, None),
            }
        });
        let delay = rng.below(601);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        host = s.crash();
        let (answer, created) = inflight.await.unwrap();
        eprintln!("round {it}: {op} {target} killed after {delay} ms (answered before the kill: {answer:?})");
        if let Some(v) = created.filter(|_| op == "create" && answer == Some(201)) {
            let sbx = Sbx::of(&v);
            known.insert(sbx.id.clone(), Known { sbx, val: None });
        }

        // Every id the server or the disk may hold, taken while it is down.
        let mut candidates = store_ids(&data_dir).await;
        candidates.extend(dir_ids(&data_dir));
        candidates.extend(states.keys().cloned());
        ever.extend(candidates.iter().cloned());

        let s = Srv::start(host, &[]).map_err(|(_, l)| l).unwrap();
        let c = Ctl::new(&s);
        let mut bad = Vec::new();
        let mut next = BTreeMap::new();
        for id in &candidates {
            match check_one(&c, s.child.id(), &data_dir, id, known.get(id), &mut bad).await {
                Some(st) => {
                    if !known.contains_key(id) {
                        // Created, but the answer was lost in the crash: it exists, so it
                        // must be killable; the loop cannot reach it through envd (no token).
                        let code = c.kill(id).await;
                        if code != 204 {
                            bad.push(format!("{id}: created before the crash, kill gives {code}"));
                        }
                        continue;
                    }
                    // Paused ones: resume half of them now (the rest stay paused into the
                    // next round; all are resumed at the end).
                    if st == "paused" && rng.below(2) == 0 {
                        resume_and_check(&c, &known[id], &mut bad).await;
                        next.insert(id.clone(), "running".to_string());
                    } else {
                        next.insert(id.clone(), st);
                    }
                }
                None => {
                    known.remove(id);
                }
            }
        }
        // No sandbox dir the server does not know.
        for id in dir_ids(&data_dir) {
            if c.state(&id).await.is_none() {
                bad.push(format!("{id}: a sandbox dir the server does not know"));
            }
        }
        assert!(
            bad.is_empty(),
            "round {it} ({op} {target}, killed after {delay} ms):\n{}\n\nserver log:\n{}",
            bad.join("\n"),
            s.log()
        );
        eprintln!("round {it}: after restart: {next:?}");
        states = next;
        host = s.crash();
    }

    // Finally: every paused one resumes with its memory, then all go and nothing is left.
    let s = Srv::start(host, &[]).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let mut bad = Vec::new();
    for (id, st) in &states {
        if st == "paused" {
            resume_and_check(&c, &known[id], &mut bad).await;
        }
        let code = c.kill(id).await;
        if code != 204 {
            bad.push(format!("{id}: final kill gives {code}"));
        }
    }
    for id in &ever {
        check_one(&c, s.child.id(), &data_dir, id, None, &mut bad).await;
    }
    let left = dir_ids(&data_dir);
    if !left.is_empty() {
        bad.push(format!("sandbox dirs left: {left:?}"));
    }
    if !mounts_under(&data_dir).is_empty() {
        bad.push(format!("mounts left: {:?}", mounts_under(&data_dir)));
    }
    assert!(bad.is_empty(), "after {n} rounds:\n{}\n\nserver log:\n{}", bad.join("\n"), s.log());
    assert!(!s.log().contains("panicked"), "{}", s.log());
    eprintln!(
        "sigkill loop: {n} rounds in {:?}, operations cut short: {ops:?}, sandboxes seen: {}",
        started.elapsed(),
        ever.len()
    );
}

// ------------------------------------------------------------------ found by bench/load.py

/// The first creates on a fresh data dir, at once (as a load test or a busy start does):
/// all must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_creates_on_a_fresh_data_dir_all_succeed() {
    let s = Srv::start(Host::new("fconc"), &[]).map_err(|(_, l)| l).unwrap();
    let c = std::sync::Arc::new(Ctl::new(&s));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(
                async move { c.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"timeout": 60}))).await },
            )
        })
        .collect();
    let mut bad = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        if st == 201 {
            c.kill(v["sandboxID"].as_str().unwrap()).await;
        } else {
            bad.push(format!("{st} {v}"));
        }
    }
    assert!(bad.is_empty(), "concurrent first creates failed: {bad:#?}");
}

/// The server dies (SIGKILL) during a resume after it started the lazy-pages daemon and
/// before `criu restore` ran: the restart must not hang on, nor leak, that daemon, and
/// the sandbox stays paused and resumes with its memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_lazy_pages_and_restore_neither_hangs_nor_leaks() {
    let host = Host::new("flazy");
    let (wrapper, mode) = criu_wrapper(&host.data_dir);
    let env = [("STASIS_CRIU", wrapper.to_str().unwrap())];
    let s = Srv::start(host, &env).map_err(|(_, l)| l).unwrap();
    let c = Ctl::new(&s);
    let sbx = Sbx::of(&c.create(json!({"timeout": 600})).await);
    let val = start_pyvar(&c, &sbx, 16).await;
    assert_eq!(c.pause(&sbx.id).await.0, 204);
    std::fs::write(&mode, "crash-before-restore").unwrap();
    let _ = c
        .http
        .post(format!("{}/v2/sandboxes/{}/connect", s.url, sbx.id))
        .header("x-api-key", API_KEY)
        .json(&json!({}))
        .send()
        .await;
    let mut s = s;
    let _ = s.child.wait(); // killed by the wrapper
    let host = s.crash();
    std::fs::write(&mode, "ok").unwrap();
    let t0 = Instant::now();
    let s = Srv::start(host, &env).map_err(|(_, l)| l).unwrap();
    let took = t0.elapsed();
    let dir = s.host().sandbox_dir(&sbx.id);
    let stale = stale_criu(&dir, s.child.id());
    // This test's own orphans go whatever the verdict (by pid, from the list above).
    for p in &stale {
        let _ = Command::new("kill").arg("-9").arg(p.split(':').next().unwrap()).status();
    }
    let c = Ctl::new(&s);
    assert!(stale.is_empty(), "CRIU left running after the restart: {stale:?}");
    assert!(took < Duration::from_secs(30), "the restart took {took:?} (recovery waited for the orphan)");
    assert_eq!(c.state(&sbx.id).await.as_deref(), Some("paused"));
    assert_eq!(c.connect(&sbx.id).await.0, 201);
    assert_eq!(pyvar_now(&c, &sbx).await, val);
    assert_eq!(c.kill(&sbx.id).await, 204);
}
