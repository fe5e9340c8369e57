//! Frames on a leg. Every frame is a one-byte kind and its fields, big-endian:
//!
//! | kind | fields | meaning |
//! |---|---|---|
//! | 1 DATA | offset u64, length u32, bytes | the sender's bytes `offset..offset+length` |
//! | 2 ACK | received u64, fin u8 | the sender has every byte of the other direction below `received` (and its FIN when `fin` is 1) |
//! | 3 FIN | offset u64 | the sender's stream ends at `offset` (it will send nothing more) |
//! | 4 CLOSE | | the session is over: forget it (sent when finished, or to abort) |
//!
//! A DATA frame may repeat bytes the receiver already has (a resend after a new leg);
//! the offsets say which are new.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The most bytes one DATA frame carries.
pub const MAX_DATA: usize = 64 * 1024;

const DATA: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 3;
const CLOSE: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data { offset: u64, bytes: Bytes },
    Ack { received: u64, fin: bool },
    Fin { offset: u64 },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown relay frame kind {0}")]
    UnknownKind(u8),
    #[error("relay DATA frame of {0} bytes is over the limit of {MAX_DATA}")]
    TooLong(u32),
}

impl Frame {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Data { offset, bytes } => {
                debug_assert!(bytes.len() <= MAX_DATA);
                out.put_u8(DATA);
                out.put_u64(*offset);
                out.put_u32(bytes.len() as u32);
                out.put_slice(bytes);
            }
            Frame::Ack { received, fin } => {
                out.put_u8(ACK);
                out.put_u64(*received);
                out.put_u8(*fin as u8);
            }
            Frame::Fin { offset } => {
                out.put_u8(FIN);
                out.put_u64(*offset);
            }
            Frame::Close => out.put_u8(CLOSE),
        }
    }
}

/// Reassembles frames from the bytes of a leg, however they were split.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(&kind) = self.buf.first() else { return Ok(None) };
        let need = match kind {
            DATA => {
                if self.buf.len() < 13 {
                    return Ok(None);
                }
                let len = u32::from_be_bytes(self.buf[9..13].try_into().unwrap());
                if len as usize > MAX_DATA {
                    return Err(FrameError::TooLong(len));
                }
                13 + len as usize
            }
            ACK => 10,
            FIN => 9,
            CLOSE => 1,
            k => return Err(FrameError::UnknownKind(k)),
        };
        if self.buf.len() < need {
            return Ok(None);
        }
        let mut f = self.buf.split_to(need);
        f.advance(1);
        Ok(Some(match kind {
            DATA => {
                let offset = f.get_u64();
                f.advance(4);
                Frame::Data { offset, bytes: f.freeze() }
            }
            ACK => Frame::Ack { received: f.get_u64(), fin: f.get_u8() != 0 },
            FIN => Frame::Fin { offset: f.get_u64() },
            _ => Frame::Close,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Data { offset: 7, bytes: Bytes::from_static(b"hello") },
            Frame::Ack { received: u64::MAX - 1, fin: true },
            Frame::Data { offset: 0, bytes: Bytes::new() },
            Frame::Fin { offset: 12 },
            Frame::Close,
            Frame::Ack { received: 3, fin: false },
        ]
    }

    proptest! {
        /// Frames split anywhere (one byte at a time, or across frames) come out whole.
        #[test]
        fn frames_survive_any_split(cuts in proptest::collection::vec(1usize..40, 1..20)) {
            let mut wire = BytesMut::new();
            for f in all() { f.encode(&mut wire); }
            let mut d = Decoder::default();
            let mut got = vec![];
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = d.next_frame().unwrap() { got.push(f); }
            }
            prop_assert_eq!(got, all());
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut d = Decoder::default();
        d.push(&[9]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(9)));
        let mut d = Decoder::default();
        d.push(&[DATA, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(u32::MAX)));
    }
}
