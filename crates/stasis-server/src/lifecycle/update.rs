//! Changes to a created sandbox: more memory (Novita's `hotplugMemory`) and a new outbound
//! policy (`PUT /sandboxes/{id}/network`: E2B's `updateNetwork`, Novita's `setNetwork`).
//! The runtime applies them (at once when running, at the resume when paused); the row
//! follows, so forks, resets and `getInfo` see the new values. The runtime goes first: a
//! change it refuses leaves the row as it was.

use stasis_runtime::{NetworkPolicy, SandboxUpdate};
use stasis_store::{Level, SandboxRow, SandboxState};

use super::{Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;
use crate::secrets::NetworkRules;

/// The most memory a sandbox may have, as at create.
pub const MAX_MEMORY_MB: u64 = 262_144;

impl Lifecycle {
    /// Raises the sandbox's memory limit to `memory_mb`.
    pub async fn hotplug_memory(&self, id: &SandboxId, memory_mb: u64) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let mut row = self.changeable(id).await?;
        if memory_mb < row.memory_mb || memory_mb > MAX_MEMORY_MB {
            return Err(LifecycleError::BadRequest(format!(
                "memory can only grow, up to {MAX_MEMORY_MB} MiB: sandbox {id} has {} MiB, asked for {memory_mb} MiB",
                row.memory_mb
            )));
        }
        if memory_mb == row.memory_mb {
            return Ok(row);
        }
        let update = SandboxUpdate { memory_mb: Some(memory_mb), ..Default::default() };
        self.inner.runtime.update(id, &update).await?;
        let from = row.memory_mb;
        row.memory_mb = memory_mb;
        let row = self.inner.store.update_sandbox(&row).await?;
        let message = format!("memory raised from {from} MiB to {memory_mb} MiB");
        self.event(id, Level::Info, "memory", message, &[("memory_mb", memory_mb.to_string())]).await;
        Ok(row)
    }

    /// Replaces the sandbox's outbound rules (`allowOut`, `denyOut`, the per-domain
    /// `rules`; one left out is cleared). Whether it has internet access at all stays as
    /// created unless `allow_internet` says.
    pub async fn update_network(
        &self,
        id: &SandboxId,
        allow_out: Vec<String>,
        deny_out: Vec<String>,
        allow_internet: Option<bool>,
        rules: NetworkRules,
    ) -> Result<SandboxRow> {
        self.check_rule_secrets(&rules).await?;
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let mut row = self.changeable(id).await?;
        let allow_internet = allow_internet.unwrap_or(row.allow_internet_access);
        let policy = NetworkPolicy { allow_internet, allow_out, deny_out, intercept_https: !rules.is_empty() };
        policy.validate().map_err(|e| LifecycleError::BadRequest(e.to_string()))?;
        let update = SandboxUpdate { network: Some(policy.clone()), ..Default::default() };
        self.inner.runtime.update(id, &update).await?;
        let mut network = match row.network.take() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        network.insert("allowOut".into(), serde_json::json!(policy.allow_out));
        network.insert("denyOut".into(), serde_json::json!(policy.deny_out));
        if rules.is_empty() {
            network.remove("rules");
        } else {
            network.insert("rules".into(), rules.to_value());
        }
        row.network = serde_json::Value::Object(network);
        row.allow_internet_access = allow_internet;
        let row = self.inner.store.update_sandbox(&row).await?;
        let domains: Vec<&String> = rules.0.keys().collect();
        let message = format!(
            "network updated: allowOut {:?}, denyOut {:?}, header rules for {domains:?}",
            policy.allow_out, policy.deny_out
        );
        self.event(id, Level::Info, "network", message, &[]).await;
        Ok(row)
    }

    /// The row of a sandbox that takes changes: running or paused.
    async fn changeable(&self, id: &SandboxId) -> Result<SandboxRow> {
        let row = self.touched(self.row(id).await?).await?;
        match row.state {
            SandboxState::Running | SandboxState::Paused => Ok(row),
            other => Err(LifecycleError::Conflict(format!(
                "sandbox {id} is {other}: only a running or paused sandbox can be changed"
            ))),
        }
    }
}
