//! What the agent tells the service about the sandbox through files
//! (`stasis_proto::interpreter`): here, the sandbox's environment variables.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Reader of the envs file the agent writes.
#[derive(Debug, Clone)]
pub struct SandboxFiles {
    envs_file: PathBuf,
}

impl SandboxFiles {
    pub fn new(envs_file: PathBuf) -> Self {
        SandboxFiles { envs_file }
    }

    /// The sandbox's envs, read now: a sandbox made from a snapshot gets new ones, so
    /// the file is read before every run (it is small). Missing: none; unreadable: none,
    /// with a warning.
    pub async fn envs(&self) -> BTreeMap<String, String> {
        match tokio::fs::read_to_string(&self.envs_file).await {
            Ok(text) => match stasis_proto::interpreter::parse_envs(&text) {
                Ok(envs) => envs,
                Err(e) => {
                    tracing::warn!(file = %self.envs_file.display(), "ignoring sandbox envs: {e}");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %self.envs_file.display(), "cannot read sandbox envs: {e}");
                BTreeMap::new()
            }
        }
    }
}
