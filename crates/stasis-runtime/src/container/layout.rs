//! Where a container runtime keeps things under its data directory.
//!
//! ```text
//! DATA/templates/NAME/rootfs        template root filesystems (read-only lower layers)
//! DATA/agents/HASH/                 agent layer: the agent binary and device nodes
//! DATA/sandboxes/ID/record.json     the sandbox's persisted record (atomically replaced)
//! DATA/sandboxes/ID/disk.img        its disk: a sparse ext4 image of its disk size
//! DATA/sandboxes/ID/disk/upper,work its writable layer, on that disk (loop-mounted)
//! DATA/sandboxes/ID/rootfs          mount point of its root overlay while it runs
//! DATA/sandboxes/ID/checkpoints/N   memory images of checkpoint generation N
//! DATA/snapshots/SID/layer          a snapshot's files (a copy of the source's writable layer)
//! DATA/snapshots/SID/images         its memory images (memory snapshots only)
//! DATA/snapshots/SID/snapshot.json  what it was made from
//! DATA/volumes/VID                  a volume's files (bind-mounted into sandboxes)
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn templates(&self) -> PathBuf {
        self.root.join("templates")
    }

    pub fn template_rootfs(&self, name: &str) -> PathBuf {
        self.root.join("templates").join(name).join("rootfs")
    }

    pub fn agents(&self) -> PathBuf {
        self.root.join("agents")
    }

    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn snapshot(&self, id: &str) -> PathBuf {
        self.snapshots().join(id)
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn volume(&self, id: &str) -> PathBuf {
        self.volumes().join(id)
    }

    pub fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir(self.sandboxes().join(id))
    }
}

#[derive(Debug, Clone)]
pub struct SandboxDir(pub PathBuf);

impl SandboxDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn record(&self) -> PathBuf {
        self.0.join("record.json")
    }
    /// The sandbox's own filesystem (its disk image mounted here): holds upper and work.
    pub fn disk(&self) -> PathBuf {
        self.0.join("disk")
    }
    pub fn disk_image(&self) -> PathBuf {
        self.0.join("disk.img")
    }
    pub fn upper(&self) -> PathBuf {
        self.disk().join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.disk().join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    pub fn checkpoint(&self, generation: u64) -> PathBuf {
        self.checkpoints().join(generation.to_string())
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.log"))
    }
}
