//! Connect envelopes: the framing of streaming request and response bodies.
//!
//! Each message is `flags: u8`, `length: u32 big-endian`, then `length` bytes. The
//! decoder is incremental because HTTP bodies arrive in arbitrary chunks, and it must
//! stay total: any byte sequence yields frames or a [`ConnectError`], never a panic or
//! an allocation larger than the configured limit.

use bytes::{Buf, Bytes, BytesMut};

use super::error::ConnectError;

/// Flag bits of the first envelope byte.
pub mod flags {
    /// The payload is compressed with the stream's `Connect-Content-Encoding`.
    pub const COMPRESSED: u8 = 0x01;
    /// Last frame of a response stream; its payload is the end-of-stream JSON.
    pub const END_STREAM: u8 = 0x02;
    /// Bits the spec reserves; a frame using them is malformed.
    pub(crate) const RESERVED: u8 = !(COMPRESSED | END_STREAM);
}

/// Bytes before the payload: one flag byte and a four-byte length.
pub const HEADER_LEN: usize = 5;
/// Default upper bound on one message, well above anything envd sends.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Frames one message.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes, which the format cannot express.
pub fn encode_envelope(flags: u8, payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).expect("envelope payload exceeds 4 GiB");
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&[flags]);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub flags: u8,
    pub payload: Bytes,
}

impl Envelope {
    pub fn is_end_stream(&self) -> bool {
        self.flags & flags::END_STREAM != 0
    }

    pub fn is_compressed(&self) -> bool {
        self.flags & flags::COMPRESSED != 0
    }
}

/// Incremental envelope decoder: [`push`](Self::push) chunks as they arrive, take
/// frames with [`next_frame`](Self::next_frame), and call [`finish`](Self::finish)
/// at end of body to learn whether it stopped mid-frame.
///
/// After the first error the decoder is poisoned and keeps returning that error,
/// because the byte stream can no longer be split reliably.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    buf: BytesMut,
    max_message_size: usize,
    allow_compressed: bool,
    error: Option<ConnectError>,
}

impl Default for EnvelopeDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvelopeDecoder {
    pub fn new() -> Self {
        EnvelopeDecoder {
            buf: BytesMut::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            allow_compressed: false,
            error: None,
        }
    }

    /// Frames longer than `max` bytes are rejected as `resource_exhausted` as soon as
    /// their header arrives, before any of their payload is buffered.
    pub fn with_max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// Pass compressed frames through (flag kept, payload untouched) instead of
    /// rejecting them; for callers that negotiated `Connect-Content-Encoding`.
    pub fn allow_compressed(mut self, allow: bool) -> Self {
        self.allow_compressed = allow;
        self
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, ConnectError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flag_byte = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if let Err(e) = self.check_header(flag_byte, len) {
            self.buf.clear();
            self.error = Some(e.clone());
            return Err(e);
        }
        let len = len as usize;
        if self.buf.len() - HEADER_LEN < len {
            // Reserve once for the whole frame instead of growing chunk by chunk.
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(Envelope { flags: flag_byte, payload }))
    }

    fn check_header(&self, flag_byte: u8, len: u32) -> Result<(), ConnectError> {
        if flag_byte & flags::RESERVED != 0 {
            return Err(ConnectError::invalid_argument(format!(
                "protocol error: envelope flags {flag_byte:#04x} use reserved bits"
            )));
        }
        if flag_byte & flags::COMPRESSED != 0 && !self.allow_compressed {
            return Err(ConnectError::internal(
                "protocol error: received a compressed message without a negotiated compression",
            ));
        }
        if u64::from(len) > self.max_message_size as u64 {
            return Err(ConnectError::new(
                super::Code::ResourceExhausted,
                format!("message size {len} exceeds the maximum of {} bytes", self.max_message_size),
            ));
        }
        Ok(())
    }

