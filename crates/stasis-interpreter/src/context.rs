//! A context: one kernel, its language and working directory, and the runs in it.
//!
//! Runs in a context are serialized by its run lock (held from before the run's
//! environment is set until after it is restored); contexts are independent. A run is a
//! task of its own that writes NDJSON lines into a channel the HTTP body reads: when the
//! client goes away (the SDKs time a run out by aborting the request) the channel closes,
//! the task interrupts the kernel (again every 2 s) and keeps draining the run to its end,
//! so the next run finds the context idle and its state intact. A run whose kernel ignores
//! the interrupts for [`INTERRUPT_GRACE`] gets its kernel replaced (state lost, context
//! usable). A run
//! whose client left before it got the lock never starts.
//!
//! A kernel that dies is replaced by the next run in its context (the run it died in ends
//! with an error line saying so).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::envd::Envd;
use crate::envs;
use crate::kernel::session::{Event, Gone};
use crate::kernel::spec::KernelSpecs;
use crate::kernel::spec::{InterruptMode, KernelSpec};
use crate::kernel::Launch;
use crate::kernel::{Kernel, KernelError};
use crate::language::{Family, Language};
use crate::output::{OutputLine, RunTracker};

/// How long a run may go on after its client left and the kernel was interrupted, before
/// the kernel is replaced.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// How long a Deno run listens for late results after it is over (see `run`).
const DENO_SETTLE: Duration = Duration::from_millis(50);

/// How often the kernel is interrupted again while that run goes on.
const INTERRUPT_EVERY: Duration = Duration::from_secs(2);

/// How long the service's own silent snippets (envs) may take.
const SILENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every context needs from the service.
pub struct Deps {
    pub specs: KernelSpecs,
    pub runtime_dir: PathBuf,
    pub envd: Envd,
    /// `crate`'s `python/` as installed (`stasis_startup.py`, `stasis_kernel/`).
    pub python_dir: PathBuf,
}

impl Deps {
    /// The kernelspec that runs `language`: its own name first (`python3` for Python),
    /// then, for JavaScript and TypeScript, `deno` (one Deno kernelspec serves both).
    pub fn spec_for(&self, language: &Language) -> Option<(String, &KernelSpec)> {
        let own = language.kernel_name();
        let fallback = (language.family() == Family::Deno).then_some("deno");
        [Some(own), fallback].into_iter().flatten().find_map(|n| self.specs.get(n).map(|s| (n.to_string(), s)))
    }

    pub fn python_startup(&self) -> PathBuf {
        self.python_dir.join("stasis_startup.py")
    }

    /// How kernels of `family` start, beyond their spec (whose `env` and
    /// `interrupt_mode` win): what the SDKs' results need whatever the template says.
    /// - Python: the inline matplotlib backend (figures become PNG + chart results even
    ///   if the service's environment says `MPLBACKEND=Agg`) and our start-up code.
    /// - Deno: no colours in results (`"x"`, not an ANSI-coloured `"x"`); interrupted by
    ///   message, since SIGINT kills `deno jupyter`.
    pub fn launch(&self, family: Family, spec: &KernelSpec) -> Launch {
        let mut env = BTreeMap::new();
        let mut interrupt_mode = InterruptMode::Signal;
        match family {
            Family::Python => {
                env.insert("MPLBACKEND".into(), "module://matplotlib_inline.backend_inline".into());
                env.insert("PYTHONSTARTUP".into(), self.python_startup().display().to_string());
            }
            Family::Deno => {
                env.insert("NO_COLOR".into(), "1".into());
                interrupt_mode = InterruptMode::Message;
            }
            _ => {}
        }
        env.extend(spec.env.clone());
        Launch { env, interrupt_mode: spec.interrupt_mode.unwrap_or(interrupt_mode) }
    }
}

/// A context as the SDKs see it (`Context.from_json`: `id`, `language`, `cwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextInfo {
    pub id: String,
    pub language: String,
    pub cwd: String,
}

/// One run's input.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub code: String,
    pub env_vars: BTreeMap<String, String>,
    /// The caller's `X-Access-Token`, for envd's `GET /envs`.
    pub token: Option<String>,
}

pub struct Context {
    pub id: String,
    pub language: Language,
    pub cwd: PathBuf,
    deps: Arc<Deps>,
    run_lock: tokio::sync::Mutex<()>,
    kernel: Mutex<Option<Arc<Kernel>>>,
}

