//! Id mappings: each sandbox's user namespace maps its ids 0..65535 to a 65536-id range
//! of host ids of its own (`id_ranges.rs` hands them out), so root inside a sandbox is an
//! unprivileged host user that owns nothing of any other sandbox.
//!
//! Shared layers (the agent layer, templates, volumes) stay owned by the legacy range
//! ([`LAYER_BASE`], 100000..165535) on disk and are mounted into a sandbox through an
//! **idmapped mount** ([`idmapped_clone`]) that shows them owned by the sandbox's range;
//! a snapshot's layer is owned by its source's range and is mapped the same way. Records
//! written before ranges existed have none: their sandboxes run in the legacy range, as
//! they always did.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The range every sandbox used before per-sandbox ranges, and the owner of the shared
/// layers' files on disk.
pub const LAYER_BASE: u32 = 100_000;
/// Kept for the code that means "ids of the shared layers and volumes".
pub const HOST_ID_BASE: u32 = LAYER_BASE;
pub const ID_COUNT: u32 = 65_536;
/// Per-sandbox ranges start here (above the legacy range, away from `/etc/subuid`'s usual
/// 100000 + 65536 * n allocations of the first users).
pub const FIRST_RANGE: u32 = 200_000;

/// The `uid_map` / `gid_map` line of a sandbox in range `base`.
pub fn map_line(base: u32) -> String {
    format!("0 {base} {ID_COUNT}\n")
}

/// Makes a host-created file belong to the root of the sandbox in range `base`.
pub fn chown_to_sandbox_root(path: &Path, base: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(base), Some(base))
}

/// Writes the id maps of process `pid` (which must have just unshared its user namespace).
pub fn write_maps(pid: u32, base: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/gid_map"), map_line(base))?;
    std::fs::write(format!("/proc/{pid}/uid_map"), map_line(base))
}

/// The range host id `id` belongs to: the legacy range or a per-sandbox one; `None` for
/// ids in no sandbox range (host root, users).
pub fn range_of(id: u32) -> Option<u32> {
    match id {
        LAYER_BASE..=165_535 => Some(LAYER_BASE),
        FIRST_RANGE.. => Some(FIRST_RANGE + (id - FIRST_RANGE) / ID_COUNT * ID_COUNT),
        _ => None,
    }
}

/// The range owning the files of layer `dir`: its top directory's owner's (a layer's top
/// is the sandbox's `/`, whoever in the sandbox owns it). The legacy range if unknown.
pub fn range_of_layer(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().and_then(|m| range_of(m.uid())).unwrap_or(LAYER_BASE)
}

/// The `uid_map` / `gid_map` of an idmapped mount showing range `from` as range `to`: a
/// swap of the two ranges, every other id mapped to itself.
///
/// Every id must be mapped: the kernel refuses to open for writing a file whose owner an
/// idmapped mount leaves unmapped (`HAS_UNMAPPED_ID` in `inode_permission`, EACCES), and
/// the agent layer's device nodes are host root's, so a map of the range alone left
/// `/dev/null` unwritable in the sandbox. Ids outside both ranges keep their meaning, as
/// without the idmapped mount; `to`'s ids (none in a layer written by range `from`) take
/// `from`'s place so the map stays one to one.
pub fn swap_map(from: u32, to: u32) -> String {
    let (lo, hi) = (from.min(to), from.max(to));
    let mut extents = vec![(from, to, ID_COUNT), (to, from, ID_COUNT)];
    // The gaps below, between and above the two ranges (u32::MAX itself is never an id).
    for (start, end) in [(0, lo), (lo + ID_COUNT, hi), (hi + ID_COUNT, u32::MAX)] {
        if end > start {
            extents.push((start, start, end - start));
        }
    }
    extents.sort();
    extents.iter().map(|(inside, outside, n)| format!("{inside} {outside} {n}\n")).collect()
}

