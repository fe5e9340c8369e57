//! The sandbox's capability sets, cut by PID 1 before anything of the sandbox runs.
//!
//! In-sandbox root starts with every capability over its own user and network namespaces.
//! That is more kernel than a container needs: `CAP_NET_ADMIN` opens nf_tables, net/sched
//! and xfrm, `CAP_NET_RAW` raw and `AF_PACKET` sockets, `CAP_SYS_ADMIN` whatever the
//! seccomp profile does not close. The bounding set keeps Docker's default set minus
//! `CAP_NET_RAW` (docs/security.md says why); inheritable and ambient are emptied, so no
//! later exec, setuid or file capability can get anything back.
//!
//! It must run after the steps that need more (the mount tree, eth0, the seccomp filter:
//! without `no_new_privs` installing it needs `CAP_SYS_ADMIN`) and before the agent
//! re-executes, so every process of the sandbox, the agent included, lives under it.
//! CRIU dumps and restores the sets of every task, so a resumed, snapshotted or forked
//! sandbox keeps them.

use anyhow::{bail, Context, Result};

/// Capabilities the sandbox keeps: what `sudo`, package managers and servers need
/// (switching users, owning files, binding low ports, chroot), nothing that reaches
/// kernel subsystems beyond files, processes and plain sockets.
pub const KEPT: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// The kept set as a mask (what `/proc/<pid>/status` shows as `CapBnd`).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, (_, bit)| m | 1 << bit)
}

/// The highest capability this kernel knows (a newer kernel may know more than libc).
fn last_cap() -> Result<u32> {
    let s = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").context("read cap_last_cap")?;
    s.trim().parse().context("parse cap_last_cap")
}

/// Cuts the bounding set to `KEPT`, empties inheritable and ambient, and limits the
/// calling process's own permitted and effective sets to `KEPT`.
pub fn drop_to_kept() -> Result<()> {
    let keep = kept_mask();
    for cap in 0..=last_cap()? {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            bail!("drop capability {cap} from the bounding set: {}", std::io::Error::last_os_error());
        }
    }
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) } != 0 {
        bail!("clear ambient capabilities: {}", std::io::Error::last_os_error());
    }
    set_own(keep)
}

/// `capset` version 3 (64-bit sets in two 32-bit halves).
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn set_own(keep: u64) -> Result<()> {
    let mut head = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data structs, as the v3 ABI requires.
    if unsafe { libc::syscall(libc::SYS_capget, &mut head, data.as_mut_ptr()) } != 0 {
        bail!("capget: {}", std::io::Error::last_os_error());
    }
    for (i, d) in data.iter_mut().enumerate() {
        let half = (keep >> (32 * i)) as u32;
        d.permitted &= half;
        d.effective &= half;
        d.inheritable = 0;
    }
    // SAFETY: as above; the new sets are subsets of the current ones.
    if unsafe { libc::syscall(libc::SYS_capset, &mut head, data.as_ptr()) } != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_set_is_dockers_default_without_net_raw() {
        // Docker's default bounding set is 0xa80425fb; CAP_NET_RAW is bit 13.
        assert_eq!(kept_mask(), 0xa804_25fb & !(1 << 13));
        assert!(KEPT.iter().all(|(name, _)| !["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW"].contains(name)));
    }
}
