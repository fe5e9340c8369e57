//! Starting a sandbox's init: runs `stasis-agent boot` and walks it through the sync
//! protocol (id maps, PID 1's host pid, readiness), the host's end of the contract in
//! `stasis_proto::agent`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use stasis_proto::agent::{BootConfig, SyncMessage, BOOT_CONFIG_ON_SYNC_FD, SYNC_FD};

use crate::container::idmap;
use crate::error::{IoContext, Result, RuntimeError};

const BOOT_TIMEOUT: Duration = Duration::from_secs(20);

/// Boots the sandbox and returns the host pid of its init once the agent listens.
/// `after_unshare` runs once the new namespaces exist (with the pid of the process in
/// them), before the agent goes on: the host plugs the sandbox's network device in there.
pub fn boot(
    agent_binary: &Path,
    cfg: &BootConfig,
    log: &Path,
    ids: u32,
    after_unshare: impl FnOnce(u32) -> Result<()>,
) -> Result<u32> {
    let (host_end, child_end) = UnixStream::pair().ctx(|| "boot socketpair".into())?;
    host_end.set_read_timeout(Some(BOOT_TIMEOUT)).ctx(|| "boot socket timeout".into())?;
    let log_file = std::fs::File::create(log).ctx(|| format!("create {}", log.display()))?;
    let on_fd = takes_config_on_fd(agent_binary);
    let mut cmd = Command::new(agent_binary);
    cmd.arg("boot")
        .arg(if on_fd { BOOT_CONFIG_ON_SYNC_FD.to_string() } else { cfg.to_json() })
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().ctx(|| "dup log".into())?)
        .stderr(log_file);
    let child_fd = child_end.as_raw_fd();
    // SAFETY: umask, dup2 and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // The sandbox's processes start with the usual umask, not the daemon's 077
            // (files users create would otherwise be theirs alone, /dev/.boot_id too).
            libc::umask(0o022);
            if child_fd == SYNC_FD {
                let flags = libc::fcntl(SYNC_FD, libc::F_GETFD);
                libc::fcntl(SYNC_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(child_fd, SYNC_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut stage1 = cmd.spawn().ctx(|| format!("start {}", agent_binary.display()))?;
    drop(child_end);
    if on_fd {
        // Not in argv: every host user can read a command line; this holds the token.
        (&host_end).write_all(format!("{}\n", cfg.to_json()).as_bytes()).ctx(|| "send the boot config".into())?;
    }

    let result = drive(&host_end, stage1.id(), ids, after_unshare);
    // Stage 1 exits right after forking PID 1 (or on failure); reap it either way.
    if result.is_err() {
        let _ = stage1.kill();
    }
    let _ = stage1.wait();
    result.map_err(|e| match e {
        RuntimeError::Boot(msg) => {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            RuntimeError::Boot(if tail.trim().is_empty() { msg } else { format!("{msg} (log: {})", tail.trim()) })
        }
        other => other,
    })
}

fn drive(sock: &UnixStream, stage1_pid: u32, ids: u32, after_unshare: impl FnOnce(u32) -> Result<()>) -> Result<u32> {
    let mut reader = BufReader::new(sock);
    expect(next_message(&mut reader)?, SyncMessage::Unshared)?;
    idmap::write_maps(stage1_pid, ids).ctx(|| format!("write id maps of {stage1_pid}"))?;
    after_unshare(stage1_pid)?;
    (&*sock).write_all(format!("{}\n", SyncMessage::Mapped.to_line()).as_bytes()).ctx(|| "boot sync".into())?;
    let pid = pid_and_ready(&mut reader)?;
    until_closed(&mut reader)?;
    Ok(pid)
}

/// Waits until no sandbox process holds the socket any more: stage 1 has exited and PID 1
/// closed its end right after "ready". The socket belongs to the host's network namespace,
/// so a checkpoint taken while PID 1 still held it (a snapshot or fork right after the
/// create, PID 1 not scheduled yet) failed: CRIU "Unix socket N not found".
fn until_closed(reader: &mut impl BufRead) -> Result<()> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Ok(()),
        Ok(_) => Err(RuntimeError::Boot(format!("unexpected {:?} from agent after \"ready\"", line.trim()))),
        Err(e) => Err(RuntimeError::Boot(format!("the agent kept the boot socket open after \"ready\": {e}"))),
    }
}

