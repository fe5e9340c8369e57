//! CRIU invocations: dump a sandbox's process tree to images, restore it from them.
//!
//! The CLI is used (not the RPC socket): one process per operation keeps CRIU's failures
//! away from the daemon, and its log file is the error report.

use std::ffi::CString;
use std::os::fd::AsRawFd;
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

/// CRIU dump/restore processes (not lazy-pages daemons) working under `dir`.
pub fn operations_for(dir: &Path) -> Vec<u32> {
    running_for(dir).into_iter().filter(|p| !is_lazy_daemon(*p)).collect()
}

/// `criu lazy-pages` daemons serving images under `dir`.
pub fn lazy_daemons_for(dir: &Path) -> Vec<u32> {
    running_for(dir).into_iter().filter(|p| is_lazy_daemon(*p)).collect()
}

fn is_lazy_daemon(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"lazy-pages".as_slice()))
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
        // Named explicitly: that one or an error, never a silent fallback to another CRIU.
        if let Some(p) = std::env::var_os("STASIS_CRIU") {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(Self { binary: p });
            }
            return Err(RuntimeError::Checkpoint {
                op: "locate",
                message: format!("STASIS_CRIU={} does not exist", p.display()),
            });
        }
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
        Err(RuntimeError::Checkpoint {
            op: "locate",
            message: "criu not found: run scripts/setup.sh (or set STASIS_CRIU)".into(),
        })
    }

    fn run(&self, op: &'static str, mut cmd: Command, log: &Path) -> Result<()> {
        sandbox_umask(&mut cmd);
        let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| {
            RuntimeError::Checkpoint { op, message: format!("cannot run {}: {e}", self.binary.display()) }
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(RuntimeError::Checkpoint {
            op,
            message: format!("criu {op} exited with {}: {}", out.status, log_errors(log, &out.stderr)),
        })
    }

    /// Dumps the tree rooted at `pid` into `images`. With `leave_running` the sandbox
    /// goes on afterwards (snapshots); without, its processes are gone on success and
    /// untouched on failure.
    /// `external`: (path inside the sandbox, key) of each bind mount from outside its
    /// root (volumes), recorded by key only; the restore says where each key is.
    pub fn dump(
        &self,
        pid: u32,
        images: &Path,
        freezer: &Path,
        leave_running: bool,
        external: &[(String, String)],
    ) -> Result<()> {
        let log = images.join("dump.log");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("dump").arg("-t").arg(pid.to_string()).arg("-D").arg(images).arg("-o").arg(&log);
        for (path, key) in external {
            cmd.arg("--external").arg(format!("mnt[{path}]:{key}"));
        }
        cmd.arg("--freeze-cgroup").arg(freezer).arg("--ghost-limit").arg("64M");
        // The caller holds the sandbox's outside traffic itself (`Inner::hold_traffic`).
        // A restore uses the method its images were dumped with (their inventory), so
        // this skips the lock at restore too.
        cmd.arg("--network-lock").arg("skip");
        cmd.args(COMMON);
        if leave_running {
            cmd.arg("--leave-running");
        }
        self.run("dump", cmd, &log)
    }

    /// Restores `images` into a new set of namespaces rooted at `root`, with every
    /// restored process placed in the cgroups whose `cgroup.procs` files are given.
    /// Returns the host pid of the restored init.
    /// `gateway_netns`: the named network namespace of the sandbox's gateway. CRIU runs
    /// in it and makes the sandbox's eth0 as a veth whose peer, `network::GATEWAY_IF`,
    /// stays there (the checkpointed eth0's peer lived outside the sandbox); made in
    /// place, not moved across namespaces (`network::setup`).
    /// With `lazy`, memory is not copied before the tree runs: a `criu lazy-pages` daemon
    /// (returned) serves each page on first touch and pushes the rest in the background,
    /// reading the images, which must stay until it exits.
    /// `external`: (key, host directory) of each external bind mount the dump recorded.
    #[allow(clippy::too_many_arguments)] // each is one of CRIU's own options
    pub fn restore(
        &self,
        images: &Path,
        root: &Path,
        work: &Path,
        cgroup_procs: &[PathBuf],
        gateway_netns: Option<&str>,
        external: &[(String, PathBuf)],
        lazy: bool,
        leave_stopped: bool,
    ) -> Result<(u32, Option<std::process::Child>)> {
        std::fs::create_dir_all(work).map_err(|e| RuntimeError::Checkpoint {
            op: "restore",
            message: format!("create {}: {e}", work.display()),
        })?;
        let log = work.join("restore.log");
        let pidfile = work.join("init.pid");
        let _ = std::fs::remove_file(&pidfile);
        let gateway = match gateway_netns {
            Some(ns) => Some(std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| {
                RuntimeError::Checkpoint { op: "restore", message: format!("open network namespace {ns}: {e}") }
            })?),
            None => None,
        };
        let daemon = if lazy { Some(self.start_lazy_pages(images, work)?) } else { None };
        let mut cmd = Command::new(&self.binary);
        cmd.arg("restore").arg("-D").arg(images).arg("-W").arg(work).arg("-o").arg(&log);
        if lazy {
            cmd.arg("--lazy-pages");
        }
        if leave_stopped {
            // The caller lets the tree run (SIGCONT) once it has checked the images.
            cmd.arg("--leave-stopped");
        }
        cmd.arg("--root").arg(root).arg("--restore-detached").arg("--pidfile").arg(&pidfile);
        cmd.args(COMMON);
        if gateway.is_some() {
            cmd.arg("--external").arg(format!("veth[eth0]:{}", super::network::GATEWAY_IF));
        }
        for (key, dir) in external {
            cmd.arg("--external").arg(format!("mnt[{key}]:{}", dir.display()));
        }
        let procs: Vec<CString> =
            cgroup_procs.iter().map(|p| CString::new(p.as_os_str().as_encoded_bytes()).unwrap()).collect();
        // CRIU is placed in the sandbox's cgroups before it starts, so every task it
        // forks is born there (it does not manage cgroups itself: --manage-cgroups=ignore).
        let gateway_fd = gateway.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: only setns/open/write/close/getpid with preallocated buffers run after
        // fork; `gateway` outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = gateway_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
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
        let stop_daemon = |mut d: Option<std::process::Child>| {
            if let Some(d) = d.as_mut() {
                let _ = d.kill();
                let _ = d.wait();
            }
        };
        if let Err(e) = self.run("restore", cmd, &log) {
            stop_daemon(daemon);
            return Err(e);
        }
        let pid = match std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()) {
            Some(p) => p,
            None => {
                stop_daemon(daemon);
                return Err(RuntimeError::Checkpoint {
                    op: "restore",
                    message: format!("criu wrote no pid to {}", pidfile.display()),
                });
            }
        };
        Ok((pid, daemon))
    }

    /// Starts the lazy-pages daemon for `images` and waits until it listens (its socket
    /// is `lazy-pages.socket` in the shared work dir).
    fn start_lazy_pages(&self, images: &Path, work: &Path) -> Result<std::process::Child> {
        let sock = work.join("lazy-pages.socket");
        let _ = std::fs::remove_file(&sock);
        let log = work.join("lazy-pages.log");
        let mut child = Command::new(&self.binary)
            .arg("lazy-pages")
            .arg("-D")
            .arg(images)
            .arg("-W")
            .arg(work)
            .arg("-o")
            .arg(&log)
            .arg("-v2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RuntimeError::Checkpoint {
                op: "lazy-pages",
                message: format!("cannot run {}: {e}", self.binary.display()),
            })?;
        let start = std::time::Instant::now();
        // Listening, not only bound: the daemon binds (the file appears) before it listens,
        // and a restore that connects in between is refused.
        while !(sock.exists() && listens_on_unix(child.id())) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RuntimeError::Checkpoint {
                    op: "lazy-pages",
                    message: format!("daemon exited with {status}: {}", log_errors(&log, b"")),
                });
            }
            if start.elapsed() > std::time::Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RuntimeError::Checkpoint {
                    op: "lazy-pages",
                    message: "daemon did not start listening within 5 s".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(child)
    }

    /// Whether lazy restore can work here: CRIU restores into a user namespace, where
    /// userfaultfd needs `vm.unprivileged_userfaultfd = 1`.
    pub fn lazy_supported() -> bool {
        std::env::var("STASIS_LAZY_RESTORE").map_or(true, |v| v != "0")
            && std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd").is_ok_and(|v| v.trim() == "1")
    }
}

