//! Acting on the filesystem with a sandbox user's rights.
//!
//! The agent runs as root. Rather than doing everything as root and `chown`ing afterwards
//! (which lets any caller write anywhere and races with readers of half-owned files), each
//! operation runs on a blocking thread whose *filesystem* credentials (fsuid, fsgid and
//! supplementary groups, all per-thread on Linux) are switched to the user's. The kernel
//! then checks permissions as for the user, and whatever the operation creates is owned by
//! the user from its first instant. The thread's credentials are restored before the
//! thread goes back to tokio's pool, also when the operation panics.
//!
//! Every fsuid/fsgid change makes the kernel mark the whole process non-dumpable
//! (`commit_creds` applies `fs.suid_dumpable`, 0). For the agent that is fatal to the next
//! pause once it has been restored: a restored task's memory descriptor belongs to the
//! host's user namespace (CRIU forked it, nothing exec'd it inside), so a non-dumpable
//! agent's `/proc/<pid>/ns/*` can only be opened by host root, and CRIU checks the
//! sandbox's namespaces from inside its user namespace ("One or more namespaces doesn't
//! belong to the target user namespace"). So the agent marks itself dumpable again right
//! after each switch. That exposes nothing: ptrace and /proc access to the agent still need
//! its real/effective uid (sandbox root), which a switched fsuid does not change.

use std::io;

use crate::supervisor::User;

/// Run `op` on a blocking thread with `user`'s filesystem rights.
pub async fn as_user<T, F>(user: &User, op: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    tokio::task::spawn_blocking(move || {
        let _guard = FsCreds::switch(uid, gid, &groups)?;
        op()
    })
    .await
    .map_err(|e| io::Error::other(format!("filesystem worker failed: {e}")))?
}

/// Run `op` on the current thread with `user`'s filesystem rights. For short operations
/// only; `op` cannot await, so nothing else runs on this thread meanwhile.
pub fn as_user_here<T>(user: &User, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let _guard = FsCreds::switch(user.uid, user.gid, &user.groups)?;
    op()
}

/// The switched credentials of the current thread; dropping it switches back.
struct FsCreds {
    saved_groups: Option<Vec<libc::gid_t>>,
}

impl FsCreds {
    fn switch(uid: u32, gid: u32, groups: &[u32]) -> io::Result<Self> {
        // SAFETY: geteuid/getegid cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == euid && gid == egid {
            // Already the user (root acting as root, or tests run as that user).
            return Ok(FsCreds { saved_groups: None });
        }
        let saved = current_groups()?;
        let guard = FsCreds { saved_groups: Some(saved) };
        set_thread_groups(groups)?;
        // setfsgid/setfsuid do not report failure directly: they return the previous
        // value, so read back with an invalid id to check the switch took effect.
        unsafe {
            libc::setfsgid(gid);
            if libc::setfsgid(u32::MAX) as u32 != gid {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot switch to gid {gid}")));
            }
            libc::setfsuid(uid);
            if libc::setfsuid(u32::MAX) as u32 != uid {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot switch to uid {uid}")));
            }
        }
        keep_dumpable();
        Ok(guard)
    }
}

impl Drop for FsCreds {
    fn drop(&mut self) {
        let Some(groups) = self.saved_groups.take() else { return };
        // SAFETY: plain syscalls on this thread's credentials. Going back to the effective
        // ids also gives back the capabilities a non-zero fsuid dropped.
        unsafe {
            libc::setfsuid(libc::geteuid());
            libc::setfsgid(libc::getegid());
        }
        keep_dumpable();
        if let Err(e) = set_thread_groups(&groups) {
            // A pool thread with a user's groups must not serve anyone else.
            eprintln!("stasis-agent: cannot restore supplementary groups: {e}; aborting");
            std::process::abort();
        }
    }
}

/// Undoes the kernel's "non-dumpable after a credential change" (see the module doc).
fn keep_dumpable() {
    // SAFETY: a plain prctl on this process; it cannot fail with these arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
}

fn current_groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: first call asks for the count, second fills a buffer of that size.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0 as libc::gid_t; n as usize];
    let n = unsafe { libc::getgroups(n, buf.as_mut_ptr()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The raw syscall: libc's `setgroups` changes every thread of the process.
fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe `groups`.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn user(uid: u32, gid: u32) -> User {
        User { name: "t".into(), uid, gid, home: "/".into(), shell: "/bin/sh".into(), groups: vec![gid] }
    }

    #[tokio::test]
    async fn created_files_belong_to_the_user_and_thread_is_restored() {
        if unsafe { libc::geteuid() } != 0 {
            return; // needs root to switch ids
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let p = dir.path().join("f");
        let p2 = p.clone();
        as_user(&user(65534, 65534), move || std::fs::write(&p2, b"x")).await.unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!((md.uid(), md.gid()), (65534, 65534));

        // Not writable for that user: permission denied.
        let locked = tempfile::tempdir().unwrap();
        let target = locked.path().join("g");
        let e = as_user(&user(65534, 65534), move || std::fs::write(&target, b"x")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);

        // The pool thread is root again afterwards.
        let q = dir.path().join("h");
        let q2 = q.clone();
        as_user(&user(0, 0), move || std::fs::write(&q2, b"x")).await.unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().uid(), 0);
        let groups = tokio::task::spawn_blocking(current_groups).await.unwrap().unwrap();
        assert!(!groups.contains(&65534));
    }

    #[tokio::test]
    async fn the_process_stays_dumpable_across_switches() {
        if unsafe { libc::geteuid() } != 0 {
            return; // needs root to switch ids
        }
        let dumpable = || unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(dumpable(), 1);
        let seen_inside = as_user(&user(65534, 65534), move || Ok(dumpable())).await.unwrap();
        assert_eq!(seen_inside, 1, "dumpable while switched");
        assert_eq!(dumpable(), 1, "dumpable after switching back");
    }
}
