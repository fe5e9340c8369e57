//! A pool of ready gateway namespaces (issue 19): a create renames one to its sandbox
//! instead of making the namespace, its uplink pair, addresses, forwarding and nftables
//! rules while the user waits (13-40 ms of `ip` and `nft` runs, docs/benchmarks.md).
//!
//! - An entry is a whole gateway (`network::build`) for the default policy
//!   (`NetworkPolicy::open`) under the name `stasisp-TAG-INDEX`, with its transit index
//!   taken like any sandbox's (host-wide, under the host lock). Taking renames the
//!   namespace to `stasis-ID` (`network::rename_netns`, two syscalls) and, when the
//!   sandbox's policy asks for other rules than the entry has (another policy, or the
//!   host's resolvers changed since), replaces them in one nft transaction.
//! - Fresh sandboxes only (creates, from a template or a snapshot). A resume keeps the
//!   transit index it had, so the address its outbound connections were translated to
//!   stays the same: it builds its gateway as before.
//! - One background thread refills it, and only after a create asked: otherwise it sleeps
//!   on a condition variable (no timer, no polling). Its target is the number of creates
//!   in the last [`WINDOW`] (at least 1, at most [`MAX_READY`]), at nice 10. Idle, the
//!   pool holds at most that many namespaces and runs nothing.
//! - Every daemon start picks a new TAG and holds `/run/stasis/gateway-pool-TAG.lock`
//!   for its life. A start removes the entries of every tag whose lock nobody holds (a
//!   daemon that died or stopped), so no entry outlives its daemon by more than one
//!   restart on the host; a daemon that stops cleanly removes its own.
//!
//! It must not: hand an entry out twice (taking pops it under the lock), or run in a
//! one-shot `stasis runtime` process ([`GatewayPool::disabled`]).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::network::{self, NetworkPolicy};

/// How far back creates count towards the target.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The most ready gateways.
pub const MAX_READY: usize = 8;
/// What every entry's namespace name starts with.
const PREFIX: &str = "stasisp-";

/// A ready gateway, nobody's until renamed.
pub(super) struct Entry {
    pub index: u32,
    pub netns: String,
    /// The nftables rules it was made with (`network::rules_for`).
    pub rules: String,
}

pub(super) struct GatewayPool {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tag: String,
    /// Held for the daemon's life: its entries are its own while it is.
    _lock: std::fs::File,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    ready: Vec<Entry>,
    /// When creates wanted a gateway, newest last.
    recent: VecDeque<Instant>,
    started: bool,
    /// The last refill failed: wait for the next create before trying again.
    stalled: bool,
    stop: bool,
}

impl State {
    /// Whether the pool is short of its target.
    fn short(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
            self.recent.pop_front();
        }
        !self.stalled && self.ready.len() < self.recent.len().clamp(1, MAX_READY) && !self.recent.is_empty()
    }
}

impl GatewayPool {
    /// No pool: every create builds its gateway.
    pub(super) fn disabled() -> Self {
        Self { shared: None }
    }

    /// A new, empty pool; the entries of pools whose daemon is gone are removed first.
    pub(super) fn open() -> Self {
        sweep_orphans();
        let tag = super::random_hex(4);
        // A sweep of another daemon starting now may take a fresh lock file: one retry.
        let lock = lock_file(&tag, true).and_then(|l| match l {
            Some(l) => Ok(Some(l)),
            None => lock_file(&tag, true),
        });
        match lock {
            Ok(Some(lock)) => {
                let shared = Shared { tag, _lock: lock, state: Mutex::default(), wake: Condvar::new() };
                Self { shared: Some(Arc::new(shared)) }
            }
            Ok(None) => Self::disabled(),
            Err(e) => {
                tracing::warn!("no gateway pool: {e}");
                Self::disabled()
            }
        }
    }

    /// A ready gateway if the pool has one; tells the refill thread a create happened
    /// either way. The caller renames it (or deletes it if it cannot use it).
    pub(super) fn take(&self) -> Option<Entry> {
        let shared = self.shared.as_ref()?;
        let mut st = shared.state.lock().unwrap();
        if st.stop {
            return None;
        }
        st.recent.push_back(Instant::now());
        st.stalled = false;
        if !st.started {
            st.started = true;
            let s = shared.clone();
            if let Err(e) = std::thread::Builder::new().name("gateway-pool".into()).spawn(move || refill(&s)) {
                tracing::warn!("gateway pool: no refill thread: {e}");
            }
        }
        shared.wake.notify_one();
        st.ready.pop()
    }

