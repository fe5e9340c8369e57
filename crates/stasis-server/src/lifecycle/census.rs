//! The census a metrics scrape reads: sandboxes per state and template, resources
//! committed to them, proxied connections open, and the host's capacity.

use std::path::Path;

use stasis_store::SandboxState;

use super::{Lifecycle, Result};
use crate::metrics::{Census, HostCapacity};

impl Lifecycle {
    /// Counts every sandbox not yet killed; with `data_dir`, reads the host's capacity
    /// (its filesystem is the one sandboxes' disks and checkpoints fill).
    pub async fn census(&self, data_dir: Option<&Path>) -> Result<Census> {
        use SandboxState::*;
        let states = [Creating, Running, Pausing, Paused, Resuming, Killing];
        let rows = self.own_in_states(&states).await?;
        let mut c = Census::from_rows(&rows);
        c.open_connections = self.inner.activity.open_total() as u64;
        if let Some(dir) = data_dir {
            let dir = dir.to_path_buf();
            c.host = tokio::task::spawn_blocking(move || HostCapacity::read(&dir))
                .await
                .ok()
                .and_then(|r| r.map_err(|e| tracing::warn!("cannot read the host's capacity: {e}")).ok());
        }
        Ok(c)
    }

    /// The templates sandboxes can be created from (the runtime's).
    pub async fn templates(&self) -> Vec<stasis_runtime::TemplateInfo> {
        self.inner.runtime.templates().await.unwrap_or_else(|e| {
            tracing::warn!("cannot list the templates: {e}");
            Vec::new()
        })
    }
}
