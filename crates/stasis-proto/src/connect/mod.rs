//! The Connect protocol (connectrpc.com/docs/protocol) as envd speaks it: JSON codec
//! only, over HTTP/1.1.
//!
//! Owns the byte-level rules: envelopes ([`envelope`]), error codes and error bodies
//! ([`error`]), the timeout header ([`timeout`]), content types and message bodies
//! ([`message`]) and which paths name which methods ([`route`]). It never reads from a
//! socket: callers hand it header values and body bytes, and write out what it returns.

pub mod envelope;
pub mod error;
pub mod message;
pub mod route;
pub mod timeout;

#[cfg(test)]
mod fuzz_tests;

pub use envelope::{encode_envelope, Envelope, EnvelopeDecoder};
pub use error::{end_stream_frame, Code, ConnectError};
pub use message::{
    decode_stream_message, decode_stream_request, decode_unary, encode_stream_message, encode_unary, StreamFrame,
};
pub use route::{parse_route, FilesystemMethod, MethodKind, ProcessMethod, Route};
pub use timeout::{parse_timeout, timeout_from_headers};

/// Content type of unary requests and responses (JSON codec).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of streaming requests and responses (JSON codec).
pub const CONTENT_TYPE_CONNECT_JSON: &str = "application/connect+json";
/// Header carrying the client's deadline in milliseconds.
pub const TIMEOUT_HEADER: &str = "connect-timeout-ms";
/// Header the SDKs send with value `1`; servers may ignore it.
pub const PROTOCOL_VERSION_HEADER: &str = "connect-protocol-version";
