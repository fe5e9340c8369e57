//! Removing a sandbox: everything it owns (processes, network, mounts, cgroups, files)
//! goes, for a kill and for a create that failed half-way alike.

use super::fs::unmount_fs;
use super::{overlay, Inner};
use crate::error::{IoContext, Result, RuntimeError};

impl Inner {
    /// Removes everything a sandbox owns (processes, network, mounts, cgroups, files),
    /// also when it was only partly created (no record yet). Every step is tried; the
    /// first failure is returned.
    fn teardown(&self, id: &str) -> Result<()> {
        self.forget_init(id);
        let dir = self.dir(id);
        let killed = self.cgroups.kill_all(id);
        let rec = self.load(id).ok();
        if let Some(rec) = &rec {
            self.network_down(rec);
        }
        let unmounted = unmount_fs(&dir);
        let removed = self.cgroups.remove(id);
        killed.and(unmounted).and(removed)?;
        self.remove_files(id, rec.and_then(|r| r.id_base))
    }

    /// Removes a sandbox's files once nothing is mounted under them, and frees its id
    /// range (`id_base`).
    fn remove_files(&self, id: &str, id_base: Option<u32>) -> Result<()> {
        let dir = self.dir(id);
        if overlay::has_mounts_under(dir.path()) {
            return Err(RuntimeError::Io {
                context: format!("remove {}", dir.path().display()),
                source: std::io::Error::other("something is still mounted inside"),
            });
        }
        std::fs::remove_dir_all(dir.path()).ctx(|| format!("remove {}", dir.path().display()))?;
        // Its files are gone: nothing is left owned by its range.
        if let Some(base) = id_base {
            self.id_ranges.release(base, &dir.record());
        }
        Ok(())
    }

    /// Best effort, for a create that failed: its error is what the caller reports.
    pub(super) fn destroy(&self, id: &str) {
        let _ = self.teardown(id);
    }

    pub(super) fn kill(&self, id: &str) -> Result<()> {
        if !self.dir(id).path().exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        self.teardown(id)?;
        self.forget_remote(&super::remote::sandbox_rel(id));
        Ok(())
    }

    /// A paused sandbox another node took over: its files here go, its objects stay (the
    /// new node's now; `kill` would delete them). Only files: a paused sandbox has no
    /// processes, network or cgroups, and those named after it may be the new node's
    /// (two nodes on one host, as in the cluster tests).
    pub(super) fn drop_local(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        if !dir.path().exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let rec = self.load(id)?;
        if rec.state != crate::SandboxState::Paused {
            return Err(RuntimeError::NotPaused(id.to_string()));
        }
        unmount_fs(&dir)?;
        self.remove_files(id, rec.id_base)
    }
}
