//! Volumes mounted into, and unmounted from, a sandbox that is running (Novita's
//! `mountVolume` / `unmountVolume`), with the kernel's new mount API:
//!
//! 1. On the host: `open_tree(DATA/volumes/VID, OPEN_TREE_CLONE)`, a detached bind mount
//!    of the volume's directory, made `nosuid,nodev` (and idmapped into the sandbox's id
//!    range) by `mount_setattr` (`idmap::idmapped_clone`).
//! 2. On a short-lived thread that leaves the host's filesystem context
//!    (`unshare(CLONE_FS)`) and enters the sandbox's mount namespace through its init's
//!    pidfd (`setns`): the mount point is walked from the namespace's root one component
//!    at a time with `O_NOFOLLOW` (made where missing, owned by the sandbox's root), so a
//!    symlink the sandbox planted is never followed, then `move_mount` attaches the
//!    detached tree there. The thread is host root: it has `CAP_SYS_ADMIN` over the
//!    sandbox's user namespace, which owns its mount namespace; nothing of the sandbox's
//!    user namespace is entered.
//! 3. The record's `spec.volumes` gains the mount, so the next pause tells CRIU it is
//!    external (`volumes.rs`), a resume or a fresh boot mounts it again, and a snapshot
//!    or fork carries it.
//!
//! Unmounting walks to the mount point the same way and unmounts it (`umount2` on the
//! last component, `UMOUNT_NOFOLLOW`); a mount still in use is refused unless forced
//! (then lazily detached: open files keep working until closed).
//!
//! Must not: decide which volume may be mounted where (the lifecycle checks the path and
//! the volume), or change a paused sandbox (its checkpoint's mounts are fixed).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::record::Record;
use super::Inner;
use crate::error::{Result, RuntimeError};
use crate::{SandboxState, VolumeMount};

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// Why a hot unmount did not happen.
#[derive(Debug)]
pub enum UnmountRefused {
    /// Processes in the sandbox hold files or a directory under it.
    Busy,
    /// The kernel locks it to its parent: it was mounted at create and came with the
    /// namespace's copy (CRIU's restore mounts it anew, unlocked). Or it is gone.
    Locked,
}

impl Inner {
    /// Mounts volume `m` into running sandbox `id` at `m.path` (checked by the caller).
    pub(super) fn mount_volume(&self, id: &str, m: &VolumeMount) -> Result<()> {
        let mut rec: Record = self.load(id)?;
        if rec.state != SandboxState::Running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        if rec.spec.volumes.iter().any(|v| overlaps(&v.path, &m.path)) {
            return Err(RuntimeError::Volume(format!("a volume is already mounted at or around {}", m.path)));
        }
        let src = super::volumes::sources(&self.layout, std::slice::from_ref(m))?.remove(0);
        use super::idmap::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
        let ids = rec.ids();
        // Its files shown in the sandbox's range (`volumes.rs`).
        let tree =
            super::idmap::idmapped_clone(&src, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, super::idmap::HOST_ID_BASE, ids)
                .map_err(|e| RuntimeError::Volume(format!("clone volume {}: {e}", m.id)))?;
        let init = self.init_of(&rec)?;
        let path = m.path.clone();
        in_mount_ns(init, move || {
            let (target, _) = walk(&path, true, ids)?;
            move_mount(&tree, &target).map_err(|e| format!("mount on {path}: {e}"))
        })
        .map_err(|e| RuntimeError::Volume(format!("volume {} at {}: {e}", m.id, m.path)))?;
        // In path order, as the store lists mounts: a snapshot's copy names them so.
        let at = rec.spec.volumes.partition_point(|v| v.path < m.path);
        rec.spec.volumes.insert(at, m.clone());
        rec.store(&self.dir(id).record())
    }

