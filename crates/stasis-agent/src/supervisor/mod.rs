//! Processes of the sandbox: start them, keep their output until a client reads it, reap
//! every child (PID 1 inherits all orphans), report exits.
//!
//! Wire-format free: `envd` maps these types to the protocol.

mod output;
mod reaper;
mod spawn;
mod start;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use output::{OutputCursor, ProcEvent};
pub use spawn::{ProcessSpec, PtySize};
pub use users::User;

/// How a process ended, as the envd protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub exited: bool,
    pub status: String,
}

impl ExitInfo {
    pub fn from_wait(status: nix::sys::wait::WaitStatus) -> Option<Self> {
        use nix::sys::wait::WaitStatus::*;
        match status {
            Exited(_, code) => Some(Self { exit_code: code, exited: true, status: format!("exit status {code}") }),
            Signaled(_, sig, _) => {
                Some(Self { exit_code: -1, exited: false, status: format!("signal: {}", signal_name(sig)) })
            }
            _ => None,
        }
    }
}

/// Go's names for signals: the SDKs show envd's (Go) wording.
fn signal_name(sig: nix::sys::signal::Signal) -> &'static str {
    use nix::sys::signal::Signal::*;
    match sig {
        SIGKILL => "killed",
        SIGTERM => "terminated",
        SIGINT => "interrupt",
        SIGHUP => "hangup",
        SIGSEGV => "segmentation fault",
        SIGABRT => "aborted",
        SIGPIPE => "broken pipe",
        SIGQUIT => "quit",
        SIGUSR1 => "user defined signal 1",
        SIGUSR2 => "user defined signal 2",
        SIGBUS => "bus error",
        SIGFPE => "floating point exception",
        SIGILL => "illegal instruction",
        SIGALRM => "alarm clock",
        other => other.as_str(),
    }
}

/// One process started through the agent.
pub struct Process {
    pub pid: u32,
    pub spec: ProcessSpec,
    pub output: output::Output,
    stdin: tokio::sync::Mutex<Option<spawn::Stdin>>,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl Process {
    fn no_input(msg: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, msg.to_string())
    }

    /// Writes to the process's stdin pipe, or to its terminal when it has one.
    pub async fn write_input(&self, data: &[u8]) -> std::io::Result<()> {
        match self.stdin.lock().await.as_mut() {
            Some(stdin) => stdin.write_all(data).await,
            None => Err(Self::no_input("stdin is closed or was not enabled")),
        }
    }

    /// Closes a stdin pipe (the process reads end of file); a PTY stays open.
    pub async fn close_stdin(&self) {
        let mut guard = self.stdin.lock().await;
        if matches!(guard.as_ref(), Some(spawn::Stdin::Pipe(_))) {
            *guard = None;
        }
    }

    pub async fn resize(&self, size: PtySize) -> std::io::Result<()> {
        match self.stdin.lock().await.as_ref() {
            Some(spawn::Stdin::Pty(master)) => spawn::resize_pty(master, size),
            _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "process has no PTY")),
        }
    }

    pub fn exit(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    pub fn has_pty(&self) -> bool {
        self.spec.pty.is_some()
    }
}

/// The process table.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    running: Mutex<HashMap<u32, Arc<Process>>>,
    reaper: reaper::Reaper,
    /// Environment of every process: the sandbox's `envVars` from its create request.
    env: std::sync::RwLock<BTreeMap<String, String>>,
}

impl Supervisor {
    pub fn new(env: BTreeMap<String, String>) -> Self {
        Self { inner: Arc::new(Inner { env: std::sync::RwLock::new(env), ..Default::default() }) }
    }

    /// Adds (or replaces) variables of the sandbox-wide environment, for processes
    /// started from now on.
    pub fn set_env(&self, vars: BTreeMap<String, String>) {
        self.inner.env.write().unwrap().extend(vars);
    }

    /// The sandbox-wide environment (what envd's `GET /envs` returns).
    pub fn env(&self) -> BTreeMap<String, String> {
        self.inner.env.read().unwrap().clone()
    }

    /// Starts reaping; call once from inside the runtime.
    pub fn start_reaper(&self) -> std::io::Result<()> {
        self.inner.reaper.start()
    }

    pub fn spawn(&self, spec: ProcessSpec) -> std::io::Result<Arc<Process>> {
        if let Some(tag) = &spec.tag {
            if self.find_tag(tag).is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("a process with tag {tag:?} is running"),
                ));
            }
        }
        let (spawned, exit_rx) = self.inner.reaper.spawn_watched(|| {
            let env = self.inner.env.read().unwrap().clone();
            let s = spawn::spawn(&spec, &env)?;
            Ok((s.pid, s))
        })?;
        let pid = spawned.pid;
        let output = output::Output::new(output::DEFAULT_BUFFER_BYTES);
        output.push(ProcEvent::Start { pid });
        let proc = Arc::new(Process {
            pid,
            spec,
            output,
            stdin: tokio::sync::Mutex::new(spawned.stdin),
            exit: exit_rx.clone(),
        });
        self.inner.running.lock().unwrap().insert(pid, proc.clone());
        let sup = self.clone();
        let readers = spawned.readers;
        let p = proc.clone();
        tokio::spawn(async move {
            spawn::pump_output(readers, &p.output).await;
            let mut rx = exit_rx;
            let info = loop {
                if let Some(info) = rx.borrow().clone() {
                    break info;
                }
                if rx.changed().await.is_err() {
                    break ExitInfo { exit_code: -1, exited: false, status: "unknown".into() };
                }
            };
            sup.inner.running.lock().unwrap().remove(&p.pid);
            *p.stdin.lock().await = None;
            p.output.push(ProcEvent::End(info));
            p.output.close();
        });
        Ok(proc)
    }

    pub fn get(&self, pid: u32) -> Option<Arc<Process>> {
        self.inner.running.lock().unwrap().get(&pid).cloned()
    }

    pub fn find_tag(&self, tag: &str) -> Option<Arc<Process>> {
        self.inner.running.lock().unwrap().values().find(|p| p.spec.tag.as_deref() == Some(tag)).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Process>> {
        let mut v: Vec<_> = self.inner.running.lock().unwrap().values().cloned().collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    pub fn signal(&self, pid: u32, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        if self.get(pid).is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("process {pid} not found")));
        }
        // Signal the whole process group: commands run in their own group, so a shell's
        // children go too, as a user pressing Ctrl-C would expect.
        let pgid = nix::unistd::Pid::from_raw(-(pid as i32));
        nix::sys::signal::kill(pgid, sig)
            .or_else(|_| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig))
            .map_err(std::io::Error::from)
    }
}
