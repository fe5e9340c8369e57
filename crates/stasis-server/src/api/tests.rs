//! The control API over the lifecycle with the fake runtime: what the wire shows of the
//! lifecycle's state (E2B's fields unchanged, Stasis's additions beside them).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use stasis_store::Store;
use tower::ServiceExt;

use super::router;
use crate::lifecycle::fake_runtime::Op;
use crate::lifecycle::tests::{harness, Harness};

const KEY: &str = "e2b_0000000000000000000000000000000000000000";

async fn get(h: &Harness, path: &str) -> (StatusCode, Value) {
    let app = router(h.app_state());
    let req = Request::get(path).header("x-api-key", KEY).body(Body::empty()).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(start_paused = true)]
async fn info_shows_the_last_failed_action_beside_the_e2b_fields() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let ok = h.create(|_| {}).await;
    let failing = h.create(|_| {}).await;
    h.rt.fail(Op::Pause, 1);
    assert!(h.lc.pause(&failing, true).await.is_err());

    let (status, info) = get(&h, &format!("/sandboxes/{ok}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(info.get("lastError").is_none(), "no error, no field: {info}");

    let (status, info) = get(&h, &format!("/sandboxes/{failing}")).await;
    assert_eq!(status, StatusCode::OK);
    for k in ["sandboxID", "templateID", "state", "startedAt", "endAt", "envdAccessToken", "lifecycle", "pauseMode"] {
        assert!(info.get(k).is_some(), "E2B field {k} kept: {info}");
    }
    assert_eq!(info["state"], "running");
    let e = &info["lastError"];
    assert_eq!(e["operation"], "pause");
    assert_eq!(e["attempts"], 1);
    assert!(e["message"].as_str().unwrap().contains("injected Pause failure"), "{e}");
    let at = e["at"].as_str().unwrap();
    let next = e["nextAttemptAt"].as_str().unwrap();
    assert!(at.ends_with('Z') && next > at, "RFC 3339 times, the next attempt later: {e}");

    let (status, s) = get(&h, "/stasis/lifecycle").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["failedActions"]["pause"], 1);
    assert_eq!(s["failedActions"]["total"], 1);
    assert_eq!(s["failing"][0]["sandboxID"], failing.as_str());
    assert_eq!(s["failing"][0]["lastError"]["operation"], "pause");
    assert_eq!(s["failing"].as_array().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_status_endpoint_needs_the_api_key() {
    let h = harness().await;
    let app = router(h.app_state());
    let resp = app.oneshot(Request::get("/stasis/lifecycle").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_in_the_requested_range() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let id = h.create(|_| {}).await;
    let now = h.lc.now() / 1000;
    let points = |v: &Value| v.as_array().map(Vec::len);
    let (status, all) = get(&h, &format!("/sandboxes/{id}/metrics")).await;
    assert_eq!((status, points(&all)), (StatusCode::OK, Some(1)));
    let t = all[0]["timestampUnix"].as_i64().unwrap();
    assert!((now..=now + 1).contains(&t), "the point is now: {all}");
    // The point is a little after `now` (a first CPU reading waits 200 ms): ranges are
    // around its own second, or a `now` late in its second would miss it.
    let now = t;
    for (range, want) in [
        // Not the point's exact second: each request serves a point "now", and the paused
        // clock jumps to the sampler's next tick (5 s) while the store's blocking calls
        // run, so a later request's "now" may be seconds on (failed ~1 run in 5 under load).
        // Both ends being inclusive is checked through the SDKs (getMetrics range tests).
        (format!("start={}&end={}", now - 60, now + 60), 1),
        (format!("start={}&end={}", now - 3600, now - 1800), 0),
        (format!("start={}", now + 60), 0),
        (format!("end={}", t - 1), 0),
        (format!("start={}", now - 60), 1),
    ] {
        let (status, v) = get(&h, &format!("/sandboxes/{id}/metrics?{range}")).await;
        assert_eq!((status, points(&v)), (StatusCode::OK, Some(want)), "{range}: {v}");
    }
    for bad in [format!("start={}&end={}", now, now - 1), "start=yesterday".to_string()] {
        let (status, v) = get(&h, &format!("/sandboxes/{id}/metrics?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
}

async fn send(h: &Harness, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let app = router(h.app_state());
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `PUT /sandboxes/{id}/network` and Novita's `hotplug-memory`: the row follows a change,
/// what Stasis cannot do at egress is a 400 naming it, memory only grows.
#[tokio::test(start_paused = true)]
async fn network_and_memory_changes_on_the_wire() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let id = h.create(|_| {}).await;
    let path = format!("/sandboxes/{id}/network");
    let (status, _) = send(&h, "PUT", &path, r#"{"allowOut": ["10.1.2.0/24"], "denyOut": ["0.0.0.0/0"]}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let row = h.store.get_sandbox(&id).await.unwrap().unwrap();
    assert_eq!(row.network["allowOut"], serde_json::json!(["10.1.2.0/24"]));
    assert_eq!(row.network["denyOut"], serde_json::json!(["0.0.0.0/0"]));
    assert!(row.allow_internet_access, "kept as created when the update does not say");
    // getInfo shows the rules as they are now (the SDKs' `info.network`).
    let (_, info) = get(&h, &format!("/sandboxes/{id}")).await;
    assert_eq!(
        info["network"],
        serde_json::json!({"allowOut": ["10.1.2.0/24"], "denyOut": ["0.0.0.0/0"], "allowPublicTraffic": true})
    );
    assert_eq!(info["allowInternetAccess"], true);
    let (status, _) = send(&h, "PUT", &path, r#"{"allowInternetAccess": false}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let row = h.store.get_sandbox(&id).await.unwrap().unwrap();
    assert_eq!((row.network["allowOut"].clone(), row.allow_internet_access), (serde_json::json!([]), false), "cleared");
    let (_, info) = get(&h, &format!("/sandboxes/{id}")).await;
    assert_eq!(info["network"], serde_json::json!({"allowOut": [], "denyOut": [], "allowPublicTraffic": true}));
    assert_eq!(info["allowInternetAccess"], false);
    for (body, says) in [
        (r#"{"allowOut": ["example.com"]}"#, "not an IPv4 address or CIDR"),
        (r#"{"dnsServers": ["1.1.1.1"]}"#, "network.dnsServers is not supported"),
        (r#"{"rules": {"api.example.com": {"transform": {"headers": {"a": "b"}}}}}"#, "network.rules must map domains"),
        (r#"{"rules": {"*": [{"transform": {"headers": {"a": "b"}}}]}}"#, "is not a domain name"),
        (
            r#"{"rules": {"a.com": [{"transform": {"headers": {"a": "${e2b.secrets.nope}"}}}]}}"#,
            "\"nope\", which does not exist",
        ),
        (r#"{"egressProxy": {"address": "127.0.0.1:1080"}}"#, "network.egressProxy is not supported"),
    ] {
        let (status, err) = send(&h, "PUT", &path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(err["message"].as_str().unwrap().contains(says), "{body}: {err}");
    }
    assert_eq!(send(&h, "PUT", "/sandboxes/nosuchsandbox0000000/network", "{}").await.0, StatusCode::NOT_FOUND);
    // Valid rules are kept (keys lower-cased) and shown as sent: placeholders, never
    // values; an update without them clears them.
    h.lc.create_secret("key", "the-value", Default::default()).await.unwrap();
    let rules = r#"{"rules": {"API.example.com": [{"transform": {"headers": {"Authorization": "Bearer ${e2b.secrets.key}"}}}]}}"#;
    assert_eq!(send(&h, "PUT", &path, rules).await.0, StatusCode::NO_CONTENT);
    let (_, info) = get(&h, &format!("/sandboxes/{id}")).await;
    let want = serde_json::json!({"api.example.com": [{"transform": {"headers": {"Authorization": "Bearer ${e2b.secrets.key}"}}}]});
    assert_eq!(info["network"]["rules"], want);
    assert!(!info.to_string().contains("the-value"));
    assert_eq!(send(&h, "PUT", &path, "{}").await.0, StatusCode::NO_CONTENT);
    assert!(get(&h, &format!("/sandboxes/{id}")).await.1["network"].get("rules").is_none());

    let mem = format!("/sandboxes/{id}/hotplug-memory");
    let before = h.store.get_sandbox(&id).await.unwrap().unwrap().memory_mb;
    let (status, _) = send(&h, "POST", &mem, &format!(r#"{{"requested_size_mib": {}}}"#, before * 2)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.store.get_sandbox(&id).await.unwrap().unwrap().memory_mb, before * 2);
    let (status, err) = send(&h, "POST", &mem, &format!(r#"{{"requested_size_mib": {before}}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["message"].as_str().unwrap().contains("memory can only grow"), "{err}");
    assert_eq!(send(&h, "POST", &mem, "{}").await.0, StatusCode::BAD_REQUEST);
    let (_, info) = get(&h, &format!("/sandboxes/{id}")).await;
    assert_eq!(info["memoryMB"], before * 2);
}

#[tokio::test(start_paused = true)]
async fn workload_identity_tokens_are_refused_by_name_never_ignored() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let asks = r#"{"templateID": "base", "iam": {"tokens": {"aws": {"audience": "sts.amazonaws.com", "tokenType": "JWT-SVID"}}}}"#;
    let (status, body) = send(&h, "POST", "/sandboxes", asks).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("iam.tokens (workload identity) is not served"), "{body}");
    let (status, body) = send(&h, "POST", "/sandboxes", r#"{"templateID": "base", "iam": {"tokens": 3}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(h.store.sandboxes_in_states(&stasis_store::SandboxState::ALL).await.unwrap().is_empty(), "nothing made");
    // No tokens asked is no identity asked: the SDKs send an empty map for "off".
    for off in [r#"{"templateID": "base", "iam": {"tokens": {}}}"#, r#"{"templateID": "base", "iam": null}"#] {
        let (status, body) = send(&h, "POST", "/sandboxes", off).await;
        assert_eq!(status, StatusCode::CREATED, "{off}: {body}");
    }
}