impl Context {
    /// A context whose kernel is started and ready.
    pub async fn start(
        id: String,
        language: Language,
        cwd: PathBuf,
        deps: Arc<Deps>,
    ) -> Result<Arc<Self>, KernelError> {
        let ctx = Arc::new(Context {
            id,
            language,
            cwd,
            deps,
            run_lock: tokio::sync::Mutex::new(()),
            kernel: Mutex::new(None),
        });
        {
            let _g = ctx.run_lock.lock().await;
            ctx.ensure_kernel().await?;
        }
        Ok(ctx)
    }

    pub fn info(&self) -> ContextInfo {
        ContextInfo { id: self.id.clone(), language: self.language.to_string(), cwd: self.cwd.display().to_string() }
    }

    /// The live kernel, started if there is none (only with the run lock held).
    async fn ensure_kernel(&self) -> Result<Arc<Kernel>, KernelError> {
        let current = self.kernel.lock().unwrap().clone();
        if let Some(k) = current.filter(|k| k.is_alive()) {
            return Ok(k);
        }
        let (name, spec) = self.deps.spec_for(&self.language).ok_or_else(|| KernelError::Start {
            name: self.language.kernel_name().to_string(),
            why: "no kernelspec for this language".into(),
        })?;
        let launch = self.deps.launch(self.language.family(), spec);
        let kernel = Arc::new(Kernel::start(&name, spec, &launch, &self.cwd, &self.deps.runtime_dir).await?);
        *self.kernel.lock().unwrap() = Some(kernel.clone());
        Ok(kernel)
    }

