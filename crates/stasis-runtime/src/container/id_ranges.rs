//! Handing out per-sandbox id ranges (`idmap.rs`): 65536 host ids each, at
//! `FIRST_RANGE + n * 65536`, none overlapping `/etc/subuid` or `/etc/subgid`, none in use
//! by a sandbox of any data dir on this host.
//!
//! The truth is in the records: a range is in use while a `record.json` (or a memory
//! snapshot's `snapshot.json`, whose copies restore into it) names it as its `idBase`. A
//! host-wide claims directory (`/run/stasis/id-ranges`, one file per range listing the
//! files that name it) lets daemons of different data dirs see each other's; it is
//! checked against those files at every allocation, so a claim whose owner is gone
//! (killed, its data dir removed, a crash) is free again, and rebuilt from the records
//! when a daemon starts (`/run` is empty after a reboot).
//!
//! Must not: decide which sandbox gets the legacy range (the callers do), or touch files.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::idmap::{FIRST_RANGE, ID_COUNT};
use crate::error::{IoContext, Result, RuntimeError};

/// Ranges above this are not handed out (ids up to 2^32 - 1, with room to spare).
const MAX_RANGES: u32 = 60_000;

#[derive(Debug, Clone)]
pub struct IdRanges {
    dir: PathBuf,
}

impl IdRanges {
    /// `$STASIS_ID_RANGES_DIR`, else /run/stasis/id-ranges.
    pub fn host() -> Self {
        let dir = std::env::var_os("STASIS_ID_RANGES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/stasis/id-ranges"));
        Self { dir }
    }

    #[cfg(test)]
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// A free range, claimed for `owner` (the `record.json` it will be written to, whose
    /// directory must exist already: a claim whose record is not written yet is kept
    /// while that directory exists).
    pub fn claim(&self, owner: &Path) -> Result<u32> {
        let reserved = subordinate_ranges();
        self.locked(|| {
            for n in 0..MAX_RANGES {
                let base = FIRST_RANGE + n * ID_COUNT;
                if reserved.iter().any(|(s, c)| *s < base + ID_COUNT && base < s.saturating_add(*c)) {
                    continue;
                }
                if self.live_owners(base).is_empty() {
                    self.write(base, &[owner.to_path_buf()])?;
                    return Ok(base);
                }
            }
            Err(RuntimeError::Boot("no free id range left for a new sandbox".into()))
        })
    }

    /// Adds `owner` to range `base`'s claim (a daemon starting, a snapshot's copy in its
    /// source's range).
    pub fn register(&self, base: u32, owner: &Path) -> Result<()> {
        self.locked(|| {
            let mut owners = self.live_owners(base);
            if !owners.iter().any(|o| o == owner) {
                owners.push(owner.to_path_buf());
            }
            self.write(base, &owners)
        })
    }

    /// Takes `owner` off range `base`'s claim (a kill): the range is free once no owner
    /// is left.
    pub fn release(&self, base: u32, owner: &Path) {
        let _ = self.locked(|| {
            let owners: Vec<PathBuf> = self.live_owners(base).into_iter().filter(|o| o != owner).collect();
            self.write(base, &owners)
        });
    }

    fn file(&self, base: u32) -> PathBuf {
        self.dir.join(base.to_string())
    }

    fn write(&self, base: u32, owners: &[PathBuf]) -> Result<()> {
        let f = self.file(base);
        if owners.is_empty() {
            let _ = std::fs::remove_file(&f);
            return Ok(());
        }
        let text: String = owners.iter().map(|o| format!("{}\n", o.display())).collect();
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &f)).ctx(|| format!("write {}", f.display()))
    }

    /// The owners listed for `base` that still name it.
    fn live_owners(&self, base: u32) -> Vec<PathBuf> {
        let Ok(text) = std::fs::read_to_string(self.file(base)) else { return vec![] };
        text.lines().map(PathBuf::from).filter(|o| names_range(o, base)).collect()
    }

    /// Runs `f` holding the claims directory's lock (every daemon on the host takes it).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        std::fs::create_dir_all(&self.dir).ctx(|| format!("create {}", self.dir.display()))?;
        let lock = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .ctx(|| format!("open {}", lock.display()))?;
        // SAFETY: flock on an fd we own; released when `file` closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| format!("lock {}", lock.display()));
        }
        let r = f();
        let _ = (&file).flush();
        r
    }
}

/// Whether `owner` (a `record.json` or `snapshot.json`) still holds range `base`: it names
/// it, or it is not written yet while its directory exists (a create under way). A file
/// that cannot be read is taken to hold it.
fn names_range(owner: &Path, base: u32) -> bool {
    match std::fs::read(owner) {
        Ok(data) => match serde_json::from_slice::<serde_json::Value>(&data) {
            Ok(v) => {
                v.get("idBase").and_then(|b| b.as_u64()) == Some(base as u64)
                    && !owner.with_file_name(super::snapshot::DELETED).exists()
            }
            Err(_) => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => owner.parent().is_some_and(|d| d.is_dir()),
        Err(_) => true,
    }
}

/// `(start, count)` of every range in `/etc/subuid` and `/etc/subgid`.
fn subordinate_ranges() -> Vec<(u32, u32)> {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().filter_map(parse_subid_line).collect::<Vec<_>>())
        .collect()
}

fn parse_subid_line(l: &str) -> Option<(u32, u32)> {
    let mut f = l.trim().split(':');
    let (_, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    Some((start, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, name: &str, base: Option<u32>) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("record.json");
        if let Some(b) = base {
            std::fs::write(&p, format!(r#"{{"id":"{name}","idBase":{b}}}"#)).unwrap();
        }
        p
    }

    #[test]
    fn ranges_are_distinct_until_their_owner_is_gone() {
        let claims = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let r = IdRanges::at(claims.path());
        let a = record(data.path(), "a", None);
        let ra = r.claim(&a).unwrap();
        // Not written yet, but its directory exists: still held.
        let b = record(data.path(), "b", None);
        let rb = r.claim(&b).unwrap();
        assert_ne!(ra, rb);
        assert!(ra >= FIRST_RANGE && rb >= FIRST_RANGE && (ra.max(rb) - ra.min(rb)).is_multiple_of(ID_COUNT));
        std::fs::write(&a, format!(r#"{{"idBase":{ra}}}"#)).unwrap();
        // A copy in a's range keeps it after a is gone.
        let c = record(data.path(), "c", Some(ra));
        r.register(ra, &c).unwrap();
        r.release(ra, &a);
        std::fs::remove_dir_all(a.parent().unwrap()).unwrap();
        let d = record(data.path(), "d", None);
        let rd = r.claim(&d).unwrap();
        assert!(rd != ra && rd != rb);
        // c killed without a release (a crash): its range is free again.
        std::fs::remove_dir_all(c.parent().unwrap()).unwrap();
        let e = record(data.path(), "e", None);
        assert_eq!(r.claim(&e).unwrap(), ra);
    }

    #[test]
    fn subordinate_id_lines_parse() {
        assert_eq!(parse_subid_line("alice:200000:65536"), Some((200_000, 65_536)));
        assert_eq!(parse_subid_line("# comment"), None);
    }
}
