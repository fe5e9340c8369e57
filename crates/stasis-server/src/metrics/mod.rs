//! Prometheus metrics of the daemon: what it did (counters and latency histograms, recorded
//! where the lifecycle and the proxy act) and what it holds (gauges, set from a [`Census`]
//! taken at each scrape). Encoding is `prometheus-client`'s, in the Prometheus text format
//! (0.0.4) or OpenMetrics when the scraper asks for it.
//!
//! It owns the metric families and their names; it decides nothing and reads nothing by
//! itself: the lifecycle hands it events and the census, `ops/metrics.rs` serves it.

mod census;
mod host;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use census::Census;
pub use host::HostCapacity;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabel {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabel {
    state: String,
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A sandbox operation, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Pause,
    Resume,
    Snapshot,
    Kill,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Snapshot => "snapshot",
            Op::Kill => "kill",
        }
    }
}

/// What the lifecycle did by itself (not asked by an API call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The timeout ended a running sandbox with a pause (auto-pause).
    TimeoutPause,
    TimeoutKill,
    /// The idle timeout (no client connection) ended it.
    IdlePause,
    IdleKill,
    /// Paused longer than `--paused-retention`.
    RetentionKill,
    /// The retry of a kill that failed.
    KillRetry,
    /// Proxied traffic resumed a paused sandbox.
    AutoResume,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::TimeoutPause => "timeout_pause",
            Action::TimeoutKill => "timeout_kill",
            Action::IdlePause => "idle_pause",
            Action::IdleKill => "idle_kill",
            Action::RetentionKill => "retention_kill",
            Action::KillRetry => "kill_retry",
            Action::AutoResume => "auto_resume",
        }
    }
}

const ACTIONS: [Action; 7] = [
    Action::TimeoutPause,
    Action::TimeoutKill,
    Action::IdlePause,
    Action::IdleKill,
    Action::RetentionKill,
    Action::KillRetry,
    Action::AutoResume,
];

/// How a proxied connection was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Http,
    /// `CONNECT`: a raw tunnel.
    Connect,
}

pub struct Metrics {
    registry: Registry,
    ops: Family<OperationLabel, Counter>,
    op_errors: Family<OperationLabel, Counter>,
    op_seconds: Family<OperationLabel, Histogram>,
    pause_phase_seconds: Family<PhaseLabel, Histogram>,
    checkpoint_bytes: Family<DirectionLabel, Counter>,
    actions: Family<ActionLabel, Counter>,
    failed_actions: Family<OperationLabel, Counter>,
    proxy_requests: Family<ProxyLabel, Counter>,
    proxy_bytes: Family<DirectionLabel, Counter>,
    proxy_open: Gauge,
    sandboxes: Family<SandboxLabel, Gauge>,
    host_memory: Family<KindLabel, Gauge>,
    host_disk: Family<KindLabel, Gauge>,
    host_cpus: Family<KindLabel, Gauge>,
}

