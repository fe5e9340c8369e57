//! Keyed checksums of checkpoint images: written when a checkpoint is sealed, verified
//! in full before CRIU (which runs as host root and parses them) reads a byte of them.
//! A checkpoint whose images or manifest were changed by anyone without the data dir's
//! key (`key.rs`) is refused, and its sandbox stays paused with its data.
//!
//! Each image is hashed in 16 MiB chunks with BLAKE3 keyed by a key derived from the
//! data dir's (AVX2 on this host's class of CPU: ~3x SHA-NI SHA-256 per core; the chunks
//! of all images shared by two threads, files mapped, not copied), and the manifest
//! (names, sizes, chunk hashes) carries a keyed BLAKE3 MAC under another derived key.
//! Every `*.img` in the directory must be listed: an image added beside the others is
//! refused too. What this does not stop: a valid checkpoint replaced by another valid one
//! of the same data dir (an older generation, another sandbox's), which needs root on the
//! host.
//!
//! Format version 3 (`format.rs`). Version 2 manifests (SHA-256 chunks, HMAC-SHA256,
//! written before issue 19) are still verified, with their own algorithm (`v2.rs`), so a
//! checkpoint of an older Stasis resumes after an upgrade. Version 1 manifests (unkeyed
//! CRC-32) are refused for a restore, after being adopted once when the key is made
//! (`legacy.rs`). One from a newer Stasis is refused as such
//! ([`RuntimeError::UnsupportedFormat`]).

mod early;
mod key;
pub mod legacy;
mod v2;
mod verified;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

pub use early::{Early, EarlyHasher};
pub use key::Key;
pub use verified::Verified;

use super::format::{self, CHECKSUMS_VERSION};
use crate::error::{Result, RuntimeError};

pub const MANIFEST: &str = "checksums.json";
/// Small enough that the two hashing threads stay busy to the end of a 256 MiB image.
const CHUNK: usize = 16 << 20;
const ALGORITHM: &str = "blake3-keyed-chunks+blake3-keyed-mac";
/// Domain separation: the chunk hashes and the manifest MAC use keys derived from the
/// data dir's key for these contexts only (BLAKE3's KDF contexts: fixed, unique strings).
const CHUNK_CONTEXT: &str = "stasis 2026 checkpoint image chunk v3";
const MANIFEST_CONTEXT: &str = "stasis 2026 checkpoint manifest v3";
const NOT_SIGNED: &str = "checksum manifest is not signed with this data dir's key (rewritten, or from elsewhere)";

/// How a manifest's chunk hashes are made.
#[derive(Clone, Copy)]
enum Algorithm {
    /// Version 2: SHA-256, unkeyed (the manifest's HMAC covers the list).
    Sha256,
    /// Version 3: BLAKE3 keyed with the key derived for [`CHUNK_CONTEXT`].
    Blake3([u8; 32]),
}

