//! Memory images hashed while CRIU writes them (issue 19): a pause's seal then hashes
//! only what was written last (the tail of each memory image and the small images), not
//! every byte after the dump. 23 ms of a 256 MiB pause and 80-90 ms of a 1 GiB one were
//! that hashing, on the core CRIU does not use while it copies memory.
//!
//! A thread follows the `pages-*.img` files of the directory and hashes each complete
//! chunk once the file has grown past its end. This relies on how CRIU writes memory
//! images: sequentially, each byte once, never rewritten (the page transfer appends what
//! it splices from the dumped tree's pages); the tree is frozen and nothing else writes
//! the directory (root-only). A chunk is used only for the same file (inode) it was read
//! from, at a size that still covers it. Should a dump ever rewrite a chunk after it was
//! read, the manifest would not match the image and the restore would refuse it as
//! corrupted: the test `a_pause_sealed_while_dumping_verifies_in_a_new_process`
//! (crates/stasis/tests/runtime_pause_resume.rs) verifies such images in full.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Key, CHUNK, CHUNK_CONTEXT};

/// How long the thread sleeps when no chunk is complete.
const IDLE: Duration = Duration::from_millis(5);

/// The chunk hashes of one image, from its first chunk on, read from inode `ino`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hashed {
    pub ino: u64,
    pub hashes: Vec<String>,
}

/// Hashes made ahead of sealing, by file name.
#[derive(Debug, Default)]
pub struct Early(pub(super) HashMap<String, Hashed>);

impl Early {
    /// How many bytes were hashed ahead.
    pub fn bytes(&self) -> u64 {
        self.0.values().map(|h| (h.hashes.len() * CHUNK) as u64).sum()
    }

    /// The hash of chunk `index` of `name` when it was hashed ahead from inode `ino`.
    pub(super) fn chunk(&self, name: &str, ino: u64, index: usize) -> Option<&str> {
        self.0.get(name).filter(|h| h.ino == ino).and_then(|h| h.hashes.get(index)).map(String::as_str)
    }
}

/// The running hasher of one directory.
pub struct EarlyHasher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Early>>,
}

impl EarlyHasher {
    /// Starts hashing the memory images `dir` is about to receive.
    pub fn start(dir: &Path, key: &Key) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d, k) = (stop.clone(), dir.to_path_buf(), key.derive(CHUNK_CONTEXT));
        let thread = std::thread::Builder::new().name("early-hash".into()).spawn(move || follow(&d, &k, &s)).ok();
        Self { stop, thread }
    }

    /// Stops (the dump is over) and returns what was hashed; nothing if the thread could
    /// not run.
    pub fn finish(mut self) -> Early {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for EarlyHasher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens the memory images of `dir` not followed yet (a dump starts one per process).
fn open_new_images(dir: &Path, files: &mut HashMap<String, (File, Hashed)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.starts_with("pages-") && name.ends_with(".img") && !files.contains_key(&name) {
            if let Ok(opened) = open_image(&e.path()) {
                files.insert(name, opened);
            }
        }
    }
}

/// An image, opened once for the whole dump, and what was hashed of it (by its inode).
fn open_image(path: &Path) -> std::io::Result<(File, Hashed)> {
    let f = File::open(path)?;
    let ino = f.metadata()?.ino();
    Ok((f, Hashed { ino, hashes: Vec::new() }))
}

fn follow(dir: &Path, key: &[u8; 32], stop: &AtomicBool) -> Early {
    let mut files = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut hashed_any = false;
        for (f, hashed) in files.values_mut() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            hashed_any |= hash_next_chunk(f, key, hashed).unwrap_or(false);
        }
        if !hashed_any {
            open_new_images(dir, &mut files);
            std::thread::sleep(IDLE);
        }
    }
    Early(files.into_iter().map(|(name, (_, hashed))| (name, hashed)).collect())
}

/// Hashes the next chunk of `f` if the file holds all of it; whether it did.
fn hash_next_chunk(f: &File, key: &[u8; 32], into: &mut Hashed) -> std::io::Result<bool> {
    let offset = (into.hashes.len() * CHUNK) as u64;
    if f.metadata()?.len() < offset + CHUNK as u64 {
        return Ok(false);
    }
    // SAFETY: a read-only map of bytes already written; the data dir is root-only and
    // images are never truncated while a dump writes them.
    let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(CHUNK).map(f)? };
    into.hashes.push(blake3::keyed_hash(key, &map).to_hex().to_string());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn chunks_hashed_while_a_file_grows_seal_the_same_manifest() {
        let key = Key::for_tests(3);
        let grown = tempfile::tempdir().unwrap();
        let hasher = EarlyHasher::start(grown.path(), &key);
        // Written the way a dump writes memory: appended in pieces, over time.
        let mut f = std::fs::File::create(grown.path().join("pages-1.img")).unwrap();
        let piece: Vec<u8> = (0..(CHUNK / 4 + 4096)).map(|i| (i * 7 % 251) as u8).collect();
        for _ in 0..10 {
            f.write_all(&piece).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(grown.path().join("core-1.img"), b"core").unwrap();
        let early = hasher.finish();
        assert_eq!(early.0["pages-1.img"].hashes.len(), 2, "two complete chunks of 2.5 hashed while written");
        super::super::write_with(grown.path(), &key, Some(&early)).unwrap();

        // The same bytes sealed after the fact: the same manifest, and it verifies.
        let after = tempfile::tempdir().unwrap();
        for n in ["pages-1.img", "core-1.img"] {
            std::fs::copy(grown.path().join(n), after.path().join(n)).unwrap();
        }
        super::super::write(after.path(), &key).unwrap();
        let manifest = |d: &Path| std::fs::read(d.join(super::super::MANIFEST)).unwrap();
        assert_eq!(manifest(grown.path()), manifest(after.path()));
        super::super::verify(grown.path(), &key).unwrap();
    }

    #[test]
    fn a_hash_of_another_file_under_the_same_name_is_not_used() {
        let key = Key::for_tests(4);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("pages-1.img");
        std::fs::write(&path, vec![1u8; CHUNK]).unwrap();
        let (f, mut h) = open_image(&path).unwrap();
        assert!(hash_next_chunk(&f, &key.derive(CHUNK_CONTEXT), &mut h).unwrap());
        let early = Early(HashMap::from([("pages-1.img".to_string(), h)]));
        // Replaced by a new file (made while the old one exists: another inode) with
        // other bytes.
        std::fs::write(d.path().join("new"), vec![2u8; CHUNK]).unwrap();
        std::fs::rename(d.path().join("new"), &path).unwrap();
        super::super::write_with(d.path(), &key, Some(&early)).unwrap();
        super::super::verify(d.path(), &key).unwrap();
    }
}
