//! Novita's reset: a sandbox back to the state its template (or snapshot) gives a new
//! one, keeping its id, tokens, metadata and settings; left running, or paused when the
//! caller asks.
//!
//! The row goes back to `creating` before the runtime tears anything down, so a crash in
//! the middle is what start-up recovery does with any half-made sandbox: it is removed. A
//! reset interrupted so loses the sandbox (its state was to be thrown away anyway) rather
//! than leaving one that is neither the old nor the new.

use stasis_runtime::SandboxSpec;
use stasis_store::{Level, Operation, SandboxRow, SandboxState};

use super::{ms, network_policy, Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;

impl Lifecycle {
    pub async fn reset(&self, id: &SandboxId, resume: bool, timeout_secs: Option<u64>) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.touched(self.row(id).await?).await?;
        if !matches!(row.state, SandboxState::Running | SandboxState::Paused) {
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} is {}: only a running or paused sandbox can be reset",
                row.state
            )));
        }
        let snapshot = self.resolve_snapshot(&row.template_id).await?;
        // A sandbox made from a snapshot names it `<id>:<tag>` (one made from a template's
        // tag, `name:tag`); once it is deleted there is nothing to reset to, and that must
        // be known before anything goes.
        if snapshot.is_none() && !self.inner.runtime.has_template(&row.template_id).await {
            let what = if row.template_id.contains(':') { "snapshot or template tag" } else { "template" };
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} was made from {what} {:?}, which is deleted: nothing to reset it to",
                row.template_id
            )));
        }
        self.flip(id, &[row.state], SandboxState::Creating, |_| {}).await?;
        // Cut what is open to the old one; the entry (and a fresh token) stays for the new.
        self.inner.activity.disconnect_all(id);
        match self.inner.runtime.kill(id).await {
            Ok(()) | Err(stasis_runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => {
                // Half torn down: what is left is killed the way a failed kill is.
                let _ = self.flip(id, &[SandboxState::Creating], SandboxState::Killing, |_| {}).await;
                return Err(self.record_failure(id, Operation::Kill, e.into()).await);
            }
        }
        let policy = network_policy(row.allow_internet_access, &row.network);
        let spec = SandboxSpec {
            env: super::sandbox_env(row.env_vars.clone(), &policy),
            network: Some(policy),
            template: row.template_id.clone(),
            cpu_count: row.cpu_count,
            memory_mb: row.memory_mb,
            disk_mb: row.disk_size_mb,
            max_pids: self.inner.config.defaults.max_pids,
            // The same token: the SDK's Sandbox object keeps the one it has.
            access_token: row.envd_access_token.clone(),
            volumes: super::volumes::runtime_mounts(&self.inner.store.volume_mounts(id).await?),
        };
        let created = match &snapshot {
            Some(snap) => self.inner.runtime.create_from_snapshot(id, &snap.id, &spec).await,
            None => self.inner.runtime.create(id, &spec).await,
        };
        if let Err(e) = created {
            let message = format!("reset failed, the sandbox is removed: {e}");
            self.event(id, Level::Error, "reset-failed", message, &[("error", e.to_string())]).await;
            let _ = self.inner.runtime.kill(id).await;
            let _ = self.inner.store.delete_sandbox(id).await;
            self.inner.routes.forget(id);
            return Err(e.into());
        }
        let (started, timeout) = (self.now(), timeout_secs.unwrap_or(row.timeout_secs));
        self.inner.activity.started(id);
        let row = self
            .flip(id, &[SandboxState::Creating], SandboxState::Running, move |r| {
                r.started_at = started;
                r.end_at = started + ms(timeout);
                r.timeout_secs = timeout;
                r.paused_at = None;
                r.last_error = None;
            })
            .await?;
        let to = snapshot.map_or(format!("template {}", row.template_id), |s| format!("snapshot {}", s.id));
        self.event(id, Level::Info, "reset", format!("reset to {to}"), &[("template", row.template_id.clone())]).await;
        if resume {
            return Ok(row);
        }
        self.pause_locked(id, row.pause_memory, "reset with resume: false").await
    }
}
