//! One side's state of a relayed connection, without I/O: what it sent that the other
//! side has not acknowledged (to resend on the next leg), what it received, and what is
//! still to be written to its local stream. The same on both sides.

use bytes::{Bytes, BytesMut};

use crate::frame::{Decoder, Frame, FrameError, MAX_DATA};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("relay data from offset {offset} leaves a gap: only {received} bytes were received")]
    Gap { offset: u64, received: u64 },
    #[error("the peer acknowledged {acked} bytes, more than the {sent} sent")]
    AckBeyondSent { acked: u64, sent: u64 },
    #[error("the peer has {peer} bytes, but bytes from {kept} on are all that is kept (lost bytes)")]
    Lost { peer: u64, kept: u64 },
    #[error("relay data past the end of the stream ({fin})")]
    PastEnd { fin: u64 },
}

/// What a received leg's bytes meant, beyond data (which [`RelayState::take_delivery`]
/// hands out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing to act on.
    None,
    /// The peer closed the session.
    Closed,
}

#[derive(Debug, Default)]
pub struct RelayState {
    // Local → peer.
    /// The offset of `out[0]`: the peer acknowledged every byte below it.
    out_base: u64,
    /// Sent (or to send) and not acknowledged.
    out: BytesMut,
    /// The local stream ended after the last byte of `out`.
    out_fin: bool,
    /// The next offset to put on the current leg.
    sent: u64,
    fin_sent: bool,
    /// The peer acknowledged our FIN.
    fin_acked: bool,

    // Peer → local.
    received: u64,
    in_fin: Option<u64>,
    eof_delivered: bool,
    /// The last acknowledgement put on the current leg.
    acked: Option<(u64, bool)>,
    /// Received, not yet written to the local stream.
    deliver: std::collections::VecDeque<Bytes>,
    decoder: Decoder,
}

