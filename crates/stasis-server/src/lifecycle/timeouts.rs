//! When a sandbox ends: its timeout (set by create, connect, setTimeout), the action at
//! the end (pause or kill), and the operator's retention of paused sandboxes.

use stasis_store::{SandboxRow, SandboxState};

use super::{ms, Lifecycle, Result};

impl Lifecycle {
    /// Sets the end to now + `secs` (may shorten, unlike connect).
    pub async fn set_timeout(&self, id: &str, secs: u64) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let mut row = self.row(id).await?;
        row.timeout_secs = secs;
        if row.state == SandboxState::Running {
            row.end_at = self.now() + ms(secs);
        }
        Ok(self.inner.store.update_sandbox(&row).await?)
    }

    /// Runs the sandbox's timeout policy if its end has passed (checked under its lock).
    pub async fn expire_if_due(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let Some(row) = self.inner.store.get_sandbox(id).await? else {
            return Ok(());
        };
        if row.state != SandboxState::Running || self.effective_end(&row) > self.now() {
            return Ok(());
        }
        if row.auto_pause {
            self.pause_locked(id, row.pause_memory).await.map(|_| ())
        } else {
            self.kill_locked(id).await
        }
    }

    /// Kills a paused sandbox older than the operator's retention (checked under its lock).
    pub async fn retire_if_due(&self, id: &str) -> Result<()> {
        let Some(retention) = self.inner.config.paused_retention else {
            return Ok(());
        };
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let Some(row) = self.inner.store.get_sandbox(id).await? else {
            return Ok(());
        };
        let due = row
            .paused_at
            .is_some_and(|p| p + retention.as_millis() as i64 <= self.now());
        if row.state == SandboxState::Paused && due {
            tracing::info!(sandbox = %id, "paused longer than the retention: killed");
            self.kill_locked(id).await?;
        }
        Ok(())
    }
}