/// CRIU recreates files of the sandbox (tmpfs contents, ghost files) with the usual
/// umask, not the daemon's 077, as before the daemon restricted its own; the images it
/// writes are reached only through root-only directories (`perms.rs`).
fn sandbox_umask(cmd: &mut Command) {
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
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
    // The last 8 error lines; with none, the log's last 5 lines.
    let (lines, n) = if errs.is_empty() { (text.lines().collect::<Vec<_>>(), 5) } else { (errs, 8) };
    let mut msg = lines[lines.len().saturating_sub(n)..].join(" | ");
    if msg.is_empty() {
        msg = String::from_utf8_lossy(stderr).trim().to_string();
    }
    format!("{msg} (full log: {})", log.display())
}

/// Whether process `pid` holds a listening unix socket (`/proc/net/unix` of this
/// network namespace: flag `__SO_ACCEPTCON` 0x10000 is the listening state; the inode
/// ties it to the process's descriptors, since CRIU binds by a relative name).
fn listens_on_unix(pid: u32) -> bool {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    any_listening(&inodes)
}

/// Whether one of the unix sockets `inodes` is listening.
fn any_listening(inodes: &std::collections::HashSet<String>) -> bool {
    if inodes.is_empty() {
        return false;
    }
    let Ok(table) = std::fs::read_to_string("/proc/self/net/unix") else { return false };
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() >= 7
            && inodes.contains(cols[6])
            && u32::from_str_radix(cols[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
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

    #[test]
    fn a_socket_bound_but_not_listening_is_not_ready() {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: a socket we own, closed when `fd` drops.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)) };
        let ino = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        let ino = ino.to_str().unwrap().trim_start_matches("socket:[").trim_end_matches(']').to_string();
        assert_eq!(ino, std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap().ino().to_string());
        let mine = std::collections::HashSet::from([ino]);
        let addr = nix::sys::socket::UnixAddr::new(&dir.path().join("lazy-pages.socket")).unwrap();
        nix::sys::socket::bind(fd.as_raw_fd(), &addr).unwrap();
        assert!(!super::any_listening(&mine), "bound, not listening: a connect would be refused");
        assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 1) }, 0);
        assert!(super::any_listening(&mine), "listening");
        assert!(super::listens_on_unix(std::process::id()), "found among this process's descriptors");
    }
}
