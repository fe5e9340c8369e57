//! The sandbox's seccomp profile (documented in docs/security.md).
//!
//! A deny list on top of the user namespace: the kernel interfaces that act on the whole
//! machine (modules, kexec, clock, swap, reboot, keyrings, BPF, perf), new mounts and new
//! namespaces (the main routes to kernel attack surface from a user namespace), io_uring.
//!
//! A deny list names x86_64 numbers only, so before it an ABI guard kills every call made
//! another way: a foreign architecture (`int 0x80`, audit arch i386) or the x32 ABI, whose
//! calls carry the x86_64 audit arch with bit 30 set in the number and would match no rule.
//!
//! `no_new_privs` is deliberately NOT set: it would break the in-sandbox `sudo` users rely
//! on. PID 1 installs the filter with its user-namespace CAP_SYS_ADMIN instead; setuid
//! inside the sandbox can only reach in-sandbox root, which is an unprivileged host uid.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
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
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("uselib", libc::SYS_uselib),
];

/// `personality` values that stay allowed (Docker's): Linux, 32-bit Linux, UNAME26, both,
/// and the query. The others turn off exploit mitigations (`ADDR_NO_RANDOMIZE`,
/// `READ_IMPLIES_EXEC`, `MMAP_PAGE_ZERO`).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

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

/// x86_64's audit arch (`AUDIT_ARCH_X86_64`).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Bit 30 of the number marks an x32 call.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Kills the process on any call that is not a native x86_64 one. Number -1 passes: a
/// tracer skips a call by setting it, and the kernel answers it ENOSYS itself.
fn abi_guard() -> BpfProgram {
    const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        stmt(LD_ABS, 4), // seccomp_data.arch
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, SECCOMP_RET_KILL_PROCESS),
        stmt(LD_ABS, 0), // seccomp_data.nr
        jump(JEQ, u32::MAX, 2, 0),
        jump(JGE, X32_SYSCALL_BIT, 0, 1),
        stmt(RET, SECCOMP_RET_KILL_PROCESS),
        stmt(RET, SECCOMP_RET_ALLOW),
    ]
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: u32) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), TargetArch::x86_64)?;
    Ok(filter.try_into()?)
}

/// The three programs of the profile: the ABI guard, the deny list (EPERM), and `clone3`
/// answered ENOSYS so libc falls back to `clone`, whose flags a filter can inspect. (The
/// kernel runs them all and applies the strictest answer, so their order does not matter.)
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
    let other_personality = PERSONALITIES
        .iter()
        .map(|p| Ok(SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *p)?))
        .collect::<Result<Vec<_>>>()?;
    deny.insert(libc::SYS_personality, vec![SeccompRule::new(other_personality)?]);
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, vec![])].into_iter().collect();
    Ok(vec![abi_guard(), compile(deny, libc::EPERM as u32)?, compile(clone3, libc::ENOSYS as u32)?])
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
        assert_eq!(progs.len(), 3);
        assert!(progs[1].len() > DENIED.len(), "each denied syscall needs at least one instruction");
    }

    #[test]
    fn abi_guard_kills_x32_calls_and_passes_native_ones() {
        let guard = abi_guard();
        let fprog = libc::sock_fprog { len: guard.len() as u16, filter: guard.as_ptr() as *mut libc::sock_filter };
        // SAFETY: the child makes raw syscalls only, then exits without unwinding.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0 {
                    libc::_exit(2);
                }
                if libc::syscall(libc::SYS_getpid) <= 0 || libc::syscall(-1) != -1 {
                    libc::_exit(3);
                }
                libc::syscall(X32_SYSCALL_BIT as i64 | libc::SYS_getpid);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "the x32 call was not killed (status {status:#x})"
        );
    }
}
