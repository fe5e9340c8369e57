//! A paused sandbox's writable layer and record as a *layer set* in the object store, so
//! any node of a cluster can resume it (docs/architecture.md, "A paused sandbox resumes
//! on any node"). Only with `share_layers` (a cluster with an object store).
//!
//! ```text
//! PREFIX/sandboxes/ID/layer/disk-data.img   the allocated extents of disk.img, concatenated
//! PREFIX/sandboxes/ID/layer/disk-map.img    JSON: disk size, extents, record, source data dir
//! PREFIX/sandboxes/ID/layer/checksums.json  keyed manifest of both, uploaded last
//! ```
//!
//! Export (at pause, before the commit point): the disk's filesystem is frozen while its
//! allocated extents (`SEEK_DATA`/`SEEK_HOLE`) are copied into `DIR/layer/`, then thawed;
//! the set is sealed with the checkpoint key and uploaded. Import (a takeover): the set is
//! fetched and verified in full, `disk.img` rebuilt sparse at the extents' offsets, and the
//! record rebased onto this node's data dir. Must not: decide which node resumes (the
//! lifecycle's), or trust anything of the set before its manifest's MAC is checked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::layout::SandboxDir;
use super::record::Record;
use super::{checksum, random_hex, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::SandboxState;

pub(super) const DATA: &str = "disk-data.img";
pub(super) const MAP: &str = "disk-map.img";

pub(super) fn layer_rel(id: &str) -> String {
    format!("sandboxes/{id}/layer")
}

/// What `disk-map.img` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskMap {
    /// Size of `disk.img` (sparse).
    size: u64,
    /// Data extents (offset, length), in the order of `disk-data.img`.
    extents: Vec<(u64, u64)>,
    /// The data dir the record's paths are under.
    data_dir: String,
    record: Record,
}

/// The data extents of `f` (offset, length), by `SEEK_DATA` / `SEEK_HOLE`.
pub(super) fn data_extents(f: &File) -> std::io::Result<Vec<(u64, u64)>> {
    let size = f.metadata()?.len() as i64;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while pos < size {
        // SAFETY: lseek on an fd we own; no memory is touched.
        let start = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if start < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after pos
            }
            return Err(e);
        }
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        if end < 0 {
            return Err(std::io::Error::last_os_error());
        }
        out.push((start as u64, (end - start) as u64));
        pos = end;
    }
    Ok(out)
}

/// Freezes the filesystem mounted at `mount` until dropped (`FIFREEZE` / `FITHAW`): a
/// frozen filesystem is clean on disk, as if unmounted.
struct Frozen(File);

const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

impl Frozen {
    fn freeze(mount: &Path) -> std::io::Result<Self> {
        let f = File::open(mount)?;
        // SAFETY: ioctl with an int argument on a directory fd we own.
        if unsafe { libc::ioctl(f.as_raw_fd(), FIFREEZE as _, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(f))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), FITHAW as _, 0) } < 0 {
            tracing::warn!("cannot thaw a sandbox disk: {}", std::io::Error::last_os_error());
        }
    }
}

/// Copies the data extents of `image` into `out` (DATA and MAP), `rec` and `data_dir`
/// in the map. Returns the bytes of data copied.
fn write_set(image: &Path, out: &Path, rec: &Record, data_dir: &Path) -> std::io::Result<u64> {
    let mut src = File::open(image)?;
    let size = src.metadata()?.len();
    let extents = data_extents(&src)?;
    let mut dst = std::io::BufWriter::with_capacity(1 << 20, File::create(out.join(DATA))?);
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0;
    for &(off, len) in &extents {
        src.seek(SeekFrom::Start(off))?;
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            src.read_exact(&mut buf[..n])?;
            dst.write_all(&buf[..n])?;
            left -= n as u64;
        }
        copied += len;
    }
    dst.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let map = DiskMap { size, extents, data_dir: data_dir.display().to_string(), record: rec.clone() };
    let f = File::create(out.join(MAP))?;
    serde_json::to_writer(&f, &map)?;
    f.sync_all()?;
    Ok(copied)
}

/// The overlay's upper layer names its lower layers by file handle (`index=on`: every
/// copied-up directory's `trusted.overlay.origin`, the index under `work/`); on another
/// node the lowers are other directories, whose handles differ. With `nfs_export=on` the
/// overlay verifies a directory's origin and, when it is stale, merges nothing below it:
/// a directory the sandbox had written in (`/home/user`) would show only its own files,
/// none of its template's or its snapshot's. The root's stale origin fails the mount
/// (ESTALE). The disk is mounted once to drop them all (the overlay records them anew
/// as it looks directories up; copied-up files' own origins are only hints, ignored when
/// stale).
fn forget_lower_handles(image: &Path, mount: &Path, disk_mb: u64) -> Result<()> {
    super::disk::mount(image, mount, disk_mb)?;
    let upper = mount.join("upper");
    let work = mount.join("work");
    let fixed = (|| -> std::io::Result<()> {
        forget_dir_origins(&upper)?;
        if work.exists() {
            for e in std::fs::read_dir(&work)?.flatten() {
                match e.file_type()?.is_dir() {
                    true => std::fs::remove_dir_all(e.path())?,
                    false => std::fs::remove_file(e.path())?,
                }
            }
        }
        Ok(())
    })();
    let unmounted = super::disk::unmount(image, mount);
    fixed.ctx(|| format!("drop the old node's lower handles in {}", mount.display()))?;
    unmounted
}

