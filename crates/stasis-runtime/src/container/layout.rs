//! Where a container runtime keeps things under its data directory.
//!
//! ```text
//! DATA/templates/NAME/rootfs        template root filesystems (read-only lower layers);
//!                                   NAME a symlink to its current version `.NAME-VERSION`
//! DATA/templates/.base-legacy        the base from before base versions (`lower_now`)
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
//! DATA/disk-pool/v1-SIZEm-RAND.img  ready sandbox disks, formatted ahead (`disk_pool.rs`)
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

    /// Ready sandbox disks (`disk_pool.rs`): on the sandboxes' filesystem, so handing one
    /// out is a rename.
    pub fn disk_pool(&self) -> PathBuf {
        self.root.join("disk-pool")
    }

    pub fn templates(&self) -> PathBuf {
        self.root.join("templates")
    }

    pub fn template_rootfs(&self, name: &str) -> PathBuf {
        self.root.join("templates").join(name).join("rootfs")
    }

    /// Where lower layer `lower`, as a record names it, is now. The base template was a
    /// directory at `templates/base` before it had versions; the first versioned build
    /// (scripts/build-template.sh) moves it to `templates/.base-legacy` and makes
    /// `templates/base` a link to the new version, so records made before (sandboxes,
    /// snapshots, templates built on it) name a path that now leads to another base. Every
    /// other path is where it was: records made since name resolved versions.
    pub fn lower_now(&self, lower: &str) -> PathBuf {
        let templates = self.templates();
        let legacy = templates.join(".base-legacy").join("rootfs");
        let moved = Path::new(lower) == templates.join("base").join("rootfs")
            && templates.join("base").is_symlink()
            && legacy.is_dir();
        if moved {
            legacy
        } else {
            PathBuf::from(lower)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_naming_the_base_from_before_versions_find_it_where_the_first_versioned_build_moved_it() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        let t = layout.templates();
        let old_path = t.join("base/rootfs").display().to_string();
        // Before versions: templates/base is the directory itself.
        std::fs::create_dir_all(t.join("base/rootfs")).unwrap();
        assert_eq!(layout.lower_now(&old_path), PathBuf::from(&old_path));
        // The first versioned build: the old base moves aside, base links to the new one.
        std::fs::rename(t.join("base"), t.join(".base-legacy")).unwrap();
        std::fs::create_dir_all(t.join(".base-0123/rootfs")).unwrap();
        std::os::unix::fs::symlink(".base-0123", t.join("base")).unwrap();
        assert_eq!(layout.lower_now(&old_path), t.join(".base-legacy/rootfs"));
        // Records made since name resolved versions, and other layers stay where they are.
        let new_path = t.join(".base-0123/rootfs").display().to_string();
        assert_eq!(layout.lower_now(&new_path), PathBuf::from(&new_path));
        let agent = layout.agents().join("abc").display().to_string();
        assert_eq!(layout.lower_now(&agent), PathBuf::from(&agent));
    }

    #[test]
    fn a_data_dir_whose_base_links_elsewhere_and_has_no_legacy_base_keeps_the_path() {
        // The test servers' data dirs: templates/base links to the system's base.
        let data = tempfile::tempdir().unwrap();
        let system = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(system.path().join("rootfs")).unwrap();
        let layout = Layout::new(data.path());
        std::fs::create_dir_all(layout.templates()).unwrap();
        std::os::unix::fs::symlink(system.path(), layout.templates().join("base")).unwrap();
        let path = layout.templates().join("base/rootfs").display().to_string();
        assert_eq!(layout.lower_now(&path), PathBuf::from(&path));
    }
}
