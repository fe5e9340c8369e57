//! Sandbox runtimes.
//!
//! [`Runtime`] is the boundary the rest of Stasis talks to: create, pause, resume, kill,
//! and a way to reach the sandbox's agent. [`container::ContainerRuntime`] implements it
//! with Linux namespaces, cgroups, overlayfs and CRIU; a microVM runtime would be a second
//! implementation. Runtimes own host resources only: they know nothing of the API, of
//! timeouts or of users.

pub mod agent_client;
pub mod container;
mod error;
pub mod lock;
mod netns;
pub mod objstore;
pub mod volume_files;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use container::network::NetworkPolicy;
pub use container::{
    normalize_tags, split_template_ref, valid_template_name, BuildBase, ImageConfig, ImageSource, ImportedImage,
    ReadyCheck, RegistryAuth, SnapshotMeta, TemplateInfo, TemplatePublish, TemplateTag, DEFAULT_TAG,
};
pub use error::{Result, RuntimeError};
pub use stasis_proto::agent::ENVD_PORT;

/// What a sandbox is made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Template name (its root filesystem is the overlay's lower layer).
    pub template: String,
    pub cpu_count: u32,
    pub memory_mb: u64,
    /// Disk size: the most the sandbox can write. 0: no limit (writes go to the data dir).
    #[serde(default)]
    pub disk_mb: u64,
    pub max_pids: u64,
    /// Environment for every process of the sandbox.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Token the agent requires on every envd call (`X-Access-Token`).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Outbound network; `None`: loopback only (the host still reaches its ports).
    #[serde(default)]
    pub network: Option<NetworkPolicy>,
    /// Volumes bind-mounted read-write into the sandbox (`container/volumes.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
}

/// Volume `id` (its files: `DATA/volumes/ID`) mounted at `path` inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub id: String,
    /// Absolute, normalized (`container::volumes::check_mount_path`).
    pub path: String,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        Self {
            template: "base".into(),
            cpu_count: 2,
            memory_mb: 512,
            disk_mb: 4096,
            max_pids: 1024,
            env: BTreeMap::new(),
            access_token: None,
            network: Some(NetworkPolicy::open()),
            volumes: Vec::new(),
        }
    }
}

/// What a pause keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// Files, memory and processes (a CRIU checkpoint).
    Memory,
    /// Files only: the next resume is a fresh boot on them.
    Filesystem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Running,
    Paused,
}

/// Where a sandbox stands after [`Runtime::recover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Recovered {
    /// Its processes run (re-adopted, or a restore that completed).
    Running,
    /// Paused with its checkpoint (or a pause that completed is now committed).
    Paused,
    /// Its processes were gone without a checkpoint (host reboot, killed from outside):
    /// its files are kept and it is now paused without memory.
    MemoryLost,
}

/// What a pause or a checkpoint wrote, for progress and benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStats {
    pub image_bytes: u64,
    pub dump_ms: u64,
    pub sync_ms: u64,
    /// Time spent uploading the images to the object store (0 without one).
    #[serde(default)]
    pub upload_ms: u64,
    /// Bytes of memory images hashed while the dump wrote them (not in `sync_ms`).
    #[serde(default)]
    pub hashed_early_bytes: u64,
}

/// What a snapshot captured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStats {
    /// How long the source sandbox was frozen for the capture.
    pub frozen_ms: u64,
    pub size_bytes: u64,
    pub memory: bool,
}

/// How far a long operation on a sandbox (a pause writing memory, a resume reading it)
/// has come, for progress reporting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpProgress {
    /// "pausing" or "resuming".
    pub kind: String,
    pub bytes_done: u64,
    /// Estimate: the sandbox's memory for a pause, the images' size for a resume.
    pub bytes_total: u64,
}

/// A change to a created sandbox: what is `Some` changes, the rest stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxUpdate {
    /// A new memory limit, at least the current one.
    pub memory_mb: Option<u64>,
    /// A new outbound policy, replacing the current one whole.
    pub network: Option<NetworkPolicy>,
}

/// Usage figures read from the sandbox's cgroups.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxUsage {
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub cpu_usage_ns: u64,
    pub pids: u64,
    /// Times the kernel killed a process of the sandbox for exceeding its memory limit.
    pub oom_kills: u64,
    /// Bytes the sandbox's writable layer holds on disk.
    pub disk_bytes: u64,
}

