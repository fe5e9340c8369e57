//! Recovery after the daemon died mid-operation: brings one sandbox to a consistent
//! state from what its record says and what is left on the host, and says which.
//!
//! It finishes what completed (a dump is committed as a pause, a restore is adopted) and
//! undoes what did not (a half-dumped tree is thawed, a half-restored one removed). It
//! never deletes a sandbox's data: processes gone without a checkpoint leave a
//! filesystem-only paused sandbox.

use std::time::Instant;

use super::fs::{syncfs, unmount_fs};
use super::generations::{generations, remove_other_generations};
use super::pause::{seal, written_this_boot};
use super::record::{self, Record};
use super::{checksum, criu, Inner};
use crate::error::Result;
use crate::{Recovered, SandboxState};

impl Inner {
    pub(super) fn init_alive(rec: &Record) -> bool {
        rec.init_pid.is_some_and(|p| rec.init_start.is_some() && record::start_time(p) == rec.init_start)
    }

    /// Brings a sandbox whose last operation may have been cut short (the daemon died)
    /// to a consistent state, and says which.
    pub(super) fn recover(&self, id: &str) -> Result<Recovered> {
        let mut rec = self.load(id)?;
        let dir = self.dir(id);
        // A CRIU dump or restore left running by a dead daemon finishes on its own: wait
        // for it. (Lazy-pages daemons serve a restored tree for as long as it needs them.)
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while !criu::operations_for(dir.path()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        match rec.state {
            SandboxState::Running if Self::init_alive(&rec) => {
                // A dump that was cut short may have left it frozen.
                let _ = self.cgroups.set_frozen(id, false);
                // Held and watched from now on.
                self.init_of(&rec)?;
                self.network_readopt(&rec);
                Ok(Recovered::Running)
            }
            SandboxState::Running => {
                // The init is gone. If a dump completed, the pause did happen: commit it,
                // unless the host restarted since (its images may never have reached
                // the disk, and were not sealed).
                self.forget_init(id);
                let done = generations(&dir)
                    .into_iter()
                    .filter(|g| criu::dump_completed(&dir.checkpoint(*g)))
                    .filter(|g| {
                        checksum::verify_sizes(&dir.checkpoint(*g), &self.key).is_ok()
                            || written_this_boot(&dir.checkpoint(*g))
                    })
                    .max();
                let _ = self.cgroups.kill_all(id);
                self.network_down(&rec);
                unmount_fs(&dir)?;
                let _ = self.cgroups.remove(id);
                if let Some(g) = done {
                    // Its images may not be durable nor summed yet: seal them now.
                    seal(&dir.checkpoint(g), &self.key, None, None)?;
                    rec.state = SandboxState::Paused;
                    rec.init_pid = None;
                    rec.checkpoint = Some(g);
                    rec.store(&dir.record())?;
                    remove_other_generations(&dir, Some(g));
                    self.finish_upload(id, g);
                    return Ok(Recovered::Paused);
                }
                // Its memory is lost (host reboot, or killed from outside); its files are
                // not: keep them as a filesystem-only paused sandbox.
                syncfs(dir.path())?;
                rec.state = SandboxState::Paused;
                rec.init_pid = None;
                rec.checkpoint = None;
                rec.store(&dir.record())?;
                remove_other_generations(&dir, None);
                Ok(Recovered::MemoryLost)
            }
            SandboxState::Paused => {
                // A restore that completed after the daemon died: adopt it.
                let pidfile = dir.path().join("restore/init.pid");
                let restored = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok());
                let images = rec.checkpoint.map(|g| dir.checkpoint(g));
                let intact = images.as_ref().is_some_and(|i| checksum::verify(i, &self.key).is_ok());
                if let Some(pid) = restored.filter(|p| intact && self.cgroups.pids(id).contains(p)) {
                    // Its images are verified (above): record it, then let it run.
                    rec.state = SandboxState::Running;
                    rec.init_pid = Some(pid);
                    rec.init_start = record::start_time(pid);
                    rec.checkpoint = None;
                    rec.store(&dir.record())?;
                    self.let_run(id);
                    self.init_of(&rec)?;
                    self.network_readopt(&rec);
                    // Its lazy-pages daemon (if any) still reads the images.
                    let d = dir.clone();
                    std::thread::spawn(move || {
                        while !criu::lazy_daemons_for(d.path()).is_empty() {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        remove_other_generations(&d, None);
                    });
                    return Ok(Recovered::Running);
                }
                // Anything half-restored goes, with a lazy-pages daemon started for a
                // restore that never happened; the images stay.
                for p in criu::lazy_daemons_for(dir.path()) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = self.cgroups.kill_all(id);
                self.network_down(&rec);
                unmount_fs(&dir)?;
                let _ = self.cgroups.remove(id);
                remove_other_generations(&dir, rec.checkpoint);
                if let Some(g) = rec.checkpoint {
                    self.finish_upload(id, g);
                }
                Ok(Recovered::Paused)
            }
        }
    }
}
