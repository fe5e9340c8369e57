//! Snapshots: a running sandbox's files and memory captured at one instant (it is frozen
//! only for the capture), from which any number of new sandboxes start.
//!
//! A snapshot is immutable and stored once. Its `layer` (the source's writable layer at
//! that instant) becomes a read-only overlay lower of every sandbox made from it, each of
//! which gets its own empty writable layer; its memory images are restored into each new
//! sandbox's own namespaces. Deleting a snapshot only marks it: its files go when no
//! sandbox (and no other snapshot) still uses its layer.
//!
//! `snapshot.json` is versioned (`format.rs`): one from a newer Stasis is refused, and
//! while any record or snapshot cannot be read no layer is collected, since it may be the
//! one that reads it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stasis_proto::agent::{InitRequest, StartCommand};

use super::format::{self, SNAPSHOT_VERSION};
use super::fs::{disk_usage, syncfs};
use super::pause::wait_for_lazy_pages;
use super::record::Record;
use super::remote::{snapshot_images_rel, snapshot_rel};
use super::{checksum, handover};
use super::{random_hex, validate_id, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::{PauseMode, SandboxSpec, SandboxState, SnapshotStats};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMeta {
    pub id: String,
    pub source: String,
    pub memory: bool,
    /// The source's lower layers (top first) at the time: the snapshot's layer goes on top.
    pub lower_dirs: Vec<String>,
    pub spec: SandboxSpec,
    pub agent_path: String,
    /// The source's start command: a sandbox made from the snapshot that later boots
    /// (resumed without memory) launches it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartCommand>,
    /// The source's id range (`None`: the legacy one): its layer's files and its memory
    /// images' user namespace are in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_base: Option<u32>,
}

/// Whose resource limits a sandbox created from a snapshot gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limits {
    /// The source's (a fork or a user's snapshot: the copy is the same machine).
    Snapshot,
    /// The create request's (a template's warm snapshot: each sandbox is sized anew).
    Request,
}

pub(super) const DELETED: &str = "deleted";
const META: &str = "snapshot.json";

impl SnapshotMeta {
    fn load(path: &Path) -> Result<Self> {
        format::load(path, SNAPSHOT_VERSION)
    }

    pub(super) fn load_from(path: &Path) -> Result<Self> {
        Self::load(path)
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        format::to_json(SNAPSHOT_VERSION, self, true)
    }
}

impl Inner {
    pub(super) fn snapshot_meta(&self, snap: &str) -> Result<SnapshotMeta> {
        validate_id(snap).map_err(|_| RuntimeError::SnapshotNotFound(snap.to_string()))?;
        let dir = self.layout.snapshot(snap);
        let path = dir.join(META);
        if !path.exists() || dir.join(DELETED).exists() {
            return Err(RuntimeError::SnapshotNotFound(snap.to_string()));
        }
        SnapshotMeta::load(&path)
    }

    /// Captures sandbox `id` as snapshot `snap`; the sandbox keeps running. Its memory
    /// images are in the object store, if there is one, before the snapshot exists.
    pub(super) fn snapshot(&self, id: &str, snap: &str, mode: PauseMode) -> Result<SnapshotStats> {
        self.capture(id, snap, mode, true)
    }

    /// A snapshot kept on this host only (a template's warm snapshot: every node makes
    /// its own from the template).
    pub(super) fn snapshot_here(&self, id: &str, snap: &str, mode: PauseMode) -> Result<SnapshotStats> {
        self.capture(id, snap, mode, false)
    }

