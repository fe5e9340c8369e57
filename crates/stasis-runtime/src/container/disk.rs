//! The sandbox's disk: its writable layer lives on a filesystem of its own (a sparse
//! ext4 image, loop-mounted), so a sandbox can write at most its disk size, never fill
//! the host. Sparse: an idle sandbox costs only what it wrote (~2 MiB of ext4 metadata).

use std::path::Path;
use std::process::Command;

use crate::error::{Result, RuntimeError};

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| RuntimeError::Io { context: format!("{what}: cannot run"), source: e })?;
    if !out.status.success() {
        return Err(RuntimeError::Io {
            context: what.to_string(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// True while a loop device is attached to `image`: its filesystem is still alive
/// somewhere (a detached mount whose last user has not let go yet).
fn attached(image: &Path) -> bool {
    let Ok(want) = image.canonicalize() else { return false };
    let Ok(blocks) = std::fs::read_dir("/sys/block") else { return false };
    blocks
        .flatten()
        .any(|b| std::fs::read_to_string(b.path().join("loop/backing_file")).is_ok_and(|f| Path::new(f.trim()) == want))
}

/// The loop device attached to `image` (its `major:minor`), if any.
fn loop_device_of(image: &Path) -> Option<String> {
    let want = image.canonicalize().ok()?;
    std::fs::read_dir("/sys/block").ok()?.flatten().find_map(|b| {
        let backing = std::fs::read_to_string(b.path().join("loop/backing_file")).ok()?;
        (Path::new(backing.trim()) == want).then(|| std::fs::read_to_string(b.path().join("dev")).ok()).flatten()
    })
}

/// Who still holds the filesystem on `image` (for the log, when a release lingers):
/// processes whose mount namespace still has it mounted, and processes with a file,
/// a mapping, a cwd or a root on it. Reads /proc once; costs nothing unless called.
fn holders(image: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Some(dev) = loop_device_of(image) else { return "no loop device attached any more".into() };
    let dev = dev.trim().to_string();
    let (major, minor) = match dev.split_once(':').map(|(a, b)| (a.parse::<u64>(), b.parse::<u64>())) {
        Some((Ok(a), Ok(b))) => (a, b),
        _ => return format!("loop device {dev}"),
    };
    let rdev = libc::makedev(major as u32, minor as u32);
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return format!("loop device {dev}") };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default().trim().to_string();
        let mut why = Vec::new();
        let mounted = std::fs::read_to_string(p.path().join("mountinfo"))
            .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(2) == Some(dev.as_str())));
        if mounted {
            why.push("mounted in its namespace".to_string());
        }
        for link in ["cwd", "root"] {
            if std::fs::metadata(p.path().join(link)).is_ok_and(|m| m.dev() == rdev) {
                why.push(link.to_string());
            }
        }
        if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
            let open = fds.flatten().filter(|f| std::fs::metadata(f.path()).is_ok_and(|m| m.dev() == rdev)).count();
            if open > 0 {
                why.push(format!("{open} open files"));
            }
        }
        let maps = std::fs::read_to_string(p.path().join("maps")).unwrap_or_default();
        let mapped =
            maps.lines().filter(|l| l.split_whitespace().nth(3) == Some(&format!("{major:02x}:{minor:02x}"))).count();
        if mapped > 0 {
            why.push(format!("{mapped} mappings"));
        }
        if !why.is_empty() {
            found.push(format!("{pid} ({comm}): {}", why.join(", ")));
        }
    }
    if found.is_empty() {
        format!("loop device {dev}; no process holds it (a detached mount the kernel has not torn down yet)")
    } else {
        format!("loop device {dev}; held by {}", found.join("; "))
    }
}

/// How long a mount waits for the previous release of the same image. Usually a few
/// milliseconds; on a loaded host a detached filesystem has been seen to linger for more
/// than 10 s (docs/reliability.md, cause open), and waiting beats failing the resume.
const MOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// How long an unmount (the end of a pause, after its commit) waits to see the release:
/// a late one is only logged there, so the pause answers soon.
const UNMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until the image's filesystem is fully released (detached mounts are torn down
/// asynchronously by the kernel). Mounting it again before that would make a second
/// live filesystem on the same bytes.
fn wait_released(image: &Path, limit: std::time::Duration) -> Result<()> {
    let start = std::time::Instant::now();
    let mut told = 0;
    while attached(image) {
        let waited = start.elapsed();
        if waited > limit {
            return Err(RuntimeError::Io {
                context: format!("release {}", image.display()),
                source: std::io::Error::other(format!(
                    "the sandbox's disk is still in use {} s after it was unmounted ({})",
                    limit.as_secs(),
                    holders(image)
                )),
            });
        }
        if waited.as_secs() >= 10 * (told + 1) {
            told += 1;
            let holders = if told == 1 { holders(image) } else { String::new() };
            tracing::warn!(image = %image.display(), secs = waited.as_secs(), %holders, "waiting for the sandbox's previous disk release");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// Makes the image (once) and mounts it at `mount_point` (if not mounted).
pub fn mount(image: &Path, mount_point: &Path, size_mb: u64) -> Result<()> {
    if super::overlay::is_mounted(mount_point) {
        return Ok(());
    }
    wait_released(image, MOUNT_WAIT)?;
    std::fs::create_dir_all(mount_point)
        .map_err(|e| RuntimeError::Io { context: format!("create {}", mount_point.display()), source: e })?;
    make(image, size_mb)?;
    run("mount sandbox disk", Command::new("mount").args(["-o", "loop,noatime"]).arg(image).arg(mount_point))
}

/// Makes the image of `size_mb` MiB at `image` unless it exists (written beside it and
/// renamed, so an image that exists is whole).
pub fn make(image: &Path, size_mb: u64) -> Result<()> {
    if image.exists() {
        return Ok(());
    }
    let tmp = image.with_extension("img.tmp");
    format(&tmp, size_mb)?;
    std::fs::rename(&tmp, image).map_err(|e| RuntimeError::Io { context: "commit the disk image".into(), source: e })
}

/// Writes an empty ext4 filesystem of `size_mb` MiB as the sparse file `path` (replaced
/// if it exists). The one recipe of a sandbox disk: a fresh one and a pool's
/// (`disk_pool.rs`) are the same bytes but for the filesystem's UUID and times.
pub fn format(path: &Path, size_mb: u64) -> Result<()> {
    // Root only: it is the sandbox's whole filesystem.
    let f = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create(true).truncate(true),
        0o600,
    )
    .open(path)
    .map_err(|e| RuntimeError::Io { context: format!("create {}", path.display()), source: e })?;
    f.set_len(size_mb << 20).map_err(|e| RuntimeError::Io { context: "size the disk image".into(), source: e })?;
    drop(f);
    // Lazy inode/journal init keeps mkfs at ~15 ms; no reserved blocks (the sandbox's
    // root owns the whole disk).
    run(
        "mkfs.ext4 sandbox disk",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
            .arg(path),
    )
}

/// True if `path` holds an ext4 superblock (its magic at byte 1024 + 56): a whole
/// `format`, not a file cut short.
pub fn has_ext4_superblock(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    std::fs::File::open(path).and_then(|f| f.read_exact_at(&mut magic, 1024 + 56)).is_ok() && magic == [0x53, 0xef]
}

/// Unmounts the disk and waits until its filesystem is really gone.
pub fn unmount(image: &Path, mount_point: &Path) -> Result<()> {
    super::overlay::unmount(mount_point)?;
    wait_released(image, UNMOUNT_WAIT)
}
