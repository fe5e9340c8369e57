//! Killing a sandbox: everything it owns goes, then its row.

use stasis_store::SandboxState;

use super::{Lifecycle, Result};

impl Lifecycle {
    pub async fn kill(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        self.kill_locked(id).await
    }

    pub(super) async fn kill_locked(&self, id: &str) -> Result<()> {
        let row = self.row(id).await?;
        self.flip(id, &[row.state], SandboxState::Killing, |_| {})
            .await?;
        self.inner.activity.forget(id);
        match self.inner.runtime.kill(id).await {
            Ok(()) | Err(stasis_runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.delete_sandbox(id).await?;
        Ok(())
    }
}
