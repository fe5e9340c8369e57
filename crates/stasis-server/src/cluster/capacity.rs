//! What this node reports at each heartbeat: its capacity (the host's memory and CPUs,
//! or what `--node-memory` / `--node-cpus` offer) and what is free of it. Free memory and
//! CPUs are the capacity minus what this node's sandboxes were given (their limits, not
//! their use: a sandbox may grow to its limit, so placement counts it whole); free disk
//! is the data dir's filesystem's available space minus the reserve.

use std::path::Path;

use stasis_store::Resources;

use crate::metrics::HostCapacity;

/// What the operator offers of the host; `None`: all of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered {
    pub memory_mb: Option<u64>,
    pub cpu_count: Option<u32>,
}

const MB: u64 = 1024 * 1024;

/// Capacity and free figures from the host's, the offer and what is committed.
pub fn figures(
    host: &HostCapacity,
    offered: Offered,
    committed: Resources,
    disk_reserve: u64,
) -> (Resources, Resources) {
    let capacity = Resources {
        memory_mb: offered.memory_mb.unwrap_or(host.memory_total / MB),
        cpu_count: offered.cpu_count.unwrap_or(host.cpus.min(u64::from(u32::MAX)) as u32),
        disk_mb: host.disk_total / MB,
    };
    let free = Resources {
        memory_mb: capacity.memory_mb.saturating_sub(committed.memory_mb),
        cpu_count: capacity.cpu_count.saturating_sub(committed.cpu_count),
        disk_mb: host.disk_available.saturating_sub(disk_reserve) / MB,
    };
    (capacity, free)
}

/// Reads the host (blocking: a statvfs and /proc/meminfo).
pub fn read_host(data_dir: &Path) -> std::io::Result<HostCapacity> {
    HostCapacity::read(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_is_capacity_minus_committed_and_disk_minus_reserve() {
        let host = HostCapacity {
            memory_total: 8192 * MB,
            memory_available: 1,
            disk_total: 1000 * MB,
            disk_available: 600 * MB,
            cpus: 4,
        };
        let committed = Resources { memory_mb: 1024, cpu_count: 6, disk_mb: 0 };
        let (cap, free) = figures(&host, Offered::default(), committed, 100 * MB);
        assert_eq!(cap, Resources { memory_mb: 8192, cpu_count: 4, disk_mb: 1000 });
        assert_eq!(free, Resources { memory_mb: 7168, cpu_count: 0, disk_mb: 500 }, "CPUs overcommitted: none free");
        let (cap, free) = figures(&host, Offered { memory_mb: Some(2048), cpu_count: Some(16) }, committed, 0);
        assert_eq!((cap.memory_mb, cap.cpu_count), (2048, 16));
        assert_eq!((free.memory_mb, free.cpu_count), (1024, 10));
    }
}
