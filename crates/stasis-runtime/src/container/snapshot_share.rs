//! A snapshot's layer and metadata in the object store, so that a node that did not take
//! it can start sandboxes from it and take over sandboxes made from it (docs/
//! architecture.md, "Snapshots on any node"). Only with `share_layers` (a cluster with an
//! object store); its memory images go up as before (`remote.rs`).
//!
//! ```text
//! PREFIX/snapshots/SID/layer/layer-tar.img    the snapshot's `layer/` as a GNU tar (owners, modes, xattrs, whiteouts)
//! PREFIX/snapshots/SID/layer/meta.img         JSON: snapshot.json's content and the data dir its paths are under
//! PREFIX/snapshots/SID/layer/checksums.json   keyed manifest of both, uploaded last
//! ```
//!
//! A snapshot dir that is in the bucket holds a marker `shared`: `made` on the node that
//! took it, `fetched` on a node that copied it down. The node that made it deletes the
//! objects when it removes the layer (`collect_snapshots`: deleted and used by none of
//! its sandboxes), so sandboxes made from it (forks too, whose snapshot is deleted at
//! once) can still move while it has them. Must not: trust anything fetched before its
//! manifest's MAC is checked, or take a same-named dir that is not marked (a template's
//! warm capture: every node makes its own, with other files under the same name).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::snapshot::SnapshotMeta;
use super::{checksum, random_hex, Inner};
use crate::error::{IoContext, Result, RuntimeError};

const TAR: &str = "layer-tar.img";
const META: &str = "meta.img";
/// An image layer's `image.json` (its OCI config), when the snapshot is one.
const IMAGE: &str = "image-json.img";
/// The marker of a snapshot that is in the bucket, and who put it there.
pub(super) const SHARED: &str = "shared";
pub(super) const MADE: &str = "made";
pub(super) const FETCHED: &str = "fetched";

pub(super) fn snapshot_layer_rel(snap: &str) -> String {
    format!("snapshots/{snap}/layer")
}

/// What `meta.img` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedMeta {
    meta: SnapshotMeta,
    /// The data dir `meta`'s paths are under.
    data_dir: String,
}

/// How a snapshot dir came to this node: `None` when it is not in the bucket.
pub(super) fn shared_as(snap_dir: &Path) -> Option<String> {
    std::fs::read_to_string(snap_dir.join(SHARED)).ok().map(|s| s.trim().to_string())
}

