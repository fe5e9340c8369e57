//! A handle on a sandbox's init (the agent, PID 1 inside) that can never name another
//! process.
//!
//! A pid number is reused once its process is gone; a pidfd is not: it refers to the one
//! process it was opened on, for as long as it is open. The handle is opened only after
//! checking that the pid's start time is the one recorded at boot or restore (so it is the
//! init, not a later process with its number), and from then on every use goes through the
//! pidfd: entering its network namespace (`setns` takes a pidfd), checking it is alive,
//! and waiting for it to exit.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Result, RuntimeError};

use super::record;

#[derive(Debug)]
pub struct InitHandle {
    pid: u32,
    fd: OwnedFd,
}

impl InitHandle {
    /// Opens a handle on `pid`, which must be the process that started at `start` (clock
    /// ticks since host boot, as [`record::start_time`] reads it).
    pub fn open(id: &str, pid: u32, start: Option<u64>) -> Result<Self> {
        let gone = || RuntimeError::InitGone { id: id.to_string(), pid };
        // SAFETY: pidfd_open has no memory arguments; a non-negative result is a new fd.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return Err(gone());
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // Checked after opening: if the start time still matches now, the pidfd was
        // opened on that very process (a pid is not reused while the process lives).
        if start.is_none() || record::start_time(pid) != start {
            return Err(gone());
        }
        Ok(Self { pid, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// False once the process has exited (a pidfd becomes readable then).
    pub fn alive(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd on the stack, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        !(n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0)
    }

    /// Waits (blocking) until the process exits.
    pub fn wait_exit(&self) {
        loop {
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd on the stack, no timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, -1) };
            if n > 0 || (n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
                return;
            }
        }
    }

    /// A second descriptor on the same process (for a task that waits on it).
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Moves the calling thread into the init's network namespace.
    pub fn enter_netns(&self) -> io::Result<()> {
        nix::sched::setns(self.fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Sends `signal` to the init, never to a process that reused its pid.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a null siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_one_process_and_refuses_a_wrong_start_time() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = record::start_time(pid);
        assert!(InitHandle::open("t", pid, start.map(|s| s + 1)).is_err(), "another start time is another process");
        let h = InitHandle::open("t", pid, start).unwrap();
        assert!(h.alive());
        h.signal(libc::SIGKILL).unwrap();
        let _ = child.wait();
        h.wait_exit();
        assert!(!h.alive());
        assert!(InitHandle::open("t", pid, start).is_err(), "a dead process gets no handle");
    }
}
