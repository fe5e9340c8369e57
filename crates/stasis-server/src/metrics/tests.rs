//! `GET /metrics` end to end over the lifecycle with the fake runtime: the families an
//! operator needs, parsed by a Prometheus text-format parser, and its authentication.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_parse::{Scrape, Value};
use stasis_store::Store;
use tower::ServiceExt;

use crate::api::AppState;
use crate::lifecycle::fake_runtime::Op as FakeOp;
use crate::lifecycle::tests::{harness, Harness};
use crate::ops::OpsConfig;

const KEY: &str = "e2b_1111111111111111111111111111111111111111";
const TOKEN: &str = "metrics-secret";

async fn scrape(h: &Harness, auth: Option<(&str, &str)>, accept: Option<&str>) -> (StatusCode, String, String) {
    let ops = OpsConfig { data_dir: Some(std::env::temp_dir()), metrics_token: Some(TOKEN.into()) };
    let app = crate::app(AppState { ops: ops.into(), ..h.app_state() });
    let mut req = Request::get("/metrics");
    if let Some((k, v)) = auth {
        req = req.header(k, v);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of `metric` whose labels include `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(start_paused = true)]
async fn metrics_show_what_the_daemon_holds_and_did() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let a = h.create(|_| {}).await;
    let _b = h.create(|p| p.template = "other".into()).await;
    let failing = h.create(|_| {}).await;
    h.lc.pause(&a, true).await.unwrap();
    h.rt.fail(FakeOp::Pause, 1);
    assert!(h.lc.pause(&failing, true).await.is_err());
    h.lc.connect(&a, None, true).await.unwrap();

    let (status, ct, text) = scrape(&h, Some(("authorization", &format!("Bearer {TOKEN}"))), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let s = parse(&text);

    let running = |t: &str| value(&s, "stasis_sandboxes", &[("state", "running"), ("template", t)]);
    assert_eq!(running("base"), Some(2.0), "{text}");
    assert_eq!(running("other"), Some(1.0));
    let ops = |m: &str, op: &str| value(&s, m, &[("operation", op)]);
    assert_eq!(ops("stasis_sandbox_operations_total", "create"), Some(3.0));
    assert_eq!(ops("stasis_sandbox_operations_total", "pause"), Some(2.0));
    assert_eq!(ops("stasis_sandbox_operation_errors_total", "pause"), Some(1.0));
    assert_eq!(ops("stasis_sandbox_operations_total", "resume"), Some(1.0));
    assert_eq!(ops("stasis_sandbox_operation_duration_seconds", "pause"), Some(1.0), "one successful pause observed");
    assert_eq!(ops("stasis_lifecycle_failed_actions_total", "pause"), Some(1.0));
    assert_eq!(value(&s, "stasis_pause_phase_duration_seconds", &[("phase", "dump")]), Some(1.0));
    assert_eq!(value(&s, "stasis_lifecycle_actions_total", &[("action", "idle_pause")]), Some(0.0), "zero, not absent");
    assert!(value(&s, "stasis_checkpoint_bytes_total", &[("direction", "written")]).is_some(), "{text}");
    // Three sandboxes of 512 MiB and 2 CPUs run.
    let host = |m: &str, kind: &str| value(&s, m, &[("kind", kind)]);
    assert_eq!(host("stasis_host_memory_bytes", "committed"), Some(((3 * 512u64) << 20) as f64));
    assert_eq!(host("stasis_host_cpus", "committed"), Some(6.0));
    assert!(host("stasis_host_memory_bytes", "total").unwrap() > 0.0);
    assert!(host("stasis_host_disk_bytes", "available").is_some());
    assert_eq!(value(&s, "stasis_proxy_open_connections", &[]), Some(0.0));

    // Every family has its help text.
    let names: HashMap<_, _> = s.docs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for family in [
        "stasis_sandboxes",
        "stasis_sandbox_operations_total",
        "stasis_sandbox_operation_duration_seconds",
        "stasis_pause_phase_duration_seconds",
        "stasis_checkpoint_bytes_total",
        "stasis_lifecycle_actions_total",
        "stasis_lifecycle_failed_actions_total",
        "stasis_proxy_requests_total",
        "stasis_proxy_bytes_total",
        "stasis_host_memory_bytes",
        "stasis_host_disk_bytes",
        "stasis_host_cpus",
    ] {
        assert!(names.contains_key(family), "{family} missing: {names:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn lifecycle_actions_and_proxy_requests_are_counted() {
    let h = harness().await;
    let id = h
        .create(|p| {
            p.auto_pause = true;
            p.auto_resume = true;
            p.timeout_secs = 5;
        })
        .await;
    h.lc.start();
    crate::lifecycle::tests::after(7.0).await;
    assert_eq!(h.state(&id).await, Some(stasis_store::SandboxState::Paused));
    let conn = h.request(&id, 8080).await.unwrap();
    drop(conn);
    h.store.add_api_key("test", KEY).await.unwrap();
    let (_, _, text) = scrape(&h, Some(("x-api-key", KEY)), None).await;
    let s = parse(&text);
    assert_eq!(value(&s, "stasis_lifecycle_actions_total", &[("action", "timeout_pause")]), Some(1.0), "{text}");
    assert_eq!(value(&s, "stasis_lifecycle_actions_total", &[("action", "auto_resume")]), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn metrics_need_the_token_or_an_api_key() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    assert_eq!(scrape(&h, None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&h, Some(("authorization", "Bearer wrong")), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&h, Some(("x-api-key", KEY)), None).await.0, StatusCode::OK);
    let (status, ct, text) =
        scrape(&h, Some(("x-api-key", KEY)), Some("application/openmetrics-text;version=1.0.0")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn health_answers_without_credentials() {
    let h = harness().await;
    let app = crate::app(h.app_state());
    for path in ["/health", "/health/ready"] {
        let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}
