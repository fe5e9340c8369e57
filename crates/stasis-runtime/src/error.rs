//! The runtime's error type: one variant per thing a caller may handle differently.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("sandbox {0} not found")]
    NotFound(String),
    #[error("sandbox {0} already exists")]
    AlreadyExists(String),
    #[error("sandbox {0} is already paused")]
    AlreadyPaused(String),
    #[error("sandbox {0} is not paused")]
    NotPaused(String),
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    /// A template request that cannot be: a bad tag, tagging a template made by setup.
    #[error("{0}")]
    InvalidTemplate(String),
    #[error("invalid sandbox id {0:?}: use 1-64 characters a-z and 0-9")]
    InvalidId(String),
    #[error("invalid network policy: {0}")]
    InvalidNetwork(String),
    #[error("network: {0}")]
    Network(String),
    /// A change to a sandbox that it cannot take (`container/update.rs`).
    #[error("{0}")]
    InvalidUpdate(String),
    /// An OCI image could not be made a template base (reference, registry, credentials,
    /// architecture: the message says which).
    #[error("{0}")]
    Image(String),
    /// A volume mount that cannot be made: a bad path, a volume whose files are gone.
    #[error("volume: {0}")]
    Volume(String),
    /// A volume that cannot be unmounted now; the message says why.
    #[error("the volume cannot be unmounted: {0}")]
    VolumeInUse(String),
    #[error("sandbox boot failed: {0}")]
    Boot(String),
    #[error("checkpoint is corrupted, not restored (the sandbox stays paused, its data kept): {0}")]
    CorruptCheckpoint(String),
    /// A file written by a newer Stasis, in a format this binary does not know. Nothing
    /// was changed: the newer binary can still use it.
    #[error("{path} is in format version {version}, written by a newer Stasis (this one reads up to version {supported}); upgrade Stasis to use it")]
    UnsupportedFormat { path: String, version: u32, supported: u32 },
    /// The operation would cut into the host's disk reserve (`container/space.rs`).
    #[error("not enough disk space to {op}: it needs about {} MiB, {} MiB are free and {} MiB are the host's disk reserve (--disk-reserve), kept for running sandboxes", needed >> 20, free >> 20, reserve >> 20)]
    InsufficientStorage { op: &'static str, needed: u64, free: u64, reserve: u64 },
    #[error("checkpoint ({op}) failed: {message}")]
    Checkpoint { op: &'static str, message: String },
    #[error("sandbox {id}: its init (pid {pid}) is gone; its processes and memory are lost")]
    InitGone { id: String, pid: u32 },
    #[error("sandbox {id} was checkpointed and its processes stopped, but the checkpoint could not be made durable ({message}); it will be completed from its images as soon as possible")]
    PauseIncomplete { id: String, message: String },
    /// The object store (`--object-store`) refused or could not be reached; `op` says
    /// what was being done and what became of the sandbox.
    #[error("object store: {0}")]
    ObjectStore(String),
    /// A paused sandbox that cannot move to this node (a takeover); the message says why
    /// and where it can resume.
    #[error("{0}")]
    Immovable(String),
    #[error("data dir {} is in use by {holder}: stop it first, or use another --data-dir", dir.display())]
    DataDirInUse { dir: std::path::PathBuf, holder: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Adds what was being done to an I/O error.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| RuntimeError::Io { context: context(), source })
    }
}