/// The agent's next line; its error report, or its end, as a boot error.
fn next_message(reader: &mut impl BufRead) -> Result<SyncMessage> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err(RuntimeError::Boot("agent exited during boot".into())),
        Ok(_) => match SyncMessage::parse(&line) {
            Ok(SyncMessage::Error(msg)) => Err(RuntimeError::Boot(msg)),
            Ok(msg) => Ok(msg),
            Err(e) => Err(RuntimeError::Boot(e.to_string())),
        },
        Err(e) => Err(RuntimeError::Boot(format!("no answer from agent: {e}"))),
    }
}

/// PID 1's pid and its "ready". Stage 1 sends the pid right after its fork and PID 1
/// sends "ready" once it serves: two processes, so either may come first (on a loaded
/// host PID 1 can get there before stage 1 is scheduled again).
fn pid_and_ready(reader: &mut impl BufRead) -> Result<u32> {
    let (mut pid, mut ready) = (None, false);
    while pid.is_none() || !ready {
        match next_message(reader)? {
            SyncMessage::Pid(p) if pid.is_none() => pid = Some(p),
            SyncMessage::Ready if !ready => ready = true,
            other => {
                return Err(RuntimeError::Boot(format!(
                    "expected \"pid N\" and \"ready\" from agent, got {:?}",
                    other.to_line()
                )))
            }
        }
    }
    Ok(pid.expect("the loop ends with a pid"))
}

/// Whether `agent` reads its config from the sync fd: it then holds the argument that
/// says so. Agent layers are content-addressed (a path is one binary for good), so the
/// answer is kept per path.
fn takes_config_on_fd(agent: &Path) -> bool {
    static KNOWN: std::sync::Mutex<Vec<(std::path::PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());
    if let Some((_, yes)) = KNOWN.lock().unwrap().iter().find(|(p, _)| p == agent) {
        return *yes;
    }
    let needle = BOOT_CONFIG_ON_SYNC_FD.as_bytes();
    let yes = std::fs::read(agent).is_ok_and(|b| memchr::memmem::find(&b, needle).is_some());
    KNOWN.lock().unwrap().push((agent.to_path_buf(), yes));
    yes
}

fn expect(got: SyncMessage, want: SyncMessage) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(RuntimeError::Boot(format!("expected {:?} from agent, got {:?}", want.to_line(), got.to_line())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_mapped(lines: &str) -> Result<u32> {
        pid_and_ready(&mut std::io::Cursor::new(lines.as_bytes()))
    }

    #[test]
    fn pid_and_ready_in_either_order() {
        assert_eq!(after_mapped("pid 42\nready\n").unwrap(), 42);
        // PID 1 first: seen under load in CI ("expected \"pid N\" from agent, got \"ready\"").
        assert_eq!(after_mapped("ready\npid 42\n").unwrap(), 42);
    }

    #[test]
    fn a_repeated_missing_or_failed_message_is_a_boot_error() {
        assert!(matches!(after_mapped("ready\nready\n"), Err(RuntimeError::Boot(m)) if m.contains("got \"ready\"")));
        assert!(matches!(after_mapped("pid 1\n"), Err(RuntimeError::Boot(m)) if m.contains("exited during boot")));
        assert!(
            matches!(after_mapped("pid 1\nerror init: no rootfs\n"), Err(RuntimeError::Boot(m)) if m.contains("no rootfs"))
        );
    }
}
