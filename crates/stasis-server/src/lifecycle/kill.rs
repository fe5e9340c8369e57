//! Killing a sandbox: everything it owns goes, then its row.

use stasis_store::{Level, Operation, SandboxState};

use super::{Lifecycle, Result};
use crate::ids::SandboxId;
use crate::metrics::Op;

impl Lifecycle {
    /// An API kill: starts a failed kill's back-off over, then kills.
    pub async fn kill(&self, id: &SandboxId) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        self.touched(self.row(id).await?).await?;
        self.kill_locked(id, "asked by the API").await
    }

    /// Kills `id`. If the runtime fails, the row stays `killing` (its processes may be
    /// gone already) with the failure on it, and the lifecycle retries the kill.
    pub(super) async fn kill_locked(&self, id: &str, why: &str) -> Result<()> {
        let row = self.row(id).await?;
        self.flip(id, &[row.state], SandboxState::Killing, |_| {}).await?;
        self.inner.activity.forget(id);
        let started = std::time::Instant::now();
        let killed = match self.inner.runtime.kill(id).await {
            Err(stasis_runtime::RuntimeError::NotFound(_)) => Ok(()),
            other => other,
        };
        self.inner.metrics.operation(Op::Kill, started.elapsed().as_secs_f64(), killed.is_ok());
        if let Err(e) = killed {
            return Err(self.record_failure(id, Operation::Kill, e.into()).await);
        }
        self.inner.store.delete_sandbox(id).await?;
        // Its volumes are free (a mount of a gone row holds nothing either).
        let _ = self.inner.store.set_volume_mounts(id, &[]).await;
        self.inner.routes.forget(id);
        let ms = started.elapsed().as_millis().to_string();
        self.event(id, Level::Info, "killed", format!("killed: {why}"), &[("reason", why.into()), ("total_ms", ms)])
            .await;
        Ok(())
    }
}
