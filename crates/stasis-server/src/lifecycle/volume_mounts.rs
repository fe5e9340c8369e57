//! Volumes mounted into, and unmounted from, a running sandbox (Novita's `mountVolume` /
//! `unmountVolume`). The store's row of mounts changes first on a mount (from then on the
//! volume cannot be deleted) and last on an unmount (it stays undeletable until the mount
//! is gone); a runtime failure puts the row back.
//!
//! A paused sandbox is refused (409): its checkpoint holds its mount table, and CRIU
//! restores exactly that; mount after `connect`.

use stasis_store::{Level, SandboxRow, SandboxState, VolumeMount};

use super::{Lifecycle, LifecycleError, Result};
use crate::ids::SandboxId;

impl Lifecycle {
    /// Mounts volume `name` at `path` in running sandbox `id`.
    pub async fn mount_volume(&self, id: &SandboxId, name: &str, path: &str) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.mountable(id).await?;
        let wanted = self.resolve_volume_mounts(&[(name.to_string(), path.to_string())]).await?.remove(0);
        let mut mounts = self.inner.store.volume_mounts(id).await?;
        if let Some(m) = mounts.iter().find(|m| overlaps(&m.path, &wanted.path)) {
            return Err(LifecycleError::Conflict(format!(
                "sandbox {id} already has a volume mounted at {}: unmount it first, or mount elsewhere",
                m.path
            )));
        }
        mounts.push(wanted.clone());
        let before = &mounts[..mounts.len() - 1];
        if let Err(e) = self.inner.store.set_volume_mounts(id, &mounts).await {
            return Err(match e {
                stasis_store::StoreError::NotFound => LifecycleError::BadRequest(format!("volume {name:?} not found")),
                other => other.into(),
            });
        }
        let m = stasis_runtime::VolumeMount { id: wanted.volume_id.clone(), path: wanted.path.clone() };
        if let Err(e) = self.inner.runtime.mount_volume(id, &m).await {
            let _ = self.inner.store.set_volume_mounts(id, before).await;
            return Err(e.into());
        }
        let message = format!("volume {name} mounted at {}", wanted.path);
        self.event(id, Level::Info, "volume", message, &[("volume", name.to_string()), ("path", wanted.path)]).await;
        Ok(row)
    }

    /// Unmounts the volume at `path` from running sandbox `id`; `force`: even while
    /// processes use it (detached lazily).
    pub async fn unmount_volume(&self, id: &SandboxId, path: &str, force: bool) -> Result<SandboxRow> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let row = self.mountable(id).await?;
        let path = stasis_runtime::container::volumes::check_mount_path(path).map_err(LifecycleError::BadRequest)?;
        let mounts = self.inner.store.volume_mounts(id).await?;
        let Some(gone) = mounts.iter().find(|m| m.path == path).cloned() else {
            return Err(LifecycleError::BadRequest(format!("sandbox {id} has no volume mounted at {path}")));
        };
        self.inner.runtime.unmount_volume(id, &path, force).await.map_err(|e| match e {
            e @ stasis_runtime::RuntimeError::VolumeInUse(_) => LifecycleError::Conflict(e.to_string()),
            other => other.into(),
        })?;
        let rest: Vec<VolumeMount> = mounts.into_iter().filter(|m| m.path != path).collect();
        self.inner.store.set_volume_mounts(id, &rest).await?;
        let message =
            format!("volume {} unmounted from {path}{}", gone.volume_id, if force { " (forced)" } else { "" });
        self.event(id, Level::Info, "volume", message, &[("volume", gone.volume_id), ("path", path)]).await;
        Ok(row)
    }

    /// The sandbox's row, if its mounts can change now: it is running.
    async fn mountable(&self, id: &SandboxId) -> Result<SandboxRow> {
        let row = self.touched(self.row(id).await?).await?;
        match row.state {
            SandboxState::Running => Ok(row),
            SandboxState::Paused => Err(LifecycleError::Conflict(format!(
                "sandbox {id} is paused: its mounts are those its checkpoint holds; resume it (connect) first"
            ))),
            other => Err(LifecycleError::Conflict(format!(
                "sandbox {id} is {other}: volumes are mounted into a running sandbox only"
            ))),
        }
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}
