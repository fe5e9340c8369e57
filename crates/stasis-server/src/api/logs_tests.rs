//! A sandbox's history through the API: its events as E2B's logs (v1, v2) and Stasis's
//! events, and its sampled usage as `getMetrics` with a range.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use stasis_store::Store;
use tower::ServiceExt;

use super::router;
use crate::lifecycle::fake_runtime::Op;
use crate::lifecycle::tests::{after, harness, Harness};

const KEY: &str = "e2b_2222222222222222222222222222222222222222";

async fn call(h: &Harness, method: &str, path: &str) -> (StatusCode, Value) {
    let app = router(h.app_state());
    let req = Request::builder().method(method).uri(path).header("x-api-key", KEY).body(Body::empty()).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn messages(logs: &Value) -> Vec<String> {
    logs.as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn the_logs_tell_what_happened_to_a_sandbox_and_why() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let id = h.create_auto_pause(5).await;
    h.lc.start();
    after(7.0).await;
    h.rt.fail(Op::Resume, 1);
    assert_eq!(call(&h, "POST", &format!("/sandboxes/{id}/connect")).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(call(&h, "POST", &format!("/sandboxes/{id}/connect")).await.0, StatusCode::CREATED);
    assert_eq!(call(&h, "DELETE", &format!("/sandboxes/{id}")).await.0, StatusCode::NO_CONTENT);

    // Still readable after the kill.
    let (status, v2) = call(&h, "GET", &format!("/v2/sandboxes/{id}/logs")).await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    let m = messages(&v2["logs"]);
    assert_eq!(m.len(), 5, "{m:?}");
    assert!(m[0].starts_with("created from template base"), "{m:?}");
    assert!(m[1].starts_with("paused (its timeout passed (auto-pause)) in"), "{m:?}");
    assert!(m[2].starts_with("resume failed (attempt 1): ") && m[2].contains("injected Resume failure"), "{m:?}");
    assert!(m[3].starts_with("resumed (connect (API))"), "{m:?}");
    assert_eq!(m[4], "killed: asked by the API");
    let paused = &v2["logs"][1];
    assert_eq!(paused["level"], "info");
    assert_eq!(paused["fields"]["event"], "paused");
    for k in ["dump_ms", "sync_ms", "total_ms", "image_bytes"] {
        assert!(paused["fields"][k].is_string(), "{k}: {paused}");
    }
    assert_eq!(v2["logs"][2]["level"], "error");

    let (_, errors) = call(&h, "GET", &format!("/v2/sandboxes/{id}/logs?level=error")).await;
    assert_eq!(messages(&errors["logs"]).len(), 1);
    let (_, last) = call(&h, "GET", &format!("/v2/sandboxes/{id}/logs?direction=backward&limit=1")).await;
    assert_eq!(messages(&last["logs"]), ["killed: asked by the API"]);

    let (status, v1) = call(&h, "GET", &format!("/sandboxes/{id}/logs")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["logs"].as_array().unwrap().len(), 5);
    assert_eq!(v1["logs"][4]["line"], "killed: asked by the API");
    assert_eq!(v1["logEntries"][4]["fields"]["sandboxID"], id.as_str());

    let (_, events) = call(&h, "GET", &format!("/stasis/sandboxes/{id}/events")).await;
    let kinds: Vec<_> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "paused", "resume-failed", "resumed", "killed"]);
    let seq = events[2]["seq"].as_i64().unwrap();
    let (_, newer) = call(&h, "GET", &format!("/stasis/sandboxes/{id}/events?after={seq}")).await;
    assert_eq!(newer.as_array().unwrap().len(), 2);

    let (status, _) = call(&h, "GET", "/v2/sandboxes/nosuchsandbox0000000/logs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn metrics_are_sampled_every_few_seconds_and_served_by_range() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let id = h.create(|_| {}).await;
    h.lc.start();
    let t0 = h.lc.now() / 1000;
    after(31.0).await;
    let (status, all) = call(&h, "GET", &format!("/sandboxes/{id}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let stamps =
        |v: &Value| v.as_array().unwrap().iter().map(|p| p["timestampUnix"].as_i64().unwrap()).collect::<Vec<_>>();
    let all = stamps(&all);
    // Samples at 0, 5, ..., 30 s, then the point now.
    assert_eq!(all.len(), 8, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "oldest first: {all:?}");
    let (start, end) = (t0 + 9, t0 + 21);
    let (_, some) = call(&h, "GET", &format!("/sandboxes/{id}/metrics?start={start}&end={end}")).await;
    let some = stamps(&some);
    assert_eq!(some, [t0 + 10, t0 + 15, t0 + 20], "only the points in the range");
}
