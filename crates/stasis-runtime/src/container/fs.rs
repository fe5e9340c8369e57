//! A sandbox's filesystem on the host: mounting its disk and overlay root and releasing
//! them, flushing them to disk, and measuring what they hold.

use std::path::Path;

use super::layout::{Layout, SandboxDir};
use super::record::Record;
use super::{disk, idmap, overlay};
use crate::error::{IoContext, Result};

/// Mounts the sandbox's disk (when it has a size) and its root overlay on it, over the
/// lower layers its record names, found where they are now (`Layout::lower_now`).
pub(super) fn mount_fs(rec: &Record, dir: &SandboxDir, layout: &Layout) -> Result<()> {
    mount_disk(rec, dir)?;
    mount_root(rec, dir, layout)
}

/// Mounts the sandbox's disk, if it has a size (its image made first if missing).
pub(super) fn mount_disk(rec: &Record, dir: &SandboxDir) -> Result<()> {
    if rec.spec.disk_mb > 0 {
        disk::mount(&dir.disk_image(), &dir.disk(), rec.spec.disk_mb)?;
    }
    Ok(())
}

/// Mounts the root overlay on the sandbox's disk (or its directory): its writable layer
/// made on first use, its lowers idmapped into the sandbox's id range.
pub(super) fn mount_root(rec: &Record, dir: &SandboxDir, layout: &Layout) -> Result<()> {
    if !dir.upper().exists() {
        std::fs::create_dir_all(dir.upper()).ctx(|| format!("create {}", dir.upper().display()))?;
        idmap::chown_to_sandbox_root(&dir.upper(), rec.ids()).ctx(|| "chown upper".into())?;
        // The sandbox's `/` takes this directory's mode: 0755, whatever the daemon's umask.
        let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(dir.upper(), mode).ctx(|| "chmod upper".into())?;
    }
    if overlay::is_mounted(&dir.rootfs()) {
        return Ok(());
    }
    // Lowers owned by another range (the shared layers, a snapshot's) are seen through
    // idmapped mounts in the sandbox's: attached under `lowers/` for the overlay mount to
    // name, detached right after (the overlay keeps its own private copies).
    let staging = dir.path().join("lowers");
    let mut staged = Vec::new();
    let mut lowers = Vec::with_capacity(rec.lower_dirs.len());
    let made = (|| -> Result<()> {
        for (i, l) in rec.lower_dirs.iter().enumerate() {
            let now = layout.lower_now(l).display().to_string();
            let l = &now;
            let from = idmap::range_of_layer(Path::new(l));
            if from == rec.ids() {
                lowers.push(l.clone());
                continue;
            }
            let target = staging.join(i.to_string());
            std::fs::create_dir_all(&target).ctx(|| format!("create {}", target.display()))?;
            let tree = idmap::idmapped_clone(Path::new(l), 0, from, rec.ids())
                .ctx(|| format!("idmapped mount of layer {l} (ids {from} as {})", rec.ids()))?;
            idmap::attach(&tree, &target).ctx(|| format!("attach layer {l} on {}", target.display()))?;
            staged.push(target.clone());
            lowers.push(target.display().to_string());
        }
        overlay::mount_root(&lowers, &dir.upper(), &dir.work(), &dir.rootfs())
    })();
    for t in &staged {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
    if !staged.is_empty() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    made
}

/// Unmounts the root overlay, then the disk under it (idempotent).
pub(super) fn unmount_fs(dir: &SandboxDir) -> Result<()> {
    overlay::unmount(&dir.rootfs())?;
    disk::unmount(&dir.disk_image(), &dir.disk())
}

/// Flushes the filesystem holding `path`: memory images and the writable layer share it.
pub(super) fn syncfs(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    // SAFETY: syncfs on an fd we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("syncfs {}", path.display()));
    }
    Ok(())
}

/// Allocated bytes under `p` (not following symlinks or crossing into mounts).
/// Bytes in use on the filesystem mounted at `mount` (a sandbox's own disk), from
/// `statvfs`: what `df` shows as used.
pub(crate) fn used_bytes(mount: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(mount).ok()?;
    Some((s.blocks() as u64).saturating_sub(s.blocks_free() as u64) * s.fragment_size() as u64)
}

pub(crate) fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Apparent size of the files directly in `p` (a checkpoint's images).
pub(super) fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
