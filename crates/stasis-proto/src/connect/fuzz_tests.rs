//! Issue 9: the Connect codec is total. Whatever bytes a client sends (bodies, header
//! values, paths), decoding answers frames or a `ConnectError` with a message, never a
//! panic, and never buffers a frame larger than the configured limit.

use proptest::prelude::*;

use super::envelope::{flags, HEADER_LEN};
use super::{
    decode_stream_message, decode_stream_request, decode_unary, encode_envelope, parse_route, parse_timeout, Code,
    EnvelopeDecoder, Route,
};
use crate::filesystem::{ListDirRequest, MoveRequest, WatchDirRequest};
use crate::process::{ConnectRequest, SendInputRequest, SendSignalRequest, StartRequest, UpdateRequest};

const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("application/json"),
    Some("application/connect+json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/CONNECT+JSON;;;"),
    Some("text/plain"),
    Some(""),
];

/// Bytes that look like envelopes: a plausible header (any flags, small or huge lengths)
/// followed by JSON-ish or random payload bytes, sometimes truncated.
fn envelope_like() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[\\{\\}\\[\\]\":,0-9a-z\\\\ ]{0,64}".prop_map(String::into_bytes),
        Just(br#"{"process":{"cmd":"/bin/bash","args":["-c","true"]}}"#.to_vec()),
        Just(br#"{"process":{"cmd":1e999999}}"#.to_vec()),
        Just(br#"{"process":{"cmd":"x","envs":{"a":"\ud800"}}}"#.to_vec()),
    ];
    (any::<u8>(), prop_oneof![0u32..80, any::<u32>()], payload, any::<bool>(), any::<usize>()).prop_map(
        |(f, len, payload, exact_len, cut)| {
            let len = if exact_len { payload.len() as u32 } else { len };
            let mut v = vec![f];
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&payload);
            let cut = cut % (v.len() + 1);
            if cut > v.len() / 2 {
                v.truncate(cut);
            }
            v
        },
    )
}

fn deep_json(depth: usize, open: &str, close: &str) -> Vec<u8> {
    let mut s = open.repeat(depth);
    s.push_str(&close.repeat(depth));
    s.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoder_is_total_on_any_chunking(
        bodies in prop::collection::vec(prop_oneof![envelope_like(), prop::collection::vec(any::<u8>(), 0..32)], 0..6),
        cuts in prop::collection::vec(1usize..16, 0..40),
        max in prop_oneof![0usize..64, Just(super::envelope::DEFAULT_MAX_MESSAGE_SIZE)],
        compressed in any::<bool>(),
    ) {
        let body: Vec<u8> = bodies.concat();
        let mut d = EnvelopeDecoder::new().with_max_message_size(max).allow_compressed(compressed);
        let mut rest = &body[..];
        let mut cuts = cuts.into_iter().cycle();
        let mut consumed = 0usize;
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        prop_assert!(f.payload.len() <= max);
                        prop_assert!(f.flags & !(flags::COMPRESSED | flags::END_STREAM) == 0);
                        prop_assert!(compressed || !f.is_compressed());
                        consumed += HEADER_LEN + f.payload.len();
                        // Every frame also decodes (or fails cleanly) as a stream message.
                        let _ = decode_stream_message::<StartRequest>(&f);
                        let _ = decode_stream_message::<SendInputRequest>(&f);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(!e.message.is_empty());
                        prop_assert_eq!(d.next_frame().unwrap_err(), e.clone(), "poisoned decoder repeats its error");
                        break;
                    }
                }
            }
            // Never more than one frame's worth buffered beyond what was returned.
            prop_assert!(d.buffered_len() <= body.len() - consumed);
        }
        if let Err(e) = d.finish() {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn stream_requests_never_panic(
        body in prop_oneof![envelope_like(), prop::collection::vec(any::<u8>(), 0..128)],
        ct in prop::sample::select(CONTENT_TYPES.to_vec()),
        ct_random in proptest::option::of(".{0,40}"),
    ) {
        for ct in [ct, ct_random.as_deref()] {
            for r in [
                decode_stream_request::<StartRequest>(ct, &body).map(|_| ()),
                decode_stream_request::<ConnectRequest>(ct, &body).map(|_| ()),
                decode_stream_request::<WatchDirRequest>(ct, &body).map(|_| ()),
            ] {
                if let Err(e) = r {
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn unary_bodies_never_panic(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..128),
            "[\\{\\}\\[\\]\":,0-9a-zA-Z\\\\. +-]{0,96}".prop_map(String::into_bytes),
            Just(br#"{"path":"../../../../etc/shadow","depth":4294967296}"#.to_vec()),
            Just(br#"{"signal":"SIGKILL","process":{"pid":-1}}"#.to_vec()),
            Just(br#"{"process":{"pid":18446744073709551616}}"#.to_vec()),
            Just(br#"{"source":"\u0000","destination":"\udfff"}"#.to_vec()),
        ],
        ct in prop::sample::select(CONTENT_TYPES.to_vec()),
    ) {
        for r in [
            decode_unary::<ListDirRequest>(ct, &body).map(|_| ()),
            decode_unary::<MoveRequest>(ct, &body).map(|_| ()),
            decode_unary::<SendSignalRequest>(ct, &body).map(|_| ()),
            decode_unary::<UpdateRequest>(ct, &body).map(|_| ()),
            decode_unary::<SendInputRequest>(ct, &body).map(|_| ()),
        ] {
            if let Err(e) = r {
                prop_assert!(!e.message.is_empty());
                prop_assert!(matches!(e.code, Code::InvalidArgument | Code::Unimplemented), "{}", e);
            }
        }
    }

    #[test]
    fn routes_never_panic(
        path in prop_oneof![
            ".{0,200}",
            "/(process\\.Process|filesystem\\.Filesystem|[a-z.]{0,12})/[A-Za-z/%.]{0,20}",
        ],
    ) {
        match parse_route(&path) {
            Ok(route) => prop_assert_eq!(route.path(), path),
            Err(e) => {
                prop_assert!(matches!(e.code, Code::NotFound | Code::Unimplemented), "{}", e);
                // Hostile paths are echoed bounded, not whole.
                prop_assert!(e.message.len() < 128 * 4 + 200, "{}", e.message.len());
            }
        }
    }

    #[test]
    fn timeouts_never_panic(value in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[0-9]{0,24}".prop_map(String::into_bytes),
        "[ +-]?[0-9]{1,12}[a-z ]?".prop_map(String::into_bytes),
    ]) {
        match parse_timeout(&value) {
            Ok(d) => {
                prop_assert!((1..=10).contains(&value.len()));
                prop_assert!(d.as_millis() < 10_000_000_000);
            }
            Err(e) => {
                prop_assert_eq!(e.code, Code::InvalidArgument);
                prop_assert!(e.message.len() < 200, "hostile values are echoed bounded");
            }
        }
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let body = deep_json(100_000, open, close);
        let err = decode_unary::<ListDirRequest>(Some("application/json"), &body).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        let framed = encode_envelope(0, &body);
        let err = decode_stream_request::<StartRequest>(Some("application/connect+json"), &framed).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
    }
}

#[test]
fn huge_declared_lengths_allocate_nothing() {
    for len in [u32::MAX, u32::MAX / 2, (super::envelope::DEFAULT_MAX_MESSAGE_SIZE + 1) as u32] {
        let mut d = EnvelopeDecoder::new();
        let mut hdr = vec![0u8];
        hdr.extend_from_slice(&len.to_be_bytes());
        d.push(&hdr);
        assert_eq!(d.next_frame().unwrap_err().code, Code::ResourceExhausted);
        assert_eq!(d.buffered_len(), 0);
    }
}

#[test]
fn every_real_route_survives_hostile_suffixes() {
    for r in Route::all() {
        for suffix in ["/", "/..", "%00", "?x=1", "/../../etc/passwd"] {
            let p = format!("{}{suffix}", r.path());
            assert!(parse_route(&p).is_err(), "{p}");
        }
    }
}
