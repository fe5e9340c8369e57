//! `stasis-interpreter`: the code-interpreter service of interpreter sandboxes.
//!
//! It speaks E2B's code-interpreter protocol on port 49999 (`POST /execute` streaming
//! NDJSON, `/contexts`, `/health`), so the official SDKs' `runCode` works unchanged, and
//! runs the code in Jupyter kernels it launches itself from kernelspecs and talks to over
//! ZeroMQ (no jupyter_server). One context is one kernel; runs in a context are
//! serialized, contexts run side by side.
//!
//! The crate owns: the HTTP routes and their wire format ([`http`], [`output`]), the
//! contexts and their runs ([`registry`], [`context`]), the kernels ([`kernel`]: specs,
//! processes, the Jupyter wire protocol, sessions), the per-run environment code
//! ([`envs`]), and the access check ([`auth`]). It must not need root: it runs as the
//! sandbox's `user`. What it needs from the agent: the token digest file ([`auth`]) and
//! envd's `GET /envs` ([`envd`]).

pub mod auth;
pub mod config;
pub mod context;
pub mod envd;
pub mod envs;
pub mod http;
pub mod ids;
pub mod kernel;
pub mod language;
pub mod output;
pub mod registry;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

pub use config::Config;

/// Run silently in prestarted Python contexts (`python/stasis_kernel`): imports only,
/// nothing lands in the user's namespace.
const PYTHON_WARM_UP: &str = "__import__('stasis_kernel').preload()";

/// Start the service: load the kernelspecs, start the default Python context (and the
/// others asked for with `--prestart`), then serve. `/health` answers 200 only once
/// those are ready, so a template snapshot taken after it holds warm kernels.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let specs = kernel::spec::KernelSpecs::load(&config.kernels_dir)
        .with_context(|| format!("kernelspecs in {}", config.kernels_dir.display()))?;
    tracing::info!(kernels = ?specs.names(), dir = %config.kernels_dir.display(), "kernelspecs loaded");
    let envd = envd::Envd::new(&config.envd_url).map_err(anyhow::Error::msg)?;
    let deps = context::Deps { specs, runtime_dir: config.runtime_dir(), envd, python_dir: config.python_dir.clone() };
    if !deps.python_startup().is_file() {
        tracing::warn!(file = %deps.python_startup().display(), "no Python start-up file: Python results get no charts or data");
    }
    let registry = Arc::new(registry::Registry::new(deps, config.default_cwd.clone()));
    let auth =
        if config.no_auth { auth::Auth::disabled() } else { auth::Auth::from_file(config.token_digest_file.clone()) };
    let state = http::AppState::new(registry.clone(), auth);
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "listening (not ready until the default contexts are)");

    // A default context that cannot start ends the service (exit 1) at once: the
    // template's warm then fails with this log instead of waiting for its ready timeout.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let warm = {
        let (registry, state, prestart) = (registry.clone(), state.clone(), config.prestart.clone());
        tokio::spawn(async move {
            for lang in prestart {
                let ctx = match registry.default_context(lang.clone()).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = failed_tx.send(format!("the default {lang} context did not start: {e}"));
                        return;
                    }
                };
                if lang.family() == language::Family::Python {
                    // Import the scientific stack now, so the template's snapshot holds it
                    // loaded and the first run that plots does not pay for it.
                    if let Err(e) = ctx.run_quietly(PYTHON_WARM_UP).await {
                        tracing::warn!("python warm-up failed: {e}");
                    }
                }
            }
            state.set_ready();
            tracing::info!(ms = started.elapsed().as_millis() as u64, "ready");
        })
    };
    let failure = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let shutdown = {
        let (registry, failure) = (registry.clone(), failure.clone());
        async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
                Ok(why) = failed_rx => *failure.lock().unwrap() = Some(why),
            }
            tracing::info!("stopping: killing the kernels");
            // First the kernels: their runs end (with an error line), so the graceful
            // shutdown does not wait for a run that never ends.
            registry.shutdown().await;
        }
    };
    let served = axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown).await;
    warm.abort();
    registry.shutdown().await;
    if let Some(why) = failure.lock().unwrap().take() {
        anyhow::bail!(why);
    }
    served.context("serve")
}