    /// Stops refilling and removes the ready gateways and this pool's lock file (the
    /// daemon stops). Nothing is handed out afterwards.
    pub(super) fn release(&self) {
        if let Some(s) = &self.shared {
            let mut st = s.state.lock().unwrap();
            st.stop = true;
            for e in st.ready.drain(..) {
                network::delete_netns(&e.netns);
            }
            let _ = std::fs::remove_file(lock_path(&s.tag));
            s.wake.notify_all();
        }
    }
}

impl Drop for GatewayPool {
    fn drop(&mut self) {
        self.release();
    }
}

fn lock_path(tag: &str) -> String {
    format!("/run/stasis/gateway-pool-{tag}.lock")
}

/// The lock of pool `tag`, taken without waiting: `None` if another process holds it.
/// With `create`, the file is made, and a lock on a file a sweep removed meanwhile (not
/// the one at the path any more) is not taken.
fn lock_file(tag: &str, create: bool) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all("/run/stasis")?;
    let f = std::fs::OpenOptions::new().create(create).truncate(false).write(true).open(lock_path(tag))?;
    // SAFETY: flock on an fd we own; released when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    let (held, at_path) = (f.metadata()?, std::fs::metadata(lock_path(tag)));
    if create && !at_path.is_ok_and(|p| p.ino() == held.ino() && p.dev() == held.dev()) {
        return Ok(None);
    }
    Ok(Some(f))
}

/// Removes the entries and lock files of every pool whose lock nobody holds (a lock
/// file gone with entries left: /run was cleared under them).
fn sweep_orphans() {
    let mut tags: std::collections::HashMap<String, Vec<String>> = Default::default();
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((tag, _)) = name.strip_prefix(PREFIX).and_then(|r| r.split_once('-')) {
            tags.entry(tag.to_string()).or_default().push(name.clone());
        }
    }
    for e in std::fs::read_dir("/run/stasis").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(tag) = name.strip_prefix("gateway-pool-").and_then(|r| r.strip_suffix(".lock")) {
            tags.entry(tag.to_string()).or_default();
        }
    }
    for (tag, names) in tags {
        match lock_file(&tag, false) {
            Ok(None) => continue,
            Ok(Some(_held)) => {
                let _ = std::fs::remove_file(lock_path(&tag));
            }
            Err(_) => {}
        }
        if !names.is_empty() {
            tracing::info!(
                tag,
                count = names.len(),
                "gateway pool: removing the ready gateways of a daemon that is gone"
            );
        }
        for n in names {
            network::delete_netns(&n);
        }
    }
}

/// The refill thread: sleeps until a create leaves the pool short, builds one gateway,
/// looks again.
fn refill(shared: &Shared) {
    // SAFETY: setpriority on this thread only (its `ip` and `nft` runs inherit it).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
    loop {
        {
            let mut st = shared.state.lock().unwrap();
            loop {
                if st.stop {
                    return;
                }
                if st.short(Instant::now()) {
                    break;
                }
                st = shared.wake.wait(st).unwrap();
            }
        }
        let made = make_entry(&shared.tag);
        let mut st = shared.state.lock().unwrap();
        match made {
            // A pool stopped meanwhile: this one is not handed out.
            Ok(e) if st.stop => network::delete_netns(&e.netns),
            Ok(e) => st.ready.push(e),
            Err(e) => {
                tracing::warn!("gateway pool: refill stopped until the next create: {e}");
                st.stalled = true;
            }
        }
    }
}

fn make_entry(tag: &str) -> crate::error::Result<Entry> {
    let policy = NetworkPolicy::open();
    let _host_lock = network::HostLock::acquire()?;
    let index = network::free_index(None)?;
    let n = network::names_in(&format!("{PREFIX}{tag}-{index}"), index);
    if let Err(e) = network::build(&n, index, &policy) {
        network::delete_netns(&n.netns);
        return Err(e);
    }
    Ok(Entry { index, netns: n.netns, rules: network::rules_for(&policy, index) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_recent_creates_and_a_stall_waits_for_the_next_create() {
        let now = Instant::now();
        let mut st = State::default();
        assert!(!st.short(now), "nothing created: nothing to make");
        for _ in 0..3 {
            st.recent.push_back(now);
        }
        assert!(st.short(now));
        for i in 0..3 {
            st.ready.push(Entry { index: i, netns: String::new(), rules: String::new() });
        }
        assert!(!st.short(now), "three creates, three ready");
        st.ready.clear();
        st.stalled = true;
        assert!(!st.short(now), "stalled until the next create");
        st.stalled = false;
        assert!(!st.short(now + WINDOW + Duration::from_secs(1)), "old creates no longer count");
        assert!(st.recent.is_empty());
        for _ in 0..100 {
            st.recent.push_back(now);
        }
        st.ready =
            (0..MAX_READY as u32).map(|i| Entry { index: i, netns: String::new(), rules: String::new() }).collect();
        assert!(!st.short(now), "never more than MAX_READY");
    }
}
