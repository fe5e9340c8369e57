//! Sandbox events: what happened to a sandbox (created, paused with its timings, resumed,
//! auto-paused because its timeout passed, failed because...), kept after the sandbox is
//! gone so its end can still be read. The lifecycle writes them; the API serves them as
//! the sandbox's logs (E2B's `/sandboxes/{id}/logs`) and as events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// How serious an event is, with E2B's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            _ => return None,
        })
    }
}

/// One event of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxEvent {
    /// Its place among all events, increasing: a cursor for following them.
    pub seq: i64,
    pub sandbox_id: String,
    pub at: UnixMillis,
    pub level: Level,
    /// What happened, one word: `created`, `paused`, `resumed`, `killed`, `snapshot`,
    /// `pause-failed`, ...
    pub kind: String,
    /// The same in words, with the reason ("paused: its timeout passed (auto-pause)").
    pub message: String,
    /// Figures and details (`total_ms`, `dump_ms`, `reason`, `error`...).
    pub fields: BTreeMap<String, String>,
}

/// Which events to read: of one sandbox, after a `seq` or from a time, oldest first unless
/// `newest_first`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub sandbox_id: String,
    /// Only events with a larger `seq` (following).
    pub after_seq: Option<i64>,
    /// Only events at or after this time.
    pub since: Option<UnixMillis>,
    /// Only events at or before this time.
    pub until: Option<UnixMillis>,
    pub min_level: Option<Level>,
    /// Only events whose message contains this.
    pub search: Option<String>,
    pub newest_first: bool,
    /// At most this many (capped at [`MAX_EVENTS`]).
    pub limit: Option<u32>,
}

/// The most events one read returns.
pub const MAX_EVENTS: u32 = 1000;
