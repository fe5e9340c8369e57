//! What a proxied request needs to know of a sandbox (its state, tokens and auto-resume),
//! cached in memory so a request to a running sandbox reads no database.
//!
//! Every state change of a sandbox invalidates its entry (`Lifecycle::flip`, kill), and
//! each entry carries a generation number drawn from one counter that never repeats: a
//! request admitted on generation `g` checks, once its connection is counted as open,
//! that the sandbox is still at `g`. If a pause began in between, the request is admitted
//! again (and waits, resumes or is refused) instead of reaching a sandbox on a stale route;
//! if the pause begins after the check, it cuts the connection with the others.
//! A fill that raced with an invalidation is dropped, so a stale row is never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stasis_store::{SandboxRow, SandboxState};

/// The facts of a sandbox its proxied requests depend on.
#[derive(Debug)]
pub(super) struct Route {
    pub generation: u64,
    pub state: SandboxState,
    pub auto_resume: bool,
    pub envd_access_token: Option<String>,
    pub traffic_access_token: Option<String>,
    /// How long its proxied connections stay parked across a pause (`parking.rs`), or
    /// `None`: cut at pause.
    pub park: Option<std::time::Duration>,
}

#[derive(Default)]
pub(super) struct Routes {
    slots: Mutex<HashMap<String, Slot>>,
    next_generation: AtomicU64,
}

struct Slot {
    generation: u64,
    route: Option<Arc<Route>>,
}

impl Routes {
    fn next(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    /// The cached route of `id`, or (on a miss) the generation to fill it at.
    pub fn lookup(&self, id: &str) -> Result<Arc<Route>, u64> {
        let mut slots = self.slots.lock().unwrap();
        if let Some(slot) = slots.get(id) {
            return slot.route.clone().ok_or(slot.generation);
        }
        let generation = self.next();
        slots.insert(id.to_string(), Slot { generation, route: None });
        Err(generation)
    }

    /// Whether `id` has a cached route (only this node's sandboxes are ever filled).
    /// A paused one does not count: in a cluster it may be about to move (its node draining).
    pub fn lookup_cached(&self, id: &str) -> bool {
        self.slots
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|s| s.route.as_ref().is_some_and(|r| r.state != SandboxState::Paused))
    }

    /// The route read from `row` at `generation`; cached unless `id` changed since.
    /// `park_default`: the server's parking limit (`LifecycleConfig::park_connections`).
    pub fn fill(
        &self,
        id: &str,
        generation: u64,
        row: &SandboxRow,
        park_default: Option<std::time::Duration>,
    ) -> Arc<Route> {
        let route = Arc::new(Route {
            generation,
            state: row.state,
            auto_resume: row.auto_resume,
            envd_access_token: row.envd_access_token.clone(),
            traffic_access_token: row.traffic_access_token.clone(),
            // Checked at create; a value that no longer reads (an older row) parks nothing.
            park: super::parking::limit(&row.metadata, park_default).unwrap_or(None),
        });
        if let Some(slot) = self.slots.lock().unwrap().get_mut(id) {
            if slot.generation == generation {
                slot.route = Some(route.clone());
            }
        }
        route
    }

    /// The sandbox changed state: its route must be read again.
    pub fn invalidate(&self, id: &str) {
        let generation = self.next();
        if let Some(slot) = self.slots.lock().unwrap().get_mut(id) {
            *slot = Slot { generation, route: None };
        }
    }

    /// The sandbox is gone (or never existed): no entry kept for it.
    pub fn forget(&self, id: &str) {
        self.slots.lock().unwrap().remove(id);
    }

    /// Whether `id` is still at `generation` (no state change since it was read).
    pub fn is_current(&self, id: &str, generation: u64) -> bool {
        self.slots.lock().unwrap().get(id).is_some_and(|s| s.generation == generation)
    }
}