fn run_tar(args: &[&std::ffi::OsStr], what: &str) -> Result<()> {
    let out = Command::new("tar").args(args).output().ctx(|| "run tar".into())?;
    if !out.status.success() {
        return Err(RuntimeError::Io {
            context: what.to_string(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// `layer` as a tar in `out`: numeric owners (the sandbox's id range), modes, times,
/// every xattr (overlay's opaque markers are `trusted.*`), whiteouts (device 0:0), hard
/// links, holes.
pub(super) fn pack(layer: &Path, out: &Path) -> Result<()> {
    run_tar(
        &[
            "--create".as_ref(),
            "--file".as_ref(),
            out.as_os_str(),
            "--directory".as_ref(),
            layer.as_os_str(),
            "--numeric-owner".as_ref(),
            "--xattrs".as_ref(),
            "--xattrs-include=*".as_ref(),
            "--sparse".as_ref(),
            ".".as_ref(),
        ],
        &format!("pack {}", layer.display()),
    )
}

/// The tar `file` (made by [`pack`], verified) unpacked into the new dir `layer`.
pub(super) fn unpack(file: &Path, layer: &Path) -> Result<()> {
    std::fs::create_dir(layer).ctx(|| format!("create {}", layer.display()))?;
    run_tar(
        &[
            "--extract".as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
            "--directory".as_ref(),
            layer.as_os_str(),
            "--numeric-owner".as_ref(),
            "--same-owner".as_ref(),
            "--preserve-permissions".as_ref(),
            "--xattrs".as_ref(),
            "--xattrs-include=*".as_ref(),
        ],
        &format!("unpack into {}", layer.display()),
    )
}

impl Inner {
    /// Puts the snapshot being captured in `tmp` (its `layer/` and `meta`) in the bucket,
    /// marked `made`. Nothing to do unless this node shares layers.
    pub(super) fn share_snapshot(&self, snap: &str, tmp: &Path, meta: &SnapshotMeta) -> Result<()> {
        if !self.shares_layers() {
            return Ok(());
        }
        let t0 = Instant::now();
        let set = tmp.join("share");
        std::fs::create_dir_all(&set).ctx(|| format!("create {}", set.display()))?;
        let made = (|| -> Result<()> {
            pack(&tmp.join("layer"), &set.join(TAR))?;
            let shared = SharedMeta { meta: meta.clone(), data_dir: self.layout.root().display().to_string() };
            let json = serde_json::to_vec(&shared).map_err(std::io::Error::other).ctx(|| "encode meta".into())?;
            super::perms::write_private(&set.join(META), &json).ctx(|| "write meta.img".into())?;
            if tmp.join(super::oci_image::IMAGE_JSON).exists() {
                std::fs::copy(tmp.join(super::oci_image::IMAGE_JSON), set.join(IMAGE))
                    .ctx(|| "copy image.json".into())?;
            }
            super::pause::seal(&set, &self.key, None, None)?;
            self.upload_images(&set, &snapshot_layer_rel(snap))?;
            super::perms::write_private(&tmp.join(SHARED), MADE.as_bytes()).ctx(|| "mark shared".into())
        })();
        let _ = std::fs::remove_dir_all(&set);
        made?;
        tracing::info!(snapshot = %snap, ms = t0.elapsed().as_millis() as u64, "snapshot layer uploaded");
        Ok(())
    }

    /// Makes snapshot `snap` present on this node: already here (taken here, or fetched
    /// before), or fetched from the bucket (its layer and metadata; its memory images come
    /// down at the create, as before). `SnapshotNotFound` when it is neither.
    pub(super) fn ensure_snapshot(&self, snap: &str) -> Result<()> {
        super::validate_id(snap).map_err(|_| RuntimeError::SnapshotNotFound(snap.to_string()))?;
        let dir = self.layout.snapshot(snap);
        if dir.join("snapshot.json").exists() {
            return Ok(());
        }
        if !self.shares_layers() {
            return Err(RuntimeError::SnapshotNotFound(snap.to_string()));
        }
        let t0 = Instant::now();
        let tmp = self.layout.snapshots().join(format!(".{snap}.fetch-{}", random_hex(4)));
        let result = self.fetch_snapshot_into(snap, &tmp).and_then(|()| {
            match std::fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another create fetched it meanwhile.
                Err(_) if dir.join("snapshot.json").exists() => Ok(()),
                Err(e) => Err(e).ctx(|| format!("commit {}", dir.display())),
            }
        });
        let _ = std::fs::remove_dir_all(&tmp);
        result?;
        tracing::info!(snapshot = %snap, ms = t0.elapsed().as_millis() as u64, "snapshot fetched from the object store");
        Ok(())
    }

    fn fetch_snapshot_into(&self, snap: &str, tmp: &Path) -> Result<()> {
        std::fs::create_dir_all(tmp).ctx(|| format!("create {}", tmp.display()))?;
        let set = tmp.join("share");
        let rel = snapshot_layer_rel(snap);
        // Its manifest goes up last: there, the set is whole.
        let in_bucket = self.remote.as_ref().map(|r| r.exists(&format!("{rel}/{}", checksum::MANIFEST)));
        if !matches!(in_bucket, Some(Ok(true))) {
            return Err(RuntimeError::SnapshotNotFound(snap.to_string()));
        }
        self.fetch_images(&set, &rel)?;
        checksum::verify(&set, &self.key)?;
        let bad = |m: String| RuntimeError::CorruptCheckpoint(format!("snapshot {snap} in the object store: {m}"));
        let shared: SharedMeta = serde_json::from_slice(&std::fs::read(set.join(META)).ctx(|| "read meta.img".into())?)
            .map_err(|e| bad(format!("unreadable metadata ({e})")))?;
        if shared.meta.id != snap {
            return Err(bad(format!("the set is of snapshot {}", shared.meta.id)));
        }
        unpack(&set.join(TAR), &tmp.join("layer"))?;
        let mut meta = shared.meta;
        // Its own lowers may be snapshots' layers too (a snapshot of a fork).
        meta.lower_dirs = self.lowers_here(&meta.lower_dirs, &shared.data_dir, &format!("snapshot {snap}"))?;
        if set.join(IMAGE).exists() {
            std::fs::rename(set.join(IMAGE), tmp.join(super::oci_image::IMAGE_JSON))
                .ctx(|| "move image.json".into())?;
        }
        let _ = std::fs::remove_dir_all(&set);
        super::perms::write_private(&tmp.join("snapshot.json"), &meta.to_json())
            .ctx(|| "write snapshot.json".into())?;
        super::perms::write_private(&tmp.join(SHARED), FETCHED.as_bytes()).ctx(|| "mark fetched".into())?;
        if let (Some(base), true) = (meta.id_base, meta.memory) {
            self.id_ranges.register(base, &self.layout.snapshot(snap).join("snapshot.json"))?;
        }
        super::fs::syncfs(tmp)
    }

    /// `lowers` (a record's, a snapshot's or a template's, made in `data_dir`) on this node:
    /// the snapshots' layers among them fetched (`Immovable` for one that cannot be, as a
    /// warm template's capture), every path rebased onto this data dir and there, else a
    /// `Boot` error naming the missing one and `what` it is a layer of.
    pub(super) fn lowers_here(&self, lowers: &[String], data_dir: &str, what: &str) -> Result<Vec<String>> {
        for l in lowers {
            self.snapshot_lower(l, data_dir)?;
        }
        // The agent layer is this node's (same agent binary: same layer).
        let _ = self.agent_layer();
        let here: Vec<String> = lowers.iter().map(|l| super::layer::rebase(l, data_dir, self.layout.root())).collect();
        if let Some(l) = here.iter().find(|l| !self.layout.lower_now(l).is_dir()) {
            return Err(RuntimeError::Boot(format!(
                "lower layer {l} of {what} is not on this node: nodes must have the same template versions (and agent)"
            )));
        }
        Ok(here)
    }

    /// Makes the lower layer `lower` (of a record from `data_dir`) present here when it is
    /// a snapshot's layer (fetched if need be); `Immovable` for a snapshot's that is not in
    /// the bucket (a warm capture, a snapshot from before snapshots were shared, or one
    /// removed since). Any other lower: nothing to do.
    fn snapshot_lower(&self, lower: &str, data_dir: &str) -> Result<()> {
        let snapshots = Path::new(data_dir).join("snapshots");
        let Some(snap) = Path::new(lower).strip_prefix(&snapshots).ok().and_then(|r| r.iter().next()) else {
            return Ok(());
        };
        let snap = snap.to_string_lossy().into_owned();
        let dir = self.layout.snapshot(&snap);
        let immovable = || {
            RuntimeError::Immovable(format!(
                "it was made from snapshot {snap} (a fork, a snapshot or a warm template), whose layer is not in the \
                 object store: it resumes only there, on the node that paused it (activate that node, or wait for it to come back)"
            ))
        };
        if dir.exists() && shared_as(&dir).is_none() {
            return Err(immovable());
        }
        match self.ensure_snapshot(&snap) {
            Ok(()) => Ok(()),
            Err(RuntimeError::SnapshotNotFound(_)) => Err(immovable()),
            Err(e) => Err(e),
        }
    }

    /// The snapshots here that are in the bucket and not deleted here: every one fetched,
    /// and those made here more than [`SETTLED`] ago (a capture's row is written right after
    /// it, a fork's snapshot is deleted once its copies are made: neither is taken for one
    /// whose row is gone).
    pub(super) fn shared_snapshots(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.snapshots()) else { return Vec::new() };
        let settled = |p: &Path| {
            std::fs::metadata(p.join(SHARED))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= SETTLED))
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .filter(|p| !p.join(super::snapshot::DELETED).exists())
            .filter(|p| match shared_as(p).as_deref() {
                Some(FETCHED) => true,
                Some(MADE) => settled(p),
                _ => false,
            })
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect()
    }
}

/// How old a snapshot made here must be before a missing row means it was deleted.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn is_root() -> bool {
        // SAFETY: no arguments, no memory.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn a_layer_comes_back_from_its_tar_with_owners_xattrs_whiteouts_and_links() {
        if !is_root() {
            eprintln!("skipped: needs root (owners, trusted xattrs, device nodes)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("layer");
        std::fs::create_dir_all(layer.join("opaque/sub")).unwrap();
        std::fs::write(layer.join("file"), b"hello").unwrap();
        std::os::unix::fs::chown(layer.join("file"), Some(100_123), Some(100_124)).unwrap();
        std::fs::hard_link(layer.join("file"), layer.join("link")).unwrap();
        xattr_set(&layer.join("opaque"), "trusted.overlay.opaque", b"y");
        // A whiteout: a character device 0:0.
        let wh = std::ffi::CString::new(layer.join("gone").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR | 0o600, 0) }, 0);
        let tar = d.path().join("t.img");
        pack(&layer, &tar).unwrap();
        let back = d.path().join("back");
        unpack(&tar, &back).unwrap();
        assert_eq!(std::fs::read(back.join("file")).unwrap(), b"hello");
        let m = std::fs::metadata(back.join("file")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.nlink()), (100_123, 100_124, 2));
        assert_eq!(m.ino(), std::fs::metadata(back.join("link")).unwrap().ino());
        assert_eq!(xattr_get(&back.join("opaque"), "trusted.overlay.opaque"), b"y");
        let w = std::fs::symlink_metadata(back.join("gone")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&w.file_type()));
        assert_eq!(w.rdev(), 0);
        assert!(back.join("opaque/sub").is_dir());
    }

    fn xattr_set(p: &Path, name: &str, value: &[u8]) {
        let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let name = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid strings and buffer.
        let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }

    fn xattr_get(p: &Path, name: &str) -> Vec<u8> {
        let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let name = std::ffi::CString::new(name).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: valid strings and buffer.
        let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n >= 0, "{}", std::io::Error::last_os_error());
        buf[..n as usize].to_vec()
    }
}
