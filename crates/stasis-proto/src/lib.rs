//! The wire contracts of the in-sandbox agent: what the E2B / Novita SDKs send to it
//! and what they expect back (envd), and what the host runtime tells it (boot, handover).
//!
//! This crate owns three things, shared by the in-sandbox agent, the host runtime and the
//! host proxy:
//!
//! - **Wire types** for the `process.Process` and `filesystem.Filesystem` services,
//!   generated at build time from `proto/` (prost structs with proto3-JSON serde impls
//!   from pbjson: camelCase names, enums by name, bytes as base64, int64 as strings,
//!   Timestamp as RFC 3339). Parsing accepts enum numbers, original field names and
//!   ignores unknown fields, as envd (connect-go) does.
//! - **Connect protocol framing** in [`connect`]: envelopes, error codes and their HTTP
//!   statuses, end-of-stream frames, `Connect-Timeout-Ms`, content types and routes.
//! - **The runtime ↔ agent contract** in [`agent`]: the boot config, the boot sync
//!   protocol, the envd port and the `/init` handover request.
//! - **Signed file URLs** in [`file_signing`]: the signature the SDKs put on `/files`
//!   URLs of a `secure` sandbox, checked by the agent and by the host proxy alike.
//!
//! It must not do I/O, spawn tasks or depend on an HTTP server or runtime: it turns bytes
//! and header values into typed values and back, so both binaries (one of them statically
//! linked into the guest) can use it and every rule here is testable without a socket.
//! What a method *does* belongs to the agent; routing between sandboxes to the proxy.

pub mod agent;
pub mod connect;
pub mod file_signing;
pub mod timestamp;

pub use timestamp::{rfc3339_millis, Timestamp};

/// `process.Process`: start, attach to, signal and feed processes in the sandbox.
#[allow(clippy::all, missing_docs)]
pub mod process {
    include!(concat!(env!("OUT_DIR"), "/process.rs"));
    include!(concat!(env!("OUT_DIR"), "/process.serde.rs"));
}

/// `filesystem.Filesystem`: stat, list, move, remove and watch paths in the sandbox.
#[allow(clippy::all, missing_docs)]
pub mod filesystem {
    include!(concat!(env!("OUT_DIR"), "/filesystem.rs"));
    include!(concat!(env!("OUT_DIR"), "/filesystem.serde.rs"));
}

#[cfg(test)]
mod wire_tests;
