//! `stasis-agent serve`: PID 1 inside the sandbox, after boot. Reports readiness to the
//! host, then serves envd until the sandbox ends.

use anyhow::{Context, Result};

use stasis_proto::agent::{BootConfig, SyncMessage, ENVD_PORT, SYNC_FD};

use crate::boot::sync::SyncChannel;
use crate::envd;
use crate::supervisor::Supervisor;

pub fn run(config_json: &str) -> Result<()> {
    let cfg = BootConfig::from_json(config_json).context("parse boot config")?;
    let mut chan = SyncChannel::from_fd(SYNC_FD);
    // Two threads at most: the agent must stay light (it lives in every sandbox).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let result = rt.block_on(async {
        let supervisor = Supervisor::new(cfg.env.clone());
        supervisor.start_reaper().context("start reaper")?;
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", ENVD_PORT)).await.context("bind envd port")?;
        // No Nagle: a relay leg and a stream send small writes that must go out at once
        // (with it, each waited for the peer's delayed ACK: ~40 ms per exchange, measured).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let state = envd::State::new(supervisor.clone(), &cfg);
        chan.send(&SyncMessage::Ready);
        // Nothing of the host may stay open in a sandbox that will be checkpointed.
        chan.close();
        if let Some(start) = &cfg.start {
            if let Err(e) = supervisor.launch_start(start) {
                eprintln!("stasis-agent: start command {:?} failed to launch: {e}", start.cmd);
            }
        }
        axum::serve(listener, envd::router(state)).await.context("serve envd")
    });
    if let Err(e) = &result {
        chan.send(&SyncMessage::Error(format!("serve: {e:#}")));
    }
    result
}
