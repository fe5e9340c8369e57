//! Resuming a paused sandbox: a CRIU restore of its memory images (lazy when the host
//! allows), verified against their keyed checksums before CRIU starts, or a fresh boot
//! on its files when it has no memory image.
//!
//! The restored tree stays stopped until it is recorded as running (`let_run`).
//! Snapshots restore through the same `restore_from`.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use super::fs::{dir_size, mount_fs, unmount_fs};
use super::generations::{discard_generations_later, remove_other_generations};
use super::layout::SandboxDir;
use super::record::{self, Record};
use super::remote::{checkpoint_rel, checkpoints_rel};
use super::Inner;
use crate::error::{Result, RuntimeError};
use crate::{PauseMode, SandboxState};

impl Inner {
    pub(super) fn resume(&self, id: &str, mode: PauseMode) -> Result<()> {
        let mut rec = self.load(id)?;
        if rec.state == SandboxState::Running && !Self::init_alive(&rec) {
            // A pause that could not be completed, or an init that died unnoticed: finish
            // it from what is left (`recover.rs`) before resuming.
            self.recover(id)?;
            rec = self.load(id)?;
        }
        if rec.state != SandboxState::Paused {
            return Err(RuntimeError::NotPaused(id.to_string()));
        }
        let dir = self.dir(id);
        let generation = match (rec.checkpoint, mode) {
            (Some(g), PauseMode::Memory) => g,
            // No memory image (or the caller wants a reboot): a fresh boot on the files.
            // The images are dropped only once the new boot is recorded.
            _ => {
                let result = self.boot(&mut rec, &dir);
                if result.is_err() {
                    let _ = self.cgroups.kill_all(id);
                    let _ = unmount_fs(&dir);
                    let _ = self.cgroups.remove(id);
                } else {
                    remove_other_generations(&dir, None);
                    self.forget_remote_later(checkpoints_rel(id));
                    self.forget_remote_later(super::layer::layer_rel(id));
                }
                return result;
            }
        };
        // Not on this host (another node paused it, or the cache was dropped): fetched
        // from the object store, and verified like any image before CRIU reads it.
        let images = dir.checkpoint(generation);
        let fetched = self.fetch_images(&images, &checkpoint_rel(id, generation))?;
        let daemon = match self.restore_from(&mut rec, &dir, &images) {
            Ok(d) => d,
            Err(e) => {
                if fetched {
                    let _ = std::fs::remove_dir_all(&images);
                }
                return Err(e);
            }
        };
        // Deleting a GiB of images takes longer than the restore itself: moved aside now,
        // deleted in the background once no lazy-pages daemon reads them (a leftover is
        // removed at kill).
        discard_generations_later(&dir, daemon);
        // Running again: its checkpoint and layer set are stale.
        self.forget_remote_later(checkpoints_rel(id));
        self.forget_remote_later(super::layer::layer_rel(id));
        Ok(())
    }

    /// Restores the memory images in `images` into the sandbox of `rec` (its overlay
    /// mounted, its cgroups made) and records it as running. On failure nothing of the
    /// attempt is left running and `rec` is unchanged on disk.
    /// Returns the lazy-pages daemon still filling memory in, if restore was lazy.
    pub(super) fn restore_from(
        &self,
        rec: &mut Record,
        dir: &SandboxDir,
        images: &Path,
    ) -> Result<Option<std::process::Child>> {
        let id = rec.id.clone();
        let total = dir_size(images);
        let read = self.track(&id, "resuming", total);
        let result = self.restore_tracked(rec, dir, images, read);
        self.untrack(&id);
        result
    }

