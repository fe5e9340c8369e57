//! CRIU invocations: dump a sandbox's process tree to images, restore it from them.
//!
//! The CLI is used (not the RPC socket): one process per operation keeps CRIU's failures
//! away from the daemon, and its log file is the error report.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, RuntimeError};

#[derive(Debug, Clone)]
pub struct Criu {
    pub binary: PathBuf,
}

/// Options both directions agree on.
const COMMON: &[&str] = &[
    "--tcp-established",
    "--file-locks",
    "--link-remap",
    "--manage-cgroups=ignore",
    // Info level: the log says "finished successfully", which recovery reads when the
    // daemon died before it saw CRIU's exit status (~20 KB a dump).
    "-v3",
];

/// Line CRIU logs at the end of a successful dump.
pub const DUMP_OK: &str = "Dumping finished successfully";

/// True if the dump into `images` completed (even if nobody saw CRIU exit).
pub fn dump_completed(images: &Path) -> bool {
    std::fs::read_to_string(images.join("dump.log")).is_ok_and(|l| l.contains(DUMP_OK))
}

/// Pids of CRIU processes working on anything under `dir` (a daemon that crashed may have
/// left one running: it finishes its work on its own).
pub fn running_for(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    let Ok(procs) = std::fs::read_dir("/proc") else { return vec![] };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                argv0.ends_with(b"criu") && c.windows(needle.len()).any(|w| w == needle.as_slice())
            })
        })
        .collect()
}

impl Criu {
    /// Finds CRIU: `$STASIS_CRIU`, then /usr/local/sbin/criu (where setup installs it),
    /// then `criu` on PATH.
    pub fn locate() -> Result<Self> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let candidates = std::env::var_os("STASIS_CRIU")
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from("/usr/local/sbin/criu")])
            .chain(std::env::split_paths(&path).map(|p| p.join("criu")));
        for c in candidates {
            if c.is_file() {
                return Ok(Self { binary: c });
            }
        }
        Err(RuntimeError::Checkpoint { op: "locate", message: "criu not found: run scripts/setup.sh (or set STASIS_CRIU)".into() })
    }

    fn run(&self, op: &'static str, mut cmd: Command, log: &Path) -> Result<()> {
        let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| {
            RuntimeError::Checkpoint { op, message: format!("cannot run {}: {e}", self.binary.display()) }
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(RuntimeError::Checkpoint { op, message: format!("criu {op} exited with {}: {}", out.status, log_errors(log, &out.stderr)) })
    }

    /// Dumps the tree rooted at `pid` into `images`. With `leave_running` the sandbox
    /// goes on afterwards (snapshots); without, its processes are gone on success and
    /// untouched on failure.
    pub fn dump(&self, pid: u32, images: &Path, freezer: &Path, leave_running: bool) -> Result<()> {
        let log = images.join("dump.log");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("dump").arg("-t").arg(pid.to_string()).arg("-D").arg(images).arg("-o").arg(&log);
        cmd.arg("--freeze-cgroup").arg(freezer).arg("--ghost-limit").arg("64M");
        cmd.args(COMMON);
        if leave_running {
            cmd.arg("--leave-running");
        }
        self.run("dump", cmd, &log)
    }

    /// Restores `images` into a new set of namespaces rooted at `root`, with every
    /// restored process placed in the cgroups whose `cgroup.procs` files are given.
    /// Returns the host pid of the restored init.
    /// `net_device`: a veth made in the host namespace that CRIU moves in as the
    /// sandbox's eth0 (the checkpointed eth0's peer lived outside the sandbox).
    pub fn restore(&self, images: &Path, root: &Path, work: &Path, cgroup_procs: &[PathBuf], net_device: Option<&str>) -> Result<u32> {
        std::fs::create_dir_all(work).map_err(|e| RuntimeError::Checkpoint { op: "restore", message: format!("create {}: {e}", work.display()) })?;
        let log = work.join("restore.log");
        let pidfile = work.join("init.pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("restore").arg("-D").arg(images).arg("-W").arg(work).arg("-o").arg(&log);
        cmd.arg("--root").arg(root).arg("--restore-detached").arg("--pidfile").arg(&pidfile);
        cmd.args(COMMON);
        if let Some(dev) = net_device {
            cmd.arg("--external").arg(format!("netdev[eth0]:{dev}"));
        }
        let procs: Vec<CString> = cgroup_procs.iter().map(|p| CString::new(p.as_os_str().as_encoded_bytes()).unwrap()).collect();
        // CRIU is placed in the sandbox's cgroups before it starts, so every task it
        // forks is born there (it does not manage cgroups itself: --manage-cgroups=ignore).
        // SAFETY: only open/write/close/getpid with preallocated buffers run after fork.
        unsafe {
            cmd.pre_exec(move || {
                let mut buf = [0u8; 16];
                let n = fmt_u32(libc::getpid() as u32, &mut buf);
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, buf.as_ptr().cast(), n) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        self.run("restore", cmd, &log)?;
        let pid = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
            RuntimeError::Checkpoint { op: "restore", message: format!("criu wrote no pid to {}", pidfile.display()) }
        })?;
        Ok(pid)
    }
}

fn fmt_u32(mut v: u32, buf: &mut [u8; 16]) -> usize {
    let mut tmp = [0u8; 16];
    let mut i = 0;
    loop {
        tmp[i] = b'0' + (v % 10) as u8;
        i += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for j in 0..i {
        buf[j] = tmp[i - 1 - j];
    }
    i
}

/// The lines of a CRIU log that say what went wrong (errors are tagged "Error").
fn log_errors(log: &Path, stderr: &[u8]) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errs: Vec<&str> = text.lines().filter(|l| l.contains("Error") || l.contains("error")).collect();
    let picked = if errs.is_empty() { text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect() } else { errs };
    let mut msg = picked.into_iter().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    if msg.is_empty() {
        msg = String::from_utf8_lossy(stderr).trim().to_string();
    }
    format!("{msg} (full log: {})", log.display())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_pids_without_allocating() {
        let mut buf = [0u8; 16];
        let n = super::fmt_u32(40213, &mut buf);
        assert_eq!(&buf[..n], b"40213");
        let n = super::fmt_u32(0, &mut buf);
        assert_eq!(&buf[..n], b"0");
    }
}
