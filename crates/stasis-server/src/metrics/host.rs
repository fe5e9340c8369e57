//! The host's capacity: memory (`/proc/meminfo`), the data dir's filesystem (`statvfs`),
//! CPUs. Read at each scrape; what is committed to sandboxes is the census's.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCapacity {
    pub memory_total: u64,
    pub memory_available: u64,
    pub disk_total: u64,
    pub disk_available: u64,
    pub cpus: u64,
}

impl HostCapacity {
    /// Reads the host, with the filesystem that holds `data_dir`.
    pub fn read(data_dir: &Path) -> std::io::Result<HostCapacity> {
        let (memory_total, memory_available) = parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?)
            .ok_or_else(|| std::io::Error::other("no MemTotal/MemAvailable in /proc/meminfo"))?;
        let fs = nix::sys::statvfs::statvfs(data_dir).map_err(std::io::Error::from)?;
        let frag = fs.fragment_size() as u64;
        Ok(HostCapacity {
            memory_total,
            memory_available,
            disk_total: fs.blocks() as u64 * frag,
            disk_available: fs.blocks_available() as u64 * frag,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        })
    }
}

/// `MemTotal` and `MemAvailable` in bytes.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:        8039424 kB\nMemFree:  100 kB\nMemAvailable:    4019712 kB\n";
        assert_eq!(parse_meminfo(text), Some((8039424 * 1024, 4019712 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_host() {
        let h = HostCapacity::read(Path::new("/")).unwrap();
        assert!(h.memory_total >= h.memory_available && h.memory_total > 0);
        assert!(h.disk_total >= h.disk_available && h.disk_total > 0);
        assert!(h.cpus >= 1);
    }
}
