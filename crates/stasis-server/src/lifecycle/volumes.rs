//! Volumes: creating, listing, deleting them, and which volumes a sandbox mounts.
//!
//! A volume is a row in the store (id, unique name, content token) and a directory the
//! runtime keeps. Sandboxes name volumes by name at create; the lifecycle resolves the
//! names to ids, records the mounts (the store refuses to delete a volume a sandbox row
//! mounts) and hands the runtime the ids. A copy made from a snapshot or a fork mounts the
//! volumes of its source: their processes may hold files open there.

use stasis_store::{VolumeMount, VolumeRow};

use super::{Lifecycle, LifecycleError, Result};
use crate::ids;

/// Longest volume name.
const MAX_NAME: usize = 128;

/// E2B's rule for a volume name: `[a-zA-Z0-9_-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

impl Lifecycle {
    /// Makes a new, empty volume.
    pub async fn create_volume(&self, name: &str) -> Result<VolumeRow> {
        if !valid_name(name) {
            return Err(LifecycleError::BadRequest(format!(
                "volume name {name:?}: use 1-{MAX_NAME} letters, digits, '_' or '-'"
            )));
        }
        let row =
            VolumeRow { id: ids::snapshot_id(), name: name.to_string(), token: ids::token(), created_at: self.now() };
        // The directory first: a row never names storage that does not exist (an orphan
        // directory left by a failed insert is empty and harmless).
        self.inner.runtime.create_volume(&row.id).await?;
        if let Err(e) = self.inner.store.insert_volume(&row).await {
            let _ = self.inner.runtime.delete_volume(&row.id).await;
            return Err(match e {
                stasis_store::StoreError::AlreadyExists(_) => {
                    LifecycleError::BadRequest(format!("Volume with name '{name}' already exists"))
                }
                other => other.into(),
            });
        }
        tracing::info!(volume = %row.id, name = %row.name, "volume created");
        Ok(row)
    }

    pub async fn volume(&self, id: &str) -> Result<VolumeRow> {
        self.inner.store.get_volume(id).await?.ok_or_else(|| LifecycleError::VolumeNotFound(id.to_string()))
    }

    pub async fn list_volumes(&self) -> Result<Vec<VolumeRow>> {
        Ok(self.inner.store.list_volumes().await?)
    }

    /// Deletes a volume and its files. Refused (409, naming them) while a sandbox, running
    /// or paused, mounts it; `VolumeNotFound` when there is none.
    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        if !self.inner.store.delete_volume(id).await? {
            return Err(LifecycleError::VolumeNotFound(id.to_string()));
        }
        self.inner.runtime.delete_volume(id).await?;
        tracing::info!(volume = %id, "volume deleted");
        Ok(())
    }

    /// The host directory of volume `id`, once its content token is checked (constant
    /// time). `None`: no such volume or a wrong token (the same answer for both).
    pub async fn volume_files(&self, id: &str, token: &str) -> Result<Option<std::path::PathBuf>> {
        let Some(row) = self.inner.store.get_volume(id).await? else { return Ok(None) };
        if !stasis_store::constant_time_eq(row.token.as_bytes(), token.as_bytes()) {
            return Ok(None);
        }
        Ok(self.inner.runtime.volume_dir(id))
    }

    /// `(name, path)` pairs (as the create request names them) resolved to volume ids and
    /// normalized paths; a missing volume or a bad or repeated path is a bad request.
    pub async fn resolve_volume_mounts(&self, wanted: &[(String, String)]) -> Result<Vec<VolumeMount>> {
        let mut out: Vec<VolumeMount> = Vec::new();
        for (name, path) in wanted {
            let path =
                stasis_runtime::container::volumes::check_mount_path(path).map_err(LifecycleError::BadRequest)?;
            if let Some(other) = out.iter().find(|m| {
                m.path == path || m.path.starts_with(&format!("{path}/")) || path.starts_with(&format!("{}/", m.path))
            }) {
                return Err(LifecycleError::BadRequest(format!(
                    "volume mounts at {path} and {} overlap: give each volume its own directory",
                    other.path
                )));
            }
            let Some(v) = self.inner.store.find_volume_by_name(name).await? else {
                return Err(LifecycleError::BadRequest(format!("volume {name:?} not found")));
            };
            out.push(VolumeMount { volume_id: v.id, path });
        }
        Ok(out)
    }

    /// What sandbox (or snapshot) `owner` mounts, as `(name, path)`.
    pub async fn volume_mounts(&self, owner: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for m in self.inner.store.volume_mounts(owner).await? {
            // A volume deleted after a snapshot named it is skipped.
            if let Some(v) = self.inner.store.get_volume(&m.volume_id).await? {
                out.push((v.name, m.path));
            }
        }
        Ok(out)
    }
}

/// The runtime's form of the store's mounts.
pub(super) fn runtime_mounts(mounts: &[VolumeMount]) -> Vec<stasis_runtime::VolumeMount> {
    mounts.iter().map(|m| stasis_runtime::VolumeMount { id: m.volume_id.clone(), path: m.path.clone() }).collect()
}