impl Algorithm {
    fn chunk_hash(&self, chunk: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => v2::chunk_hash(chunk),
            Algorithm::Blake3(key) => blake3::keyed_hash(key, chunk).to_hex().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    size: u64,
    #[serde(rename = "blake3")]
    hashes: Vec<String>,
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

/// What a signed manifest of any version lists, and how to check it.
struct Listing {
    algorithm: Algorithm,
    chunk: usize,
    files: BTreeMap<String, FileSum>,
}

fn signed(body: &Body) -> Vec<u8> {
    serde_json::to_vec(body).expect("a manifest always serialises")
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

/// The hash of every `chunk`-byte chunk of every file, on two threads; a whole chunk
/// `early` holds (hashed while the file was written) is taken from it.
fn hash_files(
    dir: &Path,
    names: &[String],
    algorithm: Algorithm,
    chunk: usize,
    early: Option<&Early>,
) -> std::io::Result<BTreeMap<String, FileSum>> {
    use std::os::unix::fs::MetadataExt;
    let mut maps = Vec::new();
    for name in names {
        let f = std::fs::File::open(dir.join(name))?;
        let meta = f.metadata()?;
        // SAFETY: checkpoints are immutable once written; a concurrent truncation would
        // at worst fault the read (the data dir is root-only).
        let map = if meta.len() == 0 { None } else { Some(unsafe { memmap2::Mmap::map(&f)? }) };
        maps.push((name, meta.len(), meta.ino(), map));
    }
    let jobs: Vec<(usize, &[u8], Option<&str>)> = maps
        .iter()
        .enumerate()
        .flat_map(|(i, (name, _, ino, m))| {
            m.iter().flat_map(|m| m.chunks(chunk)).enumerate().map(move |(k, c)| {
                let ahead = early.filter(|_| c.len() == chunk).and_then(|e| e.chunk(name, *ino, k));
                (i, c, ahead)
            })
        })
        .collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, data, ahead)) = jobs.get(j) else { return done };
            done.push((j, ahead.map_or_else(|| algorithm.chunk_hash(data), str::to_string)));
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
        maps.iter().map(|(n, size, ..)| ((*n).clone(), FileSum { size: *size, hashes: vec![] })).collect();
    for (j, h) in hashes {
        out.get_mut(maps[jobs[j].0].0).expect("every job's file is listed").hashes.push(h);
    }
    Ok(out)
}

/// Writes the keyed manifest of every image in `dir` (fsynced), in the current format.
pub fn write(dir: &Path, key: &Key) -> Result<()> {
    write_with(dir, key, None)
}

/// [`write`], with the chunks hashed while the images were written (`early.rs`).
pub fn write_with(dir: &Path, key: &Key, early: Option<&Early>) -> Result<()> {
    let run = || -> std::io::Result<()> {
        let algorithm = Algorithm::Blake3(key.derive(CHUNK_CONTEXT));
        let files = hash_files(dir, &image_files(dir)?, algorithm, CHUNK, early)?;
        let body = Body { algorithm: ALGORITHM.into(), chunk: CHUNK, files };
        let m = Manifest { mac: hex::encode(key.mac(MANIFEST_CONTEXT, &signed(&body))), body };
        write_manifest(dir, &format::to_json(CHECKSUMS_VERSION, &m, false))
    };
    run().map_err(|e| RuntimeError::Checkpoint {
        op: "checksum",
        message: format!("cannot checksum {}: {e}", dir.display()),
    })
}

fn write_manifest(dir: &Path, data: &[u8]) -> std::io::Result<()> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The manifest, its MAC checked, and every image of `dir` listed in it at its size.
fn manifest(dir: &Path, key: &Key) -> Result<Listing> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let listing = signed_manifest(dir, key)?;
    let present = image_files(dir).map_err(|e| bad(format!("cannot list images ({e})")))?;
    if let Some(extra) = present.iter().find(|n| !listing.files.contains_key(*n)) {
        return Err(bad(format!("{extra} is not part of the checkpoint (added after it was sealed)")));
    }
    for (name, want) in &listing.files {
        let size = std::fs::metadata(dir.join(name)).map_err(|e| bad(format!("{name} is missing ({e})")))?.len();
        if size != want.size {
            return Err(bad(format!(
                "{name} is {size} bytes, the checkpoint wrote {} (truncated or overwritten)",
                want.size
            )));
        }
    }
    Ok(listing)
}

/// The images (name, size) the signed manifest in `dir` lists, its MAC checked; the
/// images themselves need not be there (an upload reads what to send, a fetch what to
/// get, from it).
pub fn listed(dir: &Path, key: &Key) -> Result<Vec<(String, u64)>> {
    Ok(signed_manifest(dir, key)?.files.into_iter().map(|(n, f)| (n, f.size)).collect())
}

/// The version 3 manifest `data`, its MAC checked.
fn parse(data: &[u8], key: &Key) -> std::result::Result<Listing, String> {
    let m: Manifest = serde_json::from_slice(data).map_err(|e| format!("unreadable checksum manifest ({e})"))?;
    let tag = hex::decode(&m.mac).map_err(|_| "manifest MAC is not hex".to_string())?;
    if !key.check(MANIFEST_CONTEXT, &signed(&m.body), &tag) {
        return Err(NOT_SIGNED.into());
    }
    if m.body.algorithm != ALGORITHM || m.body.chunk != CHUNK {
        return Err(format!("manifest uses {} in {} byte chunks", m.body.algorithm, m.body.chunk));
    }
    Ok(Listing { algorithm: Algorithm::Blake3(key.derive(CHUNK_CONTEXT)), chunk: CHUNK, files: m.body.files })
}