    fn capture(&self, id: &str, snap: &str, mode: PauseMode, keep_remote: bool) -> Result<SnapshotStats> {
        validate_id(snap)?;
        let rec = self.load(id)?;
        let init = self.init_of(&rec)?;
        let final_dir = self.layout.snapshot(snap);
        if final_dir.exists() {
            return Err(RuntimeError::AlreadyExists(format!("snapshot {snap}")));
        }
        let dir = self.dir(id);
        // A copy of its writable layer, and its memory for a memory snapshot.
        let memory = if mode == PauseMode::Memory { self.cgroups.usage(id).memory_bytes } else { 0 };
        let needed = memory + super::fs::disk_usage(&dir.upper());
        super::space::check(&self.layout.snapshots(), self.disk_reserve, "snapshot", needed)?;
        let tmp = self.layout.snapshots().join(format!(".{snap}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        wait_for_lazy_pages(&dir);
        let t0 = Instant::now();
        // Frozen for the whole capture: memory and files are of one instant (CRIU checks
        // the sizes of open files against the files it will find at restore).
        self.freeze_for_dump(id, &init)?;
        let captured = (|| -> Result<()> {
            if mode == PauseMode::Memory {
                let images = tmp.join("images");
                std::fs::create_dir_all(&images).ctx(|| format!("create {}", images.display()))?;
                let external = super::volumes::dump_externals(&rec.spec.volumes);
                self.hold_traffic(&rec, true)?;
                let hasher = checksum::EarlyHasher::start(&images, &self.key);
                let dumped = self.criu.dump(init.pid(), &images, &self.cgroups.freezer(id), true, &external);
                let early = hasher.finish();
                let released = self.hold_traffic(&rec, false);
                dumped.and(released)?;
                // The source stays frozen until sealed: what was hashed during the dump
                // is not hashed again.
                super::pause::seal(&images, &self.key, None, Some(&early))?;
            }
            copy_tree(&dir.upper(), &tmp.join("layer"))
        })();
        let thawed = self.cgroups.set_frozen(id, false);
        let frozen_ms = t0.elapsed().as_millis() as u64;
        // Uploaded once the source runs again: the upload does not lengthen its freeze.
        let uploaded = || match (mode, keep_remote) {
            (PauseMode::Memory, true) => self.upload_images(&tmp.join("images"), &snapshot_images_rel(snap)),
            _ => Ok(()),
        };
        if let Err(e) = captured.and(thawed).and_then(|()| uploaded()) {
            let _ = std::fs::remove_dir_all(&tmp);
            if keep_remote {
                self.forget_remote(&snapshot_rel(snap));
            }
            return Err(e);
        }
        let meta = SnapshotMeta {
            id: snap.to_string(),
            source: id.to_string(),
            memory: mode == PauseMode::Memory,
            lower_dirs: rec.lower_dirs.clone(),
            // Kept (root-only, like the record): a sandbox restored from the snapshot starts
            // with the source's agent in memory, which still wants this token until the
            // handover gives it the new sandbox's own.
            spec: rec.spec.clone(),
            agent_path: rec.agent_path.clone(),
            start: rec.start.clone(),
            id_base: rec.id_base,
        };
        super::perms::write_private(&tmp.join(META), &meta.to_json()).ctx(|| "write snapshot.json".into())?;
        // In a cluster its layer goes up too: any node can then start sandboxes from it.
        if keep_remote {
            if let Err(e) = self.share_snapshot(snap, &tmp, &meta) {
                let _ = std::fs::remove_dir_all(&tmp);
                self.forget_remote(&snapshot_rel(snap));
                return Err(e);
            }
        }
        // Its copies restore into its range (`create_from_snapshot_with`): held while it lives.
        if let (Some(base), true) = (meta.id_base, meta.memory) {
            self.id_ranges.register(base, &final_dir.join(META))?;
        }
        syncfs(&tmp)?;
        std::fs::rename(&tmp, &final_dir).ctx(|| format!("commit {}", final_dir.display()))?;
        std::fs::File::open(self.layout.snapshots()).and_then(|d| d.sync_all()).ctx(|| "sync snapshots dir".into())?;
        Ok(SnapshotStats { frozen_ms, size_bytes: disk_usage(&final_dir), memory: meta.memory })
    }

    /// Creates sandbox `id` from snapshot `snap`: its files, and with a memory snapshot
    /// its processes, continuing from the snapshot's instant in a copy of their own.
    pub(super) fn create_from_snapshot(&self, id: &str, snap: &str, spec: &SandboxSpec) -> Result<()> {
        self.create_from_snapshot_with(id, snap, spec, Limits::Snapshot)
    }

    pub(super) fn create_from_snapshot_with(
        &self,
        id: &str,
        snap: &str,
        spec: &SandboxSpec,
        limits: Limits,
    ) -> Result<()> {
        // Taken on another node of a cluster: fetched from the object store.
        self.ensure_snapshot(snap)?;
        let meta = self.snapshot_meta(snap)?;
        // A copy mounts the volumes its source mounted, where it mounted them: its
        // processes may hold files open on them.
        if matches!(limits, Limits::Snapshot) && !spec.volumes.is_empty() && spec.volumes != meta.spec.volumes {
            return Err(RuntimeError::Volume(format!(
                "a sandbox made from snapshot {snap} mounts the volumes its source mounted; it cannot name others"
            )));
        }
        let dir = self.dir(id);
        if dir.path().exists() {
            return Err(RuntimeError::AlreadyExists(id.to_string()));
        }
        super::space::check(&self.layout.sandboxes(), self.disk_reserve, "create", super::space::CREATE_BYTES)?;
        let snap_dir = self.layout.snapshot(snap);
        let mut lower_dirs = meta.lower_dirs.clone();
        // The snapshot's layer sits right under the agent layer (always first).
        lower_dirs.insert(1, snap_dir.join("layer").display().to_string());
        let result = (|| -> Result<()> {
            std::fs::create_dir_all(dir.path()).ctx(|| format!("create {}", dir.path().display()))?;
            super::perms::sandbox_dir(dir.path())?;
            // A memory copy restores the user namespace its images hold: the source's
            // range. A copy that boots gets its own; the snapshot's layer is idmapped.
            let id_base = match (meta.memory, meta.id_base) {
                (true, Some(base)) => {
                    self.id_ranges.register(base, &dir.record())?;
                    Some(base)
                }
                (true, None) => None,
                (false, _) => Some(self.claim_ids(&dir)?),
            };
            let mut rec = Record {
                id: id.to_string(),
                spec: match limits {
                    Limits::Snapshot => SandboxSpec {
                        env: spec.env.clone(),
                        access_token: spec.access_token.clone(),
                        network: spec.network.clone(),
                        ..meta.spec.clone()
                    },
                    Limits::Request => SandboxSpec { template: meta.spec.template.clone(), ..spec.clone() },
                },
                state: SandboxState::Running,
                init_pid: None,
                lower_dirs,
                agent_path: meta.agent_path.clone(),
                checkpoint: None,
                boot_id: random_hex(16),
                init_start: None,
                net_index: None,
                start: meta.start.clone(),
                id_base,
            };
            if meta.memory {
                // Not on this host: fetched from the object store (and verified).
                let images = snap_dir.join("images");
                let fetched = self.fetch_images(&images, &snapshot_images_rel(snap))?;
                let restored = self.restore_from(&mut rec, &dir, &images).inspect_err(|_| {
                    if fetched {
                        let _ = std::fs::remove_dir_all(&images);
                    }
                })?;
                if let Some(mut daemon) = restored {
                    // Reaped when it has filled the memory in. A snapshot deleted meanwhile
                    // kept its images for this daemon: the last reader drops them.
                    let snap_dir = snap_dir.clone();
                    std::thread::spawn(move || {
                        let _ = daemon.wait();
                        drop_images_if_deleted(&snap_dir);
                    });
                }
                // The restored agent still holds the source's token and environment.
                // Its token, environment and boot id are its own, not the source's.
                let init = InitRequest {
                    access_token: spec.access_token.clone(),
                    env_vars: spec.env.clone(),
                    boot_id: Some(rec.boot_id.clone()),
                };
                let handle = self.init_of(&rec)?;
                handover::hand_over(handle, meta.spec.access_token.as_deref(), &init)
            } else {
                self.boot(&mut rec, &dir)
            }
        })();
        if result.is_err() {
            self.destroy(id);
        }
        result
    }

    /// Marks a snapshot deleted (new sandboxes can no longer start from it) and frees
    /// whatever no sandbox uses any more.
    pub(super) fn delete_snapshot(&self, snap: &str) -> Result<()> {
        if let Err(e) = self.snapshot_meta(snap) {
            // Not on this node (its node is gone): its images in the bucket serve nothing
            // more. Its layer stays there for the sandboxes made from it, which may move;
            // the node that made it removes it with its own copy.
            if matches!(e, RuntimeError::SnapshotNotFound(_)) && validate_id(snap).is_ok() {
                self.forget_remote(&snapshot_images_rel(snap));
            }
            return Err(e);
        }
        let dir = self.layout.snapshot(snap);
        std::fs::File::create(dir.join(DELETED)).and_then(|f| f.sync_all()).ctx(|| "mark snapshot deleted".into())?;
        // Memory images only serve sandboxes being created, and lazy restores still
        // filling memory in: they go now unless such a restore still reads them.
        drop_images_if_deleted(&dir);
        match super::snapshot_share::shared_as(&dir) {
            // Its layer in the bucket goes with the layer here (`collect_snapshots`).
            Some(_) => self.forget_remote(&snapshot_images_rel(snap)),
            None => self.forget_remote(&snapshot_rel(snap)),
        }
        self.collect_snapshots();
        Ok(())
    }

    /// Removes deleted snapshots whose layer no sandbox and no live snapshot uses.
    pub(super) fn collect_snapshots(&self) {
        let Ok(entries) = std::fs::read_dir(self.layout.snapshots()) else { return };
        // `.ID.tmp`: a capture under way (its source's record names the same layers).
        let snaps: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.join(META).exists())
            .collect();
        // A record or snapshot that cannot be read (one from a newer Stasis, a damaged one)
        // may use any layer: then nothing is collected.
        // Templates stand on layers too (a built template's, every version).
        let mut in_use: Vec<String> = self.template_lowers_in_use();
        if let Ok(sbx) = std::fs::read_dir(self.layout.sandboxes()) {
            for e in sbx.flatten() {
                let record = e.path().join("record.json");
                if !record.exists() {
                    continue;
                }
                match Record::load(&record) {
                    Ok(rec) => in_use.extend(rec.lower_dirs),
                    Err(_) => return,
                }
            }
        }
        // A live snapshot made from a sandbox that ran on another snapshot uses that one too.
        let mut metas: Vec<(PathBuf, bool, Vec<String>)> = Vec::new();
        for p in &snaps {
            match SnapshotMeta::load(&p.join(META)) {
                Ok(m) => metas.push((p.clone(), p.join(DELETED).exists(), m.lower_dirs)),
                Err(_) => return,
            }
        }
        let mut changed = true;
        let mut removed: Vec<PathBuf> = Vec::new();
        while changed {
            changed = false;
            for (p, deleted, _) in &metas {
                if !deleted || removed.contains(p) {
                    continue;
                }
                let layer = p.join("layer").display().to_string();
                let used_by_other =
                    metas.iter().any(|(q, _, lowers)| q != p && !removed.contains(q) && lowers.contains(&layer));
                if !in_use.contains(&layer) && !used_by_other {
                    // The node that put it in the bucket takes it out with its last user here;
                    // a build's layer stays (other nodes' templates may name it: a cache
                    // keyed by what made it).
                    if super::snapshot_share::shared_as(p).as_deref() == Some(super::snapshot_share::MADE) {
                        if let Some(snap) = p.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with("lyr")) {
                            self.forget_remote(&snapshot_rel(snap));
                        }
                    }
                    let _ = std::fs::remove_dir_all(p);
                    removed.push(p.clone());
                    changed = true;
                }
            }
        }
    }
}

