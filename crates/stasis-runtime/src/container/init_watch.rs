//! Keeping hold of each running sandbox's init: a pidfd opened at boot or restore (or the
//! first time this process needs it), used instead of the pid number by CRIU's callers,
//! the proxy and `connect`, and watched so that an init that dies while its sandbox is
//! meant to be running (a crash, the OOM killer, a kill from outside) is noticed at once:
//! the sandbox is recovered (files kept as a filesystem-only pause, or a completed dump
//! committed) and the exit is told on [`crate::Runtime::init_exits`].
//!
//! Also here: freezing a tree for a dump only when its init can be dumped (see
//! `freeze_for_dump`).

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::init::InitHandle;
use super::record::Record;
use super::Inner;
use crate::error::{Result, RuntimeError};
use crate::{InitExit, SandboxState};

impl Inner {
    /// The handle on `rec`'s init (which must be running), opened and watched on first use.
    pub(super) fn init_of(&self, rec: &Record) -> Result<Arc<InitHandle>> {
        let Some(pid) = rec.init_pid.filter(|_| rec.state == SandboxState::Running) else {
            return Err(RuntimeError::NotRunning(rec.id.clone()));
        };
        if let Some(h) = self.inits.lock().unwrap().get(&rec.id).filter(|h| h.pid() == pid) {
            return Ok(h.clone());
        }
        let handle = Arc::new(InitHandle::open(&rec.id, pid, rec.init_start)?);
        self.inits.lock().unwrap().insert(rec.id.clone(), handle.clone());
        self.watch(&rec.id, handle.clone());
        Ok(handle)
    }

    /// Called when the sandbox stops being running on purpose (paused, killed): its
    /// init's exit is then expected, not news.
    pub(super) fn forget_init(&self, id: &str) {
        self.inits.lock().unwrap().remove(id);
    }

    fn is_current(&self, id: &str, handle: &Arc<InitHandle>) -> bool {
        self.inits.lock().unwrap().get(id).is_some_and(|h| Arc::ptr_eq(h, handle))
    }

    /// Waits (on the tokio runtime, if there is one: one-shot commands have no use for
    /// it) for the init to exit, then recovers the sandbox under its lock.
    fn watch(&self, id: &str, handle: Arc<InitHandle>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let Ok(fd) = handle.dup_fd() else { return };
        let (me, id) = (self.me.clone(), id.to_string());
        rt.spawn(async move {
            // SAFETY: an OwnedFd, moved into the AsyncFd: open and the same for its life.
            let Ok(fd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else { return };
            // A pidfd becomes readable when its process exits.
            let _ = fd.readable().await;
            let Some(inner) = me.upgrade() else { return };
            let lock = inner.lock_of(&id);
            let _guard = lock.lock().await;
            if !inner.is_current(&id, &handle) {
                return; // paused, killed or restored anew meanwhile: expected
            }
            inner.forget_init(&id);
            let reason = inner.exit_reason(&id, handle.pid());
            tracing::warn!(sandbox = %id, pid = handle.pid(), "{reason}");
            let (inner2, id2) = (inner.clone(), id.clone());
            let outcome = tokio::task::spawn_blocking(move || inner2.recover(&id2))
                .await
                .expect("recover task panicked")
                .map_err(|e| e.to_string());
            let _ = inner.exits.send(InitExit { id, pid: handle.pid(), outcome, reason });
        });
    }

    /// In words, for the user: the init is gone, and the likely why.
    fn exit_reason(&self, id: &str, pid: u32) -> String {
        let oom = self.cgroups.oom_kills(id);
        if oom > 0 {
            format!("the sandbox's init (pid {pid}) was killed by the out-of-memory killer; its processes are lost, its files are kept")
        } else {
            format!("the sandbox's init (pid {pid}) exited unexpectedly; its processes are lost, its files are kept")
        }
    }

    /// Freezes the sandbox for a CRIU dump, at an instant when its init can be dumped
    /// and no task waits on a vfork.
    ///
    /// CRIU checks the init's namespaces from inside the sandbox's user namespace, which
    /// works only while the init is dumpable or was exec'd inside (docs/architecture.md,
    /// "Pause and resume that never fail"). The agent keeps itself dumpable, but between
    /// one of its fsuid switches and the next instruction it is not, for a moment.
    ///
    /// A shell (dash) and the agent (posix_spawn) start commands by vfork: the parent
    /// waits until its child execs. A freeze landing between the two freezes the child
    /// and leaves the parent waiting on it: the cgroup never reaches frozen (cgroup v1
    /// stays FREEZING), or, where it does, CRIU cannot seize the parent and the dump
    /// times out after 10 s. A freeze landing on any of these moments is undone and
    /// tried again (the child execs in microseconds). Frozen on success.
    pub(super) fn freeze_for_dump(&self, id: &str, init: &InitHandle) -> Result<()> {
        for _ in 0..100 {
            let frozen = self.cgroups.set_frozen_within(id, true, FREEZE_TRY).is_ok();
            if !init.alive() {
                let _ = self.cgroups.set_frozen(id, false);
                return Err(RuntimeError::InitGone { id: id.to_string(), pid: init.pid() });
            }
            if frozen && dumpable_from_inside(init.pid()) && !self.cgroups.pids(id).into_iter().any(waits_on_vfork) {
                return Ok(());
            }
            self.cgroups.set_frozen(id, false)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        // Still not: let CRIU try and say why it cannot.
        self.cgroups.set_frozen(id, true)
    }
}

/// How long one freeze attempt may take before it is undone and tried again: a freezer
/// that has not frozen by then waits on a task that will not freeze (a vfork parent).
const FREEZE_TRY: Duration = Duration::from_millis(100);

/// Whether a thread of `pid` waits in vfork for its child to exec or exit (the kernel
/// function it sleeps in: `wait_for_vfork_done`, or `kernel_clone` where it is inlined).
fn waits_on_vfork(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan"))
            .is_ok_and(|w| matches!(w.trim(), "wait_for_vfork_done" | "kernel_clone"))
    })
}

/// Whether a process in the sandbox's user namespace can open the init's /proc files.
/// The kernel makes a non-dumpable task's /proc files belong to root of the user
/// namespace its memory belongs to; for a restored task that is the host's, uid 0.
fn dumpable_from_inside(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() != 0)
}