    fn restore_tracked(
        &self,
        rec: &mut Record,
        dir: &SandboxDir,
        images: &Path,
        read: Arc<AtomicU64>,
    ) -> Result<Option<std::process::Child>> {
        let id = rec.id.clone();
        // A tree still alive in its cgroups (an earlier attempt that did run) is never
        // torn down by a retry: refuse instead.
        if !self.cgroups.pids(&id).is_empty() {
            return Err(RuntimeError::Checkpoint {
                op: "restore",
                message: format!("sandbox {id} still has processes from an earlier attempt; recover it first"),
            });
        }
        // Every image is verified against the keyed manifest before CRIU (host root, a
        // parser of these files) starts: a changed byte anywhere and nothing runs. A
        // snapshot's images (immutable) are hashed once per process, a checkpoint's not
        // again by the process that sealed them, if unchanged since (`verified.rs`).
        let t_verify = Instant::now();
        self.verified.verify(images, &self.key, images.starts_with(self.layout.snapshots()))?;
        let verify_ms = t_verify.elapsed().as_millis() as u64;
        let mut net_up = false;
        // Phase timings for the log line (issue 19: where a resume's time goes).
        let mut ms = [0u64; 4];
        let mut lap = {
            let mut t = Instant::now();
            move || {
                let e = t.elapsed().as_millis() as u64;
                t = Instant::now();
                e
            }
        };
        let restored =
            self.cgroups.create(&id, &rec.spec).and_then(|_| mount_fs(rec, dir, &self.layout)).and_then(|_| {
                ms[0] = lap();
                let net = self.network_up(rec)?;
                ms[1] = lap();
                net_up = net.is_some();
                let gateway = net.as_ref().map(|n| n.netns.as_str());
                let (external, staged) = super::volumes::restore_externals_for(
                    &self.layout,
                    &rec.spec.volumes,
                    rec.ids(),
                    &dir.path().join("volumes"),
                )?;
                ms[2] = lap();
                let r = self.criu.restore(
                    images,
                    &dir.rootfs(),
                    &dir.path().join("restore"),
                    &self.cgroups.procs_files(&id),
                    gateway,
                    &external,
                    self.lazy,
                    true,
                );
                // The restored namespace has its own binds of them by now.
                super::volumes::unbind(&staged);
                // The tree is still stopped: its link to the gateway works before it runs.
                let r = r.and_then(|(pid, daemon)| match net.as_ref().map(super::network::gateway_link_up) {
                    Some(Err(e)) => {
                        stop_daemon(daemon);
                        Err(e)
                    }
                    _ => Ok((pid, daemon)),
                });
                ms[3] = lap();
                r
            });
        read.store(dir_size(images), std::sync::atomic::Ordering::Relaxed);
        let undo = |rec: &Record| {
            let _ = self.cgroups.kill_all(&id);
            // Only what this attempt set up: the index in `rec` may be another run's.
            if net_up {
                self.network_down(rec);
            }
            let _ = unmount_fs(dir);
            let _ = self.cgroups.remove(&id);
        };
        let (pid, daemon) = match restored {
            Ok(r) => r,
            Err(e) => {
                undo(rec);
                return Err(e);
            }
        };
        let before = rec.clone();
        rec.state = SandboxState::Running;
        rec.init_pid = Some(pid);
        rec.init_start = record::start_time(pid);
        rec.checkpoint = None;
        // Recorded before it runs: a tree that runs is always one the record names.
        if let Err(e) = rec.store(&dir.record()) {
            stop_daemon(daemon);
            undo(rec);
            *rec = before;
            return Err(e);
        }
        self.let_run(&id);
        // Watched from now on (an init that died already is found by the next operation).
        let _ = self.init_of(rec);
        tracing::info!(
            sandbox = %id,
            verify_ms,
            mounts_ms = ms[0],
            network_ms = ms[1],
            volumes_ms = ms[2],
            criu_ms = ms[3],
            record_ms = lap(),
            lazy = daemon.is_some(),
            "restored"
        );
        Ok(daemon)
    }

    /// Starts a restored tree: restores leave it stopped (and, on v1, possibly frozen)
    /// until its images are verified.
    pub(super) fn let_run(&self, id: &str) {
        let _ = self.cgroups.set_frozen(id, false);
        for p in self.cgroups.pids(id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGCONT);
        }
    }
}

fn stop_daemon(daemon: Option<std::process::Child>) {
    if let Some(mut d) = daemon {
        let _ = d.kill();
        let _ = d.wait();
    }
}
