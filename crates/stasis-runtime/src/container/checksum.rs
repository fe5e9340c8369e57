//! Checksums of checkpoint images: written when a checkpoint is made, verified before it
//! is restored, so a corrupted or truncated checkpoint fails its resume with a clear error
//! (and stays paused, untouched) instead of restoring damaged memory.
//!
//! CRC-32 (hardware accelerated: ~0.1 s per GiB per core) over 64 MiB chunks, computed on
//! both cores; files are mapped, not copied. A checksum, not a signature: it catches disk
//! and copy damage; the data dir itself is trusted (root only).
//!
//! The manifest is versioned (`format.rs`): one from a newer Stasis is refused as such
//! ([`RuntimeError::UnsupportedFormat`]), not reported as damage.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::format::{self, CHECKSUMS_VERSION};
use crate::error::{Result, RuntimeError};

pub const MANIFEST: &str = "checksums.json";
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

fn image_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        // Logs and the manifest itself are not images.
        .filter(|n| n.ends_with(".img") || n.ends_with(".tar.gz.img") || n == "stats-dump")
        .collect();
    v.sort();
    Ok(v)
}

fn sum_file(path: &Path) -> std::io::Result<FileSum> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    if size == 0 {
        return Ok(FileSum { size, crc32: vec![] });
    }
    // SAFETY: the images are not modified while they are summed (checkpoints are
    // immutable once written); a concurrent truncation would at worst fault the read.
    let map = unsafe { memmap2::Mmap::map(&f)? };
    let chunks: Vec<&[u8]> = map.chunks(CHUNK).collect();
    let mut crc = vec![0u32; chunks.len()];
    // Two halves on two threads: the machines this runs on have at least two cores.
    let mid = chunks.len().div_ceil(2);
    let (a, b) = crc.split_at_mut(mid);
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, c) in chunks[mid..].iter().enumerate() {
                b[i] = crc32fast::hash(c);
            }
        });
        for (i, c) in chunks[..mid].iter().enumerate() {
            a[i] = crc32fast::hash(c);
        }
    });
    Ok(FileSum { size, crc32: crc })
}

/// Writes the manifest of every image in `dir` (fsynced).
pub fn write(dir: &Path) -> Result<()> {
    let mut m = Manifest { chunk: CHUNK, ..Default::default() };
    let mut run = || -> std::io::Result<()> {
        for name in image_files(dir)? {
            m.files.insert(name.clone(), sum_file(&dir.join(&name))?);
        }
        let path = dir.join(MANIFEST);
        std::fs::write(&path, format::to_json(CHECKSUMS_VERSION, &m, false))?;
        std::fs::File::open(&path)?.sync_all()
    };
    run().map_err(|e| RuntimeError::Checkpoint {
        op: "checksum",
        message: format!("cannot checksum {}: {e}", dir.display()),
    })
}

fn manifest(dir: &Path) -> Result<Manifest> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(|e| bad(format!("no checksum manifest ({e})")))?;
    format::check(&path, &data, CHECKSUMS_VERSION)?;
    let m: Manifest = serde_json::from_slice(&data).map_err(|e| bad(format!("unreadable checksum manifest ({e})")))?;
    if m.chunk != CHUNK {
        return Err(bad(format!("manifest chunk size {} is not {CHUNK}", m.chunk)));
    }
    for (name, want) in &m.files {
        let size = std::fs::metadata(dir.join(name)).map_err(|e| bad(format!("{name} is missing ({e})")))?.len();
        if size != want.size {
            return Err(bad(format!(
                "{name} is {size} bytes, the checkpoint wrote {} (truncated or overwritten)",
                want.size
            )));
        }
    }
    Ok(m)
}

/// The quick half of verification: the manifest exists and every image has its size
/// (catches truncation and missing files in microseconds).
pub fn verify_sizes(dir: &Path) -> Result<()> {
    manifest(dir).map(|_| ())
}

/// Verifies every image against the manifest; a missing manifest is an error too (a
/// checkpoint without one was cut short).
pub fn verify(dir: &Path) -> Result<()> {
    verify_where(dir, |_| true)
}