    /// Start `req` in the background; its NDJSON lines arrive on the receiver, whose drop
    /// means the client left.
    pub fn spawn_run(self: &Arc<Self>, req: RunRequest) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(self.clone().run(req, tx));
        rx
    }

    async fn run(self: Arc<Self>, req: RunRequest, tx: mpsc::Sender<Bytes>) {
        let out = Out { tx };
        let _turn = tokio::select! {
            g = self.run_lock.lock() => g,
            _ = out.tx.closed() => return,
        };
        let kernel = match self.ensure_kernel().await {
            Ok(k) => k,
            Err(e) => {
                out.send(&OutputLine::error("KernelError", e.to_string())).await;
                out.send(&OutputLine::EndOfExecution).await;
                return;
            }
        };
        if out.tx.is_closed() {
            return;
        }
        let family = self.language.family();
        self.apply_sandbox_envs(&kernel, req.token.as_deref()).await;
        if let Some(code) = envs::set_for_run(family, &req.env_vars) {
            if let Err(e) = run_silent(&kernel, &code).await {
                out.send(&OutputLine::error("EnvVarsError", format!("could not set env_vars: {e}"))).await;
                out.send(&OutputLine::EndOfExecution).await;
                return;
            }
        }

        let mut tracker = RunTracker::new();
        let mut request = kernel.execute(&req.code, false).await;
        // Deno (2.9) sometimes publishes a run's execute_result just *after* its idle status
        // and reply (~1 ms late, one run in five): its runs listen a little longer.
        let settle = (family == Family::Deno).then_some(DENO_SETTLE);
        let mut settle_until: Option<Instant> = None;
        let mut client_gone = false;
        let mut give_up: Option<Instant> = None;
        let mut next_interrupt: Option<Instant> = None;
        loop {
            if client_gone && give_up.is_none() && next_interrupt.is_none() {
                tracing::info!(context = %self.id, "client left mid-run: interrupting");
                give_up = Some(Instant::now() + INTERRUPT_GRACE);
                next_interrupt = Some(Instant::now());
            }
            tokio::select! {
                ev = request.events.recv() => {
                    let kernel_gone = matches!(ev, Some(Event::Gone(_)) | None);
                    let lines = match ev {
                        Some(Event::Message(m)) => tracker.on_message(&m),
                        Some(Event::Gone(why)) => tracker.on_gone(&why),
                        None => tracker.on_gone(&Gone::Removed),
                    };
                    for line in &lines {
                        if !client_gone && !out.send(line).await {
                            client_gone = true;
                        }
                    }
                    if kernel_gone {
                        break;
                    }
                    if tracker.done() {
                        match (settle, settle_until) {
                            (Some(d), None) => settle_until = Some(Instant::now() + d),
                            (None, _) => break,
                            _ => {}
                        }
                    }
                }
                _ = tokio::time::sleep_until(settle_until.unwrap_or_else(Instant::now)), if settle_until.is_some() => break,
                _ = out.tx.closed(), if !client_gone => client_gone = true,
                // Again every INTERRUPT_EVERY: Deno sometimes drops one.
                _ = tokio::time::sleep_until(next_interrupt.unwrap_or_else(Instant::now)), if next_interrupt.is_some() => {
                    kernel.interrupt().await;
                    next_interrupt = Some(Instant::now() + INTERRUPT_EVERY);
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(Instant::now)), if give_up.is_some() => {
                    tracing::warn!(context = %self.id, "run ignored the interrupts: replacing the kernel");
                    kernel.kill(Gone::InterruptFailed);
                    give_up = None;
                    next_interrupt = None;
                }
            }
        }
        kernel.forget(&request.msg_id);
        if kernel.is_alive() {
            if let Some(code) = envs::restore_after_run(family, req.env_vars.keys()) {
                if let Err(e) = run_silent(&kernel, &code).await {
                    tracing::warn!(context = %self.id, "could not restore env vars: {e}");
                }
            }
        }
        out.send(&OutputLine::EndOfExecution).await;
    }

    /// Give the kernel the sandbox's envs if they changed since it last got them.
    async fn apply_sandbox_envs(&self, kernel: &Kernel, token: Option<&str>) {
        let family = self.language.family();
        if !envs::supported(family) {
            return;
        }
        let mut want = self.deps.envd.envs(token).await;
        want.retain(|k, _| envs::check_names([k]).is_ok());
        let have = kernel.applied_globals();
        if want == have {
            return;
        }
        let set: BTreeMap<String, String> =
            want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let unset: Vec<String> = have.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        if let Some(code) = envs::set_globals(family, &set, &unset) {
            if let Err(e) = run_silent(kernel, &code).await {
                tracing::warn!(context = %self.id, "could not set the sandbox envs: {e}");
                return;
            }
        }
        kernel.set_applied_globals(want);
    }

    /// Run `code` silently, waiting for it (e.g. imports that warm a template's kernel).
    pub async fn run_quietly(&self, code: &str) -> Result<(), String> {
        let _turn = self.run_lock.lock().await;
        let kernel = self.ensure_kernel().await.map_err(|e| e.to_string())?;
        run_silent(&kernel, code).await
    }

    /// Replace the kernel with a fresh one (what a run in it was doing ends with an error).
    pub async fn restart(&self) -> Result<(), KernelError> {
        let old = self.kernel.lock().unwrap().take();
        if let Some(k) = old {
            k.kill(Gone::Restarted);
        }
        let _turn = self.run_lock.lock().await;
        self.ensure_kernel().await.map(|_| ())
    }

    /// Kill the kernel for good.
    pub fn shut_down(&self) {
        if let Some(k) = self.kernel.lock().unwrap().take() {
            k.kill(Gone::Removed);
        }
    }
}

/// The run's side of the HTTP body.
struct Out {
    tx: mpsc::Sender<Bytes>,
}

impl Out {
    /// False once the client is gone.
    async fn send(&self, line: &OutputLine) -> bool {
        self.tx.send(Bytes::from(line.to_ndjson())).await.is_ok()
    }
}

/// Run `code` with `silent: true` and wait for it to end; its error, if any.
async fn run_silent(kernel: &Kernel, code: &str) -> Result<(), String> {
    let mut req = kernel.execute(code, true).await;
    let mut tracker = RunTracker::new();
    let mut error = None;
    let outcome = tokio::time::timeout(SILENT_TIMEOUT, async {
        while let Some(ev) = req.events.recv().await {
            let lines = match &ev {
                Event::Message(m) => tracker.on_message(m),
                Event::Gone(why) => tracker.on_gone(why),
            };
            for l in lines {
                if let OutputLine::Error { name, value, .. } = l {
                    error = Some(format!("{name}: {value}"));
                }
            }
            if tracker.done() || matches!(ev, Event::Gone(_)) {
                return;
            }
        }
    })
    .await;
    kernel.forget(&req.msg_id);
    match (outcome, error) {
        (Err(_), _) => Err(format!("no answer within {} s", SILENT_TIMEOUT.as_secs())),
        (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
    }
}
