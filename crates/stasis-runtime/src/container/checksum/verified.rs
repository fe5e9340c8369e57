//! Images verified once: a snapshot's images never change after it is sealed, and every
//! sandbox made from it (a template's warm snapshot serves every create of the template)
//! would hash them again. A directory whose files are exactly as they were when fully
//! verified (same names, sizes, inodes and change times, and a manifest that still
//! carries a valid MAC) is not hashed again by this process.
//!
//! What this trusts: that nothing rewrites a file in place while keeping its inode and
//! forging its ctime, which takes host root (already a residual risk: docs/security.md).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Key;
use crate::error::Result;

/// (name, size, inode, ctime ns) of every file of a directory, sorted.
type Fingerprint = Vec<(String, u64, u64, i128)>;

fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        let ctime = i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
        v.push((e.file_name().to_string_lossy().into_owned(), m.len(), m.ino(), ctime));
    }
    v.sort();
    Ok(v)
}

#[derive(Default)]
pub struct Verified(Mutex<HashMap<PathBuf, Fingerprint>>);

impl Verified {
    /// [`super::verify`], skipped (but for the manifest's MAC and sizes) when `dir` was
    /// fully verified before and has not changed since.
    pub fn verify(&self, dir: &Path, key: &Key) -> Result<()> {
        let before = fingerprint(dir).ok();
        if before.is_some() && self.0.lock().unwrap().get(dir) == before.as_ref() {
            return super::verify_sizes(dir, key);
        }
        super::verify(dir, key)?;
        // Only what was seen before the hashing counts: a change during it is caught next time.
        if let (Some(b), Ok(after)) = (before, fingerprint(dir)) {
            if b == after {
                self.0.lock().unwrap().insert(dir.to_path_buf(), b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_image_is_hashed_again_and_refused() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("pages-1.img");
        std::fs::write(&img, vec![7u8; 1 << 20]).unwrap();
        let key = Key::for_tests(3);
        super::super::write(d.path(), &key).unwrap();
        let v = Verified::default();
        v.verify(d.path(), &key).unwrap();
        v.verify(d.path(), &key).unwrap();
        // One byte changed in place, same size: the ctime moves, the cache does not hold.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(&img, bytes).unwrap();
        let e = v.verify(d.path(), &key).unwrap_err();
        assert!(e.to_string().contains("corrupted or was changed"), "{e}");
    }
}
