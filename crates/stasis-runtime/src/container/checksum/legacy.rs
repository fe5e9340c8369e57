//! Checksums of the first format (version 1): CRC-32 per 64 MiB chunk, unkeyed. They
//! caught disk and copy damage, but anyone able to rewrite an image could rewrite its
//! CRC too, so they are no longer trusted for a restore.
//!
//! Kept for one thing: when a data dir gets its key (the first start of a Stasis that
//! keys checksums), its existing checkpoints and snapshots are *adopted*: each whose
//! images still match their CRC-32s is re-sealed with the key. Trust on first use: after
//! that moment an unkeyed manifest is refused, so writing one cannot downgrade a
//! checkpoint past the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Key, MANIFEST};
use crate::container::format;
use crate::error::{Result, RuntimeError};

pub const VERSION: u32 = 1;
const CHUNK: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    size: u64,
    crc32: Vec<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    chunk: usize,
    files: BTreeMap<String, FileSum>,
}

fn crc_file(path: &Path) -> std::io::Result<FileSum> {
    let data = std::fs::read(path)?;
    Ok(FileSum { size: data.len() as u64, crc32: data.chunks(CHUNK).map(crc32fast::hash).collect() })
}

/// Whether the images of `dir` match its version 1 manifest.
pub fn verify(dir: &Path) -> Result<()> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(|e| bad(format!("no checksum manifest ({e})")))?;
    if format::check(&path, &data, VERSION)? != VERSION {
        return Err(bad("not a version 1 manifest".into()));
    }
    let m: Manifest = serde_json::from_slice(&data).map_err(|e| bad(format!("unreadable checksum manifest ({e})")))?;
    if m.chunk != CHUNK {
        return Err(bad(format!("manifest chunk size {} is not {CHUNK}", m.chunk)));
    }
    for (name, want) in &m.files {
        let got = crc_file(&dir.join(name)).map_err(|e| bad(format!("cannot read {name}: {e}")))?;
        if &got != want {
            return Err(bad(format!("{name} does not match its CRC-32 checksums")));
        }
    }
    Ok(())
}

/// Every checkpoint and memory snapshot under `data_dir`.
fn checkpoint_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let children = |p: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(p).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    let mut dirs: Vec<PathBuf> =
        children(data_dir.join("sandboxes")).into_iter().flat_map(|s| children(s.join("checkpoints"))).collect();
    dirs.extend(children(data_dir.join("snapshots")).into_iter().map(|s| s.join("images")));
    dirs.retain(|d| d.join(MANIFEST).is_file());
    dirs
}

/// Re-seals with `key` every version 1 checkpoint of `data_dir` whose images are intact;
/// called once, when the key is made. Returns (adopted, refused).
pub fn adopt_all(data_dir: &Path, key: &Key) -> (usize, usize) {
    let (mut adopted, mut refused) = (0, 0);
    for dir in checkpoint_dirs(data_dir) {
        let Ok(data) = std::fs::read(dir.join(MANIFEST)) else { continue };
        if !matches!(format::check(&dir.join(MANIFEST), &data, u32::MAX), Ok(VERSION)) {
            continue;
        }
        match verify(&dir).and_then(|()| super::write(&dir, key)) {
            Ok(()) => adopted += 1,
            Err(e) => {
                tracing::warn!(
                    "checkpoint {} not adopted (it stays unkeyed and cannot be restored): {e}",
                    dir.display()
                );
                refused += 1;
            }
        }
    }
    (adopted, refused)
}

#[cfg(test)]
pub(super) fn write_v1(dir: &Path) {
    let mut m = Manifest { chunk: CHUNK, ..Default::default() };
    for name in super::image_files(dir).unwrap() {
        m.files.insert(name.clone(), crc_file(&dir.join(&name)).unwrap());
    }
    std::fs::write(dir.join(MANIFEST), format::to_json(VERSION, &m, false)).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `checksums.json` of a checkpoint as written by the release before formats had
    /// versions (`stasis runtime pause`, commit fa51dcf).
    const UNVERSIONED: &str = include_str!("../../../tests/fixtures/unversioned/checksums.json");

    #[test]
    fn reads_a_manifest_from_before_versions() {
        assert!(!UNVERSIONED.contains("formatVersion"));
        let d = tempfile::tempdir().unwrap();
        let old: Manifest = serde_json::from_str(UNVERSIONED).unwrap();
        assert!(old.files.contains_key("pages-1.img") && old.files.contains_key("inventory.img"));
        for (name, sum) in &old.files {
            std::fs::File::create(d.path().join(name)).unwrap().set_len(sum.size).unwrap();
        }
        std::fs::write(d.path().join(MANIFEST), UNVERSIONED).unwrap();
        // Read as version 1; the contents are not the fixture's: the sums say so.
        assert!(verify(d.path()).unwrap_err().to_string().contains("CRC-32"));
    }

    #[test]
    fn intact_old_checkpoints_are_adopted_damaged_ones_not() {
        let data = tempfile::tempdir().unwrap();
        let good = data.path().join("sandboxes/a/checkpoints/1");
        let bad = data.path().join("snapshots/s/images");
        for d in [&good, &bad] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("core-1.img"), b"core").unwrap();
            write_v1(d);
        }
        std::fs::write(bad.join("core-1.img"), b"corf").unwrap();
        let key = Key::for_tests(1);
        assert!(
            matches!(super::super::verify(&good, &key), Err(RuntimeError::CorruptCheckpoint(e)) if e.contains("not keyed"))
        );
        assert_eq!(adopt_all(data.path(), &key), (1, 1));
        super::super::verify(&good, &key).unwrap();
        assert!(super::super::verify(&bad, &key).is_err());
        // Adoption is once: a second pass finds nothing left to adopt.
        assert_eq!(adopt_all(data.path(), &key), (0, 1));
    }
}