/// A sandbox's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Boots a new sandbox and returns when its agent answers.
    async fn create(&self, id: &str, spec: &SandboxSpec) -> Result<()>;
    /// Stops the sandbox, keeping its state on disk; durable when this returns.
    /// `Memory` checkpoints every process; `Filesystem` keeps only the files.
    async fn pause(&self, id: &str, mode: PauseMode) -> Result<CheckpointStats>;
    /// Starts a paused sandbox again: from its memory checkpoint when it has one and
    /// `mode` is `Memory` (processes continue where they stopped), else a fresh boot on
    /// its saved files.
    async fn resume(&self, id: &str, mode: PauseMode) -> Result<()>;
    /// Captures a running sandbox as snapshot `snapshot_id` (files, and memory with
    /// `PauseMode::Memory`); the sandbox is frozen only for the capture.
    async fn snapshot(&self, id: &str, snapshot_id: &str, mode: PauseMode) -> Result<SnapshotStats>;
    /// Creates sandbox `id` from a snapshot: its files, and its processes when the snapshot
    /// holds memory, continuing in a copy of their own. `spec` gives env and access token.
    async fn create_from_snapshot(&self, id: &str, snapshot_id: &str, spec: &SandboxSpec) -> Result<()>;
    /// Deletes a snapshot; sandboxes made from it keep working.
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()>;
    /// The snapshots on this node that are also in the object store and not deleted here
    /// (fetched, or taken here a while ago): the lifecycle deletes those whose row is gone.
    async fn shared_snapshots(&self) -> Vec<String> {
        Vec::new()
    }
    /// The limits (CPU, memory, disk) a sandbox made from snapshot `snapshot_id` gets:
    /// its source's when captured, whatever the create asks. `None`: the runtime applies
    /// the create's own.
    async fn snapshot_limits(&self, _snapshot_id: &str) -> Result<Option<Limits>> {
        Ok(None)
    }
    /// Whether template `name` exists now (so that a reset can be refused before it tears
    /// anything down).
    async fn has_template(&self, _name: &str) -> bool {
        true
    }
    /// Changes a running or paused sandbox's memory limit or outbound policy; a paused one
    /// gets them at its resume.
    async fn update(&self, id: &str, _update: &SandboxUpdate) -> Result<()> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    /// Mounts volume `mount` into running sandbox `id` (its path checked by the caller);
    /// the next pause, resume, snapshot and fork keep it.
    async fn mount_volume(&self, id: &str, _mount: &VolumeMount) -> Result<()> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    /// Unmounts the volume at `path` from running sandbox `id`; `force`: even while in
    /// use (lazily detached). `VolumeInUse` says why it was refused.
    async fn unmount_volume(&self, id: &str, _path: &str, _force: bool) -> Result<()> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    /// Makes a sandbox paused on another node of a cluster this runtime's, from the object
    /// store (its layer set; the memory images come down at resume).
    async fn import_paused(&self, id: &str) -> Result<()> {
        Err(RuntimeError::ObjectStore(format!(
            "sandbox {id} is paused on another node: this runtime cannot take it over"
        )))
    }
    /// Removes this host's copy of a paused sandbox that another node of the cluster took
    /// over, leaving the object store alone (its state there is the new node's now).
    /// Refused (`NotPaused`) for one that runs here.
    async fn drop_local(&self, id: &str) -> Result<()> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    /// Stops the sandbox if it runs and deletes everything it owns.
    async fn kill(&self, id: &str) -> Result<()>;
    async fn state(&self, id: &str) -> Result<SandboxState>;
    /// After a daemon restart: finishes or undoes whatever operation was cut short and
    /// re-adopts the sandbox. Never deletes a sandbox's data.
    async fn recover(&self, id: &str) -> Result<Recovered>;
    /// Ids of every sandbox this runtime holds, running or paused.
    async fn list(&self) -> Result<Vec<String>>;
    async fn usage(&self, id: &str) -> Result<SandboxUsage>;
    /// Progress of the pause or resume under way, if any.
    fn progress(&self, id: &str) -> Option<OpProgress>;
    /// A TCP connection to `port` inside the sandbox.
    async fn connect(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream>;
    /// Sandboxes whose init exited while they were meant to be running (crash, OOM, killed
    /// from outside). By the time one is told, the runtime has already recovered it (its
    /// files kept as a filesystem-only pause, or a pause whose dump had completed
    /// committed). The default runtime has none to tell.
    fn init_exits(&self) -> tokio::sync::broadcast::Receiver<InitExit> {
        tokio::sync::broadcast::channel(1).1
    }
    /// Makes volume `id`'s (empty) storage. The default runtime has none.
    async fn create_volume(&self, _id: &str) -> Result<()> {
        Ok(())
    }
    /// Removes volume `id`'s storage (no sandbox mounts it any more).
    async fn delete_volume(&self, _id: &str) -> Result<()> {
        Ok(())
    }
    /// The host directory holding volume `id`'s files, for its content API; `None` when
    /// this runtime keeps no volume files on the host.
    fn volume_dir(&self, _id: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Boots a sandbox to run a template build's steps in, on `base`'s files (a template's,
    /// without its start command, or a committed layer's).
    async fn create_build_sandbox(&self, _id: &str, _base: &BuildBase, _spec: &SandboxSpec) -> Result<()> {
        Err(RuntimeError::Boot("this runtime does not build templates".into()))
    }
    /// Copies host file `src` to `dest` (absolute) inside running sandbox `id`, owned by
    /// the sandbox's root.
    async fn copy_in(&self, id: &str, _src: &std::path::Path, _dest: &str) -> Result<()> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    /// The layer of an OCI image (pulled, unpacked and made a sandbox root once; shared
    /// by every template built from it). `log` hears what it does.
    async fn import_image(
        &self,
        src: &ImageSource,
        _log: std::sync::Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<ImportedImage> {
        Err(RuntimeError::Image(format!("this runtime does not import images ({})", src.reference)))
    }
    /// Whether a build committed layer `layer` (a files-only snapshot) and it still exists.
    async fn has_layer(&self, _layer: &str) -> bool {
        false
    }
    /// The files `base` stands for, top first: what a build's cache keys start from.
    async fn template_lowers(&self, base: &BuildBase) -> Result<Vec<String>> {
        Err(RuntimeError::TemplateNotFound(format!("{base:?}")))
    }
    /// Publishes a built template atomically (warmed first when it starts a service).
    async fn publish_template(&self, p: &TemplatePublish) -> Result<()> {
        Err(RuntimeError::TemplateNotFound(p.name.clone()))
    }
    /// Every template, built or made by setup.
    async fn templates(&self) -> Result<Vec<TemplateInfo>> {
        Ok(Vec::new())
    }
    /// Removes a built template (its layers go once nothing uses them).
    async fn remove_template(&self, name: &str) -> Result<()> {
        Err(RuntimeError::TemplateNotFound(name.to_string()))
    }
    /// Makes `tags` also name the build `target` (`NAME[:TAG]`) names; returns that
    /// build's id and the tags as stored.
    async fn assign_template_tags(&self, target: &str, _tags: &[String]) -> Result<(String, Vec<String>)> {
        Err(RuntimeError::TemplateNotFound(target.to_string()))
    }
    /// Removes tags of template `name` (never `default`); a build no tag names goes.
    async fn remove_template_tags(&self, name: &str, _tags: &[String]) -> Result<()> {
        Err(RuntimeError::TemplateNotFound(name.to_string()))
    }
    /// The tags of template `name`, each with the build it names.
    async fn template_tags(&self, name: &str) -> Result<Vec<TemplateTag>> {
        Err(RuntimeError::TemplateNotFound(name.to_string()))
    }
    /// Prepares every template whose sandboxes start from a warm snapshot (a template
    /// with a start command and a ready check), so that the first create of each is as
    /// fast as the others. Returns each such template with the outcome.
    async fn warm_templates(&self) -> Vec<(String, Result<()>)> {
        Vec::new()
    }
    /// At shutdown: removes the sandboxes of warms under way (they would be left running,
    /// and the warm is retried at the next start anyway).
    async fn abandon_warms(&self) {}
    /// At shutdown, last: removes what the runtime made ahead of creates and holds for
    /// them (ready gateway namespaces), which nothing else would remove before the next
    /// start.
    async fn release_pools(&self) {}
}

/// An init that exited while its sandbox was meant to be running, and what recovery made
/// of the sandbox.
#[derive(Debug, Clone)]
pub struct InitExit {
    pub id: String,
    pub pid: u32,
    /// The recovered state, or why recovery failed.
    pub outcome: std::result::Result<Recovered, String>,
    /// Said to the user: what happened, in words.
    pub reason: String,
}
