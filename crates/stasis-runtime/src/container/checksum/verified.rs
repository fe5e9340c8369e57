//! Images verified once: a snapshot's images never change after it is sealed, and every
//! sandbox made from it (a template's warm snapshot serves every create of the template)
//! would hash them again; a checkpoint's images were hashed by the pause that sealed them,
//! and the resume would hash them again (issue 19: 0.13 s of a 256 MiB resume). A
//! directory whose files are exactly as they were when fully verified or sealed (same
//! names, sizes, inodes and change times, and a manifest that still carries a valid MAC)
//! is not hashed again by this process. A checkpoint's entry is used once (the resume
//! that follows its pause); a snapshot's is kept. At most [`CAPACITY`] directories are
//! remembered (a forgotten one is hashed in full: slower, never less safe), and nothing
//! survives a restart of the process.
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

/// The most directories remembered: a daemon that pauses sandboxes nobody resumes must
/// not grow without bound.
const CAPACITY: usize = 1024;

/// The files of a fingerprint but the manifest (which sealing writes).
fn without_manifest(f: &Fingerprint) -> Fingerprint {
    f.iter().filter(|(n, ..)| !n.starts_with(super::MANIFEST)).cloned().collect()
}

#[derive(Default)]
pub struct Verified(Mutex<HashMap<PathBuf, Fingerprint>>);

impl Verified {
    fn remember(&self, dir: &Path, f: Fingerprint) {
        let mut m = self.0.lock().unwrap();
        if m.len() >= CAPACITY && !m.contains_key(dir) {
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(dir.to_path_buf(), f);
    }

    /// [`super::verify`], skipped (but for the manifest's MAC and sizes) when `dir` was
    /// fully verified or sealed by this process and has not changed since. `keep`: the
    /// directory will be verified again (a snapshot); else it is forgotten now.
    pub fn verify(&self, dir: &Path, key: &Key, keep: bool) -> Result<()> {
        let before = fingerprint(dir).ok();
        let known = {
            let mut m = self.0.lock().unwrap();
            let hit = before.is_some() && m.get(dir) == before.as_ref();
            if !keep {
                m.remove(dir);
            }
            hit
        };
        if known {
            return super::verify_sizes(dir, key);
        }
        super::verify(dir, key)?;
        // Only what was seen before the hashing counts: a change during it is caught next time.
        if let (Some(b), Ok(after), true) = (before, fingerprint(dir), keep) {
            if b == after {
                self.remember(dir, b);
            }
        }
        Ok(())
    }

    /// [`super::write_with`], remembering `dir` as verified if no image changed while it
    /// was hashed: the manifest vouches for exactly the bytes this process read.
    pub fn seal(&self, dir: &Path, key: &Key, early: Option<&super::Early>) -> Result<()> {
        let before = fingerprint(dir).ok().map(|f| without_manifest(&f));
        super::write_with(dir, key, early)?;
        if let (Some(b), Ok(after)) = (before, fingerprint(dir)) {
            if without_manifest(&after) == b {
                self.remember(dir, after);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with one 1 MiB image.
    fn one_image() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("pages-1.img");
        std::fs::write(&img, vec![7u8; 1 << 20]).unwrap();
        (d, img)
    }

    /// One byte of `img` changed in place, same size (its ctime moves).
    fn change_in_place(img: &Path) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut bytes = std::fs::read(img).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(img, bytes).unwrap();
    }

    #[test]
    fn a_changed_image_is_hashed_again_and_refused() {
        let (d, img) = one_image();
        let key = Key::for_tests(3);
        super::super::write(d.path(), &key).unwrap();
        let v = Verified::default();
        v.verify(d.path(), &key, true).unwrap();
        v.verify(d.path(), &key, true).unwrap();
        // One byte changed in place, same size: the ctime moves, the cache does not hold.
        change_in_place(&img);
        let e = v.verify(d.path(), &key, true).unwrap_err();
        assert!(e.to_string().contains("corrupted or was changed"), "{e}");
    }

    /// Whether `v` would skip hashing `dir`.
    fn remembered(v: &Verified, dir: &Path) -> bool {
        fingerprint(dir).ok().as_ref() == v.0.lock().unwrap().get(dir)
    }

    #[test]
    fn a_sealed_checkpoint_is_not_hashed_again_unless_changed_and_only_once() {
        let (d, img) = one_image();
        let key = Key::for_tests(3);
        let v = Verified::default();
        v.seal(d.path(), &key, None).unwrap();
        assert!(remembered(&v, d.path()));
        v.verify(d.path(), &key, false).unwrap();
        assert!(!remembered(&v, d.path()), "a checkpoint's entry serves one resume");

        // Sealed, then changed in place: the fingerprint moves, the images are hashed.
        v.seal(d.path(), &key, None).unwrap();
        change_in_place(&img);
        assert!(!remembered(&v, d.path()));
        let e = v.verify(d.path(), &key, false).unwrap_err();
        assert!(e.to_string().contains("corrupted or was changed"), "{e}");

        // A manifest rewritten after the seal is caught by its MAC even when remembered.
        v.seal(d.path(), &key, None).unwrap();
        let text = std::fs::read_to_string(d.path().join(super::super::MANIFEST)).unwrap();
        std::fs::write(d.path().join(super::super::MANIFEST), text.replace("\"size\":1048576", "\"size\":1048577"))
            .unwrap();
        assert!(v.verify(d.path(), &key, false).is_err());
    }

    #[test]
    fn remembers_a_bounded_number_of_directories() {
        let v = Verified::default();
        for i in 0..CAPACITY + 10 {
            v.remember(Path::new(&format!("/nowhere/{i}")), vec![]);
        }
        assert_eq!(v.0.lock().unwrap().len(), CAPACITY);
    }
}
