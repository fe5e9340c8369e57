//! Secrets: creating, updating, reading (metadata only), listing and deleting them, and
//! resolving one to its value for the egress proxy.
//!
//! A secret is a row in the store whose value the vault sealed (`crate::secrets`). The
//! API selects a secret by id (`sec_…`) or by name; names are compared lower-cased, as
//! E2B stores them. Nothing here logs a value or puts one in an event.

use std::collections::BTreeMap;

use stasis_store::{Page, SecretRow, SecretUpdate, StoreError};

use super::{Lifecycle, LifecycleError, Result};
use crate::secrets::{self, names::ID_PREFIX, NetworkRules, Vault};

/// The most secrets one listing page returns (E2B's `paginationLimit`).
pub const MAX_PAGE: u32 = 100;

impl Lifecycle {
    fn vault(&self) -> Result<&Vault> {
        self.inner.config.secrets.as_ref().ok_or_else(|| {
            LifecycleError::Conflict("secrets are not enabled on this server (no vault configured)".into())
        })
    }

    /// Makes a secret at version 1.
    pub async fn create_secret(
        &self,
        name: &str,
        value: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<SecretRow> {
        let name = secrets::normalize_name(name).map_err(LifecycleError::BadRequest)?;
        secrets::check_value(value).map_err(LifecycleError::BadRequest)?;
        secrets::check_metadata(&metadata).map_err(LifecycleError::BadRequest)?;
        let id = format!("{ID_PREFIX}{}", crate::ids::snapshot_id());
        let sealed = self.vault()?.seal(&id, value)?;
        let now = self.now();
        let row = SecretRow { id, name, version: 1, metadata, sealed, created_at: now, updated_at: now };
        match self.inner.store.insert_secret(&row).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists(_)) => {
                return Err(LifecycleError::Conflict(format!("a secret named {:?} already exists", row.name)))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(secret = %row.id, name = %row.name, "secret created");
        Ok(row)
    }

    /// The secret `selector` names: an id (`sec_…`) or a name.
    pub async fn secret(&self, selector: &str) -> Result<SecretRow> {
        let found = if selector.starts_with(ID_PREFIX) {
            self.inner.store.get_secret(selector).await?
        } else {
            self.inner.store.find_secret_by_name(&selector.to_lowercase()).await?
        };
        found.ok_or_else(|| LifecycleError::SecretNotFound(selector.to_string()))
    }

    /// A new value (the next version), and new metadata when given.
    pub async fn update_secret(
        &self,
        selector: &str,
        value: &str,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<SecretRow> {
        secrets::check_value(value).map_err(LifecycleError::BadRequest)?;
        if let Some(m) = &metadata {
            secrets::check_metadata(m).map_err(LifecycleError::BadRequest)?;
        }
        let row = self.secret(selector).await?;
        let sealed = self.vault()?.seal(&row.id, value)?;
        let update = SecretUpdate { sealed, metadata, updated_at: self.now() };
        let row = self.inner.store.update_secret(&row.id, &update).await.map_err(|e| match e {
            StoreError::NotFound => LifecycleError::SecretNotFound(selector.to_string()),
            other => other.into(),
        })?;
        tracing::info!(secret = %row.id, version = row.version, "secret updated");
        Ok(row)
    }

    /// One page of secrets (metadata only), by name.
    pub async fn list_secrets(&self, token: Option<&str>, limit: u32) -> Result<Page<SecretRow>> {
        Ok(self.inner.store.list_secrets(token, limit.clamp(1, MAX_PAGE)).await?)
    }

    /// Deletes a secret; `SecretNotFound` when there is none. Sandboxes whose rules name
    /// it keep their rules; the proxy then sends their requests without the header and
    /// says so in the sandbox's events.
    pub async fn delete_secret(&self, selector: &str) -> Result<()> {
        let row = self.secret(selector).await?;
        if !self.inner.store.delete_secret(&row.id).await? {
            return Err(LifecycleError::SecretNotFound(selector.to_string()));
        }
        tracing::info!(secret = %row.id, name = %row.name, "secret deleted");
        Ok(())
    }

    /// Refuses rules whose placeholders name a secret that does not exist (a typo would
    /// otherwise surface only as an authentication failure at the destination).
    pub async fn check_rule_secrets(&self, rules: &NetworkRules) -> Result<()> {
        for name in rules.secret_names() {
            if self.inner.store.find_secret_by_name(&name).await?.is_none() {
                return Err(LifecycleError::BadRequest(format!(
                    "network.rules names the secret {name:?}, which does not exist (Secret.create it first)"
                )));
            }
        }
        Ok(())
    }

    /// The current value of the secret named `name`, for the egress proxy only.
    pub async fn secret_value(&self, name: &str) -> Result<String> {
        let row = self
            .inner
            .store
            .find_secret_by_name(&name.to_lowercase())
            .await?
            .ok_or_else(|| LifecycleError::SecretNotFound(name.to_string()))?;
        Ok(self.vault()?.open(&row.id, &row.sealed)?)
    }

    /// The `network.rules` of sandbox `id` as stored (none for a sandbox without any or
    /// not known), for the egress proxy: read per connection, so an update applies to the
    /// next one.
    pub async fn network_rules(&self, id: &str) -> NetworkRules {
        match self.row(id).await {
            Ok(row) => NetworkRules::parse(row.network.get("rules")).unwrap_or_default(),
            Err(_) => NetworkRules::default(),
        }
    }

    /// Says in the sandbox's events that the proxy sent a request without a rule's
    /// header, the secret it names being gone (the name only, never a value).
    pub async fn egress_secret_missing(&self, id: &str, host: &str, header: &str) {
        let message = format!("egress: {host}: header {header:?} not set, a secret it names does not exist");
        self.event(id, stasis_store::Level::Warn, "egress", message, &[]).await;
    }
}
