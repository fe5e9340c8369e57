//! Keyed checksums of checkpoint images: written when a checkpoint is sealed, verified
//! in full before CRIU (which runs as host root and parses them) reads a byte of them.
//! A checkpoint whose images or manifest were changed by anyone without the data dir's
//! key (`key.rs`) is refused, and its sandbox stays paused with its data.
//!
//! Each image is hashed with SHA-256 in 64 MiB chunks (SHA-NI: ~1.5 GiB/s per core, the
//! chunks of all images shared by two threads, files mapped, not copied), and the
//! manifest (names, sizes, chunk hashes) carries an HMAC-SHA256 under the key. Every
//! `*.img` in the directory must be listed: an image added beside the others is refused
//! too. What this does not stop: a valid checkpoint replaced by another valid one of the
//! same data dir (an older generation, another sandbox's), which needs root on the host.
//!
//! Format version 2 (`format.rs`); version 1 manifests (unkeyed CRC-32) are refused for
//! a restore, after being adopted once when the key is made (`legacy.rs`). One from a
//! newer Stasis is refused as such ([`RuntimeError::UnsupportedFormat`]).

mod key;
pub mod legacy;
mod verified;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use key::Key;
pub use verified::Verified;

use super::format::{self, CHECKSUMS_VERSION};
use crate::error::{Result, RuntimeError};

pub const MANIFEST: &str = "checksums.json";
const CHUNK: usize = 64 << 20;
const ALGORITHM: &str = "sha256-chunks+hmac-sha256";
/// Domain separation: the key signs nothing else, but a manifest MAC must never be
/// mistaken for one over other data.
const CONTEXT: &[u8] = b"stasis checkpoint manifest v2\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    size: u64,
    sha256: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Body {
    algorithm: String,
    chunk: usize,
    files: BTreeMap<String, FileSum>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    body: Body,
    mac: String,
}

fn signed(body: &Body) -> Vec<u8> {
    let mut v = CONTEXT.to_vec();
    v.extend(serde_json::to_vec(body).expect("a manifest always serialises"));
    v
}

/// The images of a checkpoint directory (logs and the manifest are not).
fn image_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".img") || n == "stats-dump")
        .collect();
    v.sort();
    Ok(v)
}

/// SHA-256 of every 64 MiB chunk of every file, on two threads.
fn hash_files(dir: &Path, names: &[String]) -> std::io::Result<BTreeMap<String, FileSum>> {
    let mut maps = Vec::new();
    for name in names {
        let f = std::fs::File::open(dir.join(name))?;
        let size = f.metadata()?.len();
        // SAFETY: checkpoints are immutable once written; a concurrent truncation would
        // at worst fault the read (the data dir is root-only).
        let map = if size == 0 { None } else { Some(unsafe { memmap2::Mmap::map(&f)? }) };
        maps.push((name, size, map));
    }
    let jobs: Vec<(usize, &[u8])> = maps
        .iter()
        .enumerate()
        .flat_map(|(i, (_, _, m))| m.iter().flat_map(|m| m.chunks(CHUNK)).map(move |c| (i, c)))
        .collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, chunk)) = jobs.get(j) else { return done };
            done.push((j, hex::encode(Sha256::digest(chunk))));
        }
    };
    let mut hashes = std::thread::scope(|s| {
        let other = s.spawn(work);
        let mut mine = work();
        mine.extend(other.join().expect("hash thread panicked"));
        mine
    });
    hashes.sort();
    let mut out: BTreeMap<String, FileSum> =
        maps.iter().map(|(n, size, _)| ((*n).clone(), FileSum { size: *size, sha256: vec![] })).collect();
    for (j, h) in hashes {
        out.get_mut(maps[jobs[j].0].0).expect("every job's file is listed").sha256.push(h);
    }
    Ok(out)
}

/// Writes the keyed manifest of every image in `dir` (fsynced).
pub fn write(dir: &Path, key: &Key) -> Result<()> {
    let run = || -> std::io::Result<()> {
        let files = hash_files(dir, &image_files(dir)?)?;
        let body = Body { algorithm: ALGORITHM.into(), chunk: CHUNK, files };
        let m = Manifest { mac: hex::encode(key.mac(&signed(&body))), body };
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, format::to_json(CHECKSUMS_VERSION, &m, false))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    run().map_err(|e| RuntimeError::Checkpoint {
        op: "checksum",
        message: format!("cannot checksum {}: {e}", dir.display()),
    })
}

