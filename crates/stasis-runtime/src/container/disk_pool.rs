//! A pool of ready sandbox disks (issue 19): empty ext4 images formatted ahead of time,
//! so a create renames one into its sandbox directory instead of running mkfs.ext4 while
//! the user waits (the largest fixed cost of a create's own work, docs/benchmarks.md).
//!
//! - Entries are `DATA/disk-pool/v1-SIZEm-RAND.img`, made by `disk::format` (the one
//!   recipe of a sandbox disk: a pooled disk differs from a fresh one only in its UUID
//!   and times), flushed, then renamed in: a name without `.tmp` is a whole image.
//! - An entry serves only creates of its size (MiB); any other size makes its own disk.
//!   Taking is a rename, so no image is handed out twice.
//! - One background thread refills it, and only after a create asked: otherwise it sleeps
//!   on a condition variable (no timer, no polling; an idle host pays nothing). Its
//!   target for a size is the number of creates of that size in the last
//!   [`WINDOW`] (at least 1, at most [`MAX_PER_SIZE`]); a size nobody created lately is
//!   not refilled. It runs at nice 10 in the idle I/O class, one mkfs at a time, and never cuts into the
//!   host's disk reserve (`space.rs`).
//! - A restarted daemon keeps the entries that are whole (this format's name, the length
//!   of its size, an ext4 superblock) and deletes the rest: a `.tmp` a dead daemon was
//!   formatting, another format's, anything else found there.
//!
//! It must not: hold anything a sandbox uses (an entry is nobody's until renamed out), or
//! run when the runtime is a one-shot process (`stasis runtime`): [`DiskPool::disabled`].

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::disk;

/// What an entry's name starts with: a change to `disk::format`'s recipe bumps it, and a
/// restart then discards the older entries.
const FORMAT: &str = "v1";
/// How far back creates count towards a size's target.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The most entries of one size.
pub const MAX_PER_SIZE: usize = 8;

pub(super) struct DiskPool {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    dir: PathBuf,
    /// The host disk reserve (`space.rs`), checked before each entry is made.
    reserve: u64,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    ready: HashMap<u64, Vec<PathBuf>>,
    /// Creates that wanted a disk, newest last: (when, size).
    recent: VecDeque<(Instant, u64)>,
    /// The size the refill thread is formatting now.
    making: Option<u64>,
    /// The refill thread runs.
    started: bool,
    /// The last refill failed (no space, mkfs failed): wait for the next create before
    /// trying again, rather than retrying in a loop.
    stalled: bool,
    stop: bool,
}

impl State {
    /// The size most short of its target, if any.
    fn wanted(&mut self, now: Instant) -> Option<u64> {
        while self.recent.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
            self.recent.pop_front();
        }
        if self.stalled {
            return None;
        }
        let mut asked: HashMap<u64, usize> = HashMap::new();
        for (_, size) in &self.recent {
            *asked.entry(*size).or_default() += 1;
        }
        asked
            .into_iter()
            .map(|(size, n)| (size, n.clamp(1, MAX_PER_SIZE), self.ready.get(&size).map_or(0, Vec::len)))
            .filter(|(_, target, have)| have < target)
            .max_by_key(|(size, target, have)| (target - have, *size))
            .map(|(size, _, _)| size)
    }
}

impl DiskPool {
    /// No pool: every create formats its own disk.
    pub(super) fn disabled() -> Self {
        Self { shared: None }
    }

