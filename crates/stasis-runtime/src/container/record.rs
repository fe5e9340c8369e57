//! A sandbox's persisted record: the runtime's source of truth, replaced atomically so a
//! crash leaves either the old or the new record, never a torn one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).ctx(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&data)
            .map_err(std::io::Error::from)
            .ctx(|| format!("parse {}", path.display()))
    }

    /// Writes `path.tmp`, fsyncs it, renames it over `path`, fsyncs the directory.
    pub fn store(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(self).expect("record serialises");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(path.parent().unwrap())?.sync_all()
        };
        write().ctx(|| format!("write {}", path.display()))
    }
}
