//! Volumes: named persistent storage that outlives sandboxes, and which sandbox (or
//! snapshot) mounts which volume where.
//!
//! The store keeps a volume's identity (id, unique name, the token its content API takes)
//! and the mounts; the files themselves live on the host (the runtime's
//! `DATA/volumes/ID`). A volume some sandbox row still mounts cannot be deleted
//! ([`StoreError::InUse`](crate::StoreError::InUse)): a paused sandbox would otherwise
//! resume onto a volume that is gone. Snapshots do not hold a volume: deleting it drops
//! their mounts, and a sandbox made later from such a snapshot fails to start, saying so.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    pub id: String,
    /// Unique; `[a-zA-Z0-9_-]+` (E2B's rule), checked by the API.
    pub name: String,
    /// Bearer token of the volume content API (`/volumecontent/{id}/...`).
    pub token: String,
    pub created_at: UnixMillis,
}

/// A volume mounted at `path` (absolute, inside the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume_id: String,
    pub path: String,
}
