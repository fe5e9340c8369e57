//! Connect error codes, their HTTP statuses and the two places errors travel: the JSON
//! body of a failed unary call and the end-of-stream frame of a streaming call.
//!
//! This is the wire form only; each layer keeps its own error type and maps it here once.

use std::{fmt, str::FromStr};

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::envelope::{encode_envelope, flags};

/// A Connect error code; serialised as its snake_case name (`"not_found"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub const ALL: [Code; 16] = [
        Code::Canceled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a failed unary call with this code (Connect spec table).
    /// Streaming calls answer 200 and carry the code in the end-of-stream frame.
    pub fn http_status(self) -> StatusCode {
        match self {
            // 499 "Client Closed Request" is non-standard but what the spec names.
            Code::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// The code a client infers from an HTTP status when the body is not a Connect
    /// error (e.g. a proxy's error page), per the Connect spec.
    pub fn from_http_status(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Code::ALL.into_iter().find(|c| c.as_str() == s).ok_or(())
    }
}

/// An error as it crosses the wire: a code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    pub code: Code,
    pub message: String,
}

/// Wire form shared by unary error bodies and the `error` of end-of-stream frames.
/// Unknown members (`details`) are ignored; an unknown code reads as `unknown`.
#[derive(Serialize, Deserialize)]
struct WireError<'a> {
    #[serde(default, deserialize_with = "lenient_code")]
    code: Option<Code>,
    #[serde(default, skip_serializing_if = "str::is_empty", borrow)]
    message: std::borrow::Cow<'a, str>,
}

fn lenient_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Code>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.map(|s| s.parse().unwrap_or(Code::Unknown)))
}

#[derive(Serialize, Deserialize)]
struct EndStream<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    error: Option<WireError<'a>>,
}

impl ConnectError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ConnectError { code, message: message.into() }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }

    pub fn http_status(&self) -> StatusCode {
        self.code.http_status()
    }

    fn wire(&self) -> WireError<'_> {
        WireError { code: Some(self.code), message: self.message.as_str().into() }
    }

    /// Body of a failed unary call: `{"code":"not_found","message":"..."}`
    /// (`message` left out when empty, as the spec allows).
    pub fn to_unary_json(&self) -> Bytes {
        // Serialising a struct of a str enum and a string cannot fail.
        Bytes::from(serde_json::to_vec(&self.wire()).unwrap_or_default())
    }

    /// Client side: the error of a failed unary call from its status and body. A body
    /// that is not a Connect error yields a code inferred from the status.
    pub fn from_unary_response(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<WireError<'_>>(body) {
            Ok(WireError { code: Some(code), message }) => Self::new(code, message),
            _ => Self::new(
                Code::from_http_status(status),
                format!(
                    "HTTP {status} without a Connect error body: {}",
                    String::from_utf8_lossy(&body[..body.len().min(256)])
                ),
            ),
        }
    }

    /// Client side: reads the JSON payload of an end-of-stream frame: `Ok(None)` for a
    /// clean end, `Ok(Some(e))` when the stream ended with an error, `Err` when the
    /// payload is not an end-of-stream message at all.
    pub fn from_end_stream_json(payload: &[u8]) -> Result<Option<Self>, ConnectError> {
        let end: EndStream<'_> = serde_json::from_slice(payload)
            .map_err(|e| ConnectError::internal(format!("protocol error: invalid end-of-stream message: {e}")))?;
        Ok(end.error.map(|e| Self::new(e.code.unwrap_or(Code::Unknown), e.message)))
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for ConnectError {}

/// The last frame of every streaming response (flag 0x02): `{}` on success or
/// `{"error":{"code":..,"message":..}}`. The JS SDK fails a stream that lacks it.
pub fn end_stream_frame(error: Option<&ConnectError>) -> Bytes {
    let end = EndStream { error: error.map(ConnectError::wire) };
    let json = serde_json::to_vec(&end).unwrap_or_else(|_| b"{}".to_vec());
    encode_envelope(flags::END_STREAM, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_names_and_serde() {
        for code in Code::ALL {
            assert_eq!(code.as_str().parse::<Code>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert!("NOT_FOUND".parse::<Code>().is_err());
    }

    #[test]
    fn http_statuses_follow_the_connect_spec() {
        let expected = [
            (Code::Canceled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, status) in expected {
            assert_eq!(code.http_status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn unary_json_shape() {
        let e = ConnectError::not_found("path /x does not exist");
        assert_eq!(&e.to_unary_json()[..], br#"{"code":"not_found","message":"path /x does not exist"}"#);
        let bare = ConnectError::new(Code::Internal, "");
        assert_eq!(&bare.to_unary_json()[..], br#"{"code":"internal"}"#);
    }

    #[test]
    fn unary_json_parses_back() {
        let e = ConnectError::new(Code::AlreadyExists, "dir \"a\" exists");
        let back = ConnectError::from_unary_response(StatusCode::CONFLICT, &e.to_unary_json());
        assert_eq!(back, e);
        let with_details = br#"{"code":"unavailable","message":"m","details":[{"type":"x"}]}"#;
        let back = ConnectError::from_unary_response(StatusCode::SERVICE_UNAVAILABLE, with_details);
        assert_eq!(back, ConnectError::new(Code::Unavailable, "m"));
        let odd = br#"{"code":"brand_new_code","message":"m"}"#;
        assert_eq!(ConnectError::from_unary_response(StatusCode::OK, odd).code, Code::Unknown);
    }

    #[test]
    fn non_connect_error_bodies_fall_back_to_the_status() {
        let e = ConnectError::from_unary_response(StatusCode::BAD_GATEWAY, b"<html>bad gateway");
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.message.contains("502"), "{e}");
        let e = ConnectError::from_unary_response(StatusCode::NOT_FOUND, b"");
        assert_eq!(e.code, Code::Unimplemented);
    }

    #[test]
    fn end_stream_frames() {
        assert_eq!(&end_stream_frame(None)[..], b"\x02\x00\x00\x00\x02{}");
        let e = ConnectError::deadline_exceeded("process timed out");
        let frame = end_stream_frame(Some(&e));
        let json = br#"{"error":{"code":"deadline_exceeded","message":"process timed out"}}"#;
        assert_eq!(frame[0], 0x02);
        assert_eq!(u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize, json.len());
        assert_eq!(&frame[5..], json);
        assert_eq!(ConnectError::from_end_stream_json(&frame[5..]), Ok(Some(e)));
        assert_eq!(ConnectError::from_end_stream_json(b"{}"), Ok(None));
        assert_eq!(ConnectError::from_end_stream_json(br#"{"metadata":{"a":["b"]}}"#), Ok(None));
        assert!(ConnectError::from_end_stream_json(b"not json").is_err());
    }
}
