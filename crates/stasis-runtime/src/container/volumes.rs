//! Volumes on the host and in sandboxes: a volume is a directory `DATA/volumes/VID`,
//! bind-mounted read-write (nosuid, nodev) into every sandbox that names it.
//!
//! - **Boot**: before the agent unshares, each volume is bound onto its path inside the
//!   sandbox's root overlay (on the host); the agent's recursive bind of the root carries
//!   it into the sandbox's mount namespace, where its flags are locked (a mount copied
//!   into a less privileged namespace). The host's copy is unmounted once the agent
//!   runs: the sandbox's namespace keeps its own.
//! - **Checkpoints**: the volume's files are not in the sandbox's checkpoint. CRIU is
//!   told the mount is external (`--external mnt[PATH]:KEY` at dump) and given the
//!   volume's directory again at restore (`mnt[KEY]:DIR`), so a paused sandbox resumes
//!   with its volumes mounted, and a copy from a snapshot mounts the same volumes.
//! - **Ids**: a volume's files are owned by the legacy range on disk (`idmap.rs`), shared
//!   by sandboxes of different ranges: each mounts it through an idmapped mount showing
//!   them in its own range, at boot, at restore (CRIU binds the idmapped mount it is
//!   given) and when mounted into a running sandbox (`hot_mounts.rs`).
//! - **Mount points** are made inside the root without following any symlink: a template
//!   or snapshot with `/data -> /etc` can never send a host-side mount out of the root.
//!
//! It must not decide who may mount what (the lifecycle does), or know the volume's
//! name or token (the store's).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use super::idmap::HOST_ID_BASE;
use super::layout::Layout;
use crate::error::{IoContext, Result, RuntimeError};
use crate::VolumeMount;

/// Owner (inside the sandbox) of a new volume's top directory: the templates' `user`.
pub const DEFAULT_OWNER: u32 = 1000;

/// Paths a volume cannot be mounted on: the kernel's and the agent's.
const RESERVED: [&str; 5] = ["/proc", "/sys", "/dev", "/.stasis", "/run/stasis"];

/// `path` normalized (one `/` between components, none at the end), or why it cannot be
/// a mount point: it must be absolute, below `/`, without `.` or `..`, outside the
/// kernel's and the agent's directories.
pub fn check_mount_path(path: &str) -> std::result::Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("volume mount path {path:?} is not absolute"));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return Err("a volume cannot be mounted on /".into());
    }
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("volume mount path {path:?} has . or .. in it"));
    }
    if path.contains('\0') || path.len() > 1024 {
        return Err(format!("volume mount path {path:?} is not a usable path"));
    }
    let norm = format!("/{}", parts.join("/"));
    if let Some(r) = RESERVED.iter().find(|r| norm == **r || norm.starts_with(&format!("{r}/"))) {
        return Err(format!("volumes cannot be mounted on {r} or below it"));
    }
    Ok(norm)
}

