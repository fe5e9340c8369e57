//! The sandbox's mount tree, built by PID 1 inside its own user and mount namespaces.

use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};

/// Device nodes the sandbox gets, bind-mounted from the agent layer (a user namespace
/// cannot `mknod`, and binding from inside the root keeps the checkpoint self-contained).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

fn mnt(src: Option<&str>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<()> {
    mount(src, target, fstype, flags, data)
        .with_context(|| format!("mount {:?} on {}", fstype.or(src), target.display()))
}

/// `boot_id` (32 hex digits) in the kernel's UUID form.
fn uuid_form(hex: &str) -> String {
    if hex.len() != 32 {
        return hex.to_string();
    }
    format!("{}-{}-{}-{}-{}\n", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Where PID 1 keeps the boot id it binds over `/proc/sys/kernel/random/boot_id`.
const BOOT_ID_FILE: &str = "/dev/.boot_id";

/// Replaces the sandbox's boot id (a copy from a snapshot gets its own): rewritten in
/// place, so the bind mount over the kernel's file shows it.
pub fn set_boot_id(boot_id: &str) -> Result<()> {
    anyhow::ensure!(boot_id.len() == 32 && boot_id.bytes().all(|b| b.is_ascii_hexdigit()), "not 32 hex digits");
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(BOOT_ID_FILE)?;
    std::io::Write::write_all(&mut f, uuid_form(boot_id).as_bytes())?;
    Ok(())
}

pub fn enter_rootfs(rootfs: &str, boot_id: &str) -> Result<()> {
    let root = Path::new(rootfs);
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).context("make / private")?;
    // The overlay was mounted by the host: re-bind it so it is a mount of this namespace
    // that pivot_root accepts.
    mnt(Some(rootfs), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(Some("proc"), &root.join("proc"), Some("proc"), nosuid_nodev_noexec, None)?;
    mnt(Some("sysfs"), &root.join("sys"), Some("sysfs"), nosuid_nodev_noexec | MsFlags::MS_RDONLY, None)?;

    let dev = root.join("dev");
    mnt(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=755,size=1m"))?;
    let agent_dev = root.join(".stasis/dev");
    for name in DEVICES {
        let target = dev.join(name);
        std::fs::File::create(&target).with_context(|| format!("create {}", target.display()))?;
        let src = agent_dev.join(name);
        mnt(src.to_str(), &target, None, MsFlags::MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts)?;
    mnt(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    symlink("pts/ptmx", dev.join("ptmx"))?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm)?;
    mnt(Some("shm"), &shm, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777,size=64m"))?;
    // Each boot of a sandbox has its own boot id (the kernel's is the host's).
    let boot_id_file = dev.join(".boot_id");
    std::fs::write(&boot_id_file, uuid_form(boot_id))?;
    mnt(boot_id_file.to_str(), &root.join("proc/sys/kernel/random/boot_id"), None, MsFlags::MS_BIND, None)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link))?;
    }

    chdir(root).context("chdir rootfs")?;
    pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detach old root")?;
    chdir("/").context("chdir /")?;
    Ok(())
}

/// Kernel files that describe or act on the host rather than the sandbox, masked as runc
/// does: files get `/dev/null` bound over them, directories an empty read-only tmpfs.
/// (Timers, scheduler state, keys and physical memory of the host; its firmware tables.)
pub const MASKED: [&str; 12] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel files made read-only (runc's list): the sandbox may read them, but writes
/// would reach host hardware or, for `/proc/sys`, settings of its namespaces that the
/// sandbox has no business changing (`net.*` is otherwise writable by its root).
pub const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Applies `MASKED` and `READ_ONLY` (paths this kernel lacks are skipped). Runs after the
/// network is configured: it writes `/proc/sys/net`.
pub fn mask_kernel_files() -> Result<()> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for path in MASKED.iter().map(Path::new) {
        let Ok(meta) = std::fs::symlink_metadata(path) else { continue };
        if meta.is_dir() {
            mnt(Some("tmpfs"), path, Some("tmpfs"), hardened | MsFlags::MS_RDONLY, Some("mode=555,size=4k"))?;
        } else {
            mnt(Some("/dev/null"), path, None, MsFlags::MS_BIND, None)?;
        }
    }
    for path in READ_ONLY.iter().map(Path::new) {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        mnt(path.to_str(), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | hardened;
        mnt(None, path, None, ro, None)?;
    }
    Ok(())
}

/// Points stdio at files inside the sandbox: CRIU refuses host pipes or a host /dev/null.
pub fn redirect_stdio() -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("open /dev/null")?;
    std::fs::create_dir_all("/var/log").ok();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/var/log/stasis-agent.log")
        .context("open agent log")?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(log.as_raw_fd(), 1)?;
    nix::unistd::dup2(log.as_raw_fd(), 2)?;
    // Drop our handles first: closing fds that Rust objects still own is an IO-safety abort.
    drop((null, log));
    close_fds_above(2, &[stasis_proto::agent::SYNC_FD]);
    Ok(())
}

fn close_fds_above(min: i32, keep: &[i32]) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds {
        if fd > min && !keep.contains(&fd) {
            // SAFETY: closing fds we do not own is the point: nothing host-side may survive.
            unsafe { libc::close(fd) };
        }
    }
}
