//! Jupyter kernels, launched and driven by the service itself.
//!
//! [`spec`] reads kernelspecs, [`process`] starts a kernel and signals it, [`wire`] is the
//! message format, [`session`] the ZeroMQ client. [`Kernel`] ties them together: start a
//! kernel and wait until it answers, send code, interrupt, kill. What a run *means* (its
//! NDJSON lines, its environment, its lock) belongs to [`crate::context`].

pub mod process;
pub mod session;
pub mod spec;
pub mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use process::{ConnectionInfo, KernelProcess, KERNEL_IP};
use session::{Channel, Event, Gone, Session};
use spec::{InterruptMode, KernelSpec};

/// How long a kernel may take to start and answer `kernel_info_request` (Python with the
/// scientific stack imports for seconds on a loaded machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot start kernel {name}: {why}")]
    Start { name: String, why: String },
    #[error("kernel {name} did not become ready within {secs} s")]
    NotReady { name: String, secs: u64 },
    #[error("kernel {name} ended while starting ({status})")]
    DiedStarting { name: String, status: String },
}

/// How to start a kernel beyond its spec's `argv`.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Added to the service's environment.
    pub env: BTreeMap<String, String>,
    pub interrupt_mode: InterruptMode,
}

/// A running kernel and the session to it.
pub struct Kernel {
    name: String,
    interrupt_mode: InterruptMode,
    process: KernelProcess,
    session: Session,
    /// Sandbox envs this kernel has been given (see `crate::envd`).
    applied_globals: Mutex<BTreeMap<String, String>>,
}

/// The messages of one request, as they arrive.
pub struct Request {
    pub msg_id: String,
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl Kernel {
    /// Start kernel `name` from `spec` in `cwd` and wait until it answers on shell and
    /// IOPub.
    pub async fn start(
        name: &str,
        spec: &KernelSpec,
        launch: &Launch,
        cwd: &Path,
        runtime_dir: &Path,
    ) -> Result<Kernel, KernelError> {
        let started = Instant::now();
        let err = |why: String| KernelError::Start { name: name.to_string(), why };
        let info = ConnectionInfo::new(KERNEL_IP, name).map_err(|e| err(format!("ports: {e}")))?;
        let process =
            KernelProcess::spawn(spec, &launch.env, &info, cwd, runtime_dir).map_err(|e| err(e.to_string()))?;
        let mut exited = process.exited();
        let deadline = started + START_TIMEOUT;
        let died = |status: Option<String>| KernelError::DiedStarting {
            name: name.to_string(),
            status: status.unwrap_or_else(|| "ended".into()),
        };
        let session = tokio::select! {
            s = Session::connect(&info, START_TIMEOUT) => s.map_err(|e| err(e.to_string()))?,
            _ = exited.wait_for(Option::is_some) => return Err(died(process.exited().borrow().clone())),
        };
        let kernel = Kernel {
            name: name.to_string(),
            interrupt_mode: launch.interrupt_mode,
            process,
            session,
            applied_globals: Mutex::default(),
        };
        tokio::select! {
            ready = kernel.wait_ready(deadline) => {
                if !ready {
                    return Err(KernelError::NotReady { name: name.to_string(), secs: START_TIMEOUT.as_secs() });
                }
            }
            _ = exited.wait_for(Option::is_some) => return Err(died(kernel.process.exited().borrow().clone())),
        }
        kernel.watch_exit();
        tracing::info!(
            kernel = name,
            pid = kernel.process.pid(),
            ms = started.elapsed().as_millis() as u64,
            "kernel ready"
        );
        Ok(kernel)
    }

    /// `kernel_info_request` until it is answered on shell *and* its status shows on
    /// IOPub: only then is our subscription live (a SUB socket misses what was published
    /// before it connected), so the first run cannot lose its first outputs.
    async fn wait_ready(&self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            let mut req = self.request(Channel::Shell, "kernel_info_request", json!({})).await;
            let (mut replied, mut on_iopub) = (false, false);
            let retry = Instant::now() + Duration::from_secs(2);
            loop {
                let until = if replied { retry.min(Instant::now() + Duration::from_millis(500)) } else { deadline };
                match tokio::time::timeout_at(until, req.events.recv()).await {
                    Ok(Some(Event::Message(m))) => {
                        if m.msg_type() == "kernel_info_reply" {
                            replied = true;
                        } else {
                            on_iopub = true;
                        }
                        if replied && on_iopub {
                            self.session.forget(&req.msg_id);
                            return true;
                        }
                    }
                    Ok(Some(Event::Gone(_))) | Ok(None) => return false,
                    Err(_) => break,
                }
            }
            self.session.forget(&req.msg_id);
        }
        false
    }

    /// When the process ends, every pending request learns it.
    fn watch_exit(&self) {
        // The session is owned by the kernel; the watcher only needs to fail its
        // requests, so it goes through a weak handle on the pending table.
        let mut exited = self.process.exited();
        let fail = self.session.failer();
        tokio::spawn(async move {
            let _ = exited.wait_for(Option::is_some).await;
            let status = exited.borrow().clone().unwrap_or_default();
            fail(Gone::Died(status));
        });
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_alive(&self) -> bool {
        self.process.is_alive() && !self.session.is_gone()
    }

    /// Send a request on `channel`.
    pub async fn request(&self, channel: Channel, msg_type: &str, content: serde_json::Value) -> Request {
        let (msg_id, events) = self.session.request(channel, msg_type, content).await;
        Request { msg_id, events }
    }

    /// `execute_request` for `code`; `silent` runs leave no history, count and outputs.
    pub async fn execute(&self, code: &str, silent: bool) -> Request {
        let content = json!({
            "code": code,
            "silent": silent,
            "store_history": !silent,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": !silent,
        });
        self.request(Channel::Shell, "execute_request", content).await
    }

    /// Stop routing messages of a finished request.
    pub fn forget(&self, msg_id: &str) {
        self.session.forget(msg_id);
    }

    /// Interrupt what the kernel runs, as its spec says.
    pub async fn interrupt(&self) {
        tracing::info!(kernel = %self.name, pid = self.process.pid(), mode = ?self.interrupt_mode, "interrupt");
        match self.interrupt_mode {
            InterruptMode::Signal => self.process.interrupt(),
            InterruptMode::Message => {
                let req = self.request(Channel::Control, "interrupt_request", json!({})).await;
                self.session.forget(&req.msg_id);
            }
        }
    }

    /// Kill the kernel (its whole process group); pending requests get `why`.
    pub fn kill(&self, why: Gone) {
        self.session.fail_all(why);
        self.process.kill();
    }

    /// Sandbox envs this kernel was last given.
    pub fn applied_globals(&self) -> BTreeMap<String, String> {
        self.applied_globals.lock().unwrap().clone()
    }

    pub fn set_applied_globals(&self, envs: BTreeMap<String, String>) {
        *self.applied_globals.lock().unwrap() = envs;
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.session.fail_all(Gone::Removed);
    }
}