    /// The pool in `dir` (made if missing), with the whole entries a previous daemon left
    /// and the rest deleted. Nothing is formatted until a create asks.
    pub(super) fn open(dir: PathBuf, reserve: u64) -> Self {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), "no disk pool: {e}");
            return Self::disabled();
        }
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let ready = adopt(&dir);
        let kept: usize = ready.values().map(Vec::len).sum();
        if kept > 0 {
            tracing::info!(dir = %dir.display(), "disk pool: {kept} ready disks kept from the last start");
        }
        let state = State { ready, ..Default::default() };
        Self { shared: Some(Arc::new(Shared { dir, reserve, state: Mutex::new(state), wake: Condvar::new() })) }
    }

    /// Moves a ready disk of `size_mb` MiB to `dest` (which must not exist) if the pool
    /// has one, and tells the refill thread a create of that size happened either way.
    /// False: the caller formats its own.
    pub(super) fn take(&self, size_mb: u64, dest: &Path) -> bool {
        let Some(shared) = &self.shared else { return false };
        let entry = {
            let mut st = shared.state.lock().unwrap();
            st.recent.push_back((Instant::now(), size_mb));
            st.stalled = false;
            if !st.started {
                st.started = true;
                let s = shared.clone();
                if let Err(e) = std::thread::Builder::new().name("disk-pool".into()).spawn(move || refill(&s)) {
                    tracing::warn!("disk pool: no refill thread: {e}");
                }
            }
            shared.wake.notify_one();
            st.ready.get_mut(&size_mb).and_then(Vec::pop)
        };
        let Some(entry) = entry else { return false };
        match std::fs::rename(&entry, dest) {
            Ok(()) => true,
            Err(e) => {
                // Another filesystem, or the entry went: this create formats its own.
                tracing::warn!(entry = %entry.display(), dest = %dest.display(), "disk pool: cannot hand out: {e}");
                let _ = std::fs::remove_file(&entry);
                false
            }
        }
    }

    /// Ready disks of `size_mb` MiB (tests, the log).
    #[cfg(test)]
    fn ready(&self, size_mb: u64) -> usize {
        self.shared.as_ref().map_or(0, |s| s.state.lock().unwrap().ready.get(&size_mb).map_or(0, Vec::len))
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.state.lock().unwrap().stop = true;
            s.wake.notify_all();
        }
    }
}

/// `v1-SIZEm-RAND.img` -> SIZE.
fn size_of_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(FORMAT)?.strip_prefix('-')?.strip_suffix(".img")?;
    let (size, rand) = rest.split_once("m-")?;
    if rand.is_empty() || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    size.parse().ok().filter(|s| *s > 0)
}

/// The whole entries in `dir` by size (at most [`MAX_PER_SIZE`] each); everything else
/// there is deleted.
fn adopt(dir: &Path) -> HashMap<u64, Vec<PathBuf>> {
    let mut ready: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return ready };
    for e in entries.flatten() {
        let path = e.path();
        let whole = e.file_name().to_str().and_then(size_of_name).filter(|size| {
            let meta = std::fs::symlink_metadata(&path);
            meta.is_ok_and(|m| m.is_file() && m.len() == size << 20) && disk::has_ext4_superblock(&path)
        });
        match whole {
            Some(size) if ready.get(&size).map_or(0, Vec::len) < MAX_PER_SIZE => {
                ready.entry(size).or_default().push(path)
            }
            _ => {
                tracing::info!(entry = %path.display(), "disk pool: discarding an entry that is not a whole disk of this format");
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
            }
        }
    }
    ready
}

/// The refill thread: sleeps until a create leaves a size short, formats one entry,
/// looks again.
fn refill(shared: &Shared) {
    // Behind every create, for the CPU and the disk: nice 10 and the idle I/O class, on
    // this thread (mkfs inherits both): a refill's writes and flush must not hold up the
    // next create's mounts.
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    // SAFETY: setpriority and ioprio_set on this thread only.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
        libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid as libc::c_long, IOPRIO_CLASS_IDLE << 13);
    }
    loop {
        let size = {
            let mut st = shared.state.lock().unwrap();
            loop {
                if st.stop {
                    return;
                }
                if let Some(size) = st.wanted(Instant::now()) {
                    st.making = Some(size);
                    break size;
                }
                st = shared.wake.wait(st).unwrap();
            }
        };
        let made = make_entry(shared, size);
        let mut st = shared.state.lock().unwrap();
        st.making = None;
        match made {
            Ok(path) => st.ready.entry(size).or_default().push(path),
            Err(e) => {
                tracing::warn!(size_mb = size, "disk pool: refill stopped until the next create: {e}");
                st.stalled = true;
            }
        }
    }
}

