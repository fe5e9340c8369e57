//! Per-sandbox cgroups: limits (memory, cpu, pids), freezing, usage, killing everything.
//!
//! Both hierarchies are supported: cgroup v1 (one directory per controller, as on hybrid
//! hosts) and the unified v2 hierarchy. Sandboxes live in `stasis/ID` under each root.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result, RuntimeError};
use crate::{SandboxSpec, SandboxUsage};

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a sandbox is placed in; `cpuacct` may share a directory with `cpu`.
const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
pub enum Cgroups {
    /// Controller name → its hierarchy's mount point.
    V1(Vec<(String, PathBuf)>),
    V2(PathBuf),
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).ctx(|| format!("write {value:?} to {}", path.display()))
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn read_key(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

impl Cgroups {
    /// Detects the host's layout: v1 when the memory controller has its own hierarchy.
    pub fn detect() -> Result<Self> {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            let cg = Cgroups::V2(root.to_path_buf());
            cg.enable_v2_controllers()?;
            return Ok(cg);
        }
        let mut ctrls = Vec::new();
        for c in V1_CONTROLLERS {
            let p = root.join(c);
            if p.is_dir() {
                ctrls.push((c.to_string(), p));
            }
        }
        if !ctrls.iter().any(|(c, _)| c == "memory") || !ctrls.iter().any(|(c, _)| c == "freezer") {
            return Err(RuntimeError::Boot("no usable cgroup hierarchy (need v2, or v1 memory and freezer)".into()));
        }
        Ok(Cgroups::V1(ctrls))
    }

    fn enable_v2_controllers(&self) -> Result<()> {
        let Cgroups::V2(root) = self else { return Ok(()) };
        let stasis = root.join("stasis");
        std::fs::create_dir_all(&stasis).ctx(|| format!("create {}", stasis.display()))?;
        for dir in [root.as_path(), stasis.as_path()] {
            for c in ["+memory", "+pids", "+cpu"] {
                // Already enabled or unavailable both show up at create time if they matter.
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
            }
        }
        Ok(())
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Cgroups::V2(_))
    }

    fn dirs(&self, id: &str) -> Vec<(&str, PathBuf)> {
        match self {
            Cgroups::V1(ctrls) => ctrls.iter().map(|(c, p)| (c.as_str(), p.join("stasis").join(id))).collect(),
            Cgroups::V2(root) => vec![("unified", root.join("stasis").join(id))],
        }
    }

    fn dir(&self, id: &str, controller: &str) -> PathBuf {
        match self {
            Cgroups::V1(ctrls) => {
                let root = ctrls.iter().find(|(c, _)| c == controller).map(|(_, p)| p.clone()).unwrap_or_default();
                root.join("stasis").join(id)
            }
            Cgroups::V2(root) => root.join("stasis").join(id),
        }
    }

    pub fn create(&self, id: &str, spec: &SandboxSpec) -> Result<()> {
        for (_, d) in self.dirs(id) {
            std::fs::create_dir_all(&d).ctx(|| format!("create cgroup {}", d.display()))?;
        }
        let mem = (spec.memory_mb << 20).to_string();
        let quota = (spec.cpu_count as u64 * CPU_PERIOD_US).to_string();
        match self {
            Cgroups::V1(_) => {
                let m = self.dir(id, "memory");
                write(&m.join("memory.limit_in_bytes"), &mem)?;
                // Without swap accounting the file is absent; with it, swap must not be
                // a way around the limit.
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &mem)?;
                }
                write(&self.dir(id, "pids").join("pids.max"), &spec.max_pids.to_string())?;
                let cpu = self.dir(id, "cpu");
                write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
            }
            Cgroups::V2(_) => {
                let d = self.dir(id, "");
                write(&d.join("memory.max"), &mem)?;
                let _ = std::fs::write(d.join("memory.swap.max"), "0");
                write(&d.join("pids.max"), &spec.max_pids.to_string())?;
                write(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            }
        }
        Ok(())
    }

    /// Changes the memory limit of a sandbox's cgroup while it runs (swap stays off). On
    /// v1 the memory+swap limit may never be below the memory limit, so a raise writes it
    /// first and a cut after.
    pub fn set_memory(&self, id: &str, memory_mb: u64) -> Result<()> {
        let bytes = memory_mb << 20;
        match self {
            Cgroups::V1(_) => {
                let m = self.dir(id, "memory");
                let (limit, memsw) = (m.join("memory.limit_in_bytes"), m.join("memory.memsw.limit_in_bytes"));
                let raise = bytes >= read_u64(&limit);
                if raise && memsw.exists() {
                    write(&memsw, &bytes.to_string())?;
                }
                write(&limit, &bytes.to_string())?;
                if !raise && memsw.exists() {
                    write(&memsw, &bytes.to_string())?;
                }
                Ok(())
            }
            Cgroups::V2(_) => write(&self.dir(id, "").join("memory.max"), &bytes.to_string()),
        }
    }

    /// The `cgroup.procs` files a process writes its pid to, to join the sandbox.
    pub fn procs_files(&self, id: &str) -> Vec<PathBuf> {
        self.dirs(id).into_iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    /// The cgroup CRIU freezes for a consistent dump.
    pub fn freezer(&self, id: &str) -> PathBuf {
        self.dir(id, "freezer")
    }

    pub fn pids(&self, id: &str) -> Vec<u32> {
        let d = match self {
            Cgroups::V1(_) => self.dir(id, "pids"),
            Cgroups::V2(_) => self.dir(id, ""),
        };
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    pub fn set_frozen(&self, id: &str, frozen: bool) -> Result<()> {
        self.set_frozen_within(id, frozen, Duration::from_secs(5))
    }

    /// [`Self::set_frozen`], waiting at most `limit` for the state to be reached.
    pub fn set_frozen_within(&self, id: &str, frozen: bool, limit: Duration) -> Result<()> {
        match self {
            Cgroups::V1(_) => {
                let state = self.freezer(id).join("freezer.state");
                write(&state, if frozen { "FROZEN" } else { "THAWED" })?;
                let want = if frozen { "FROZEN" } else { "THAWED" };
                wait_until(limit, || std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == want))
            }
            Cgroups::V2(_) => {
                let d = self.dir(id, "");
                write(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                let want = if frozen { 1 } else { 0 };
                wait_until(limit, || read_key(&d.join("cgroup.events"), "frozen") == want)
            }
        }
    }

    /// SIGKILLs every process in the sandbox's cgroups and waits until they are gone.
    pub fn kill_all(&self, id: &str) -> Result<()> {
        if let Cgroups::V2(_) = self {
            let kill = self.dir(id, "").join("cgroup.kill");
            if kill.exists() {
                write(&kill, "1")?;
                return wait_until(Duration::from_secs(10), || self.pids(id).is_empty());
            }
        }
        // Frozen processes cannot fork away from the kill; they die when thawed.
        let _ = self.set_frozen(id, true);
        for pid in self.pids(id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.set_frozen(id, false);
        wait_until(Duration::from_secs(10), || self.pids(id).is_empty())
    }

    /// Removes the sandbox's cgroups (they must be empty). Missing ones are fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        for (_, d) in self.dirs(id) {
            if d.exists() {
                let mut last = Ok(());
                // A cgroup stays busy for a moment after its last process is reaped.
                for _ in 0..100 {
                    last = std::fs::remove_dir(&d);
                    if last.is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                last.ctx(|| format!("remove cgroup {}", d.display()))?;
            }
        }
        Ok(())
    }

    /// How many processes the OOM killer has killed in the sandbox.
    pub fn oom_kills(&self, id: &str) -> u64 {
        match self {
            Cgroups::V1(_) => read_key(&self.dir(id, "memory").join("memory.oom_control"), "oom_kill"),
            Cgroups::V2(_) => read_key(&self.dir(id, "").join("memory.events"), "oom_kill"),
        }
    }

    pub fn usage(&self, id: &str) -> SandboxUsage {
        match self {
            Cgroups::V1(_) => {
                let m = self.dir(id, "memory");
                SandboxUsage {
                    memory_bytes: read_u64(&m.join("memory.usage_in_bytes")),
                    memory_limit_bytes: read_u64(&m.join("memory.limit_in_bytes")),
                    cpu_usage_ns: read_u64(&self.dir(id, "cpuacct").join("cpuacct.usage")),
                    pids: read_u64(&self.dir(id, "pids").join("pids.current")),
                    oom_kills: read_key(&m.join("memory.oom_control"), "oom_kill"),
                    disk_bytes: 0,
                }
            }
            Cgroups::V2(_) => {
                let d = self.dir(id, "");
                SandboxUsage {
                    memory_bytes: read_u64(&d.join("memory.current")),
                    memory_limit_bytes: read_u64(&d.join("memory.max")),
                    cpu_usage_ns: read_key(&d.join("cpu.stat"), "usage_usec") * 1000,
                    pids: read_u64(&d.join("pids.current")),
                    oom_kills: read_key(&d.join("memory.events"), "oom_kill"),
                    disk_bytes: 0,
                }
            }
        }
    }
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            return Err(RuntimeError::Io {
                context: "waiting for cgroup state".into(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("not reached within {limit:?}")),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
