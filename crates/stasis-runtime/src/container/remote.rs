//! Checkpoint and snapshot images in the object store (`--object-store`): which keys they
//! go under, and when they go up, come down and are deleted. The local copy is a cache.
//!
//! ```text
//! PREFIX/sandboxes/ID/checkpoints/N/*.img, checksums.json   a paused sandbox's memory
//! PREFIX/snapshots/SID/images/*.img, checksums.json          a memory snapshot's memory
//! ```
//!
//! - A pause is durable once its sealed images are uploaded, the manifest last; that
//!   happens before its commit point (`pause.rs`). An upload that fails undoes the pause:
//!   the sandbox is restored from the local images and goes on running, and the pause
//!   fails. A daemon killed during the upload leaves an uncommitted dump that recovery
//!   commits locally and uploads from its journal (`recover.rs`).
//! - A resume (or a create from a snapshot) whose images are not on this host fetches
//!   them: the manifest first, whose MAC is checked before anything else is fetched,
//!   then every image it lists; all of them are verified before CRIU reads a byte
//!   (`resume.rs`), and a failed check drops what was fetched.
//! - A kill deletes the sandbox's objects, a snapshot's deletion the snapshot's; a
//!   resume deletes the checkpoint it no longer needs. Deletions are best effort (the
//!   store may be down): what is left is logged, never a reason to fail.
//!
//! What stays on the host: the sandbox's record and writable layer, and a snapshot's
//! layer and metadata (docs/architecture.md, "Beyond one machine").

use std::path::Path;
use std::sync::Arc;

use super::{checksum, perms, random_hex, Inner};
use crate::error::Result;
use crate::objstore::journal::Journal;
use crate::objstore::Remote;

pub(super) fn checkpoints_rel(id: &str) -> String {
    format!("sandboxes/{id}/checkpoints")
}

pub(super) fn checkpoint_rel(id: &str, generation: u64) -> String {
    format!("sandboxes/{id}/checkpoints/{generation}")
}

pub(super) fn sandbox_rel(id: &str) -> String {
    format!("sandboxes/{id}")
}

pub(super) fn snapshot_images_rel(snap: &str) -> String {
    format!("snapshots/{snap}/images")
}

pub(super) fn snapshot_rel(snap: &str) -> String {
    format!("snapshots/{snap}")
}

impl Inner {
    /// Uploads the sealed images in `images` under `rel` (resuming an earlier attempt);
    /// nothing to do without an object store.
    pub(super) fn upload_images(&self, images: &Path, rel: &str) -> Result<()> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let files = checksum::listed(images, &self.key)?;
        let t = remote.upload(images, rel, &files, checksum::MANIFEST)?;
        tracing::info!(images = %images.display(), key = rel, bytes = t.bytes, files = t.files, ms = t.ms, "uploaded");
        Ok(())
    }

    /// Whether `images` are all in the object store (or there is none to put them in).
    pub(super) fn uploaded(&self, images: &Path, rel: &str) -> bool {
        self.remote.as_ref().is_none_or(|r| crate::objstore::journal::complete(images, &r.target(rel)))
    }

    /// Makes sure `images` exist on this host, fetching them from under `rel` if they do
    /// not. Returns whether they were fetched (the caller drops them if they then fail
    /// verification). Without an object store, missing images stay missing: the
    /// verification that follows says so.
    pub(super) fn fetch_images(&self, images: &Path, rel: &str) -> Result<bool> {
        let Some(remote) = &self.remote else { return Ok(false) };
        if images.join(checksum::MANIFEST).exists() {
            return Ok(false);
        }
        let name = images.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = images.with_file_name(format!(".{name}.fetch-{}", random_hex(4)));
        let fetched = (|| -> Result<()> {
            std::fs::create_dir_all(&tmp).map_err(|e| crate::objstore::err(format!("create {}", tmp.display()), e))?;
            remote.get_file(&format!("{rel}/{}", checksum::MANIFEST), &tmp.join(checksum::MANIFEST))?;
            // Signed by this data dir's key, or nothing more is fetched.
            let files = checksum::listed(&tmp, &self.key)?;
            let t = remote.download(rel, &files, &tmp)?;
            tracing::info!(images = %images.display(), key = rel, bytes = t.bytes, files = t.files, ms = t.ms, "fetched");
            perms::checkpoint_images(&tmp).map_err(|e| crate::objstore::err(format!("chmod {}", tmp.display()), e))?;
            // They are in the store: nothing to upload again (a snapshot's images).
            let mut j = Journal::open(&tmp, &remote.target(rel));
            for (n, s) in &files {
                j.done.insert(n.clone(), *s);
            }
            j.finish().map_err(|e| crate::objstore::err("write the upload journal", e))?;
            if images.exists() {
                // An incomplete copy (no manifest): replaced.
                let _ = std::fs::remove_dir_all(images);
            }
            std::fs::rename(&tmp, images)
                .map_err(|e| crate::objstore::err(format!("rename to {}", images.display()), e))
        })();
        if let Err(e) = fetched {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another fetch of the same images (two creates from one snapshot) won.
            if images.join(checksum::MANIFEST).exists() {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(true)
    }

    /// After recovery: uploads a committed checkpoint whose upload a dead daemon (or an
    /// unreachable store) left unfinished, from where it stopped. On failure it stays
    /// paused on this host only, said in the log; the next start tries again.
    pub(super) fn finish_upload(&self, id: &str, generation: u64) {
        let images = self.dir(id).checkpoint(generation);
        let rel = checkpoint_rel(id, generation);
        if self.remote.is_none() || !images.join(checksum::MANIFEST).exists() {
            return;
        }
        if !self.uploaded(&images, &rel) {
            if let Err(e) = self.upload_images(&images, &rel) {
                tracing::warn!(sandbox = %id, "paused on this host only: its checkpoint is not in the object store yet ({e})");
                return;
            }
        }
        // In a cluster the layer set went up beside the images: it may be cut short too.
        self.finish_layer_upload(id);
    }

    /// Deletes every object under `rel`, in the background; failures are logged.
    pub(super) fn forget_remote_later(&self, rel: String) {
        if let Some(remote) = self.remote.clone() {
            std::thread::spawn(move || forget(&remote, &rel));
        }
    }

    /// Deletes every object under `rel` now; failures are logged.
    pub(super) fn forget_remote(&self, rel: &str) {
        if let Some(remote) = &self.remote {
            forget(remote, rel);
        }
    }

    /// Deletes the sandbox's checkpoint generations in the store other than `keep`.
    pub(super) fn forget_other_remote_generations(&self, id: &str, keep: u64) {
        let Some(remote) = &self.remote else { return };
        let base = checkpoints_rel(id);
        match remote.list(&base) {
            Ok(objs) => {
                let mut gens: Vec<&str> = objs.iter().filter_map(|(n, _)| n.split('/').next()).collect();
                gens.sort();
                gens.dedup();
                for g in gens.into_iter().filter(|g| *g != keep.to_string()) {
                    forget(remote, &format!("{base}/{g}"));
                }
            }
            Err(e) => tracing::warn!(sandbox = %id, "old checkpoints left in the object store: {e}"),
        }
    }
}

fn forget(remote: &Arc<Remote>, rel: &str) {
    match remote.delete_all(rel) {
        Ok(n) => tracing::debug!(key = rel, objects = n, "deleted from the object store"),
        Err(e) => tracing::warn!(key = rel, "left in the object store: {e}"),
    }
}