/// The manifest, its MAC checked, and every image of `dir` listed in it at its size.
fn manifest(dir: &Path, key: &Key) -> Result<Body> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let body = signed_manifest(dir, key)?;
    let present = image_files(dir).map_err(|e| bad(format!("cannot list images ({e})")))?;
    if let Some(extra) = present.iter().find(|n| !body.files.contains_key(*n)) {
        return Err(bad(format!("{extra} is not part of the checkpoint (added after it was sealed)")));
    }
    for (name, want) in &body.files {
        let size = std::fs::metadata(dir.join(name)).map_err(|e| bad(format!("{name} is missing ({e})")))?.len();
        if size != want.size {
            return Err(bad(format!(
                "{name} is {size} bytes, the checkpoint wrote {} (truncated or overwritten)",
                want.size
            )));
        }
    }
    Ok(body)
}

/// The images (name, size) the signed manifest in `dir` lists, its MAC checked; the
/// images themselves need not be there (an upload reads what to send, a fetch what to
/// get, from it).
pub fn listed(dir: &Path, key: &Key) -> Result<Vec<(String, u64)>> {
    Ok(signed_manifest(dir, key)?.files.into_iter().map(|(n, f)| (n, f.size)).collect())
}

/// The manifest of `dir`, its version and MAC checked.
fn signed_manifest(dir: &Path, key: &Key) -> Result<Body> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(|e| bad(format!("no checksum manifest ({e})")))?;
    if format::check(&path, &data, CHECKSUMS_VERSION)? == legacy::VERSION {
        return Err(bad("its checksums are not keyed (version 1, written by a Stasis that did not key them, after this data dir got its key): it cannot be trusted; resume it without memory (`--no-memory`) to keep its files".into()));
    }
    let m: Manifest = serde_json::from_slice(&data).map_err(|e| bad(format!("unreadable checksum manifest ({e})")))?;
    let tag = hex::decode(&m.mac).map_err(|_| bad("manifest MAC is not hex".into()))?;
    if !key.check(&signed(&m.body), &tag) {
        return Err(bad(
            "checksum manifest is not signed with this data dir's key (rewritten, or from elsewhere)".into()
        ));
    }
    if m.body.algorithm != ALGORITHM || m.body.chunk != CHUNK {
        return Err(bad(format!("manifest uses {} in {} byte chunks", m.body.algorithm, m.body.chunk)));
    }
    // Names become paths: only plain file names, as a dump writes them.
    if let Some(n) = m.body.files.keys().find(|n| n.is_empty() || n.contains('/') || n.starts_with('.')) {
        return Err(bad(format!("manifest lists {n:?}, not an image file name")));
    }
    Ok(m.body)
}

/// The quick half of verification: a manifest signed with the key, every image at its
/// size (microseconds: for recovery's "was this dump sealed").
pub fn verify_sizes(dir: &Path, key: &Key) -> Result<()> {
    manifest(dir, key).map(|_| ())
}

