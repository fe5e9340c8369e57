//! The relay protocol: a TCP connection to a port inside a sandbox, carried between the
//! host proxy and the in-sandbox agent over a *leg* (an upgraded HTTP/1.1 connection to
//! the agent) that may be cut and reopened, so the connection survives a pause
//! (docs/architecture.md, "Connections across a pause").
//!
//! Each side numbers the bytes it sends (one counter per direction, from 0) and keeps
//! those the other side has not acknowledged; a new leg starts with both sides saying how
//! much they received, and each resends the rest. Nothing is lost when a leg dies: the
//! host keeps its unacknowledged bytes in the daemon, the agent in its memory, which CRIU
//! checkpoints and restores with it.
//!
//! - [`frame`]: the frames on a leg (DATA, ACK, FIN, CLOSE) and an incremental decoder.
//! - [`state`]: one side's state of a relayed connection, without I/O (testable alone).
//! - [`handshake`]: the upgrade request and answer that open or resume a session.
//! - [`pump`]: drives the state over one leg and a local stream until the leg ends.
//!
//! Shared by the agent (static, in every sandbox) and the server: no runtime, no HTTP
//! server, only tokio's I/O traits.

pub mod frame;
pub mod handshake;
pub mod pump;
pub mod state;

pub use frame::{Decoder, Frame, FrameError};
pub use state::{Event, ProtocolError, RelayState};