impl RelayState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received from the peer so far (what a resume announces).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the peer's FIN was received (what a resume announces with `received`).
    pub fn received_fin(&self) -> bool {
        self.in_fin.is_some()
    }

    /// Local bytes the peer has not acknowledged (the bound for reading more locally).
    pub fn unacked(&self) -> usize {
        self.out.len()
    }

    pub fn local_ended(&self) -> bool {
        self.out_fin
    }

    /// A new leg, on which the peer says it has received `peer_received` bytes (and our
    /// FIN if `peer_fin`): what it has is dropped, the rest will be sent again.
    pub fn attach(&mut self, peer_received: u64, peer_fin: bool) -> Result<(), ProtocolError> {
        if peer_received < self.out_base {
            return Err(ProtocolError::Lost { peer: peer_received, kept: self.out_base });
        }
        self.ack(peer_received, peer_fin)?;
        self.sent = self.out_base;
        self.fin_sent = self.fin_acked;
        self.acked = None;
        self.decoder = Decoder::default();
        Ok(())
    }

    /// Bytes read from the local stream, to send.
    pub fn push_local(&mut self, bytes: &[u8]) {
        debug_assert!(!self.out_fin, "data after the local end");
        self.out.extend_from_slice(bytes);
    }

    /// The local stream ended: a FIN follows the last byte.
    pub fn local_eof(&mut self) {
        self.out_fin = true;
    }

    fn out_end(&self) -> u64 {
        self.out_base + self.out.len() as u64
    }

    fn ack(&mut self, received: u64, fin: bool) -> Result<(), ProtocolError> {
        let end = self.out_end();
        if received > end {
            return Err(ProtocolError::AckBeyondSent { acked: received, sent: end });
        }
        if received > self.out_base {
            let _ = self.out.split_to((received - self.out_base) as usize);
            self.out_base = received;
        }
        if fin && self.out_fin && received == end {
            self.fin_acked = true;
        }
        Ok(())
    }

    /// Bytes read from the leg. Data goes to [`Self::take_delivery`].
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Event, ProtocolError> {
        self.decoder.push(bytes);
        while let Some(frame) = self.decoder.next_frame()? {
            match frame {
                Frame::Data { offset, bytes } => self.data(offset, bytes)?,
                Frame::Ack { received, fin } => self.ack(received, fin)?,
                Frame::Fin { offset } => {
                    if offset != self.received {
                        return Err(ProtocolError::Gap { offset, received: self.received });
                    }
                    self.in_fin = Some(offset);
                }
                Frame::Close => return Ok(Event::Closed),
            }
        }
        Ok(Event::None)
    }

    fn data(&mut self, offset: u64, bytes: Bytes) -> Result<(), ProtocolError> {
        if offset > self.received {
            return Err(ProtocolError::Gap { offset, received: self.received });
        }
        let end = offset + bytes.len() as u64;
        if end <= self.received {
            return Ok(()); // all of it already here: a resend
        }
        if let Some(fin) = self.in_fin {
            return Err(ProtocolError::PastEnd { fin });
        }
        self.deliver.push_back(bytes.slice((self.received - offset) as usize..));
        self.received = end;
        Ok(())
    }

    /// Received bytes to write to the local stream next (kept until [`Self::delivered`]
    /// says they were written, so a write cut short loses nothing).
    pub fn next_delivery(&self) -> Option<Bytes> {
        self.deliver.front().cloned()
    }

    /// `n` bytes of [`Self::next_delivery`] were written to the local stream.
    pub fn delivered(&mut self, n: usize) {
        if let Some(front) = self.deliver.front_mut() {
            let _ = front.split_to(n.min(front.len()));
            if front.is_empty() {
                self.deliver.pop_front();
            }
        }
    }

    /// Whether the local stream should be shut down for writing now (the peer's FIN, after
    /// its every byte was handed out). True once; then [`Self::eof_delivered`].
    pub fn eof_due(&self) -> bool {
        self.in_fin.is_some() && self.deliver.is_empty() && !self.eof_delivered
    }

    pub fn eof_delivered(&mut self) {
        self.eof_delivered = true;
    }

    /// Both directions ended, each delivered and acknowledged: nothing left to keep.
    pub fn finished(&self) -> bool {
        self.fin_acked && self.eof_delivered
    }

    /// Appends to `out` what to write on the leg now: an acknowledgement if ours changed,
    /// up to `budget` bytes of data not yet on this leg, and the FIN after the last byte.
    pub fn transmit(&mut self, out: &mut bytes::BytesMut, budget: usize) {
        let ack = (self.received, self.in_fin.is_some());
        if self.acked != Some(ack) {
            Frame::Ack { received: ack.0, fin: ack.1 }.encode(out);
            self.acked = Some(ack);
        }
        let end = self.out_end();
        let mut budget = budget;
        while self.sent < end && budget > 0 {
            let from = (self.sent - self.out_base) as usize;
            let n = (self.out.len() - from).min(MAX_DATA).min(budget);
            let bytes = Bytes::copy_from_slice(&self.out[from..from + n]);
            Frame::Data { offset: self.sent, bytes }.encode(out);
            self.sent += n as u64;
            budget -= n;
        }
        if self.out_fin && self.sent == end && !self.fin_sent {
            Frame::Fin { offset: end }.encode(out);
            self.fin_sent = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves everything `from` has to send into `to`, split into pieces of `piece` bytes.
    fn carry(from: &mut RelayState, to: &mut RelayState, piece: usize) -> Event {
        let mut wire = BytesMut::new();
        from.transmit(&mut wire, usize::MAX);
        let mut ev = Event::None;
        for chunk in wire.chunks(piece.max(1)) {
            if to.receive(chunk).unwrap() == Event::Closed {
                ev = Event::Closed;
            }
        }
        ev
    }

    fn drain(s: &mut RelayState) -> Vec<u8> {
        let mut v = vec![];
        while let Some(b) = s.next_delivery() {
            v.extend_from_slice(&b);
            s.delivered(b.len());
        }
        v
    }

    #[test]
    fn bytes_pass_and_acks_free_them() {
        let (mut a, mut b) = (RelayState::new(), RelayState::new());
        a.push_local(b"hello ");
        a.push_local(b"world");
        carry(&mut a, &mut b, 3);
        assert_eq!(drain(&mut b), b"hello world");
        assert_eq!(a.unacked(), 11);
        carry(&mut b, &mut a, 1);
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn a_lost_leg_resends_what_the_peer_lacks_and_nothing_twice() {
        let (mut a, mut b) = (RelayState::new(), RelayState::new());
        a.push_local(b"one ");
        carry(&mut a, &mut b, 100);
        // Sent on the old leg and lost with it (never reached b).
        a.push_local(b"two ");
        let mut lost = BytesMut::new();
        a.transmit(&mut lost, usize::MAX);
        drop(lost);
        // New leg: b has 4 bytes, a has 0 of b's.
        a.attach(b.received(), false).unwrap();
        b.attach(a.received(), false).unwrap();
        a.push_local(b"three");
        carry(&mut a, &mut b, 5);
        assert_eq!(drain(&mut b), b"one two three");
        carry(&mut b, &mut a, 5);
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn duplicate_and_overlapping_data_is_delivered_once() {
        let mut b = RelayState::new();
        let mut wire = BytesMut::new();
        Frame::Data { offset: 0, bytes: Bytes::from_static(b"abcd") }.encode(&mut wire);
        Frame::Data { offset: 0, bytes: Bytes::from_static(b"ab") }.encode(&mut wire);
        Frame::Data { offset: 2, bytes: Bytes::from_static(b"cdef") }.encode(&mut wire);
        b.receive(&wire).unwrap();
        assert_eq!(drain(&mut b), b"abcdef");
        assert_eq!(b.received(), 6);
    }

    #[test]
    fn missing_ranges_and_bad_acks_are_errors() {
        let mut b = RelayState::new();
        let mut wire = BytesMut::new();
        Frame::Data { offset: 3, bytes: Bytes::from_static(b"x") }.encode(&mut wire);
        assert_eq!(b.receive(&wire), Err(ProtocolError::Gap { offset: 3, received: 0 }));

        let mut a = RelayState::new();
        a.push_local(b"ab");
        let mut wire = BytesMut::new();
        Frame::Ack { received: 5, fin: false }.encode(&mut wire);
        assert_eq!(a.receive(&wire), Err(ProtocolError::AckBeyondSent { acked: 5, sent: 2 }));

        // The peer claims less than what it already acknowledged: those bytes are gone.
        let mut a = RelayState::new();
        a.push_local(b"abcd");
        a.attach(4, false).unwrap();
        assert_eq!(a.attach(2, false), Err(ProtocolError::Lost { peer: 2, kept: 4 }));
    }

    #[test]
    fn both_ends_finish_after_fins_are_delivered_and_acked() {
        let (mut a, mut b) = (RelayState::new(), RelayState::new());
        a.push_local(b"bye");
        a.local_eof();
        carry(&mut a, &mut b, 2);
        assert_eq!(drain(&mut b), b"bye");
        assert!(b.eof_due());
        b.eof_delivered();
        b.local_eof();
        carry(&mut b, &mut a, 2);
        assert!(a.eof_due());
        a.eof_delivered();
        carry(&mut a, &mut b, 2);
        assert!(a.finished() && b.finished());
    }

    #[test]
    fn a_fin_lost_with_its_leg_is_sent_again() {
        let (mut a, mut b) = (RelayState::new(), RelayState::new());
        a.local_eof();
        let mut lost = BytesMut::new();
        a.transmit(&mut lost, usize::MAX);
        a.attach(b.received(), b.received_fin()).unwrap();
        carry(&mut a, &mut b, 1);
        assert!(b.eof_due());
    }

    #[test]
    fn close_is_reported() {
        let mut b = RelayState::new();
        let mut wire = BytesMut::new();
        Frame::Close.encode(&mut wire);
        assert_eq!(b.receive(&wire), Ok(Event::Closed));
    }

    #[test]
    fn the_budget_bounds_one_transmit() {
        let mut a = RelayState::new();
        a.push_local(&vec![7u8; 200_000]);
        let mut wire = BytesMut::new();
        a.transmit(&mut wire, 100_000);
        let mut b = RelayState::new();
        b.receive(&wire).unwrap();
        assert_eq!(b.received(), 100_000);
        let mut wire = BytesMut::new();
        a.transmit(&mut wire, usize::MAX);
        b.receive(&wire).unwrap();
        assert_eq!(b.received(), 200_000);
    }
}
