//! The lifecycle's clock. Production reads the wall clock; tests read a wall clock that
//! advances with tokio's clock, so under `tokio::time::pause()` every timeout rule runs in
//! virtual time (an hour of timeouts and back-offs in milliseconds, deterministically).

use stasis_store::{now_ms, UnixMillis};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Wall time and tokio instant at the start, when following tokio's clock.
    anchor: Option<(UnixMillis, tokio::time::Instant)>,
}

impl Clock {
    /// The host's wall clock.
    pub fn wall() -> Self {
        Self { anchor: None }
    }

    /// Now's wall time, then advancing as tokio's clock does (paused and advanced by tests).
    pub fn tokio() -> Self {
        Self { anchor: Some((now_ms(), tokio::time::Instant::now())) }
    }

    pub fn now_ms(&self) -> UnixMillis {
        match self.anchor {
            None => now_ms(),
            Some((wall, at)) => wall + i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 2),
        }
    }
}
