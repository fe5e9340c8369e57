//! Who may read what under the data dir. It holds every sandbox's access token and
//! environment (`record.json`, `snapshot.json`), its disk and memory (`disk.img`,
//! checkpoints) and the API key hashes (`stasis.db`): root only. The one exception is
//! the path a sandbox's own root (an unprivileged host uid) walks to reach its root
//! filesystem, `DATA/sandboxes/ID/rootfs`: those directories are searchable (0711),
//! never listable or readable.
//!
//! New files are private because the daemon runs with umask 077 (`stasis` sets it) and
//! the files that matter are created 0600 whatever the umask; [`close_existing`] fixes
//! data dirs written by a Stasis that left them world-readable.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::layout::Layout;
use crate::error::{IoContext, Result, RuntimeError};

/// Mode of the directories on a sandbox's way to its root.
pub const TRAVERSE: u32 = 0o711;

fn chmod(p: &Path, mode: u32) {
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if !m.file_type().is_symlink() && m.permissions().mode() & 0o7777 != mode {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    }
}

/// Opens a sealed checkpoint's images to the tasks CRIU restores from them: they run as
/// the sandbox's root (host uid 100000) and open their images relative to the images
/// directory CRIU opened as root, so that directory needs search permission and the
/// images read permission for them. The path to it stays closed: `checkpoints/` (and a
/// snapshot's directory) is 0700, so no other host user can reach the images, whatever
/// their mode.
pub fn checkpoint_images(images: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(images)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) && e.file_name().to_string_lossy().ends_with(".img") {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644))?;
        }
    }
    std::fs::set_permissions(images, std::fs::Permissions::from_mode(0o711))?;
    if let Some(parent) = images.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to a new file `p` readable by root only (a stale `p` is replaced), and
/// syncs it.
pub fn write_private(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(p);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(p)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes a sandbox's own directory searchable, nothing more.
pub fn sandbox_dir(p: &Path) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(TRAVERSE)).ctx(|| format!("chmod {}", p.display()))
}

/// Takes read access away from others on what older releases wrote world-readable.
pub fn close_existing(layout: &Layout) {
    let children = |p: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(p).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    for s in children(&layout.sandboxes()) {
        chmod(&s, TRAVERSE);
        for f in ["record.json", "disk.img"] {
            chmod(&s.join(f), 0o600);
        }
        for d in ["checkpoints", "disk", "restore"] {
            chmod(&s.join(d), 0o700);
        }
        for log in children(&s).into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")) {
            chmod(&log, 0o600);
        }
    }
    for s in children(&layout.snapshots()) {
        chmod(&s, 0o700);
    }
}

/// Sandbox roots live under the data dir and are entered by the sandbox's own root, an
/// unprivileged host uid: every directory on the way must be searchable by others (0711
/// is enough; nothing becomes listable or readable). Our own directories are fixed; a
/// parent we do not own is reported.
pub fn ensure_traversable(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = data_dir.canonicalize().ctx(|| format!("resolve {}", data_dir.display()))?;
    for d in [data_dir.join("sandboxes"), data_dir.join("snapshots"), data_dir.clone()] {
        let mode = std::fs::metadata(&d).ctx(|| format!("stat {}", d.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode((mode & 0o7777) | 0o011))
                .ctx(|| format!("chmod {}", d.display()))?;
        }
    }
    for a in data_dir.ancestors().skip(1) {
        let mode = std::fs::metadata(a).ctx(|| format!("stat {}", a.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(RuntimeError::Boot(format!(
                "{} (mode {:o}) is not searchable by others: sandboxes (unprivileged host uids) could not reach their root under {}; chmod o+x it or choose another --data-dir",
                a.display(),
                mode & 0o7777,
                data_dir.display()
            )));
        }
    }
    Ok(())
}
