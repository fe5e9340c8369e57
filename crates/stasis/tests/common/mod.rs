//! Shared helpers of the end-to-end tests: a private data dir, and the `stasis` binary
//! driven as a separate process for every operation (so every step also proves that
//! nothing lives only in one process's memory).
#![allow(dead_code)]

pub mod api;
pub mod pty;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where `scripts/setup.sh` puts the base template.
const SYSTEM_TEMPLATES: &str = "/var/lib/stasis/templates";

pub struct Host {
    pub data_dir: PathBuf,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    u32::from_le_bytes(b)
}

/// The static agent: `$STASIS_AGENT`, else the one `scripts/test.sh` builds.
pub fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STASIS_AGENT") {
        return p.into();
    }
    // The most recently built one: a stale build of the other profile must not win.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ["release", "debug"]
        .iter()
        .map(|profile| root.join("target/x86_64-unknown-linux-gnu").join(profile).join("stasis-agent"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .expect("no static agent: run scripts/test.sh (it builds one) or set STASIS_AGENT")
}

impl Host {
    pub fn new(name: &str) -> Self {
        let data_dir = PathBuf::from("/var/lib/stasis-test").join(unique_id(name));
        std::fs::create_dir_all(data_dir.join("templates")).unwrap();
        let base = Path::new(SYSTEM_TEMPLATES).join("base");
        assert!(base.join("rootfs").is_dir(), "base template missing: run scripts/setup.sh");
        std::os::unix::fs::symlink(&base, data_dir.join("templates/base")).unwrap();
        Host { data_dir }
    }

    /// Makes template `name` in the data dir: the base root filesystem with `manifest`
    /// (`template.json`: a start command and ready check make it a warm template).
    #[allow(dead_code)] // not every test crate makes templates
    pub fn template(&self, name: &str, manifest: &serde_json::Value) {
        let dir = self.data_dir.join("templates").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let base = std::fs::canonicalize(self.data_dir.join("templates/base/rootfs")).unwrap();
        std::os::unix::fs::symlink(base, dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("template.json"), serde_json::to_vec(manifest).unwrap()).unwrap();
    }

    pub fn stasis(&self, args: &[&str]) -> Output {
        self.stasis_with(args, &[])
    }

    /// [`Host::stasis`] with extra environment variables.
    pub fn stasis_with(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_stasis"))
            .args(args)
            .env("STASIS_DATA_DIR", &self.data_dir)
            .env("STASIS_AGENT", agent_binary())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run stasis");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a `stasis runtime` subcommand and requires success.
    pub fn rt(&self, args: &[&str]) -> String {
        let mut full = vec!["runtime"];
        full.extend_from_slice(args);
        let out = self.stasis(&full);
        assert_eq!(out.code, 0, "stasis {full:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    pub fn rt_fails(&self, args: &[&str]) -> Output {
        let mut full = vec!["runtime"];
        full.extend_from_slice(args);
        let out = self.stasis(&full);
        assert_ne!(out.code, 0, "stasis {full:?} should fail: {}", out.stdout);
        out
    }

    /// Runs a shell command in the sandbox; returns its stdout, requiring exit 0.
    pub fn sh(&self, id: &str, cmd: &str) -> String {
        self.rt(&["exec", id, cmd])
    }

    pub fn sh_as(&self, id: &str, user: &str, cmd: &str) -> String {
        self.rt(&["exec", "--user", user, id, cmd])
    }

    /// The value a test's python process (`random.getrandbits`) holds now: SIGUSR1 makes
    /// it write the value to /home/user/py-now. The signal is re-sent on every poll: right
    /// after a lazy restore another process's command line can read as empty until its
    /// pages are in.
    pub fn python_value_now(&self, id: &str) -> String {
        self.sh(id, "rm -f /home/user/py-now");
        wait_for("python answer", || {
            self.sh(id, "pkill -USR1 -f 'random.getrandbit[s]'; sleep 0.05; cat /home/user/py-now 2>/dev/null || true")
                .trim()
                .len()
                > 3
        });
        self.sh(id, "cat /home/user/py-now")
    }

    pub fn info(&self, id: &str) -> Value {
        serde_json::from_str(&self.rt(&["info", id])).unwrap()
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("sandboxes").join(id)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.data_dir.as_os_str().is_empty() {
            return;
        }
        if let Ok(out) = Command::new(env!("CARGO_BIN_EXE_stasis"))
            .args(["runtime", "ls"])
            .env("STASIS_DATA_DIR", &self.data_dir)
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(id) = line.split('\t').next() {
                    let _ = Command::new(env!("CARGO_BIN_EXE_stasis"))
                        .args(["runtime", "kill", id])
                        .env("STASIS_DATA_DIR", &self.data_dir)
                        .output();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Mounts currently under `path` on the host.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy().to_string();
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&p)).map(str::to_string).collect()
}

/// Cgroup directories a sandbox may own, on v1 and v2.
/// Whether something listens at `addr`. A connect to a loopback port nobody listens on
/// can connect the socket to itself when the kernel picks that same port as the source
/// (TCP simultaneous open): that is not a listener (a server start once "succeeded" so
/// under load, and its first request was refused).
pub fn listening(addr: impl std::net::ToSocketAddrs) -> bool {
    std::net::TcpStream::connect(addr).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in ["memory", "pids", "cpu", "cpuacct", "freezer", "unified", ""] {
        v.push(Path::new("/sys/fs/cgroup").join(c).join("stasis").join(id));
    }
    v
}

pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    assert!(wait_within(std::time::Duration::from_secs(20), f), "timed out waiting for {what}");
}

/// Polls `f` until it holds or `limit` passes; whether it held.
pub fn wait_within(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// True while `pid` is a live (not zombie) process. An exited sandbox init waits as a
/// zombie until whoever adopted it reaps it: it holds no memory and uses no CPU.
pub fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(") ").next().and_then(|r| r.chars().next()).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

pub const API_KEY: &str = "e2b_00000000000000000000000000000000000000aa";

/// A `stasis serve` of its own on a free loopback port, stopped on drop.
pub struct Server {
    pub host: Host,
    pub url: String,
    child: std::process::Child,
}

/// The port of serve's last "serving on http://127.0.0.1:PORT" log line (colours or not).
pub fn serving_port(log: &str) -> Option<u16> {
    let rest = log.rsplit("serving on http://").next().filter(|_| log.contains("serving on http://"))?;
    let addr: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
    addr.rsplit(':').next()?.parse().ok().filter(|p| *p != 0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn start(name: &str) -> Self {
        Self::start_on(Host::new(name), &[])
    }

    /// Starts serve on `host`'s data dir (reusing it across restarts).
    pub fn start_on(host: Host, extra: &[&str]) -> Self {
        Self::start_with_agent(host, extra, &agent_binary())
    }

    /// [`Server::start_on`] with another agent binary (an older release's).
    /// Port 0: the server binds a port the kernel picks and the test reads it from the
    /// server's log. Picking a free port first and passing it races with every other
    /// test picking ports at the same time: a port freed by one probe can be taken by
    /// another server before this one binds it (seen in CI: a first request reset).
    pub fn start_with_agent(host: Host, extra: &[&str], agent: &Path) -> Self {
        Self::start_at(host, 0, extra, agent)
    }

    /// [`Server::start_with_agent`] on a given port (a cluster node advertises its URL).
    pub fn start_at(host: Host, port: u16, extra: &[&str], agent: &Path) -> Self {
        Self::start_at_env(host, port, extra, agent, &[])
    }

    /// [`Server::start_at`] with more environment (an object store's URL and credentials).
    /// `port` 0: whatever port the server binds (see [`Server::start_with_agent`]).
    pub fn start_at_env(host: Host, port: u16, extra: &[&str], agent: &Path, env: &[(String, String)]) -> Self {
        let log = std::fs::File::create(host.data_dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stasis"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--api-key", API_KEY])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STASIS_DATA_DIR", &host.data_dir)
            .env("STASIS_AGENT", agent)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start stasis serve");
        let mut s = Server { host, url: String::new(), child };
        // A start recovers what the last daemon left (it may wait for a CRIU it left
        // running) before it listens: on a loaded 2-core host that can pass 20 s.
        let mut bound = (port != 0).then_some(port);
        let up = wait_within(std::time::Duration::from_secs(90), || {
            if bound.is_none() {
                bound = serving_port(&s.log());
            }
            bound.is_some_and(|p| listening(("127.0.0.1", p)))
        });
        assert!(up, "stasis serve did not listen within 90 s; its log:\n{}", s.log());
        s.url = format!("http://127.0.0.1:{}", bound.unwrap());
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.host.data_dir.join("serve.log")).unwrap_or_default()
    }

    /// `stasis sandbox ...` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full = vec!["sandbox"];
        full.extend_from_slice(args);
        self.command(&full)
    }

    /// `stasis ARGS...` with this server's URL and key in the environment.
    pub fn command(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_stasis"))
            .args(args)
            .env("STASIS_API_URL", &self.url)
            .env("STASIS_API_KEY", API_KEY)
            .output()
            .expect("run stasis sandbox");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc_kill(self.child.id() as i32, sig) };
    }

    /// Stops the server with SIGTERM, waits for it to exit, gives back its data dir.
    pub fn terminate(mut self) -> Host {
        self.signal(15);
        let start = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < std::time::Duration::from_secs(120), "serve did not exit on SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let host = std::mem::replace(&mut self.host, Host { data_dir: PathBuf::new() });
        std::mem::forget(self);
        host
    }

    /// Stops the server (SIGKILL: as a crash would) and gives back its data dir.
    pub fn crash(mut self) -> Host {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let host = std::mem::replace(&mut self.host, Host { data_dir: PathBuf::new() });
        std::mem::forget(self);
        host
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift: deterministic per worker, no extra dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Host processes whose root or cwd is inside `dir` (a sandbox's overlay).
pub fn processes_inside(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for link in ["root", "cwd"] {
            if let Ok(t) = std::fs::read_link(format!("/proc/{pid}/{link}")) {
                if t.starts_with(dir) {
                    found.push(format!("{pid} ({link} -> {})", t.display()));
                }
            }
        }
    }
    found
}

/// A secret file on the host, outside any data dir (what sandboxes must not reach).
pub struct HostMarker {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub secret: String,
}

impl HostMarker {
    pub fn new() -> Self {
        let dir = PathBuf::from("/tmp").join(unique_id("stasis-marker-"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        let secret = unique_id("host-secret-");
        std::fs::write(&file, &secret).unwrap();
        HostMarker { dir, file, secret }
    }

    pub fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }

    pub fn unchanged(&self) -> bool {
        std::fs::read_to_string(&self.file).ok().as_deref() == Some(self.secret.as_str())
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A python3 process holding a random value in a variable; SIGUSR1 makes it write the value out.
pub const PYVAR: &str = r#"nohup python3 -c '
import random, signal, time
v = random.getrandbits(62)
open("/home/user/py-initial", "w").write(str(v))
def dump(*_):
    open("/home/user/py-now.tmp", "w").write(str(v))
    __import__("os").rename("/home/user/py-now.tmp", "/home/user/py-now")
signal.signal(signal.SIGUSR1, dump)
while True:
    time.sleep(1)
' >/dev/null 2>&1 &"#;