/// Removes `trusted.overlay.origin` from `dir` and every directory under it (symlinks
/// are not followed).
fn forget_dir_origins(dir: &Path) -> std::io::Result<()> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let name = c"trusted.overlay.origin";
    // SAFETY: two valid NUL-terminated strings.
    if unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENODATA) {
            return Err(e);
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type()?.is_dir() {
            forget_dir_origins(&e.path())?;
        }
    }
    Ok(())
}

/// Rewrites `path` (a path under `from`, the source's data dir) under `to`.
pub(super) fn rebase(path: &str, from: &str, to: &Path) -> String {
    match Path::new(path).strip_prefix(from) {
        Ok(rel) => to.join(rel).display().to_string(),
        Err(_) => path.to_string(),
    }
}

impl Inner {
    /// Whether paused sandboxes' layers go to the object store (a cluster with one).
    pub(super) fn shares_layers(&self) -> bool {
        self.share_layers && self.remote.is_some()
    }

    /// Makes the layer set of the sandbox of `rec` (about to be recorded paused, `paused`
    /// its record as it will be) in `DIR/layer/`, its disk frozen meanwhile when mounted.
    /// Returns the directory to upload.
    pub(super) fn export_layer(&self, dir: &SandboxDir, paused: &Record) -> Result<PathBuf> {
        let out = dir.path().join("layer");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).ctx(|| format!("create {}", out.display()))?;
        let image = dir.disk_image();
        if !image.exists() {
            return Err(RuntimeError::ObjectStore(format!(
                "sandbox {} has no disk image (disk size 0): its layer cannot move between nodes",
                paused.id
            )));
        }
        let t0 = Instant::now();
        let frozen = match super::overlay::is_mounted(&dir.disk()) {
            true => Some(Frozen::freeze(&dir.disk()).ctx(|| format!("freeze {}", dir.disk().display()))?),
            false => None,
        };
        let copied = write_set(&image, &out, paused, self.layout.root());
        drop(frozen);
        let copied = copied.ctx(|| format!("copy the layer of {}", paused.id))?;
        super::pause::seal(&out, &self.key, None, None)?;
        // Sealing closes the images' parent (for `checkpoints/`): here that is the sandbox's
        // own dir, which its range's root must keep traversing (CRIU opens its volumes'
        // staged mounts in it at restore).
        super::perms::sandbox_dir(dir.path())?;
        tracing::info!(sandbox = %paused.id, bytes = copied, ms = t0.elapsed().as_millis() as u64, "layer exported");
        Ok(out)
    }

    /// After a daemon died during a pause's upload (recovery, the sandbox recorded
    /// paused): its layer set is exported and uploaded again unless the bucket holds it
    /// whole (its manifest, uploaded last, there, and no set left half-made here).
    /// Failures are logged: the sandbox stays resumable on this node.
    pub(super) fn finish_layer_upload(&self, id: &str) {
        let (Some(remote), true) = (&self.remote, self.shares_layers()) else { return };
        let dir = self.dir(id);
        let set = dir.path().join("layer");
        let whole = |objs: Vec<(String, u64)>| objs.iter().any(|(name, _)| name == checksum::MANIFEST);
        if !set.exists() && remote.list(&layer_rel(id)).is_ok_and(whole) {
            return;
        }
        let uploaded = self.load(id).and_then(|mut paused| {
            paused.init_pid = None;
            paused.init_start = None;
            self.export_layer(&dir, &paused).and_then(|s| self.upload_layer(id, &s))
        });
        let _ = std::fs::remove_dir_all(&set);
        match uploaded {
            Ok(()) => tracing::info!(sandbox = %id, "layer set uploaded after an interrupted pause"),
            Err(e) => {
                tracing::warn!(sandbox = %id, "paused on this host only: its layer is not in the object store yet ({e})")
            }
        }
    }

    /// Uploads the layer set in `set` (from [`Inner::export_layer`]).
    pub(super) fn upload_layer(&self, id: &str, set: &Path) -> Result<()> {
        self.upload_images(set, &layer_rel(id))
    }

    /// Makes the paused sandbox `id`, paused on another node, this node's: its layer set
    /// fetched and verified, `disk.img` rebuilt, the record rebased; its memory images are
    /// fetched by the resume that follows. A local copy (this node held it before) is
    /// replaced.
    pub(super) fn import_paused(&self, id: &str) -> Result<()> {
        let Some(_) = &self.remote else {
            return Err(RuntimeError::ObjectStore(format!(
                "sandbox {id} is paused on another node and this node has no object store"
            )));
        };
        let t0 = Instant::now();
        let dir = self.dir(id);
        let staging = self.layout.sandboxes().join(format!(".{id}.import-{}", random_hex(4)));
        let result = self.import_into(id, &staging);
        let result = result.and_then(|()| {
            if dir.path().exists() {
                // A stale copy (paused here before, taken over since): replaced.
                let _ = super::disk::unmount(&dir.disk_image(), &dir.disk());
                std::fs::remove_dir_all(dir.path()).ctx(|| format!("remove {}", dir.path().display()))?;
            }
            std::fs::rename(&staging, dir.path()).ctx(|| format!("rename to {}", dir.path().display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result?;
        let rec = self.load(id)?;
        if let Some(base) = rec.id_base {
            self.id_ranges.register(base, &dir.record())?;
        }
        tracing::info!(sandbox = %id, ms = t0.elapsed().as_millis() as u64, "paused sandbox imported from the object store");
        Ok(())
    }

    fn import_into(&self, id: &str, staging: &Path) -> Result<()> {
        std::fs::create_dir_all(staging).ctx(|| format!("create {}", staging.display()))?;
        super::perms::sandbox_dir(staging)?;
        let set = staging.join("layer");
        self.fetch_images(&set, &layer_rel(id))?;
        super::perms::sandbox_dir(staging)?; // the fetch closed it as an images' parent
        checksum::verify(&set, &self.key)?;
        let bad = |m: String| RuntimeError::CorruptCheckpoint(format!("layer of {id}: {m}"));
        let map: DiskMap = serde_json::from_slice(&std::fs::read(set.join(MAP)).ctx(|| "read the disk map".into())?)
            .map_err(|e| bad(format!("unreadable disk map ({e})")))?;
        if map.record.id != id || map.record.state != SandboxState::Paused {
            return Err(bad(format!("the set is of {} in state {:?}", map.record.id, map.record.state)));
        }
        // A snapshot's layer (a sandbox made from a snapshot, a fork, a copy of a warm
        // template) moves only through the bucket: fetched here if it is there, else the
        // sandbox resumes only where it was paused (a same-named dir here that did not
        // come from the bucket is another capture: a warm template's is made by each node).
        let lowers =
            self.lowers_here(&map.record.lower_dirs, &map.data_dir, &format!("sandbox {id}")).map_err(|e| match e {
                RuntimeError::Immovable(m) => RuntimeError::Immovable(format!("sandbox {id}: {m}")),
                other => other,
            })?;
        // The disk: sparse, its data written back at its offsets.
        let image = staging.join("disk.img");
        let data = File::open(set.join(DATA)).ctx(|| "open the layer data".into())?;
        let out =
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
                .open(&image)
                .ctx(|| format!("create {}", image.display()))?;
        out.set_len(map.size).ctx(|| "size the disk image".into())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        for &(off, len) in &map.extents {
            if off.checked_add(len).is_none_or(|e| e > map.size) {
                return Err(bad(format!("extent {off}+{len} beyond the disk's {} bytes", map.size)));
            }
            let mut done = 0;
            while done < len {
                let n = ((len - done) as usize).min(buf.len());
                data.read_exact_at(&mut buf[..n], at).ctx(|| "read the layer data".into())?;
                out.write_all_at(&buf[..n], off + done).ctx(|| "write the disk image".into())?;
                done += n as u64;
                at += n as u64;
            }
        }
        out.sync_all().ctx(|| "sync the disk image".into())?;
        drop(out);
        forget_lower_handles(&image, &staging.join("disk"), map.record.spec.disk_mb)?;
        // The record, on this node's paths; no network index of the old node's.
        let mut rec = map.record;
        rec.net_index = None;
        rec.init_pid = None;
        rec.init_start = None;
        rec.lower_dirs = lowers;
        rec.store(&staging.join("record.json"))?;
        // The images come down at resume, into the generation the record names.
        let _ = std::fs::remove_dir_all(&set);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_of_a_sparse_file_are_its_written_ranges() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 8192], 1 << 20).unwrap();
        f.write_all_at(&[2u8; 4096], 32 << 20).unwrap();
        f.sync_all().unwrap();
        let e = data_extents(&File::open(&p).unwrap()).unwrap();
        let total: u64 = e.iter().map(|(_, l)| l).sum();
        // Filesystems round to their block size; tmpfs and ext4 report these exactly.
        assert!(e.iter().any(|(o, l)| *o <= 1 << 20 && o + l >= (1 << 20) + 8192), "{e:?}");
        assert!(e.iter().any(|(o, l)| *o <= 32 << 20 && o + l >= (32 << 20) + 4096), "{e:?}");
        assert!(total < 4 << 20, "{e:?}");
    }

    #[test]
    fn paths_under_the_source_data_dir_are_rebased() {
        assert_eq!(rebase("/a/data/templates/x/rootfs", "/a/data", Path::new("/b")), "/b/templates/x/rootfs");
        assert_eq!(rebase("/elsewhere/x", "/a/data", Path::new("/b")), "/elsewhere/x");
    }
}