    /// Call at end of body: an error if bytes of an incomplete frame remain.
    pub fn finish(&self) -> Result<(), ConnectError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.buf.len() {
            0 => Ok(()),
            n if n < HEADER_LEN => Err(ConnectError::invalid_argument(format!(
                "protocol error: body ended inside an envelope header ({n} of {HEADER_LEN} bytes)"
            ))),
            n => {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                Err(ConnectError::invalid_argument(format!(
                    "protocol error: envelope promised {len} bytes, body ended after {}",
                    n - HEADER_LEN
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::Code;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Envelope>, ConnectError> {
        let mut d = EnvelopeDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn encodes_header_then_payload() {
        assert_eq!(&encode_envelope(0, b"{}")[..], b"\x00\x00\x00\x00\x02{}");
        assert_eq!(&encode_envelope(flags::END_STREAM, b"")[..], b"\x02\x00\x00\x00\x00");
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let mut body = encode_envelope(0, br#"{"a":1}"#).to_vec();
        body.extend_from_slice(&encode_envelope(0, b""));
        body.extend_from_slice(&encode_envelope(flags::END_STREAM, b"{}"));
        for split in 0..=body.len() {
            let frames = decode_all(&[&body[..split], &body[split..]]).unwrap();
            assert_eq!(frames.len(), 3);
            assert_eq!(&frames[0].payload[..], br#"{"a":1}"#);
            assert!(frames[1].payload.is_empty());
            assert!(frames[2].is_end_stream() && !frames[2].is_compressed());
        }
    }

    #[test]
    fn empty_input_is_zero_frames() {
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
        assert_eq!(decode_all(&[b""]).unwrap(), vec![]);
    }

    #[test]
    fn truncated_header_is_reported_at_finish() {
        let err = decode_all(&[b"\x00\x00\x00"]).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert!(err.message.contains("header"), "{err}");
    }

    #[test]
    fn truncated_body_is_reported_at_finish() {
        let err = decode_all(&[b"\x00\x00\x00\x00\x10{\"a\""]).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert!(err.message.contains("promised 16 bytes"), "{err}");
    }

    #[test]
    fn trailing_garbage_after_a_frame_is_an_error() {
        let mut body = encode_envelope(0, b"{}").to_vec();
        body.extend_from_slice(b"xy");
        assert_eq!(decode_all(&[&body]).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn oversize_length_is_rejected_before_buffering() {
        let mut d = EnvelopeDecoder::new().with_max_message_size(8);
        d.push(b"\x00\x00\x00\x00\x09");
        let err = d.next_frame().unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        assert_eq!(d.buffered_len(), 0);
        // Poisoned: more bytes do not resynchronise on garbage.
        d.push(b"\x00\x00\x00\x00\x00");
        assert_eq!(d.next_frame().unwrap_err(), err);
        assert_eq!(d.finish().unwrap_err(), err);

        let mut d = EnvelopeDecoder::new();
        d.push(b"\x00\xff\xff\xff\xff");
        assert_eq!(d.next_frame().unwrap_err().code, Code::ResourceExhausted);
    }

    #[test]
    fn exactly_max_size_is_accepted() {
        let mut d = EnvelopeDecoder::new().with_max_message_size(3);
        d.push(&encode_envelope(0, b"abc"));
        assert_eq!(&d.next_frame().unwrap().unwrap().payload[..], b"abc");
    }

    #[test]
    fn compressed_frames_need_opt_in() {
        let frame = encode_envelope(flags::COMPRESSED, b"\x1f\x8b");
        assert_eq!(decode_all(&[&frame]).unwrap_err().code, Code::Internal);
        let mut d = EnvelopeDecoder::new().allow_compressed(true);
        d.push(&frame);
        assert!(d.next_frame().unwrap().unwrap().is_compressed());
    }

    #[test]
    fn reserved_flag_bits_are_rejected() {
        let err = decode_all(&[&encode_envelope(0x80, b"{}")]).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert!(err.message.contains("reserved"), "{err}");
    }

    /// Splits `data` at the given (unsorted, possibly repeated) cut points.
    fn split_at<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts {
            out.push(&data[prev..c]);
            prev = c;
        }
        out.push(&data[prev..]);
        out
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
            max in 0usize..128,
        ) {
            let mut d = EnvelopeDecoder::new().with_max_message_size(max);
            for c in &chunks {
                d.push(c);
                while let Ok(Some(f)) = d.next_frame() {
                    prop_assert!(f.payload.len() <= max);
                }
            }
            let _ = d.finish();
        }

        #[test]
        fn encode_then_decode_round_trips(
            payloads in prop::collection::vec(
                (prop::sample::select(vec![0u8, flags::END_STREAM]),
                 prop::collection::vec(any::<u8>(), 0..300)),
                0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let body: Vec<u8> = payloads
                .iter()
                .flat_map(|(f, p)| encode_envelope(*f, p).to_vec())
                .collect();
            let chunks = split_at(&body, &cuts);
            let frames = decode_all(&chunks).unwrap();
            prop_assert_eq!(frames.len(), payloads.len());
            for (frame, (f, p)) in frames.iter().zip(&payloads) {
                prop_assert_eq!(frame.flags, *f);
                prop_assert_eq!(&frame.payload[..], &p[..]);
            }
        }
    }
}