/// Verifies every image against the signed manifest; a missing manifest is an error too
/// (a checkpoint without one was cut short).
pub fn verify(dir: &Path, key: &Key) -> Result<()> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let want = manifest(dir, key)?;
    let names: Vec<String> = want.files.keys().cloned().collect();
    let got = hash_files(dir, &names).map_err(|e| bad(format!("cannot read the images ({e})")))?;
    for (name, w) in &want.files {
        let g = &got[name];
        if let Some(i) = g.sha256.iter().zip(&w.sha256).position(|(a, b)| a != b).or((g != w).then_some(0)) {
            return Err(bad(format!(
                "{name} is corrupted or was changed (hash mismatch in the 64 MiB chunk at byte {})",
                i * CHUNK
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> (tempfile::TempDir, Key) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pages-1.img"), vec![7u8; 3 * 1024 * 1024]).unwrap();
        std::fs::write(d.path().join("core-1.img"), b"core").unwrap();
        std::fs::write(d.path().join("empty.img"), b"").unwrap();
        std::fs::write(d.path().join("dump.log"), b"not an image").unwrap();
        let key = Key::for_tests(9);
        write(d.path(), &key).unwrap();
        verify(d.path(), &key).unwrap();
        (d, key)
    }

    #[test]
    fn listed_reads_the_signed_manifest_without_the_images() {
        let (d, key) = sealed();
        let fetched = tempfile::tempdir().unwrap();
        std::fs::copy(d.path().join(MANIFEST), fetched.path().join(MANIFEST)).unwrap();
        let names: Vec<String> = listed(fetched.path(), &key).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["core-1.img", "empty.img", "pages-1.img"]);
        // Signed by another key: nothing is listed, so nothing would be fetched.
        assert!(listed(fetched.path(), &Key::for_tests(1)).is_err());
    }

    #[test]
    fn detects_truncation_flipped_bytes_and_added_images() {
        let (d, key) = sealed();
        // A log may change; images may not.
        std::fs::write(d.path().join("dump.log"), b"changed").unwrap();
        verify(d.path(), &key).unwrap();

        std::fs::write(d.path().join("fs-9.img"), b"planted").unwrap();
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("fs-9.img is not part"));
        std::fs::remove_file(d.path().join("fs-9.img")).unwrap();

        let mut pages = std::fs::read(d.path().join("pages-1.img")).unwrap();
        pages[1_000_000] ^= 1;
        std::fs::write(d.path().join("pages-1.img"), &pages).unwrap();
        let e = verify(d.path(), &key).unwrap_err().to_string();
        assert!(e.contains("corrupted") && e.contains("pages-1.img"), "{e}");

        pages.truncate(10);
        std::fs::write(d.path().join("pages-1.img"), &pages).unwrap();
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("truncated"));

        std::fs::remove_file(d.path().join(MANIFEST)).unwrap();
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("no checksum manifest"));
    }

    #[test]
    fn a_rewritten_image_with_recomputed_sums_is_refused_without_the_key() {
        let (d, key) = sealed();
        std::fs::write(d.path().join("core-1.img"), b"evil").unwrap();
        // The attacker recomputes every sum: with another key, or as the old CRC format.
        write(d.path(), &Key::for_tests(1)).unwrap();
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("not signed with this data dir's key"));
        legacy::write_v1(d.path());
        legacy::verify(d.path()).unwrap();
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("not keyed"));
        // Or edits the manifest's sums and keeps the MAC.
        write(d.path(), &key).unwrap();
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        std::fs::write(d.path().join(MANIFEST), text.replace("\"size\":4", "\"size\":5")).unwrap();
        assert!(verify_sizes(d.path(), &key).unwrap_err().to_string().contains("not signed"));
    }

    /// What sealing and verifying cost per GiB of images (the resume path waits for
    /// `verify`): `cargo test --release -p stasis-runtime --lib -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput() {
        let d = tempfile::tempdir_in(std::env::var("STASIS_BENCH_DIR").unwrap_or("/var/tmp".into())).unwrap();
        let data: Vec<u8> = (0..1u64 << 30).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(d.path().join("pages-1.img"), &data).unwrap();
        let key = Key::for_tests(3);
        let t = std::time::Instant::now();
        write(d.path(), &key).unwrap();
        let sealed = t.elapsed();
        let t = std::time::Instant::now();
        verify(d.path(), &key).unwrap();
        eprintln!("1 GiB (page cache warm): seal {sealed:?}, verify {:?}", t.elapsed());
    }

    #[test]
    fn manifests_are_versioned_and_newer_ones_refused() {
        let (d, key) = sealed();
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        assert!(text.starts_with(&format!("{{\"formatVersion\":{CHECKSUMS_VERSION},")), "{text}");
        let newer = format!(r#"{{"formatVersion":{},"algorithm":"xxh3","files":[]}}"#, CHECKSUMS_VERSION + 1);
        std::fs::write(d.path().join(MANIFEST), newer).unwrap();
        match verify(d.path(), &key) {
            Err(RuntimeError::UnsupportedFormat { version, .. }) => assert_eq!(version, CHECKSUMS_VERSION + 1),
            other => panic!("a newer manifest is not damage: {other:?}"),
        }
    }
}
