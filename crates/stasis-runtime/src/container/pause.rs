//! Pausing a sandbox: a CRIU dump of its process tree (or, filesystem-only, stopping
//! every process), made durable before anything the sandbox holds is released.
//!
//! The order is the contract: dump, checksums, fsync of the images, syncfs of the writable
//! layer, then the commit point (`record.json` replaced), and only after it the network,
//! the mounts and the cgroups go. A crash before the commit leaves a running sandbox that
//! `recover.rs` sorts out; after it, a paused one.

use std::time::Instant;

use super::fs::{dir_size, syncfs, unmount_fs};
use super::generations::{next_generation, remove_other_generations};
use super::layout::SandboxDir;
use super::record::Record;
use super::{checksum, criu, flush, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::{CheckpointStats, PauseMode, SandboxState};

impl Inner {
    pub(super) fn pause(&self, id: &str, mode: PauseMode) -> Result<CheckpointStats> {
        let mut rec = self.load(id)?;
        let pid = match (rec.state, rec.init_pid) {
            (SandboxState::Paused, _) => return Err(RuntimeError::AlreadyPaused(id.to_string())),
            (SandboxState::Running, Some(pid)) => pid,
            (SandboxState::Running, None) => return Err(RuntimeError::NotRunning(id.to_string())),
        };
        let dir = self.dir(id);
        wait_for_lazy_pages(&dir);
        if mode == PauseMode::Filesystem {
            return self.pause_filesystem(&mut rec, &dir);
        }
        let generation = next_generation(&dir);
        let images = dir.checkpoint(generation);
        std::fs::create_dir_all(&images).ctx(|| format!("create {}", images.display()))?;
        let t0 = Instant::now();
        let written = self.track(id, "pausing", self.cgroups.usage(id).memory_bytes);
        let flusher = flush::Flusher::start(&images, written);
        let dumped = self
            .criu
            .dump(pid, &images, &self.cgroups.freezer(id), false);
        flusher.stop();
        self.untrack(id);
        if let Err(e) = dumped {
            // CRIU leaves the tree running when a dump fails; make sure it is thawed and
            // keep nothing of the attempt.
            let _ = self.cgroups.set_frozen(id, false);
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        let dump_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        // The images file by file (their writeback is mostly done), then the filesystem
        // for the writable layer, whose dirty files we cannot name.
        checksum::write(&images)?;
        flush::fsync_dir(&images).ctx(|| format!("fsync {}", images.display()))?;
        syncfs(&dir.upper())?;
        let sync_ms = t1.elapsed().as_millis() as u64;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = Some(generation);
        // The commit point: from here the sandbox is paused, durably.
        rec.store(&dir.record())?;
        let _ = std::fs::remove_file(dir.path().join("restore/init.pid"));
        self.network_down(&rec);
        unmount_fs(&dir)?;
        self.cgroups.remove(id)?;
        remove_other_generations(&dir, Some(generation));
        Ok(CheckpointStats {
            image_bytes: dir_size(&images),
            dump_ms,
            sync_ms,
        })
    }

    /// Stops every process, keeps the files: the next resume is a fresh boot.
    fn pause_filesystem(&self, rec: &mut Record, dir: &SandboxDir) -> Result<CheckpointStats> {
        let id = rec.id.clone();
        let t0 = Instant::now();
        self.cgroups.kill_all(&id)?;
        self.network_down(rec);
        unmount_fs(&dir)?;
        let dump_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        syncfs(dir.path())?;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = None;
        rec.store(&dir.record())?;
        self.cgroups.remove(&id)?;
        remove_other_generations(dir, None);
        Ok(CheckpointStats {
            image_bytes: 0,
            dump_ms,
            sync_ms: t1.elapsed().as_millis() as u64,
        })
    }
}

/// A lazy restore is still filling memory in: its pages must all be in before the tree
/// is dumped again (a fresh dump reads every page anyway; this bounds the wait).
pub(super) fn wait_for_lazy_pages(dir: &SandboxDir) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while !criu::lazy_daemons_for(dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
