//! A process's event log: what it printed, kept until a client has read it.
//!
//! Events are numbered. A client that attaches gets every event no client has received
//! yet, then live ones; events some client already received are dropped. The log is
//! bounded: past `cap` bytes of unread output the oldest unread output is dropped and
//! the loss is counted, so a chatty process with nobody listening cannot eat the sandbox.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use super::ExitInfo;

pub const DEFAULT_BUFFER_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEvent {
    Start { pid: u32 },
    Stdout(Bytes),
    Stderr(Bytes),
    Pty(Bytes),
    End(ExitInfo),
}

impl ProcEvent {
    fn size(&self) -> usize {
        match self {
            ProcEvent::Stdout(b) | ProcEvent::Stderr(b) | ProcEvent::Pty(b) => b.len(),
            _ => 0,
        }
    }
}

pub struct Output {
    state: Mutex<State>,
    notify: Notify,
}

struct State {
    /// (sequence number, event); sequence numbers are consecutive.
    events: VecDeque<(u64, ProcEvent)>,
    next_seq: u64,
    /// Every event with a lower number has reached some client.
    delivered: u64,
    bytes: usize,
    cap: usize,
    dropped_bytes: u64,
    closed: bool,
}

impl Output {
    pub fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State { events: VecDeque::new(), next_seq: 0, delivered: 0, bytes: 0, cap, dropped_bytes: 0, closed: false }),
            notify: Notify::new(),
        }
    }

    pub fn push(&self, ev: ProcEvent) {
        let mut s = self.state.lock().unwrap();
        s.bytes += ev.size();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.events.push_back((seq, ev));
        while s.bytes > s.cap {
            // Drop the oldest data event; start/end markers are tiny and always kept.
            let Some(idx) = s.events.iter().position(|(_, e)| e.size() > 0) else { break };
            let (_, e) = s.events.remove(idx).unwrap();
            s.bytes -= e.size();
            s.dropped_bytes += e.size() as u64;
        }
        drop(s);
        self.notify.notify_waiters();
    }

    /// No more events will come (the End event is in).
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.notify.notify_waiters();
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.state.lock().unwrap().dropped_bytes
    }

    /// A reader starting at the first event no client has received.
    pub fn cursor(&self) -> OutputCursor<'_> {
        let next = self.state.lock().unwrap().delivered;
        OutputCursor { output: self, next }
    }

    fn take_from(&self, from: u64) -> (Vec<(u64, ProcEvent)>, bool) {
        let mut s = self.state.lock().unwrap();
        let evs: Vec<_> = s.events.iter().filter(|(seq, _)| *seq >= from).cloned().collect();
        if let Some((last, _)) = evs.last() {
            if *last + 1 > s.delivered {
                s.delivered = *last + 1;
            }
            let delivered = s.delivered;
            while s.events.front().is_some_and(|(seq, _)| *seq < delivered) {
                let (_, e) = s.events.pop_front().unwrap();
                s.bytes -= e.size();
            }
        }
        (evs, s.closed)
    }
}

pub struct OutputCursor<'a> {
    output: &'a Output,
    next: u64,
}

impl OutputCursor<'_> {
    /// The next batch of events; an empty batch means the log is closed and fully read.
    pub async fn next_batch(&mut self) -> Vec<ProcEvent> {
        loop {
            let notified = self.output.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (evs, closed) = self.output.take_from(self.next);
            if let Some((last, _)) = evs.last() {
                self.next = last + 1;
                return evs.into_iter().map(|(_, e)| e).collect();
            }
            if closed {
                return vec![];
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> ProcEvent {
        ProcEvent::Stdout(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[tokio::test]
    async fn output_with_no_reader_is_replayed_once() {
        let o = Output::new(1024);
        o.push(ProcEvent::Start { pid: 7 });
        o.push(out("a"));
        let mut c1 = o.cursor();
        assert_eq!(c1.next_batch().await, vec![ProcEvent::Start { pid: 7 }, out("a")]);
        o.push(out("b"));
        // A second client sees only what nobody received yet.
        let mut c2 = o.cursor();
        assert_eq!(c2.next_batch().await, vec![out("b")]);
        o.close();
        assert!(c2.next_batch().await.is_empty());
    }

    #[tokio::test]
    async fn buffer_is_bounded_and_counts_loss() {
        let o = Output::new(4);
        o.push(ProcEvent::Start { pid: 1 });
        for s in ["ab", "cd", "ef"] {
            o.push(out(s));
        }
        assert_eq!(o.dropped_bytes(), 2);
        let mut c = o.cursor();
        assert_eq!(c.next_batch().await, vec![ProcEvent::Start { pid: 1 }, out("cd"), out("ef")]);
    }

    #[tokio::test]
    async fn reader_waits_for_live_events() {
        let o = std::sync::Arc::new(Output::new(1024));
        let o2 = o.clone();
        let h = tokio::spawn(async move { o2.cursor().next_batch().await });
        tokio::task::yield_now().await;
        o.push(out("live"));
        assert_eq!(h.await.unwrap(), vec![out("live")]);
    }
}
