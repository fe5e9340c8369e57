//! Starting one process: user, environment, working directory, pipes or a PTY.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::output::{Output, ProcEvent};
use super::users::User;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub cmd: String,
    pub args: Vec<String>,
    /// Request environment, applied over the sandbox-wide one.
    pub envs: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub user: User,
    pub pty: Option<PtySize>,
    pub stdin: bool,
    pub tag: Option<String>,
}

pub enum Stdin {
    Pipe(pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

impl Stdin {
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stdin::Pipe(p) => p.write_all(data).await,
            Stdin::Pty(fd) => write_fd_all(fd, data).await,
        }
    }
}

pub enum Reader {
    Stdout(pipe::Receiver),
    Stderr(pipe::Receiver),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

pub struct Spawned {
    pub pid: u32,
    pub stdin: Option<Stdin>,
    pub readers: Vec<Reader>,
}

fn base_env(user: &User, spec: &ProcessSpec, sandbox_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("HOME".into(), user.home.clone());
    env.insert("USER".into(), user.name.clone());
    env.insert("LOGNAME".into(), user.name.clone());
    env.insert("SHELL".into(), user.shell.clone());
    if spec.pty.is_some() {
        env.insert("TERM".into(), "xterm-256color".into());
    }
    env.extend(sandbox_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(spec.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

pub fn spawn(spec: &ProcessSpec, sandbox_env: &BTreeMap<String, String>) -> io::Result<Spawned> {
    let user = &spec.user;
    let cwd = spec.cwd.clone().unwrap_or_else(|| user.home.clone());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("working directory {cwd:?} does not exist")));
    }
    let mut cmd = Command::new(&spec.cmd);
    cmd.args(&spec.args).env_clear().envs(base_env(user, spec, sandbox_env)).current_dir(&cwd);

    let mut pty_master = None;
    if let Some(size) = spec.pty {
        let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&ws), None).map_err(io::Error::from)?;
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?));
        cmd.stdout(Stdio::from(slave.try_clone()?));
        cmd.stderr(Stdio::from(slave));
        pty_master = Some(pty.master);
    } else {
        cmd.stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped());
        cmd.stderr(Stdio::piped());
    }

    let (uid, gid) = (user.uid, user.gid);
    let groups: Vec<libc::gid_t> = user.groups.clone();
    let with_tty = spec.pty.is_some();
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if with_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // PID 1 is shielded from the OOM killer; its children must not be.
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
            if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                || libc::setresgid(gid, gid, gid) < 0
                || libc::setresuid(uid, uid, uid) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut readers = Vec::new();
    let mut stdin = None;
    if let Some(master) = pty_master {
        set_nonblocking(&master)?;
        #[allow(deprecated)] // tokio 1.54 deprecates `new` in favour of an API not yet settled; the fd is owned here.
        let fd = Arc::new(AsyncFd::new(master)?);
        readers.push(Reader::Pty(fd.clone()));
        stdin = Some(Stdin::Pty(fd));
    } else {
        if let Some(s) = child.stdin.take() {
            stdin = Some(Stdin::Pipe(pipe::Sender::from_owned_fd(OwnedFd::from(s))?));
        }
        if let Some(s) = child.stdout.take() {
            readers.push(Reader::Stdout(pipe::Receiver::from_owned_fd(OwnedFd::from(s))?));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(Reader::Stderr(pipe::Receiver::from_owned_fd(OwnedFd::from(s))?));
        }
    }
    // The reaper owns the exit status; dropping `child` neither waits nor kills.
    drop(child);
    Ok(Spawned { pid, stdin, readers })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn resize_pty(master: &AsyncFd<OwnedFd>, size: PtySize) -> io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    if unsafe { libc::ioctl(master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

async fn write_fd_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| {
            // SAFETY: writing from a live slice to an fd we own.
            let n = unsafe { libc::write(inner.get_ref().as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

async fn read_fd(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| {
            // SAFETY: reading into a live buffer from an fd we own.
            let n = unsafe { libc::read(inner.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Copies every reader into the process's output until all reach end of file.
pub async fn pump_output(readers: Vec<Reader>, output: &Output) {
    let tasks = readers.into_iter().map(|r| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match r {
            Reader::Stdout(mut p) => {
                while let Ok(n @ 1..) = p.read(&mut buf).await {
                    output.push(ProcEvent::Stdout(Bytes::copy_from_slice(&buf[..n])));
                }
            }
            Reader::Stderr(mut p) => {
                while let Ok(n @ 1..) = p.read(&mut buf).await {
                    output.push(ProcEvent::Stderr(Bytes::copy_from_slice(&buf[..n])));
                }
            }
            // A PTY master reads EIO once the last slave holder is gone: that is its EOF.
            Reader::Pty(fd) => {
                while let Ok(n @ 1..) = read_fd(&fd, &mut buf).await {
                    output.push(ProcEvent::Pty(Bytes::copy_from_slice(&buf[..n])));
                }
            }
        }
    });
    futures::future::join_all(tasks).await;
}
