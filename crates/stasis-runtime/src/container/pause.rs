//! Pausing a sandbox: a CRIU dump of its process tree (or, filesystem-only, stopping
//! every process), made durable before anything the sandbox holds is released.
//!
//! The order is the contract: dump, checksums, fsync of the images, syncfs of the writable
//! layer, then the commit point (`record.json` replaced), and only after it the network,
//! the mounts and the cgroups go. A crash before the commit leaves a running sandbox that
//! `recover.rs` sorts out; after it, a paused one.

use std::path::Path;
use std::time::Instant;

use super::fs::{dir_size, syncfs, unmount_fs};
use super::generations::{discard_generations_later, next_generation, remove_other_generations};
use super::layout::SandboxDir;
use super::record::Record;
use super::remote::{checkpoint_rel, checkpoints_rel};
use super::{checksum, criu, flush, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::{CheckpointStats, PauseMode, SandboxState};

impl Inner {
    pub(super) fn pause(&self, id: &str, mode: PauseMode) -> Result<CheckpointStats> {
        let mut rec = self.load(id)?;
        match (rec.state, rec.init_pid) {
            (SandboxState::Paused, _) => return Err(RuntimeError::AlreadyPaused(id.to_string())),
            (SandboxState::Running, Some(_)) => {}
            (SandboxState::Running, None) => return Err(RuntimeError::NotRunning(id.to_string())),
        }
        let dir = self.dir(id);
        wait_for_lazy_pages(&dir);
        if mode == PauseMode::Filesystem {
            return self.pause_filesystem(&mut rec, &dir);
        }
        let init = match self.init_of(&rec) {
            Ok(init) => init,
            Err(e @ RuntimeError::InitGone { .. }) => {
                // Nothing to dump: its processes are gone. Bring it to what is left
                // (a committed earlier dump, or its files) and say so.
                let _ = self.recover(id);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // Its images are about its memory in use: refused (still running) if that would
        // cut into the host's disk reserve.
        let memory = self.cgroups.usage(id).memory_bytes;
        super::space::check(dir.path(), self.disk_reserve, "pause", memory)?;
        let generation = next_generation(&dir);
        let images = dir.checkpoint(generation);
        std::fs::create_dir_all(&images).ctx(|| format!("create {}", images.display()))?;
        let t0 = Instant::now();
        if let Err(e) = self.freeze_for_dump(id, &init) {
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        // The writable layer first, while nothing can write to it: its blocks are then on
        // disk before the images take space, so a disk that fills during the dump costs
        // the pause, never the sandbox's files (a sparse disk image whose host disk is full
        // would drop their writeback).
        if let Err(e) = syncfs(&dir.upper()) {
            let _ = self.cgroups.set_frozen(id, false);
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        if let Err(e) = self.hold_traffic(&rec, true) {
            let _ = self.cgroups.set_frozen(id, false);
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        let written = self.track(id, "pausing", self.cgroups.usage(id).memory_bytes);
        let flusher = flush::Flusher::start(&images, written);
        let hasher = checksum::EarlyHasher::start(&images, &self.key);
        let external = super::volumes::dump_externals(&rec.spec.volumes);
        let dumped = self.criu.dump(init.pid(), &images, &self.cgroups.freezer(id), false, &external);
        flusher.stop();
        let early = hasher.finish();
        self.untrack(id);
        if let Err(e) = dumped {
            // CRIU leaves the tree running when a dump fails; make sure it is thawed,
            // reachable, and keep nothing of the attempt.
            let _ = self.hold_traffic(&rec, false);
            let _ = self.cgroups.set_frozen(id, false);
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        let dump_ms = t0.elapsed().as_millis() as u64;
        // The point of no return: the processes are gone, the images are complete. What
        // follows makes them durable; if it fails, the init's watcher (or the next
        // operation, or recovery at start) finishes it from the images (`recover.rs`).
        let t1 = Instant::now();
        let sealed = seal(&images, &self.key, Some(&self.verified), Some(&early)).and_then(|()| syncfs(&dir.upper()));
        if let Err(e) = sealed {
            return Err(RuntimeError::PauseIncomplete { id: id.to_string(), message: e.to_string() });
        }
        let sync_ms = t1.elapsed().as_millis() as u64;
        // Durable where it must be: in the object store too, before the commit point; in a
        // cluster with its writable layer and record, so any node can resume it (`layer.rs`).
        let t2 = Instant::now();
        let mut paused = rec.clone();
        paused.state = SandboxState::Paused;
        paused.init_pid = None;
        paused.init_start = None;
        paused.checkpoint = Some(generation);
        let uploaded = std::thread::scope(|s| {
            let layer = self
                .shares_layers()
                .then(|| s.spawn(|| self.export_layer(&dir, &paused).and_then(|set| self.upload_layer(id, &set))));
            let images_up = self.upload_images(&images, &checkpoint_rel(id, generation));
            let layer_up = layer.map_or(Ok(()), |h| h.join().expect("layer upload thread panicked"));
            images_up.and(layer_up)
        });
        if let Err(e) = uploaded {
            let _ = std::fs::remove_dir_all(dir.path().join("layer"));
            return Err(self.undo_pause(&mut rec, &dir, &images, e));
        }
        let upload_ms = t2.elapsed().as_millis() as u64;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = Some(generation);
        // The commit point: from here the sandbox is paused, durably.
        if let Err(e) = rec.store(&dir.record()) {
            return Err(RuntimeError::PauseIncomplete { id: id.to_string(), message: e.to_string() });
        }
        self.forget_init(id);
        let _ = std::fs::remove_file(dir.path().join("restore/init.pid"));
        self.network_down(&rec);
        // Paused, whatever follows: what the sandbox holds is released, and a release
        // that cannot finish yet (a disk whose filesystem the kernel still holds) is said,
        // not turned into a failed pause. The next resume waits for it (`disk::mount`).
        if let Err(e) = unmount_fs(&dir).and_then(|()| self.cgroups.remove(id)) {
            tracing::warn!(sandbox = %id, "paused, but not all it held is released yet: {e}");
        }
        remove_other_generations(&dir, Some(generation));
        self.forget_other_remote_generations(id, generation);
        // The set is in the bucket; the local copy of it is not needed.
        let _ = std::fs::remove_dir_all(dir.path().join("layer"));
        let hashed_early_bytes = early.bytes();
        Ok(CheckpointStats { image_bytes: dir_size(&images), dump_ms, sync_ms, upload_ms, hashed_early_bytes })
    }

    /// Stops every process, keeps the files: the next resume is a fresh boot.
    fn pause_filesystem(&self, rec: &mut Record, dir: &SandboxDir) -> Result<CheckpointStats> {
        let id = rec.id.clone();
        let t0 = Instant::now();
        self.forget_init(&id);
        self.cgroups.kill_all(&id)?;
        self.network_down(rec);
        unmount_fs(dir)?;
        let dump_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        syncfs(dir.path())?;
        let mut paused = rec.clone();
        paused.state = SandboxState::Paused;
        paused.init_pid = None;
        paused.init_start = None;
        paused.checkpoint = None;
        let t2 = Instant::now();
        if self.shares_layers() {
            // Its processes are gone already: a failed upload leaves it to recovery (paused
            // on this node only), and the pause fails saying so.
            self.export_layer(dir, &paused).and_then(|set| self.upload_layer(&id, &set))?;
            let _ = std::fs::remove_dir_all(dir.path().join("layer"));
        }
        let upload_ms = t2.elapsed().as_millis() as u64;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = None;
        rec.store(&dir.record())?;
        self.cgroups.remove(&id)?;
        remove_other_generations(dir, None);
        self.forget_remote(&checkpoints_rel(&id));
        Ok(CheckpointStats {
            image_bytes: 0,
            dump_ms,
            sync_ms: t1.elapsed().as_millis() as u64,
            upload_ms,
            ..Default::default()
        })
    }

    /// A memory pause whose images could not be uploaded is not durable: it is undone,
    /// the sandbox restored from the local images (it goes on running, as after any
    /// failed pause) and the upload's error returned. If even that restore fails, the
    /// dump is left uncommitted for recovery to commit on this host only
    /// (`PauseIncomplete`): its processes are gone, its images are all there is.
    fn undo_pause(&self, rec: &mut Record, dir: &SandboxDir, images: &Path, upload: RuntimeError) -> RuntimeError {
        let id = rec.id.clone();
        tracing::warn!(sandbox = %id, "pause not durable, restoring it: {upload}");
        self.forget_init(&id);
        let _ = self.cgroups.kill_all(&id);
        self.network_down(rec);
        let restored = unmount_fs(dir).and_then(|()| {
            let _ = self.cgroups.remove(&id);
            self.restore_from(rec, dir, images)
        });
        match restored {
            Ok(daemon) => {
                discard_generations_later(dir, daemon);
                RuntimeError::ObjectStore(format!(
                    "pause of {id} failed: its checkpoint could not be uploaded ({upload}); the sandbox goes on running"
                ))
            }
            Err(e) => RuntimeError::PauseIncomplete {
                id,
                message: format!("its checkpoint could not be uploaded ({upload}) and restoring it failed ({e}); it is kept on this host only"),
            },
        }
    }
}

/// Makes a completed dump's images durable, then writes their checksums: a checksum is
/// only ever written over images that reached the disk, so a manifest vouches for them.
/// With `verified`, this process remembers the images as hashed (`checksum/verified.rs`):
/// a resume by it finds them unchanged and does not hash them again. The chunks in
/// `early` (hashed while the dump wrote them, `checksum/early.rs`) are not hashed twice.
pub(super) fn seal(
    images: &Path,
    key: &checksum::Key,
    verified: Option<&checksum::Verified>,
    early: Option<&checksum::Early>,
) -> Result<()> {
    super::perms::checkpoint_images(images).ctx(|| format!("chmod {}", images.display()))?;
    flush::fsync_dir(images).ctx(|| format!("fsync {}", images.display()))?;
    match verified {
        Some(v) => v.seal(images, key, early)?,
        None => checksum::write_with(images, key, early)?,
    }
    flush::fsync_dir(images).ctx(|| format!("fsync {}", images.display()))
}

/// Whether the images were written since the host last booted. Images a dump wrote
/// before a host crash may never have reached the disk, whatever its log says, unless
/// they were sealed.
pub(super) fn written_this_boot(images: &Path) -> bool {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
    let written = std::fs::metadata(images.join("dump.log"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    matches!((boot, written), (Some(b), Some(w)) if w.as_secs() >= b)
}

/// A lazy restore is still filling memory in: its pages must all be in before the tree
/// is dumped again (a fresh dump reads every page anyway; this bounds the wait).
pub(super) fn wait_for_lazy_pages(dir: &SandboxDir) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while !criu::lazy_daemons_for(dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