    /// Unmounts the volume at `path` from running sandbox `id`; `force` detaches it even
    /// while in use. `Ok(Err(_))`: refused, nothing changed.
    pub(super) fn unmount_volume(
        &self,
        id: &str,
        path: &str,
        force: bool,
    ) -> Result<std::result::Result<(), UnmountRefused>> {
        let mut rec: Record = self.load(id)?;
        if rec.state != SandboxState::Running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let Some(i) = rec.spec.volumes.iter().position(|v| v.path == path) else {
            return Err(RuntimeError::Volume(format!("no volume is mounted at {path}")));
        };
        let init = self.init_of(&rec)?;
        let p = path.to_string();
        let outcome = in_mount_ns(init, move || {
            let (parent, last) = walk(&p, false, 0)?;
            let flags = libc::UMOUNT_NOFOLLOW | if force { libc::MNT_DETACH } else { 0 };
            // The last component is looked up from its parent's fd (the cwd of this
            // thread), never through a path the sandbox could change under us.
            // SAFETY: fchdir on an fd we own; umount2 on a NUL-terminated name.
            let r = unsafe {
                if libc::fchdir(parent.as_raw_fd()) != 0 {
                    return Err(format!("enter the parent of {p}: {}", std::io::Error::last_os_error()));
                }
                libc::umount2(last.as_ptr(), flags)
            };
            if r == 0 {
                return Ok(Ok(()));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EBUSY) => Ok(Err(UnmountRefused::Busy)),
                Some(libc::EINVAL) => Ok(Err(UnmountRefused::Locked)),
                _ => Err(format!("unmount {p}: {e}")),
            }
        })
        .map_err(|e| RuntimeError::Volume(e.to_string()))?;
        if outcome.is_ok() {
            rec.spec.volumes.remove(i);
            rec.store(&self.dir(id).record())?;
        }
        Ok(outcome)
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

fn move_mount(tree: &OwnedFd, target: &OwnedFd) -> std::io::Result<()> {
    let empty = c"";
    // SAFETY: move_mount between two fds we own, both with empty paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside the mount namespace of `init` (its root is the
/// sandbox's root there). The thread ends with `f`: nothing else runs in that namespace.
fn in_mount_ns<T: Send + 'static>(
    init: std::sync::Arc<super::InitHandle>,
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    std::thread::spawn(move || {
        // A thread shares its filesystem context (root, cwd) with the process; setns into
        // a mount namespace needs one of its own.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| format!("unshare(CLONE_FS): {e}"))?;
        let pidfd = init.dup_fd().map_err(|e| format!("init pidfd: {e}"))?;
        nix::sched::setns(pidfd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("enter the sandbox's mount namespace: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "mount thread panicked".to_string())?
}

/// Walks `path` from the current root with `O_NOFOLLOW` on every component: the directory
/// itself (`make`: created where missing, owned by the sandbox's root), or with `make`
/// false its parent and its last component's name. Directories made are owned by `ids`.
fn walk(path: &str, make: bool, ids: u32) -> std::result::Result<(OwnedFd, CString), String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let open = super::volumes::open_dir_nofollow;
    let root = CString::new("/").expect("no NUL");
    let mut cur = open(libc::AT_FDCWD, &root).map_err(|e| format!("open /: {e}"))?;
    let upto = if make { comps.len() } else { comps.len().saturating_sub(1) };
    for comp in &comps[..upto] {
        let name = CString::new(*comp).map_err(|_| "NUL in path".to_string())?;
        let next = match open(cur.as_raw_fd(), &name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && make => {
                // SAFETY: mkdirat/fchownat on a valid dirfd and a NUL-terminated name.
                unsafe {
                    if libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) != 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(format!("create {comp}: {e}"));
                        }
                    }
                    libc::fchownat(cur.as_raw_fd(), name.as_ptr(), ids, ids, libc::AT_SYMLINK_NOFOLLOW);
                }
                open(cur.as_raw_fd(), &name).map_err(|e| format!("{comp}: {e}"))?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(format!("{comp} is not a directory (a symlink or a file)"))
            }
            Err(e) => return Err(format!("{comp}: {e}")),
        };
        cur = next;
    }
    let last = if make { CString::default() } else { CString::new(*comps.last().unwrap_or(&"")).expect("no NUL") };
    Ok((cur, last))
}