fn make_entry(shared: &Shared, size_mb: u64) -> crate::error::Result<PathBuf> {
    use crate::error::IoContext;
    super::space::check(&shared.dir, shared.reserve, "disk pool", super::space::CREATE_BYTES)?;
    let name = format!("{FORMAT}-{size_mb}m-{}.img", super::random_hex(8));
    let path = shared.dir.join(&name);
    let tmp = shared.dir.join(format!("{name}.tmp"));
    let made = disk::format(&tmp, size_mb).and_then(|()| {
        // Flushed before it is named whole: a restart after a power cut trusts the name.
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ctx(|| format!("flush {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).ctx(|| format!("commit {}", path.display()))?;
        std::fs::File::open(&shared.dir).and_then(|d| d.sync_all()).ctx(|| format!("flush {}", shared.dir.display()))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_carry_format_and_size() {
        assert_eq!(size_of_name("v1-256m-0a1b.img"), Some(256));
        for bad in [
            "v1-256m-0a1b.img.tmp",
            "v0-256m-0a1b.img",
            "v1-0m-ab.img",
            "v1-256m-.img",
            "v1-x-ab.img",
            "v1-256m-zz.img",
        ] {
            assert_eq!(size_of_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_follow_recent_creates_per_size_and_a_stall_waits_for_the_next_create() {
        let now = Instant::now();
        let mut st = State::default();
        assert_eq!(st.wanted(now), None, "nothing created: nothing to make");
        for _ in 0..3 {
            st.recent.push_back((now, 64));
        }
        st.recent.push_back((now, 128));
        assert_eq!(st.wanted(now), Some(64), "the size most short first");
        st.ready.insert(64, vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(st.wanted(now), Some(128));
        st.ready.insert(128, vec!["d".into()]);
        assert_eq!(st.wanted(now), None, "every size at its target");
        st.ready.clear();
        st.stalled = true;
        assert_eq!(st.wanted(now), None);
        st.stalled = false;
        assert_eq!(st.wanted(now + WINDOW + Duration::from_secs(1)), None, "old creates no longer count");
        assert!(st.recent.is_empty());
    }

    fn mkfs_present() -> bool {
        std::process::Command::new("mkfs.ext4").arg("-V").output().is_ok()
    }

    #[test]
    fn a_pool_fills_after_a_create_hands_out_only_its_size_and_a_restart_keeps_only_whole_entries() {
        if !mkfs_present() {
            eprintln!("skipped: no mkfs.ext4");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pool");
        let pool = DiskPool::open(dir.clone(), 0);
        let dest = tmp.path().join("a.img");
        assert!(!pool.take(64, &dest), "an empty pool has nothing to give");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.ready(64) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.ready(64), 1, "refilled after the create");
        assert!(!pool.take(128, &dest), "another size is not served");
        assert!(!dest.exists());
        // The 128 create asked for one of its size too; let that finish before the restart.
        while pool.ready(128) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(pool);
        // What a dead daemon leaves: a half-made entry, another format's, a cut-short one.
        std::fs::write(dir.join("v1-64m-00.img.tmp"), b"half").unwrap();
        std::fs::write(dir.join("v0-64m-00.img"), b"old").unwrap();
        let short = dir.join("v1-64m-01.img");
        std::fs::write(&short, b"").unwrap();
        std::fs::File::options().write(true).open(&short).unwrap().set_len(64 << 20).unwrap();
        let pool = DiskPool::open(dir.clone(), 0);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left.len(), 2, "only the whole entries are kept: {left:?}");
        assert!(left.iter().all(|n| size_of_name(n).is_some() && n != "v1-64m-01.img"), "{left:?}");
        assert!(pool.take(64, &dest), "a kept entry serves a create of its size");
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), 64 << 20);
        assert!(disk::has_ext4_superblock(&dest));
        assert_eq!(pool.ready(128), 1);
    }
}
