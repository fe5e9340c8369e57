//! The sandbox's root filesystem: an overlay of its writable layer on read-only lowers.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{IoContext, Result};

/// Mounts `lowers` (top first) under `upper` at `target`; idempotent.
pub fn mount_root(lowers: &[String], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    if is_mounted(target) {
        return Ok(());
    }
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
    }
    // index + nfs_export: CRIU encodes overlay file handles (inotify watches). redirect_dir:
    // a directory of a lower layer (the template, a snapshot) can be renamed, as on any
    // disk, instead of EXDEV (which `mv` hides by copying, but `rename(2)`, envd's
    // files.rename and most programs do not). Its redirect xattrs are `trusted.*`: the
    // sandbox cannot forge them, and `cp -a` carries them into snapshot layers.
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=on,nfs_export=on,redirect_dir=on",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    // EBUSY: the previous overlay on this upper dir (unmounted with MNT_DETACH) is still
    // being torn down by the kernel; index=on refuses a second one until it is gone.
    let start = std::time::Instant::now();
    loop {
        match mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(opts.as_str())) {
            Err(nix::errno::Errno::EBUSY) if start.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => {
                return r
                    .map_err(std::io::Error::from)
                    .ctx(|| format!("mount overlay at {} ({opts})", target.display()));
            }
        }
    }
}

pub fn unmount(target: &Path) -> Result<()> {
    while is_mounted(target) {
        umount2(target, MntFlags::MNT_DETACH)
            .map_err(std::io::Error::from)
            .ctx(|| format!("unmount {}", target.display()))?;
    }
    Ok(())
}

/// True when something is mounted exactly at `path` in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

/// True when anything is mounted at or below `path`.
pub fn has_mounts_under(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m).starts_with(want.as_ref())))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(super::unescape(r"/a\040b\134c"), r"/a b\c");
    }
}
