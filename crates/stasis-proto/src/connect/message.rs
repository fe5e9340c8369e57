//! Message bodies with the JSON codec: unary bodies are bare JSON, streaming bodies are
//! enveloped JSON. Decoding failures become `invalid_argument` with the serde reason,
//! which is what a client needs to see to fix its request.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::envelope::{encode_envelope, Envelope, EnvelopeDecoder};
use super::error::{Code, ConnectError};
use super::{CONTENT_TYPE_CONNECT_JSON, CONTENT_TYPE_JSON};

/// True when `content_type` names `expected`, ignoring case and parameters such as
/// `; charset=utf-8`.
fn media_type_is(content_type: Option<&str>, expected: &str) -> bool {
    content_type.and_then(|ct| ct.split(';').next()).is_some_and(|mt| mt.trim().eq_ignore_ascii_case(expected))
}

fn check_content_type(content_type: Option<&str>, expected: &str) -> Result<(), ConnectError> {
    if media_type_is(content_type, expected) {
        return Ok(());
    }
    // The spec's answer is HTTP 415; the HTTP layer may special-case this code + message,
    // but `unimplemented` is the closest Connect code for "codec not supported".
    Err(ConnectError::new(
        Code::Unimplemented,
        format!(
            "unsupported content type {:?}: this method takes {expected} (only the JSON codec is supported)",
            content_type.unwrap_or("(none)")
        ),
    ))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConnectError> {
    // connect-es sends `{}` for empty messages, but an empty body means the same thing.
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ConnectError::invalid_argument(format!("invalid JSON message: {e}")))
}

fn to_json<T: Serialize>(message: &T) -> Result<Vec<u8>, ConnectError> {
    serde_json::to_vec(message).map_err(|e| ConnectError::internal(format!("cannot encode response message: {e}")))
}

/// Decodes the body of a unary request (`Content-Type: application/json`).
pub fn decode_unary<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ConnectError> {
    check_content_type(content_type, CONTENT_TYPE_JSON)?;
    parse_json(body)
}

/// Encodes a unary response body. Fails only for a message pbjson cannot express (an
/// enum field holding a number with no name), which is a server bug: `internal`.
pub fn encode_unary<T: Serialize>(message: &T) -> Result<Bytes, ConnectError> {
    to_json(message).map(Bytes::from)
}

/// Encodes one message of a streaming response as a data envelope (flags 0).
pub fn encode_stream_message<T: Serialize>(message: &T) -> Result<Bytes, ConnectError> {
    Ok(encode_envelope(0, &to_json(message)?))
}

/// Decodes the whole body of a server-streaming request
/// (`Content-Type: application/connect+json`): exactly one data envelope, nothing after.
pub fn decode_stream_request<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ConnectError> {
    check_content_type(content_type, CONTENT_TYPE_CONNECT_JSON)?;
    let mut decoder = EnvelopeDecoder::new();
    decoder.push(body);
    let Some(envelope) = decoder.next_frame()? else {
        decoder.finish()?;
        return Err(ConnectError::invalid_argument("protocol error: streaming request body holds no message"));
    };
    if decoder.buffered_len() > 0 {
        return Err(ConnectError::invalid_argument(format!(
            "protocol error: {} unexpected bytes after the request message",
            decoder.buffered_len()
        )));
    }
    if envelope.is_end_stream() {
        return Err(ConnectError::invalid_argument("protocol error: request message is marked end-of-stream"));
    }
    parse_json(&envelope.payload)
}

/// A decoded frame of a stream: a message, or the end with its outcome.
#[derive(Debug, PartialEq)]
pub enum StreamFrame<T> {
    Message(T),
    End(Result<(), ConnectError>),
}

