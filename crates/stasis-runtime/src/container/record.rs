//! A sandbox's persisted record: the runtime's source of truth, replaced atomically so a
//! crash leaves either the old or the new record, never a torn one. Versioned
//! (`format.rs`): a record from a newer Stasis is refused, one from an older one read.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stasis_proto::agent::StartCommand;

use super::format::{self, RECORD_VERSION};
use crate::error::{IoContext, Result};
use crate::{SandboxSpec, SandboxState};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub spec: SandboxSpec,
    pub state: SandboxState,
    /// Host pid of the sandbox's init while it runs.
    pub init_pid: Option<u32>,
    /// Overlay lower layers, top first; fixed at create so a restore sees the same files.
    pub lower_dirs: Vec<String>,
    /// Path of the agent inside the sandbox.
    pub agent_path: String,
    /// Checkpoint generation holding the memory images while paused.
    pub checkpoint: Option<u64>,
    pub boot_id: String,
    /// Start time (clock ticks since host boot) of `init_pid`: tells a live init from a
    /// reused pid after a crash or a host reboot.
    #[serde(default)]
    pub init_start: Option<u64>,
    /// Index of its transit subnet and device names while it has a network.
    #[serde(default)]
    pub net_index: Option<u32>,
    /// The template's start command, launched again by a boot (not by a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartCommand>,
    /// First host id of its id range (`id_ranges.rs`); `None`: a record from before
    /// per-sandbox ranges, whose sandbox runs in the legacy range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_base: Option<u32>,
}

/// Start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    // Fields after the command: state is field 3, start time field 22.
    let f: Vec<&str> = after.split_whitespace().collect();
    if f.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return None;
    }
    f.get(19)?.parse().ok()
}

impl Record {
    /// First host id of the sandbox's range.
    pub fn ids(&self) -> u32 {
        self.id_base.unwrap_or(super::idmap::LAYER_BASE)
    }

    pub fn load(path: &Path) -> Result<Self> {
        format::load(path, RECORD_VERSION)
    }

    /// Writes `path.tmp`, fsyncs it, renames it over `path`, fsyncs the directory.
    pub fn store(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let data = format::to_json(RECORD_VERSION, self, true);
        let write = || -> std::io::Result<()> {
            // Root only, whatever the umask: it holds the access token and the env vars.
            super::perms::write_private(&tmp, &data)?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(path.parent().unwrap())?.sync_all()
        };
        write().ctx(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RuntimeError;

    /// `record.json` of a paused sandbox as written by the release before formats had
    /// versions (`stasis runtime create` + `pause`, commit fa51dcf).
    const UNVERSIONED: &str = include_str!("../../tests/fixtures/unversioned/record.json");

    #[test]
    fn reads_a_record_from_before_versions() {
        assert!(!UNVERSIONED.contains("formatVersion"));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("record.json");
        std::fs::write(&p, UNVERSIONED).unwrap();
        let rec = Record::load(&p).unwrap();
        assert_eq!(
            (rec.id.as_str(), rec.state, rec.checkpoint, rec.init_pid),
            ("fx1", SandboxState::Paused, Some(1), None)
        );
        assert_eq!(rec.spec.env.get("FIXTURE").map(String::as_str), Some("1"));
        assert_eq!(rec.lower_dirs.len(), 2);
        assert_eq!(rec.net_index, Some(1));
        // Written back, it gains the current version and nothing else changes.
        rec.store(&p).unwrap();
        let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(again["formatVersion"], RECORD_VERSION);
        let mut old: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        old["formatVersion"] = RECORD_VERSION.into();
        assert_eq!(again, old);
    }

    #[test]
    fn refuses_a_record_from_a_newer_stasis() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("record.json");
        let mut newer: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        newer["formatVersion"] = (RECORD_VERSION + 1).into();
        newer["state"] = serde_json::json!({"paused": {"how": "differently"}});
        std::fs::write(&p, serde_json::to_vec(&newer).unwrap()).unwrap();
        match Record::load(&p) {
            Err(RuntimeError::UnsupportedFormat { version, supported, .. }) => {
                assert_eq!((version, supported), (RECORD_VERSION + 1, RECORD_VERSION))
            }
            other => panic!("{other:?}"),
        }
        // Untouched, for the newer binary.
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap()).unwrap(), newer);
    }
}