/// A user namespace with [`swap_map`]`(from, to)`: what an idmapped mount needs to show
/// files owned by range `from` as owned by range `to`. Made by a child that unshares its
/// user namespace and waits; its maps are written from here and the namespace outlives it
/// through the returned fd.
pub fn userns_fd(from: u32, to: u32) -> std::io::Result<OwnedFd> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into an array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds owned by nothing else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only makes async-signal-safe calls (unshare, write, pause, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        unsafe {
            let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 { 1 } else { 0 };
            libc::write(wr.as_raw_fd(), (&ok as *const u8).cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    drop(wr);
    let result = (|| {
        let mut ok = 0u8;
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(rd.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) };
        if n != 1 || ok != 1 {
            return Err(std::io::Error::other("the id-mapping helper could not unshare its user namespace"));
        }
        // One write of the whole map (the kernel takes a map in a single write).
        let map = swap_map(from, to);
        std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    result
}

const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h), version 0.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached bind mount of `dir` (the host's view) with mount attributes `attrs`, its
/// files shown owned by range `to` instead of `from` when they differ (an idmapped mount).
pub fn idmapped_clone(dir: &Path, attrs: u64, from: u32, to: u32) -> std::io::Result<OwnedFd> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: open_tree with a NUL-terminated path; the fd it returns is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let userns = if from != to { Some(userns_fd(from, to)?) } else { None };
    let attr = MountAttr {
        attr_set: attrs | if userns.is_some() { MOUNT_ATTR_IDMAP } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_ref().map_or(0, |f| f.as_raw_fd() as u64),
    };
    if attr.attr_set == 0 {
        return Ok(tree);
    }
    // SAFETY: mount_setattr on our detached tree with a mount_attr of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches detached tree `tree` on directory `target` (a host path).
pub fn attach(tree: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let t = CString::new(target.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: move_mount from our fd (empty path) to a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_belong_to_their_range() {
        assert_eq!(range_of(0), None);
        assert_eq!(range_of(1000), None);
        assert_eq!(range_of(100_000), Some(LAYER_BASE));
        assert_eq!(range_of(165_535), Some(LAYER_BASE));
        assert_eq!(range_of(165_536), None);
        assert_eq!(range_of(200_000), Some(200_000));
        assert_eq!(range_of(200_000 + 65_536 + 1000), Some(265_536));
        assert_eq!(map_line(265_536), "0 265536 65536\n");
    }

    #[test]
    fn the_idmapped_mount_map_swaps_the_two_ranges_and_keeps_every_other_id() {
        assert_eq!(
            swap_map(LAYER_BASE, 265_536),
            "0 0 100000\n100000 265536 65536\n165536 165536 100000\n265536 100000 65536\n331072 331072 4294636223\n"
        );
        // The other way round (a snapshot's layer of a higher range): the same extents.
        let m = swap_map(265_536, LAYER_BASE);
        assert_eq!(m.lines().count(), 5);
        // Adjacent ranges leave no gap between them.
        assert_eq!(swap_map(200_000, 265_536).lines().count(), 4);
        // Every id once inside and once outside: the extents tile 0..u32::MAX both ways.
        for m in [swap_map(LAYER_BASE, 265_536), swap_map(200_000, 265_536)] {
            let ext: Vec<(u64, u64, u64)> = m
                .lines()
                .map(|l| {
                    let f: Vec<u64> = l.split(' ').map(|n| n.parse().unwrap()).collect();
                    (f[0], f[1], f[2])
                })
                .collect();
            for pick in [0usize, 1] {
                let mut spans: Vec<(u64, u64)> =
                    ext.iter().map(|e| if pick == 0 { (e.0, e.2) } else { (e.1, e.2) }).collect();
                spans.sort();
                let end = spans.iter().fold(0, |at, (s, n)| {
                    assert_eq!(*s, at, "{m}");
                    s + n
                });
                assert_eq!(end, u32::MAX as u64, "{m}");
            }
        }
    }
}
