//! One owner per data dir.
//!
//! Two daemons on one data dir would both run their timeouts and CRIU against the same
//! sandboxes (seen: sandboxes stuck in `pausing`). `stasis serve` holds an exclusive
//! `flock` on `DATA/lock` for its whole life and writes its pid in it; `stasis runtime`
//! commands hold a shared one for theirs, so they run side by side but never beside a
//! daemon. The kernel drops the lock when its holder dies, however it dies: a stale lock
//! file is never a reason to refuse.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, RuntimeError};

/// Name of the lock file in a data dir.
pub const LOCK_FILE: &str = "lock";

/// Who holds a data dir; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    kind: LockKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// The daemon: alone on the data dir.
    Daemon,
    /// A one-shot command: beside other commands, never beside a daemon.
    Command,
}

impl DataDirLock {
    /// Takes the lock without waiting, or says who holds it.
    pub fn acquire(data_dir: &Path, kind: LockKind) -> Result<Self> {
        std::fs::create_dir_all(data_dir).ctx(|| format!("create {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let op = match kind {
            LockKind::Daemon => libc::LOCK_EX,
            LockKind::Command => libc::LOCK_SH,
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).ctx(|| format!("lock {}", path.display()));
            }
            return Err(RuntimeError::DataDirInUse { dir: data_dir.to_path_buf(), holder: holder(&mut file, kind) });
        }
        if kind == LockKind::Daemon {
            // Only the exclusive holder writes: shared holders would race each other.
            file.set_len(0).ctx(|| format!("truncate {}", path.display()))?;
            file.rewind().ctx(|| format!("rewind {}", path.display()))?;
            writeln!(file, "{}", std::process::id()).ctx(|| format!("write {}", path.display()))?;
        }
        Ok(Self { file, kind })
    }

    /// Path of the lock file of `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(LOCK_FILE)
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        if self.kind == LockKind::Daemon {
            // A clean exit leaves no pid behind (a crash does: it is checked for life).
            let _ = self.file.set_len(0);
        }
    }
}

/// Describes who holds the lock we could not take.
fn holder(file: &mut File, wanted: LockKind) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    // The pid of the last daemon stays in the file after it exits: believe it only while
    // that process is alive and is a stasis.
    let daemon = text.trim().parse::<u32>().ok().filter(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(6).any(|w| w == b"stasis"))
    });
    match (daemon, wanted) {
        (Some(pid), _) => format!("stasis serve (pid {pid})"),
        // A daemon that has not written its pid yet, or commands holding it shared.
        (None, LockKind::Daemon) => "a running `stasis runtime` command".to_string(),
        (None, LockKind::Command) => "stasis serve".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_excludes_everyone_and_commands_share() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = DataDirLock::acquire(dir.path(), LockKind::Daemon).unwrap();
        let e = DataDirLock::acquire(dir.path(), LockKind::Daemon).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(matches!(DataDirLock::acquire(dir.path(), LockKind::Command), Err(RuntimeError::DataDirInUse { .. })));
        drop(daemon);

        let a = DataDirLock::acquire(dir.path(), LockKind::Command).unwrap();
        let _b = DataDirLock::acquire(dir.path(), LockKind::Command).unwrap();
        let e = DataDirLock::acquire(dir.path(), LockKind::Daemon).unwrap_err();
        assert!(e.to_string().contains("stasis runtime"), "{e}");
        drop(a);
    }

    #[test]
    fn a_stale_pid_in_the_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let _l = DataDirLock::acquire(dir.path(), LockKind::Daemon).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap().trim(), std::process::id().to_string());
    }
}
