//! A process's event log: what it printed, kept until a client has read it.
//!
//! Events are numbered. Every attached client reads every event from where it attached
//! (several clients all see the live output, as with envd). A client that attaches gets
//! first every event no client has received yet, then live ones. An event is dropped once
//! some client received it and every attached client has read past it. The log is
//! bounded: past `cap` bytes the oldest output is dropped and the loss is counted, so a
//! chatty process with nobody listening cannot eat the sandbox.

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
    /// Next event each attached reader will read, by reader id.
    readers: std::collections::HashMap<u64, u64>,
    next_reader: u64,
    bytes: usize,
    cap: usize,
    dropped_bytes: u64,
    closed: bool,
}

impl Output {
    pub fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                next_seq: 0,
                delivered: 0,
                readers: Default::default(),
                next_reader: 0,
                bytes: 0,
                cap,
                dropped_bytes: 0,
                closed: false,
            }),
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
        let mut s = self.state.lock().unwrap();
        let (id, next) = (s.next_reader, s.delivered);
        s.next_reader += 1;
        s.readers.insert(id, next);
        OutputCursor { output: self, id, next }
    }

    fn take_from(&self, reader: u64, from: u64) -> (Vec<(u64, ProcEvent)>, bool) {
        let mut s = self.state.lock().unwrap();
        let evs: Vec<_> = s.events.iter().filter(|(seq, _)| *seq >= from).cloned().collect();
        if let Some((last, _)) = evs.last() {
            let next = *last + 1;
            s.delivered = s.delivered.max(next);
            s.readers.insert(reader, next);
            s.trim();
        }
        (evs, s.closed)
    }

    fn detach(&self, reader: u64) {
        let mut s = self.state.lock().unwrap();
        s.readers.remove(&reader);
        s.trim();
    }
}

impl State {
    /// Drops events every attached reader is past and some client has received.
    fn trim(&mut self) {
        let keep_from = self.readers.values().copied().min().unwrap_or(u64::MAX).min(self.delivered);
        while self.events.front().is_some_and(|(seq, _)| *seq < keep_from) {
            let (_, e) = self.events.pop_front().unwrap();
            self.bytes -= e.size();
        }
    }
}

pub struct OutputCursor<'a> {
    output: &'a Output,
    id: u64,
    next: u64,
}

impl Drop for OutputCursor<'_> {
    fn drop(&mut self) {
        self.output.detach(self.id);
    }
}

impl OutputCursor<'_> {
    /// The next batch of events; an empty batch means the log is closed and fully read.
    pub async fn next_batch(&mut self) -> Vec<ProcEvent> {
        loop {
            let notified = self.output.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (evs, closed) = self.output.take_from(self.id, self.next);
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
        drop(c1);
        o.push(out("b"));
        // A client attaching later sees only what nobody received yet.
        let mut c2 = o.cursor();
        assert_eq!(c2.next_batch().await, vec![out("b")]);
        o.close();
        assert!(c2.next_batch().await.is_empty());
    }

    #[tokio::test]
    async fn every_attached_client_gets_live_output() {
        let o = Output::new(1024);
        o.push(ProcEvent::Start { pid: 3 });
        let mut a = o.cursor();
        assert_eq!(a.next_batch().await, vec![ProcEvent::Start { pid: 3 }]);
        let mut b = o.cursor();
        o.push(out("one"));
        o.push(out("two"));
        assert_eq!(a.next_batch().await, vec![out("one"), out("two")]);
        assert_eq!(b.next_batch().await, vec![out("one"), out("two")], "a second client must see the same live output");
        o.close();
        assert!(a.next_batch().await.is_empty() && b.next_batch().await.is_empty());
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
