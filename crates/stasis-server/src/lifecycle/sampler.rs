//! Usage history: every [`INTERVAL`] each running sandbox's CPU, memory and disk are
//! sampled and kept for [`KEEP`], for `getMetrics` with a time range (E2B returns a series,
//! one point every few seconds). Kept in memory: a restart starts the series afresh, and a
//! sample costs no write to the database. The same task prunes old events now and then.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use stasis_store::{SandboxState, UnixMillis};

use super::Lifecycle;

/// How often running sandboxes are sampled.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long samples are kept (also after a sandbox paused; its history goes at kill).
pub const KEEP: Duration = Duration::from_secs(3600);
/// How long events are kept (the sandbox's logs, also after it is gone).
pub const EVENTS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One sample of a sandbox's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: UnixMillis,
    pub cpu_count: u32,
    /// CPU use since the previous sample, in % of the sandbox's CPUs.
    pub cpu_pct: f64,
    pub mem_used: u64,
    pub mem_total: u64,
    pub disk_used: u64,
    pub disk_total: u64,
}

#[derive(Default)]
pub(super) struct History {
    series: Mutex<HashMap<String, Series>>,
}

#[derive(Default)]
struct Series {
    samples: VecDeque<Sample>,
    /// The cumulative CPU time at the last sample, for the next one's percentage.
    last_cpu: Option<(u64, UnixMillis)>,
}

impl History {
    fn push(&self, id: &str, cpu_ns: u64, mut s: Sample) {
        let mut m = self.series.lock().unwrap();
        let series = m.entry(id.to_string()).or_default();
        if let Some((prev_ns, prev_at)) = series.last_cpu {
            let over_ns = (s.at - prev_at).max(1) as f64 * 1e6 * f64::from(s.cpu_count.max(1));
            s.cpu_pct = (cpu_ns.saturating_sub(prev_ns) as f64 / over_ns * 100.0).clamp(0.0, 100.0);
        }
        series.last_cpu = Some((cpu_ns, s.at));
        let oldest = s.at - KEEP.as_millis() as i64;
        series.samples.push_back(s);
        while series.samples.front().is_some_and(|x| x.at < oldest) {
            series.samples.pop_front();
        }
    }

    /// Keeps the series of `live` sandboxes only.
    fn retain(&self, live: &std::collections::HashSet<String>) {
        self.series.lock().unwrap().retain(|id, _| live.contains(id));
    }

    /// Samples with `start <= at <= end` (ms), oldest first.
    pub(super) fn range(&self, id: &str, start: Option<UnixMillis>, end: Option<UnixMillis>) -> Vec<Sample> {
        let m = self.series.lock().unwrap();
        let Some(series) = m.get(id) else { return vec![] };
        let inside = |s: &&Sample| start.is_none_or(|t| s.at >= t) && end.is_none_or(|t| s.at <= t);
        series.samples.iter().filter(inside).cloned().collect()
    }
}

impl Lifecycle {
    /// The samples of sandbox `id` between `start` and `end` (ms, both included).
    pub fn samples(&self, id: &str, start: Option<UnixMillis>, end: Option<UnixMillis>) -> Vec<Sample> {
        self.inner.history.range(id, start, end)
    }

    /// Samples every running sandbox once.
    pub(super) async fn sample_all(&self) {
        use SandboxState::*;
        let Ok(rows) = self.own_in_states(&[Running, Pausing, Paused, Resuming]).await else {
            return;
        };
        self.inner.history.retain(&rows.iter().map(|r| r.id.clone()).collect());
        for row in rows.into_iter().filter(|r| r.state == Running) {
            let Ok(u) = self.inner.runtime.usage(&row.id).await else { continue };
            let sample = Sample {
                at: self.now(),
                cpu_count: row.cpu_count,
                cpu_pct: 0.0,
                mem_used: u.memory_bytes,
                mem_total: u.memory_limit_bytes,
                disk_used: u.disk_bytes,
                disk_total: row.disk_size_mb << 20,
            };
            self.inner.history.push(&row.id, u.cpu_usage_ns, sample);
        }
    }
}

pub fn spawn(lc: Lifecycle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let prune_every = 3600 / INTERVAL.as_secs().max(1);
        // Pruned at the first tick, then about hourly.
        let mut until_prune = 0;
        loop {
            tick.tick().await;
            lc.sample_all().await;
            if until_prune == 0 {
                lc.prune_events(EVENTS_KEPT.as_millis() as i64).await;
                until_prune = prune_every;
            }
            until_prune -= 1;
        }
    });
}