/// Decodes one frame of a stream: client-stream requests (`StreamInput`) on the
/// server side, or response frames on the client side. A request stream has no
/// end-of-stream frame; callers there treat [`StreamFrame::End`] as a protocol error.
pub fn decode_stream_message<T: DeserializeOwned>(envelope: &Envelope) -> Result<StreamFrame<T>, ConnectError> {
    if envelope.is_compressed() {
        return Err(ConnectError::internal(
            "protocol error: compressed message cannot be decoded (no compression support)",
        ));
    }
    if envelope.is_end_stream() {
        return Ok(StreamFrame::End(match ConnectError::from_end_stream_json(&envelope.payload)? {
            None => Ok(()),
            Some(e) => Err(e),
        }));
    }
    parse_json(&envelope.payload).map(StreamFrame::Message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{end_stream_frame, envelope::flags};
    use crate::filesystem::ListDirRequest;
    use crate::process::{ListRequest, StartRequest, StartResponse};

    const START_JSON: &[u8] = br#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hello"]},"stdin":false}"#;

    #[test]
    fn unary_json_with_or_without_charset() {
        let body = br#"{"path":"/home/user","depth":1}"#;
        for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
            let req: ListDirRequest = decode_unary(Some(ct), body).unwrap();
            assert_eq!(req.path, "/home/user");
            assert_eq!(req.depth, 1);
        }
    }

    #[test]
    fn empty_unary_body_is_the_empty_message() {
        let _: ListRequest = decode_unary(Some("application/json"), b"").unwrap();
        let _: ListRequest = decode_unary(Some("application/json"), b"{}").unwrap();
    }

    #[test]
    fn wrong_content_type_is_a_clear_error() {
        for ct in [None, Some("application/proto"), Some("application/connect+json"), Some("text/plain")] {
            let err = decode_unary::<ListRequest>(ct, b"{}").unwrap_err();
            assert_eq!(err.code, Code::Unimplemented);
            assert!(err.message.contains("unsupported content type"), "{err}");
        }
        let body = encode_envelope(0, START_JSON);
        let err = decode_stream_request::<StartRequest>(Some("application/json"), &body).unwrap_err();
        assert_eq!(err.code, Code::Unimplemented);
    }

    #[test]
    fn bad_json_is_invalid_argument() {
        for body in [&b"{"[..], b"[]", b"null", b"{\"path\":3}", b"\xff\xfe"] {
            let err = decode_unary::<ListDirRequest>(Some("application/json"), body).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{body:?}");
            assert!(err.message.starts_with("invalid JSON message"), "{err}");
        }
    }

    #[test]
    fn stream_request_is_one_envelope() {
        let ct = Some("application/connect+json");
        let body = encode_envelope(0, START_JSON);
        let req: StartRequest = decode_stream_request(ct, &body).unwrap();
        assert_eq!(req.process.unwrap().cmd, "/bin/bash");
        assert_eq!(req.stdin, Some(false));
    }

    #[test]
    fn malformed_stream_requests() {
        let ct = Some("application/connect+json");
        let good = encode_envelope(0, START_JSON).to_vec();
        let mut two = good.clone();
        two.extend_from_slice(&good);
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: Vec<(&str, Vec<u8>, Code)> = vec![
            ("empty body", vec![], Code::InvalidArgument),
            ("short header", vec![0, 0, 0], Code::InvalidArgument),
            ("truncated body", good[..good.len() - 1].to_vec(), Code::InvalidArgument),
            ("two messages", two, Code::InvalidArgument),
            ("trailing byte", trailing, Code::InvalidArgument),
            ("bare JSON", START_JSON.to_vec(), Code::InvalidArgument),
            ("end-stream flag", encode_envelope(flags::END_STREAM, START_JSON).to_vec(), Code::InvalidArgument),
            ("compressed", encode_envelope(flags::COMPRESSED, START_JSON).to_vec(), Code::Internal),
            ("bad JSON inside", encode_envelope(0, b"{\"process\":").to_vec(), Code::InvalidArgument),
            ("oversize prefix", b"\x00\x7f\xff\xff\xff{}".to_vec(), Code::ResourceExhausted),
        ];
        for (name, body, code) in cases {
            let err = decode_stream_request::<StartRequest>(ct, &body).unwrap_err();
            assert_eq!(err.code, code, "{name}: {err}");
            assert!(!err.message.is_empty(), "{name}");
        }
    }

    #[test]
    fn stream_frames_decode_for_clients() {
        let msg = StartResponse::default();
        let frame = encode_stream_message(&msg).unwrap();
        assert_eq!(&frame[..], b"\x00\x00\x00\x00\x02{}");
        let mut d = EnvelopeDecoder::new();
        d.push(&frame);
        d.push(&end_stream_frame(Some(&ConnectError::not_found("no such process"))));
        let first = d.next_frame().unwrap().unwrap();
        assert_eq!(decode_stream_message::<StartResponse>(&first), Ok(StreamFrame::Message(msg)));
        let last = d.next_frame().unwrap().unwrap();
        assert_eq!(
            decode_stream_message::<StartResponse>(&last),
            Ok(StreamFrame::End(Err(ConnectError::not_found("no such process"))))
        );
        d.finish().unwrap();
    }

    #[test]
    fn unnamed_enum_numbers_fail_to_encode_without_panicking() {
        let req = crate::process::SendSignalRequest { process: None, signal: 3 };
        assert_eq!(encode_unary(&req).unwrap_err().code, Code::Internal);
    }
}
