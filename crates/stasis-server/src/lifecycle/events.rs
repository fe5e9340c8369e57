//! The sandbox's events: written by each operation (created, paused with its timings,
//! resumed, killed, snapshot, failed because...), read by the API as the sandbox's logs and
//! events. Writing one never fails the operation: a lost event is logged instead.

use stasis_store::{EventQuery, Level, SandboxEvent};

use super::{Lifecycle, LifecycleError, Result};

impl Lifecycle {
    /// Records an event of sandbox `id`.
    pub(super) async fn event(&self, id: &str, level: Level, kind: &str, message: String, fields: &[(&str, String)]) {
        let event = SandboxEvent {
            seq: 0,
            sandbox_id: id.to_string(),
            at: self.now(),
            level,
            kind: kind.to_string(),
            message,
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        if let Err(e) = self.inner.store.add_event(&event).await {
            tracing::warn!(sandbox = %id, "cannot record the event {kind:?}: {e}");
        }
    }

    /// The events `q` selects; `NotFound` when the sandbox neither exists nor left any.
    pub async fn events(&self, q: &EventQuery) -> Result<Vec<SandboxEvent>> {
        let events = self.inner.store.events(q).await?;
        if events.is_empty() && self.inner.store.get_sandbox(&q.sandbox_id).await?.is_none() {
            let any = EventQuery { sandbox_id: q.sandbox_id.clone(), limit: Some(1), ..Default::default() };
            if self.inner.store.events(&any).await?.is_empty() {
                return Err(LifecycleError::NotFound(q.sandbox_id.clone()));
            }
        }
        Ok(events)
    }

    /// The size of the sandbox's last memory checkpoint, from its last `paused` event (0
    /// if none says).
    pub(super) async fn checkpoint_bytes(&self, id: &str) -> u64 {
        let q = EventQuery { sandbox_id: id.to_string(), newest_first: true, limit: Some(50), ..Default::default() };
        let events = self.inner.store.events(&q).await.unwrap_or_default();
        let paused = events.iter().find(|e| e.kind == "paused");
        paused.and_then(|e| e.fields.get("image_bytes")?.parse().ok()).unwrap_or(0)
    }

    /// Forgets events older than `keep_ms` (the sampler calls it now and then).
    pub(super) async fn prune_events(&self, keep_ms: i64) {
        match self.inner.store.prune_events(self.now() - keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("pruned {n} sandbox events"),
            Err(e) => tracing::warn!("cannot prune sandbox events: {e}"),
        }
    }
}