/// Removes a deleted snapshot's memory images once no CRIU (lazy-pages daemon) reads them.
fn drop_images_if_deleted(snap_dir: &Path) {
    if snap_dir.join(DELETED).exists() && super::criu::running_for(&snap_dir.join("images")).is_empty() {
        let _ = std::fs::remove_dir_all(snap_dir.join("images"));
    }
}

/// `cp -a`: ownership, modes, times, xattrs (overlay whiteouts and opaque markers), hard
/// links and device nodes, exactly.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| RuntimeError::Io { context: "run cp".into(), source: e })?;
    if !out.status.success() {
        return Err(RuntimeError::Io {
            context: format!("copy {} to {}", from.display(), to.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `snapshot.json` as written by the release before formats had versions
    /// (`stasis runtime snapshot`, commit fa51dcf).
    const UNVERSIONED: &str = include_str!("../../tests/fixtures/unversioned/snapshot.json");

    #[test]
    fn reads_snapshot_metadata_from_before_versions() {
        assert!(!UNVERSIONED.contains("formatVersion"));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(META);
        std::fs::write(&p, UNVERSIONED).unwrap();
        let m = SnapshotMeta::load(&p).unwrap();
        assert_eq!((m.id.as_str(), m.source.as_str(), m.memory), ("fxsnap", "fx1", true));
        assert_eq!(m.lower_dirs.len(), 2);
        assert_eq!(m.agent_path, "/.stasis/agent");
        // Written again: the current version, the rest as it was.
        let again: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        let mut old: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        old["formatVersion"] = SNAPSHOT_VERSION.into();
        assert_eq!(again, old);
    }

    #[test]
    fn refuses_snapshot_metadata_from_a_newer_stasis() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(META);
        let mut newer: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        newer["formatVersion"] = (SNAPSHOT_VERSION + 1).into();
        newer.as_object_mut().unwrap().remove("lowerDirs");
        std::fs::write(&p, serde_json::to_vec(&newer).unwrap()).unwrap();
        assert!(matches!(
            SnapshotMeta::load(&p),
            Err(RuntimeError::UnsupportedFormat { version, supported: SNAPSHOT_VERSION, .. }) if version == SNAPSHOT_VERSION + 1
        ));
    }
}
