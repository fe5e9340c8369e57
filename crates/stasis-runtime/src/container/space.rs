//! The host disk reserve: space on the data dir's filesystem that creates, pauses and
//! snapshots may not use, kept for what already runs. Sandbox disks are sparse (a 4 GiB
//! disk costs ~2 MiB until written), so the host's filesystem is overcommitted by design;
//! the reserve is the headroom running sandboxes grow into, and SQLite and the records
//! need to stay writable. An operation that would cut into it is refused before it
//! writes anything ([`RuntimeError::InsufficientStorage`], HTTP 507), and a refused pause
//! leaves its sandbox running.
//!
//! What each operation is expected to write: a create, its disk's metadata (ext4 on a
//! sparse image, a few MiB); a memory pause, the sandbox's memory in use (its images);
//! a snapshot, that plus a copy of its writable layer.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// What a create writes before the sandbox itself writes anything.
pub const CREATE_BYTES: u64 = 16 << 20;

/// Bytes available to unprivileged writers (`f_bavail`): the blocks only root may use
/// are the filesystem's own reserve, not ours to hand out.
fn available(dir: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Refuses `op` if writing `needed` bytes under `dir` would leave less than `reserve`.
pub fn check(dir: &Path, reserve: u64, op: &'static str, needed: u64) -> Result<()> {
    let free = available(dir).unwrap_or(u64::MAX);
    if free.saturating_sub(needed) < reserve {
        return Err(RuntimeError::InsufficientStorage { op, needed, free, reserve });
    }
    Ok(())
}

/// Parses a size: bytes, or a number with K, M, G, T (powers of 1024; `KiB`, `KB`, `k`
/// all mean the same).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 10GiB, 512M, 1073741824)"))?;
    let shift = match unit.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M, G, T)")),
    };
    Ok((n * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(parse_size("ten").is_err() && parse_size("5X").is_err());
    }

    #[test]
    fn the_reserve_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let free = available(d.path()).unwrap();
        check(d.path(), 0, "create", 1).unwrap();
        match check(d.path(), free, "pause", 1 << 20) {
            Err(RuntimeError::InsufficientStorage { op: "pause", needed, .. }) => assert_eq!(needed, 1 << 20),
            other => panic!("{other:?}"),
        }
        let e = check(d.path(), u64::MAX / 2, "snapshot", 0).unwrap_err().to_string();
        assert!(e.contains("disk reserve") && e.contains("snapshot"), "{e}");
    }
}
