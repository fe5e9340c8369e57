//! What the daemon holds at one instant, counted from the sandbox rows: the gauges of a
//! scrape. Taken by the lifecycle (the only reader of rows), turned into gauges here.

use std::collections::BTreeMap;

use stasis_store::{SandboxRow, SandboxState};

use super::HostCapacity;

/// Resources promised to sandboxes: the limits they were created with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Memory limits of the sandboxes that run (a paused one holds no memory).
    pub memory_bytes: u64,
    /// Disk sizes of every sandbox that has a disk (running or paused).
    pub disk_bytes: u64,
    /// CPUs of the sandboxes that run.
    pub cpus: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Sandboxes per (state, template).
    pub sandboxes: BTreeMap<(String, String), u64>,
    pub committed: Committed,
    pub open_connections: u64,
    /// `None` when the host could not be read (the committed figures still show).
    pub host: Option<HostCapacity>,
}

fn holds_memory(s: SandboxState) -> bool {
    matches!(s, SandboxState::Creating | SandboxState::Running | SandboxState::Pausing | SandboxState::Resuming)
}

impl Census {
    /// Counts `rows` (every sandbox not yet killed).
    pub fn from_rows(rows: &[SandboxRow]) -> Census {
        let mut c = Census::default();
        for r in rows.iter().filter(|r| r.state != SandboxState::Killed) {
            *c.sandboxes.entry((r.state.as_str().to_string(), r.template_id.clone())).or_default() += 1;
            c.committed.disk_bytes += r.disk_size_mb << 20;
            if holds_memory(r.state) {
                c.committed.memory_bytes += r.memory_mb << 20;
                c.committed.cpus += u64::from(r.cpu_count);
            }
        }
        c
    }
}
