//! The records the store keeps: sandboxes, snapshots, API keys.
//!
//! Times are `i64` milliseconds since the Unix epoch, UTC ([`UnixMillis`]). Integers sort and
//! compare the same way in SQLite and PostgreSQL, need no time-zone handling in SQL, and
//! millisecond resolution keeps `startedAt` ordering meaningful for sandboxes created in
//! quick succession. The HTTP layer converts to RFC 3339 on the wire.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// The current wall-clock time as [`UnixMillis`].
pub fn now_ms() -> UnixMillis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is a broken host; clamp rather than panic.
        Err(_) => 0,
    }
}

/// Where a sandbox is in its lifecycle. Persisted as the lowercase name.
///
/// The `-ing` states exist so that every step is written down before it is acted on: after a
/// crash, a row left in `Pausing` tells recovery exactly which operation was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Creating,
    Running,
    Pausing,
    Paused,
    Resuming,
    Killing,
    Killed,
    /// Its node died while it ran (or was between states): its memory and writable layer
    /// were on that host (`nodes.rs`). Not listed; `lastError` says which node and when.
    /// If that node comes back with its files, it takes the sandbox up again.
    Lost,
}

impl SandboxState {
    pub const ALL: [SandboxState; 8] = [
        SandboxState::Creating,
        SandboxState::Running,
        SandboxState::Pausing,
        SandboxState::Paused,
        SandboxState::Resuming,
        SandboxState::Killing,
        SandboxState::Killed,
        SandboxState::Lost,
    ];

    /// States shown as `running` by the list API. A sandbox being paused is still up until
    /// its checkpoint is durable, so it lists as running.
    pub const LISTED_RUNNING: [SandboxState; 2] = [SandboxState::Running, SandboxState::Pausing];

    /// States shown as `paused` by the list API. A sandbox being resumed is not usable until
    /// the resume finishes, so it lists as paused.
    pub const LISTED_PAUSED: [SandboxState; 2] = [SandboxState::Paused, SandboxState::Resuming];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Pausing => "pausing",
            SandboxState::Paused => "paused",
            SandboxState::Resuming => "resuming",
            SandboxState::Killing => "killing",
            SandboxState::Killed => "killed",
            SandboxState::Lost => "lost",
        }
    }

    /// The wire state (`"running"` or `"paused"`) the list and info APIs report for a row in
    /// this state, or `None` when the sandbox is not listed at all (being created or killed).
    pub fn listed_as(self) -> Option<&'static str> {
        match self {
            SandboxState::Running | SandboxState::Pausing => Some("running"),
            SandboxState::Paused | SandboxState::Resuming => Some("paused"),
            SandboxState::Creating | SandboxState::Killing | SandboxState::Killed | SandboxState::Lost => None,
        }
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`SandboxState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sandbox state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for SandboxState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SandboxState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One sandbox, as the control plane remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRow {
    /// Lowercase `[a-z0-9]`, no `-` (hosts split `{port}-{id}` on it).
    pub id: String,
    pub template_id: String,
    /// The template alias the sandbox was created from, when it was named by alias.
    pub alias: Option<String>,
    pub client_id: String,
    pub state: SandboxState,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub disk_size_mb: u64,
    pub envd_access_token: Option<String>,
    pub traffic_access_token: Option<String>,
    pub started_at: UnixMillis,
    pub end_at: UnixMillis,
    pub timeout_secs: u64,
    /// On timeout: pause (true) or kill (false). Survives resume.
    pub auto_pause: bool,
    /// Traffic to the paused sandbox resumes it.
    pub auto_resume: bool,
    /// Paused (or to be auto-paused) with memory (true) or filesystem only (false).
    pub pause_memory: bool,
    pub secure: bool,
    pub allow_internet_access: bool,
    /// The create request's `network` object (`allowOut`, `denyOut`, ...) as the API layer
    /// validated it; `Null` when none was given. Kept as JSON so fields added by newer SDKs
    /// survive a round trip through the store.
    pub network: serde_json::Value,
    pub paused_at: Option<UnixMillis>,
    pub idle_timeout_secs: Option<u64>,
    pub created_at: UnixMillis,
    /// Set by the store on every write.
    pub updated_at: UnixMillis,
    /// The last lifecycle action on this sandbox that failed, until one succeeds: kept on
    /// the row so the failure stays visible (API, CLI) and its back-off survives a restart.
    pub last_error: Option<FailedAction>,
    /// The node that runs it, or (paused) holds its files: `crate::nodes::LOCAL_NODE` on
    /// a single machine. Only that node acts on it; the others forward to it.
    pub node_id: String,
}

/// A lifecycle action the runtime carries out on a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Pause,
    Resume,
    Kill,
    /// Not an action: the sandbox's own processes ended while it was meant to run (its
    /// init crashed, the OOM killer, a kill from outside).
    Run,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Kill => "kill",
            Operation::Run => "run",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed lifecycle action and where its retries stand (the lifecycle decides both;
/// the store only keeps them). Stored as JSON in `sandboxes.last_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedAction {
    pub operation: Operation,
    /// The error, as the runtime reported it.
    pub message: String,
    /// When it last failed.
    pub at: UnixMillis,
    /// Consecutive failures since the last success or the last API call on the sandbox.
    pub attempts: u32,
    /// When the lifecycle tries again by itself; `None`: it stopped trying until an API
    /// call touches the sandbox.
    pub next_attempt_at: Option<UnixMillis>,
}

/// A saved sandbox image that can be resumed from or forked, addressed by id or by any of its
/// names (names are unique across all snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub id: String,
    pub names: Vec<String>,
    pub source_sandbox_id: String,
    pub template_id: String,
    /// Holds a memory image (resume keeps processes) or only the filesystem.
    pub memory: bool,
    pub size_bytes: u64,
    pub created_at: UnixMillis,
    /// The node whose runtime took it and holds its files (`snapshot.json`, its layer and
    /// images): creates from it and its delete go there. `crate::nodes::LOCAL_NODE` on a
    /// single machine and for rows from before nodes recorded it.
    pub node_id: String,
}

/// An API key's record. The key itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub id: i64,
    /// Lowercase hex SHA-256 of the key.
    pub key_hash: String,
    pub name: String,
    pub created_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for st in SandboxState::ALL {
            assert_eq!(st.as_str().parse::<SandboxState>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{}\"", st.as_str()));
        }
        assert!("Running".parse::<SandboxState>().is_err());
    }

    #[test]
    fn listed_states_agree_with_listed_as() {
        for st in SandboxState::LISTED_RUNNING {
            assert_eq!(st.listed_as(), Some("running"));
        }
        for st in SandboxState::LISTED_PAUSED {
            assert_eq!(st.listed_as(), Some("paused"));
        }
        let listed = SandboxState::ALL.iter().filter(|s| s.listed_as().is_some()).count();
        assert_eq!(listed, 4);
    }
}