/// The manifest of `dir`, its version and MAC checked: version 3 (BLAKE3) as written
/// now, version 2 (SHA-256 + HMAC) as older Stasis wrote it, with its own algorithm.
fn signed_manifest(dir: &Path, key: &Key) -> Result<Listing> {
    let bad = |message: String| RuntimeError::CorruptCheckpoint(format!("{}: {message}", dir.display()));
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(|e| bad(format!("no checksum manifest ({e})")))?;
    let listing = match format::check(&path, &data, CHECKSUMS_VERSION)? {
        legacy::VERSION => return Err(bad("its checksums are not keyed (version 1, written by a Stasis that did not key them, after this data dir got its key): it cannot be trusted; resume it without memory (`--no-memory`) to keep its files".into())),
        v2::VERSION => v2::parse(&data, key),
        _ => parse(&data, key),
    }
    .map_err(bad)?;
    // Names become paths: only plain file names, as a dump writes them.
    if let Some(n) = listing.files.keys().find(|n| n.is_empty() || n.contains('/') || n.starts_with('.')) {
        return Err(bad(format!("manifest lists {n:?}, not an image file name")));
    }
    Ok(listing)
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
    let got = hash_files(dir, &names, want.algorithm, want.chunk, None)
        .map_err(|e| bad(format!("cannot read the images ({e})")))?;
    for (name, w) in &want.files {
        let g = &got[name];
        if let Some(i) = g.hashes.iter().zip(&w.hashes).position(|(a, b)| a != b).or((g != w).then_some(0)) {
            return Err(bad(format!(
                "{name} is corrupted or was changed (hash mismatch in the {} MiB chunk at byte {})",
                want.chunk >> 20,
                i * want.chunk
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

    /// Seals `dir` as a Stasis before issue 19 did (format version 2).
    fn write_v2(dir: &Path, key: &Key) {
        let files = hash_files(dir, &image_files(dir).unwrap(), Algorithm::Sha256, v2::TEST_CHUNK, None).unwrap();
        write_manifest(dir, &v2::manifest(files, key)).unwrap();
    }

    #[test]
    fn a_checkpoint_sealed_in_version_2_still_verifies_and_is_still_checked() {
        let (d, key) = sealed();
        write_v2(d.path(), &key);
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        assert!(text.starts_with("{\"formatVersion\":2,") && text.contains("\"sha256\""), "{text}");
        verify(d.path(), &key).unwrap();
        assert_eq!(listed(d.path(), &key).unwrap().len(), 3);
        // Its MAC is still the HMAC: another key, or an edited sum, is refused.
        assert!(verify(d.path(), &Key::for_tests(1)).unwrap_err().to_string().contains("not signed"));
        let mut pages = std::fs::read(d.path().join("pages-1.img")).unwrap();
        pages[2_000_000] ^= 1;
        std::fs::write(d.path().join("pages-1.img"), &pages).unwrap();
        let e = verify(d.path(), &key).unwrap_err().to_string();
        assert!(e.contains("pages-1.img is corrupted") && e.contains("64 MiB chunk"), "{e}");
        // A version 2 manifest made without the key, claiming the changed bytes: refused.
        write_v2(d.path(), &Key::for_tests(2));
        assert!(verify(d.path(), &key).unwrap_err().to_string().contains("not signed"));
        // Resealing (the next pause) writes the current version.
        write(d.path(), &key).unwrap();
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        assert!(text.starts_with(&format!("{{\"formatVersion\":{CHECKSUMS_VERSION},")) && text.contains("\"blake3\""));
        verify(d.path(), &key).unwrap();
    }

    #[test]
    fn a_version_3_manifest_relabelled_as_version_2_is_refused() {
        // A downgrade of the label alone must not switch to a check the MAC does not cover.
        let (d, key) = sealed();
        let text = std::fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        std::fs::write(d.path().join(MANIFEST), text.replacen("\"formatVersion\":3", "\"formatVersion\":2", 1))
            .unwrap();
        assert!(verify(d.path(), &key).is_err());
    }

    /// What sealing and verifying cost per GiB of images (the resume path waits for
    /// `verify`), in the current format and in version 2 (SHA-256, before issue 19):
    /// `cargo test --release -p stasis-runtime --lib -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput() {
        let d = tempfile::tempdir_in(std::env::var("STASIS_BENCH_DIR").unwrap_or("/var/tmp".into())).unwrap();
        let data: Vec<u8> = (0..1u64 << 30).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(d.path().join("pages-1.img"), &data).unwrap();
        let key = Key::for_tests(3);
        for (name, a) in [("SHA-256", Algorithm::Sha256), ("BLAKE3", Algorithm::Blake3([3; 32]))] {
            let cpu = || {
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: a valid out pointer.
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            };
            let (t, c) = (std::time::Instant::now(), cpu());
            data.chunks(CHUNK).for_each(|c| drop(a.chunk_hash(c)));
            eprintln!("1 GiB in memory, one thread, {name}: {:?} ({:?} on the CPU)", t.elapsed(), cpu() - c);
        }
        for _ in 0..2 {
            let t = std::time::Instant::now();
            write_v2(d.path(), &key);
            let sealed = t.elapsed();
            let t = std::time::Instant::now();
            verify(d.path(), &key).unwrap();
            eprintln!("1 GiB (page cache warm), version 2 (SHA-256): seal {sealed:?}, verify {:?}", t.elapsed());
            let t = std::time::Instant::now();
            write(d.path(), &key).unwrap();
            let sealed = t.elapsed();
            let t = std::time::Instant::now();
            verify(d.path(), &key).unwrap();
            eprintln!("1 GiB (page cache warm), version 3 (BLAKE3):  seal {sealed:?}, verify {:?}", t.elapsed());
        }
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
