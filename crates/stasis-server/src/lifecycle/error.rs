//! The lifecycle's error: what went wrong with an operation on a sandbox.

use stasis_runtime::RuntimeError;
use stasis_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("sandbox {0} not found")]
    NotFound(String),
    /// Not found among the running sandboxes, as E2B answers for a paused one (the full
    /// message).
    #[error("{0}")]
    NotRunning(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    #[error("volume {0} not found")]
    VolumeNotFound(String),
    #[error("secret {0} not found")]
    SecretNotFound(String),
    /// The vault could not seal or open a value (its key file, or a damaged row).
    #[error("secrets: {0}")]
    Vault(#[from] crate::secrets::VaultError),
    #[error("runtime: {0}")]
    Runtime(RuntimeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The sandbox's processes ended while it was meant to run.
    #[error("{0}")]
    Lost(String),
}

impl From<RuntimeError> for LifecycleError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound(id) => LifecycleError::NotFound(id),
            RuntimeError::TemplateNotFound(t) => LifecycleError::TemplateNotFound(t),
            RuntimeError::SnapshotNotFound(s) => LifecycleError::TemplateNotFound(s),
            RuntimeError::InvalidId(id) => LifecycleError::NotFound(id),
            e @ (RuntimeError::InvalidNetwork(_) | RuntimeError::InvalidUpdate(_)) => {
                LifecycleError::BadRequest(e.to_string())
            }
            RuntimeError::Volume(m) => LifecycleError::BadRequest(m),
            RuntimeError::Immovable(m) => LifecycleError::Conflict(m),
            other => LifecycleError::Runtime(other),
        }
    }
}

pub type Result<T, E = LifecycleError> = std::result::Result<T, E>;
