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
        if overlay::has_mounts_under(dir.path()) {
            return Err(RuntimeError::Io {
                context: format!("remove {}", dir.path().display()),
                source: std::io::Error::other("something is still mounted inside"),
            });
        }
        std::fs::remove_dir_all(dir.path()).ctx(|| format!("remove {}", dir.path().display()))?;
        // Its files are gone: nothing is left owned by its range.
        if let Some(base) = rec.and_then(|r| r.id_base) {
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
}
