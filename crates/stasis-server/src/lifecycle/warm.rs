//! Warming templates at start-up: a template whose sandboxes start from a warm snapshot
//! (start command + ready check) is prepared in the background, so the first create of
//! it does not wait for its service to boot. A create that comes first waits for the
//! warm under way (the runtime holds one warm per template); one that fails is retried
//! by the next create.

use super::Lifecycle;

pub(super) fn spawn(lc: Lifecycle) {
    tokio::spawn(async move {
        for (template, outcome) in lc.inner.runtime.warm_templates().await {
            match outcome {
                Ok(()) => tracing::info!(%template, "template warm: its sandboxes start with its service running"),
                Err(e) => tracing::warn!(%template, "template warm failed (the next create retries): {e}"),
            }
        }
    });
}

impl Lifecycle {
    /// At shutdown: no warm sandbox is left behind (the warm runs again at the next start).
    pub async fn abandon_warms(&self) {
        self.inner.runtime.abandon_warms().await;
    }
}
