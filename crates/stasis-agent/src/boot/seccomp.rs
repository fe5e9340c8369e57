//! The sandbox's seccomp profile (documented in docs/security.md).
//!
//! A deny list on top of the user namespace: the kernel interfaces that act on the whole
//! machine (modules, kexec, clock, swap, reboot, keyrings, BPF, perf), new mounts and new
//! namespaces (the main routes to kernel attack surface from a user namespace).
//!
//! `no_new_privs` is deliberately NOT set: it would break the in-sandbox `sudo` users rely
//! on. PID 1 installs the filter with its user-namespace CAP_SYS_ADMIN instead; setuid
//! inside the sandbox can only reach in-sandbox root, which is an unprivileged host uid.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Syscalls that fail with EPERM whatever their arguments.
pub const DENIED: &[(&str, i64)] = &[
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
];

/// `clone` flags that create namespaces: refused like `unshare`.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: u32) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), TargetArch::x86_64)?;
    Ok(filter.try_into()?)
}

/// The two programs of the profile: the deny list (EPERM), and `clone3` answered ENOSYS so
/// libc falls back to `clone`, whose flags a filter can inspect.
pub fn programs() -> Result<Vec<BpfProgram>> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(_, nr)| (*nr, vec![])).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*flag), *flag)?;
            Ok(SeccompRule::new(vec![cond])?)
        })
        .collect::<Result<Vec<_>>>()?;
    deny.insert(libc::SYS_clone, clone_rules);
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, vec![])].into_iter().collect();
    Ok(vec![compile(deny, libc::EPERM as u32)?, compile(clone3, libc::ENOSYS as u32)?])
}

/// Installs the profile on the calling thread (PID 1 is single-threaded here); every
/// process of the sandbox inherits it and cannot remove it.
pub fn install() -> Result<()> {
    for prog in programs().context("compile seccomp profile")? {
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
        // SAFETY: `fprog` points at a live, well-formed BPF program for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog) };
        if r != 0 {
            bail!("seccomp(SET_MODE_FILTER): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_compiles_to_nonempty_programs() {
        let progs = programs().unwrap();
        assert_eq!(progs.len(), 2);
        assert!(progs[0].len() > DENIED.len(), "each denied syscall needs at least one instruction");
    }
}