fn seconds() -> Histogram {
    // 5 ms .. ~160 s: a fast snapshot restore to a multi-GiB pause on a slow disk.
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            ops: Family::default(),
            op_errors: Family::default(),
            op_seconds: Family::new_with_constructor(seconds),
            pause_phase_seconds: Family::new_with_constructor(seconds),
            checkpoint_bytes: Family::default(),
            actions: Family::default(),
            failed_actions: Family::default(),
            proxy_requests: Family::default(),
            proxy_bytes: Family::default(),
            proxy_open: Gauge::default(),
            sandboxes: Family::default(),
            host_memory: Family::default(),
            host_disk: Family::default(),
            host_cpus: Family::default(),
            registry: Registry::default(),
        };
        r.register("stasis_sandbox_operations", "Sandbox operations finished, by operation", m.ops.clone());
        r.register(
            "stasis_sandbox_operation_errors",
            "Sandbox operations that failed, by operation",
            m.op_errors.clone(),
        );
        r.register(
            "stasis_sandbox_operation_duration_seconds",
            "Time a sandbox operation took (successful ones), by operation",
            m.op_seconds.clone(),
        );
        r.register(
            "stasis_pause_phase_duration_seconds",
            "Time the phases of a memory pause took, as the runtime reports them (dump: CRIU; sync: fsync of the images and disk)",
            m.pause_phase_seconds.clone(),
        );
        r.register(
            "stasis_checkpoint_bytes",
            "Checkpoint bytes written (pause) and read (memory resume)",
            m.checkpoint_bytes.clone(),
        );
        r.register(
            "stasis_lifecycle_actions",
            "Actions the lifecycle took by itself (timeouts, idle timeouts, retention, auto-resume)",
            m.actions.clone(),
        );
        r.register(
            "stasis_lifecycle_failed_actions",
            "Failed lifecycle actions by operation (lost: a sandbox whose processes ended while it was meant to run)",
            m.failed_actions.clone(),
        );
        r.register(
            "stasis_proxy_requests",
            "Proxied requests into sandboxes, by kind and outcome",
            m.proxy_requests.clone(),
        );
        r.register(
            "stasis_proxy_bytes",
            "Bytes through the proxy (in: to sandboxes; out: to clients)",
            m.proxy_bytes.clone(),
        );
        r.register("stasis_proxy_open_connections", "Proxied connections open now", m.proxy_open.clone());
        r.register("stasis_sandboxes", "Sandboxes by state and template", m.sandboxes.clone());
        r.register(
            "stasis_host_memory_bytes",
            "Host memory: total, available, and committed to running sandboxes (their limits)",
            m.host_memory.clone(),
        );
        r.register(
            "stasis_host_disk_bytes",
            "Data-dir filesystem: total, available, and committed to sandboxes' disks (running and paused)",
            m.host_disk.clone(),
        );
        r.register("stasis_host_cpus", "Host CPUs: total, and committed to running sandboxes", m.host_cpus.clone());
        m.zeroes();
        Metrics { registry: r, ..m }
    }

    /// Every counter that can appear starts at 0, so a scrape shows every family before
    /// anything happened and `rate()` sees the first event.
    fn zeroes(&self) {
        for op in [Op::Create, Op::Pause, Op::Resume, Op::Snapshot, Op::Kill] {
            let l = OperationLabel { operation: op.name() };
            let _ = self.ops.get_or_create(&l);
            let _ = self.op_errors.get_or_create(&l);
            let _ = self.op_seconds.get_or_create(&l);
        }
        for phase in ["dump", "sync"] {
            let _ = self.pause_phase_seconds.get_or_create(&PhaseLabel { phase });
        }
        for direction in ["written", "read"] {
            let _ = self.checkpoint_bytes.get_or_create(&DirectionLabel { direction });
        }
        for a in ACTIONS {
            let _ = self.actions.get_or_create(&ActionLabel { action: a.name() });
        }
        for operation in ["pause", "resume", "kill", "lost"] {
            let _ = self.failed_actions.get_or_create(&OperationLabel { operation });
        }
        for kind in ["http", "connect"] {
            for outcome in ["ok", "refused"] {
                let _ = self.proxy_requests.get_or_create(&ProxyLabel { kind, outcome });
            }
        }
        for direction in ["in", "out"] {
            let _ = self.proxy_bytes.get_or_create(&DirectionLabel { direction });
        }
    }

    /// An operation finished after `secs`: counted, and its latency observed when it worked.
    pub fn operation(&self, op: Op, secs: f64, ok: bool) {
        let l = OperationLabel { operation: op.name() };
        self.ops.get_or_create(&l).inc();
        if ok {
            self.op_seconds.get_or_create(&l).observe(secs);
        } else {
            self.op_errors.get_or_create(&l).inc();
        }
    }

    /// A memory pause's phases and bytes, as the runtime reported them.
    pub fn pause_phases(&self, dump_ms: u64, sync_ms: u64, image_bytes: u64) {
        for (phase, ms) in [("dump", dump_ms), ("sync", sync_ms)] {
            self.pause_phase_seconds.get_or_create(&PhaseLabel { phase }).observe(ms as f64 / 1000.0);
        }
        self.checkpoint_bytes.get_or_create(&DirectionLabel { direction: "written" }).inc_by(image_bytes);
    }

    pub fn checkpoint_read(&self, bytes: u64) {
        self.checkpoint_bytes.get_or_create(&DirectionLabel { direction: "read" }).inc_by(bytes);
    }

    pub fn action(&self, a: Action) {
        self.actions.get_or_create(&ActionLabel { action: a.name() }).inc();
    }

    pub fn action_failed(&self, operation: &'static str) {
        self.failed_actions.get_or_create(&OperationLabel { operation }).inc();
    }

    pub fn failed_count(&self, operation: &'static str) -> u64 {
        self.failed_actions.get_or_create(&OperationLabel { operation }).get()
    }

    /// A proxied request was admitted (`ok`) or refused.
    pub fn proxy_request(&self, kind: ProxyKind, ok: bool) {
        let kind = match kind {
            ProxyKind::Http => "http",
            ProxyKind::Connect => "connect",
        };
        let outcome = if ok { "ok" } else { "refused" };
        self.proxy_requests.get_or_create(&ProxyLabel { kind, outcome }).inc();
    }

    /// Bytes through the proxy: `to_sandbox` from clients, `to_client` from sandboxes.
    pub fn proxy_bytes(&self, to_sandbox: u64, to_client: u64) {
        if to_sandbox > 0 {
            self.proxy_bytes.get_or_create(&DirectionLabel { direction: "in" }).inc_by(to_sandbox);
        }
        if to_client > 0 {
            self.proxy_bytes.get_or_create(&DirectionLabel { direction: "out" }).inc_by(to_client);
        }
    }

    /// The gauges from a census, then every family in the Prometheus text format, or in
    /// OpenMetrics with `openmetrics`.
    pub fn render(&self, census: &Census, openmetrics: bool) -> String {
        self.set_gauges(census);
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        encoded.expect("writing to a String cannot fail");
        out
    }

    fn set_gauges(&self, c: &Census) {
        self.sandboxes.clear();
        for ((state, template), n) in &c.sandboxes {
            let l = SandboxLabel { state: state.clone(), template: template.clone() };
            self.sandboxes.get_or_create(&l).set(*n as i64);
        }
        self.proxy_open.set(c.open_connections as i64);
        let set = |f: &Family<KindLabel, Gauge>, kind: &'static str, v: u64| {
            f.get_or_create(&KindLabel { kind }).set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.host_memory, "committed", c.committed.memory_bytes);
        set(&self.host_disk, "committed", c.committed.disk_bytes);
        set(&self.host_cpus, "committed", c.committed.cpus);
        if let Some(h) = &c.host {
            set(&self.host_memory, "total", h.memory_total);
            set(&self.host_memory, "available", h.memory_available);
            set(&self.host_disk, "total", h.disk_total);
            set(&self.host_disk, "available", h.disk_available);
            set(&self.host_cpus, "total", h.cpus);
        }
    }
}

/// The content type of [`Metrics::render`]'s output.
pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    }
}

#[cfg(test)]
mod tests;