/// Makes volume `id`'s directory: owned by the sandboxes' `user`, 0755 (their root can
/// write it too). Idempotent.
pub fn create(layout: &Layout, id: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let all = layout.volumes();
    std::fs::create_dir_all(&all).ctx(|| format!("create {}", all.display()))?;
    // Searchable, not listable (`perms.rs`'s rule for the path to a sandbox's root):
    // CRIU's restore opens a volume's directory as the sandbox's root (host uid 100000).
    std::fs::set_permissions(&all, std::fs::Permissions::from_mode(super::perms::TRAVERSE))
        .ctx(|| "chmod volumes".into())?;
    let dir = layout.volume(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(dir),
        Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
    }
    let owner = Some(HOST_ID_BASE + DEFAULT_OWNER);
    std::os::unix::fs::chown(&dir, owner, owner).ctx(|| format!("chown {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

/// Removes volume `id`'s files (the store decided no sandbox mounts it). Idempotent.
pub fn remove(layout: &Layout, id: &str) -> Result<()> {
    let dir = layout.volume(id);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(|| format!("remove {}", dir.display())),
        _ => Ok(()),
    }
}

/// The host directory of each of `volumes`, in order; an error names a volume whose
/// files are gone (deleted after a snapshot named it).
pub(super) fn sources(layout: &Layout, volumes: &[VolumeMount]) -> Result<Vec<PathBuf>> {
    volumes
        .iter()
        .map(|v| {
            let dir = layout.volume(&v.id);
            if dir.is_dir() {
                Ok(dir)
            } else {
                Err(RuntimeError::Volume(format!("volume {} (mounted at {}) no longer exists", v.id, v.path)))
            }
        })
        .collect()
}

/// CRIU's key for the `i`th volume mount.
pub(super) fn criu_key(i: usize) -> String {
    format!("stasis-volume-{i}")
}

/// What CRIU's dump is told of `volumes`: (path in the sandbox, key).
pub(super) fn dump_externals(volumes: &[VolumeMount]) -> Vec<(String, String)> {
    volumes.iter().enumerate().map(|(i, v)| (v.path.clone(), criu_key(i))).collect()
}

/// What CRIU's restore is told of `volumes`: (key, host directory); an error names a
/// volume whose files are gone.
pub(super) fn restore_externals(layout: &Layout, volumes: &[VolumeMount]) -> Result<Vec<(String, PathBuf)>> {
    Ok(sources(layout, volumes)?.into_iter().enumerate().map(|(i, d)| (criu_key(i), d)).collect())
}

/// CRIU's external mounts, (key, host directory), and the idmapped staging mounts made
/// for them (released with [`unbind`]).
type StagedExternals = (Vec<(String, PathBuf)>, Vec<PathBuf>);

/// What CRIU's restore of a sandbox in range `ids` is told of `volumes`: (key, host
/// directory), with the directories staged as idmapped mounts under `staging` when the
/// range is not the volumes' own; release them with [`unbind`] once CRIU is done. An error
/// names a volume whose files are gone.
pub(super) fn restore_externals_for(
    layout: &Layout,
    volumes: &[VolumeMount],
    ids: u32,
    staging: &Path,
) -> Result<StagedExternals> {
    let external = restore_externals(layout, volumes)?;
    if ids == HOST_ID_BASE {
        return Ok((external, vec![]));
    }
    let mut staged = Vec::new();
    let mut out = Vec::new();
    for (key, src) in external {
        let target = staging.join(&key);
        // CRIU opens them from inside the sandbox's user namespace, as its range's root:
        // the staging directory must be searchable by it, whatever the daemon's umask.
        let traverse = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(super::perms::TRAVERSE);
        let r = std::fs::create_dir_all(&target)
            .and_then(|_| std::fs::set_permissions(staging, traverse))
            .and_then(|_| super::idmap::idmapped_clone(&src, 0, HOST_ID_BASE, ids))
            .and_then(|tree| super::idmap::attach(&tree, &target));
        if let Err(e) = r {
            unbind(&staged);
            return Err(RuntimeError::Volume(format!("idmapped mount of {}: {e}", src.display())));
        }
        staged.push(target.clone());
        out.push((key, target));
    }
    Ok((out, staged))
}

/// Binds each volume onto its path in `rootfs` (host side, before the agent boots), its
/// files shown in range `ids`. Returns the host mount points, to be released with
/// [`unbind`] once the agent has its own copies. On error nothing stays mounted.
pub(super) fn bind(layout: &Layout, rootfs: &Path, volumes: &[VolumeMount], ids: u32) -> Result<Vec<PathBuf>> {
    use super::idmap::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
    let srcs = sources(layout, volumes)?;
    let mut done = Vec::new();
    for (v, src) in volumes.iter().zip(srcs) {
        let target = match mount_point(rootfs, &v.path, ids) {
            Ok(t) => t,
            Err(e) => {
                unbind(&done);
                return Err(e);
            }
        };
        let r = super::idmap::idmapped_clone(&src, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, HOST_ID_BASE, ids)
            .and_then(|tree| super::idmap::attach(&tree, &target));
        if let Err(e) = r {
            unbind(&done);
            return Err(RuntimeError::Volume(format!("mount volume {} on {}: {e}", v.id, v.path)));
        }
        done.push(target);
    }
    Ok(done)
}

/// Releases the host's copies of the mounts [`bind`] made.
pub(super) fn unbind(targets: &[PathBuf]) {
    for t in targets.iter().rev() {
        let _ = umount2(t, MntFlags::MNT_DETACH);
    }
}

/// Directory `name` in `dir` as an `O_PATH` fd, refusing a symlink (never followed).
pub(super) fn open_dir_nofollow(dir: i32, name: &CString) -> std::io::Result<OwnedFd> {
    // SAFETY: openat on a valid dirfd with a NUL-terminated name; the fd is ours.
    let fd = unsafe {
        libc::openat(dir, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `path` names inside `rootfs`, made (0755, owned by the root of the
/// sandbox in range `ids`) where missing. No component may be a symlink: it would be
/// followed by host root.
fn mount_point(rootfs: &Path, path: &str, ids: u32) -> Result<PathBuf> {
    let err = |what: String| RuntimeError::Volume(format!("mount path {path}: {what}"));
    let open = open_dir_nofollow;
    let mut cur = OwnedFd::from(std::fs::File::open(rootfs).ctx(|| format!("open {}", rootfs.display()))?);
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        let name = CString::new(comp).map_err(|_| err("NUL in path".into()))?;
        let next = match open(cur.as_raw_fd(), &name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: mkdirat/fchownat on a valid dirfd and a NUL-terminated name.
                unsafe {
                    if libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) != 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(err(format!("create {comp}: {e}")));
                        }
                    }
                    libc::fchownat(cur.as_raw_fd(), name.as_ptr(), ids, ids, libc::AT_SYMLINK_NOFOLLOW);
                }
                open(cur.as_raw_fd(), &name).map_err(|e| err(format!("{comp}: {e}")))?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(err(format!("{comp} is not a directory (a symlink or a file)")))
            }
            Err(e) => return Err(err(format!("{comp}: {e}"))),
        };
        cur = next;
    }
    Ok(rootfs.join(path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::{check_mount_path, mount_point};

    #[test]
    fn mount_points_are_made_inside_the_root_and_never_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::fs::write(root.path().join("file"), "").unwrap();
        let made = mount_point(root.path(), "/srv/data", super::HOST_ID_BASE).unwrap();
        assert_eq!(made, root.path().join("srv/data"));
        assert!(made.is_dir());
        for bad in ["/link/data", "/link", "/file/x"] {
            let e = mount_point(root.path(), bad, super::HOST_ID_BASE).unwrap_err().to_string();
            assert!(e.contains("not a directory"), "{bad}: {e}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing made outside the root");
    }

    #[test]
    fn mount_paths_are_absolute_normal_and_outside_the_kernels_dirs() {
        assert_eq!(check_mount_path("/data").unwrap(), "/data");
        assert_eq!(check_mount_path("//home/user//vol/").unwrap(), "/home/user/vol");
        assert_eq!(check_mount_path("/procfs").unwrap(), "/procfs");
        for bad in ["data", "/", "//", "/a/../b", "/a/./b", "/proc", "/proc/x", "/dev/shm", "/sys", "/.stasis/x"] {
            assert!(check_mount_path(bad).is_err(), "{bad} accepted");
        }
    }
}
