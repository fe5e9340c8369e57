//! Open client connections per sandbox: counted for the idle timeout, and cut when the
//! sandbox pauses (a paused sandbox serves nobody; clients reconnect after resume), unless
//! they are parked connections (`parking.rs`), which only a kill cuts and which follow the
//! sandbox's [`Phase`] to drop their leg at a pause and reopen it after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::Clock;

#[derive(Clone)]
pub struct Activity {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    clock: Clock,
}

struct Entry {
    open: usize,
    /// Wall-clock ms when the sandbox last became idle (last connection closed, or it
    /// started running).
    idle_since: i64,
    /// Runs so far (the number of the last [`Phase::Running`]).
    runs: u64,
    cancel: CancellationToken,
    /// Cancelled when the sandbox is killed (never renewed): parked connections end then.
    killed: CancellationToken,
    phase: watch::Sender<Phase>,
}

/// Whether a sandbox's processes run, for parked connections: each time it runs again
/// (a resume, or a pause that failed) is a new run number, so a connection knows its leg
/// is from an earlier run and must be reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running(u64),
    Paused,
}

impl Entry {
    fn new(now: i64) -> Self {
        Self {
            open: 0,
            idle_since: now,
            runs: 0,
            cancel: CancellationToken::new(),
            killed: CancellationToken::new(),
            phase: watch::Sender::new(Phase::Running(0)),
        }
    }

    fn run_again(&mut self) {
        self.runs += 1;
        self.phase.send_replace(Phase::Running(self.runs));
    }
}

/// Held while a proxied connection or stream is open.
pub struct Guard {
    activity: Activity,
    id: String,
    pub cancel: CancellationToken,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut m = self.activity.inner.lock().unwrap();
        if let Some(e) = m.get_mut(&self.id) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 {
                e.idle_since = self.activity.clock.now_ms();
            }
        }
    }
}

impl Activity {
    pub fn new(clock: Clock) -> Self {
        Self { inner: Arc::default(), clock }
    }

    fn entry<'a>(&self, m: &'a mut HashMap<String, Entry>, id: &str) -> &'a mut Entry {
        m.entry(id.to_string()).or_insert_with(|| Entry::new(self.clock.now_ms()))
    }

    pub fn enter(&self, id: &str) -> Guard {
        let mut m = self.inner.lock().unwrap();
        let e = self.entry(&mut m, id);
        e.open += 1;
        Guard { activity: self.clone(), id: id.to_string(), cancel: e.cancel.clone() }
    }

    /// A parked connection: counted as open like the others, but its guard is cancelled
    /// only by a kill; the pauses and runs come through the returned phase.
    pub fn enter_parked(&self, id: &str) -> (Guard, watch::Receiver<Phase>) {
        let mut m = self.inner.lock().unwrap();
        let e = self.entry(&mut m, id);
        e.open += 1;
        let guard = Guard { activity: self.clone(), id: id.to_string(), cancel: e.killed.clone() };
        (guard, e.phase.subscribe())
    }

    /// The sandbox runs again without a restart (a pause that failed): parked connections
    /// reopen their legs; idle time is not reset.
    pub fn running_again(&self, id: &str) {
        let mut m = self.inner.lock().unwrap();
        if let Some(e) = m.get_mut(id) {
            e.run_again();
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self, id: &str) -> usize {
        self.inner.lock().unwrap().get(id).map_or(0, |e| e.open)
    }

    /// Connections open now, over every sandbox.
    pub fn open_total(&self) -> usize {
        self.inner.lock().unwrap().values().map(|e| e.open).sum()
    }

    /// When the sandbox has been idle since (no connection open), or `None` while one is.
    pub fn idle_since(&self, id: &str) -> Option<i64> {
        let mut m = self.inner.lock().unwrap();
        let e = self.entry(&mut m, id);
        (e.open == 0).then_some(e.idle_since)
    }

    /// The sandbox (re)started: idle time counts from now.
    pub fn started(&self, id: &str) {
        let mut m = self.inner.lock().unwrap();
        let now = self.clock.now_ms();
        let e = self.entry(&mut m, id);
        e.idle_since = now;
        e.run_again();
    }

    /// Closes every open connection of the sandbox; later ones are unaffected.
    pub fn disconnect_all(&self, id: &str) {
        let mut m = self.inner.lock().unwrap();
        if let Some(e) = m.get_mut(id) {
            e.cancel.cancel();
            e.cancel = CancellationToken::new();
            e.phase.send_replace(Phase::Paused);
        }
    }

    pub fn forget(&self, id: &str) {
        let mut m = self.inner.lock().unwrap();
        if let Some(e) = m.get(id) {
            e.cancel.cancel();
            e.killed.cancel();
            if e.open == 0 {
                m.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cancels() {
        let a = Activity::new(Clock::wall());
        let g1 = a.enter("s");
        let g2 = a.enter("s");
        assert_eq!(a.open("s"), 2);
        a.disconnect_all("s");
        assert!(g1.cancel.is_cancelled() && g2.cancel.is_cancelled());
        let g3 = a.enter("s");
        assert!(!g3.cancel.is_cancelled(), "a connection opened after the pause is not cut");
        drop((g1, g2));
        assert_eq!(a.open("s"), 1);
    }

    #[test]
    fn parked_connections_follow_pauses_and_end_at_kill() {
        let a = Activity::new(Clock::wall());
        let (g, phase) = a.enter_parked("s");
        assert_eq!(*phase.borrow(), Phase::Running(0));
        a.disconnect_all("s");
        assert!(!g.cancel.is_cancelled(), "a pause parks, it does not cut");
        assert_eq!(*phase.borrow(), Phase::Paused);
        a.started("s");
        assert_eq!(*phase.borrow(), Phase::Running(1));
        a.disconnect_all("s");
        a.running_again("s");
        assert_eq!(*phase.borrow(), Phase::Running(2), "a failed pause is a new run too");
        assert_eq!(a.open("s"), 1);
        a.forget("s");
        assert!(g.cancel.is_cancelled());
    }
}
