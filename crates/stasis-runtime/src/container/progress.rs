//! Progress of the pauses and resumes under way: bytes written or read so far against an
//! estimate, registered by the operation and read by `Runtime::progress` while it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Inner;
use crate::OpProgress;

/// One operation under way: (kind, bytes done, bytes total).
pub(super) type Entry = (&'static str, Arc<AtomicU64>, u64);

impl Inner {
    /// Registers an operation's progress; the counter is updated by whoever does the work.
    pub(super) fn track(&self, id: &str, kind: &'static str, total: u64) -> Arc<AtomicU64> {
        let done = Arc::new(AtomicU64::new(0));
        self.progress.lock().unwrap().insert(id.to_string(), (kind, done.clone(), total));
        done
    }

    pub(super) fn untrack(&self, id: &str) {
        self.progress.lock().unwrap().remove(id);
    }

    /// The operation under way on `id`, if any.
    pub(super) fn progress_of(&self, id: &str) -> Option<OpProgress> {
        let p = self.progress.lock().unwrap();
        let (kind, done, total) = p.get(id)?;
        let done = done.load(Ordering::Relaxed);
        Some(OpProgress { kind: kind.to_string(), bytes_done: done, bytes_total: (*total).max(done) })
    }
}