/// Raw memory: copied into the restored processes, never parsed by CRIU.
fn is_pages(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

/// Verifies the images CRIU parses (all but the memory pages): CRIU runs as host root,
/// so what it parses is checked before it reads a byte of it.
pub fn verify_parsed(dir: &Path) -> Result<()> {
    verify_where(dir, |n| !is_pages(n))
}

/// Verifies the memory pages (long for a big sandbox: done while CRIU restores).
pub fn verify_pages(dir: &Path) -> Result<()> {
    verify_where(dir, is_pages)
}

fn verify_where(dir: &Path, which: impl Fn(&str) -> bool) -> Result<()> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let m = manifest(dir)?;
    for (name, want) in m.files.iter().filter(|(n, _)| which(n)) {
        let path = dir.join(name);
        let got = sum_file(&path).map_err(|e| bad(format!("cannot read {name}: {e}")))?;
        if let Some(i) = got.crc32.iter().zip(&want.crc32).position(|(a, b)| a != b) {
            return Err(bad(format!(
                "{name} is corrupted (checksum mismatch in the 64 MiB chunk at byte {})",
                i * CHUNK
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_truncation_and_flipped_bytes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pages-1.img"), vec![7u8; 3 * 1024 * 1024]).unwrap();
        std::fs::write(d.path().join("core-1.img"), b"core").unwrap();
        std::fs::write(d.path().join("dump.log"), b"not an image").unwrap();
        write(d.path()).unwrap();
        verify(d.path()).unwrap();
        // A log may change; images may not.
        std::fs::write(d.path().join("dump.log"), b"changed").unwrap();
        verify(d.path()).unwrap();

        let mut pages = std::fs::read(d.path().join("pages-1.img")).unwrap();
        pages[1_000_000] ^= 1;
        std::fs::write(d.path().join("pages-1.img"), &pages).unwrap();
        let e = verify(d.path()).unwrap_err().to_string();
        assert!(e.contains("corrupted") && e.contains("pages-1.img"), "{e}");

        pages.truncate(10);
        std::fs::write(d.path().join("pages-1.img"), &pages).unwrap();
        assert!(verify(d.path()).unwrap_err().to_string().contains("truncated"));

        std::fs::remove_file(d.path().join(MANIFEST)).unwrap();
        assert!(verify(d.path()).unwrap_err().to_string().contains("no checksum manifest"));
    }

    /// `checksums.json` of a checkpoint as written by the release before formats had
    /// versions (`stasis runtime pause`, commit fa51dcf).
    const UNVERSIONED: &str = include_str!("../../tests/fixtures/unversioned/checksums.json");

    #[test]
    fn reads_a_manifest_from_before_versions() {
        assert!(!UNVERSIONED.contains("formatVersion"));
        let d = tempfile::tempdir().unwrap();
        let old: Manifest = serde_json::from_str(UNVERSIONED).unwrap();
        assert!(old.files.contains_key("pages-1.img") && old.files.contains_key("inventory.img"));
        // Images of the recorded sizes: the manifest is read and the sizes checked.
        for (name, sum) in &old.files {
            std::fs::File::create(d.path().join(name)).unwrap().set_len(sum.size).unwrap();
        }
        std::fs::write(d.path().join(MANIFEST), UNVERSIONED).unwrap();
        verify_sizes(d.path()).unwrap();
        let m = manifest(d.path()).unwrap();
        assert_eq!((m.chunk, m.files), (CHUNK, old.files));
        // Their contents are not the fixture's: the sums say so.
        assert!(matches!(verify(d.path()), Err(RuntimeError::CorruptCheckpoint(_))));
    }

    #[test]
    fn manifests_are_versioned_and_newer_ones_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("core-1.img"), b"core").unwrap();
        write(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        assert!(text.starts_with(&format!("{{\"formatVersion\":{CHECKSUMS_VERSION},")), "{text}");
        verify(d.path()).unwrap();

        let newer = format!(r#"{{"formatVersion":{},"algorithm":"xxh3","files":[]}}"#, CHECKSUMS_VERSION + 1);
        std::fs::write(d.path().join(MANIFEST), newer).unwrap();
        match verify(d.path()) {
            Err(RuntimeError::UnsupportedFormat { version, .. }) => assert_eq!(version, CHECKSUMS_VERSION + 1),
            other => panic!("a newer manifest is not damage: {other:?}"),
        }
    }
}
