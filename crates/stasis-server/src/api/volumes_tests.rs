//! The volume endpoints over the lifecycle with the fake runtime: names, the mounts a
//! create records and `GET /sandboxes/{id}` shows, deletion refused while mounted, and
//! the content API's own token.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use stasis_store::Store;
use tower::ServiceExt;

use super::router;
use crate::lifecycle::tests::{harness, Harness};

const KEY: &str = "e2b_0000000000000000000000000000000000000000";

async fn call(h: &Harness, method: Method, path: &str, body: Option<Value>, auth: (&str, &str)) -> (StatusCode, Value) {
    let app = router(h.app_state());
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let req = Request::builder().method(method).uri(path).header(auth.0, auth.1).body(body).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn api(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call(h, method, path, body, ("x-api-key", KEY)).await
}

#[tokio::test(start_paused = true)]
async fn volumes_are_named_mounted_and_kept_while_mounted() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let (s, vol) = api(&h, Method::POST, "/volumes", Some(json!({"name": "data_1"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{vol}");
    let id = vol["volumeID"].as_str().unwrap().to_string();
    assert_eq!(vol["name"], "data_1");
    assert!(vol["token"].as_str().unwrap().len() >= 32);
    for bad in [json!({"name": "data_1"}), json!({"name": "has space"}), json!({})] {
        assert_eq!(api(&h, Method::POST, "/volumes", Some(bad.clone())).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (_, list) = api(&h, Method::GET, "/volumes", None).await;
    assert_eq!(list, json!([{"volumeID": id, "name": "data_1"}]), "no token in a listing");
    let (s, info) = api(&h, Method::GET, &format!("/volumes/{id}"), None).await;
    assert_eq!((s, &info["token"]), (StatusCode::OK, &vol["token"]));
    assert_eq!(api(&h, Method::GET, "/volumes/nosuch", None).await.0, StatusCode::NOT_FOUND);

    // Mounted at create (by name); the detail shows it.
    let body = json!({"templateID": "base", "volumeMounts": [{"name": "data_1", "path": "/mnt//data/"}]});
    let (s, sbx) = api(&h, Method::POST, "/sandboxes", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{sbx}");
    let sid = sbx["sandboxID"].as_str().unwrap().to_string();
    let (_, detail) = api(&h, Method::GET, &format!("/sandboxes/{sid}"), None).await;
    assert_eq!(detail["volumeMounts"], json!([{"name": "data_1", "path": "/mnt/data"}]));
    for (mounts, why) in [
        (json!([{"name": "nosuch", "path": "/x"}]), "not found"),
        (json!([{"name": "data_1", "path": "/proc/x"}]), "cannot be mounted"),
        (json!([{"name": "data_1", "path": "relative"}]), "not absolute"),
        (json!([{"name": "data_1", "path": "/a"}, {"name": "data_1", "path": "/a/b"}]), "overlap"),
    ] {
        let (s, e) = api(&h, Method::POST, "/sandboxes", Some(json!({"volumeMounts": mounts}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{mounts}: {e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }

    // Refused while the sandbox (running, then paused) mounts it.
    let (s, e) = api(&h, Method::DELETE, &format!("/volumes/{id}"), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e["message"].as_str().unwrap().contains(&sid), "{e}");
    assert_eq!(api(&h, Method::POST, &format!("/sandboxes/{sid}/pause"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api(&h, Method::DELETE, &format!("/volumes/{id}"), None).await.0, StatusCode::CONFLICT);
    // A fork mounts it too, and holds it after its source is gone.
    let (s, _) = api(&h, Method::POST, &format!("/sandboxes/{sid}/connect"), Some(json!({"timeout": 60}))).await;
    assert!(s.is_success());
    let (_, forks) = api(&h, Method::POST, &format!("/sandboxes/{sid}/fork"), Some(json!({"count": 1}))).await;
    let fork = forks[0]["sandbox"]["sandboxID"].as_str().unwrap_or_else(|| panic!("fork: {forks}")).to_string();
    let (_, d) = api(&h, Method::GET, &format!("/sandboxes/{fork}"), None).await;
    assert_eq!(d["volumeMounts"], json!([{"name": "data_1", "path": "/mnt/data"}]));
    assert_eq!(api(&h, Method::DELETE, &format!("/sandboxes/{sid}"), None).await.0, StatusCode::NO_CONTENT);
    let (s, e) = api(&h, Method::DELETE, &format!("/volumes/{id}"), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "the fork still mounts it: {e}");
    assert!(e["message"].as_str().unwrap().contains(&fork), "{e}");
    assert_eq!(api(&h, Method::DELETE, &format!("/sandboxes/{fork}"), None).await.0, StatusCode::NO_CONTENT);
    // All killed: deletable.
    assert_eq!(api(&h, Method::DELETE, &format!("/volumes/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api(&h, Method::DELETE, &format!("/volumes/{id}"), None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn volume_content_takes_the_volumes_token_not_the_api_key() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let (_, vol) = api(&h, Method::POST, "/volumes", Some(json!({"name": "v"}))).await;
    let path = format!("/volumecontent/{}/path?path=/", vol["volumeID"].as_str().unwrap());
    // The API key is not a volume token; a wrong token and none are 401.
    assert_eq!(call(&h, Method::GET, &path, None, ("x-api-key", KEY)).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&h, Method::GET, &path, None, ("authorization", "Bearer nope")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let other = "/volumecontent/nosuch/path?path=/";
    let bearer = format!("Bearer {}", vol["token"].as_str().unwrap());
    assert_eq!(call(&h, Method::GET, other, None, ("authorization", &bearer)).await.0, StatusCode::UNAUTHORIZED);
}

/// Novita's hot mounts over the lifecycle (the fake runtime mounts nothing): the store's
/// mounts follow, a paused sandbox and a second mount at the same place are 409s, bad
/// paths and unknown volumes 400s (never a 404, which the SDK reads as "sandbox not
/// found"), and the volume is deletable again once unmounted.
#[tokio::test(start_paused = true)]
async fn volumes_mount_into_and_unmount_from_a_running_sandbox() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let (_, vol) = api(&h, Method::POST, "/volumes", Some(json!({"name": "hot"}))).await;
    let vid = vol["volumeID"].as_str().unwrap().to_string();
    let (_, sbx) = api(&h, Method::POST, "/sandboxes", Some(json!({"templateID": "base"}))).await;
    let sid = sbx["sandboxID"].as_str().unwrap().to_string();
    let url = format!("/sandboxes/{sid}/volume-mounts");

    let (s, info) = api(&h, Method::POST, &url, Some(json!({"name": "hot", "path": "/mnt//hot/"}))).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(
        (&info["sandboxID"], &info["volumeMounts"]),
        (&json!(sid), &json!([{"name": "hot", "path": "/mnt/hot"}]))
    );
    assert_eq!(api(&h, Method::DELETE, &format!("/volumes/{vid}"), None).await.0, StatusCode::CONFLICT);
    for (body, want) in [
        (json!({"name": "hot", "path": "/mnt/hot/deeper"}), StatusCode::CONFLICT),
        (json!({"name": "hot", "path": "/proc/x"}), StatusCode::BAD_REQUEST),
        (json!({"name": "hot", "path": "rel"}), StatusCode::BAD_REQUEST),
        (json!({"name": "nosuch", "path": "/x"}), StatusCode::BAD_REQUEST),
        (json!({"path": "/x"}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(api(&h, Method::POST, &url, Some(body.clone())).await.0, want, "{body}");
    }
    let missing = api(
        &h,
        Method::POST,
        "/sandboxes/nosuchsandbox0000000/volume-mounts",
        Some(json!({"name": "hot", "path": "/x"})),
    );
    assert_eq!(missing.await.0, StatusCode::NOT_FOUND);

    assert_eq!(api(&h, Method::DELETE, &format!("{url}?path=/elsewhere"), None).await.0, StatusCode::BAD_REQUEST);
    let (s, info) = api(&h, Method::DELETE, &format!("{url}?path=/mnt/hot&force=true"), None).await;
    assert_eq!((s, &info["volumeMounts"]), (StatusCode::OK, &json!([])), "{info}");

    // Paused: refused, nothing recorded.
    assert_eq!(api(&h, Method::POST, &format!("/sandboxes/{sid}/pause"), None).await.0, StatusCode::NO_CONTENT);
    let (s, why) = api(&h, Method::POST, &url, Some(json!({"name": "hot", "path": "/mnt/hot"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(why["message"].as_str().unwrap().contains("paused"), "{why}");
    assert_eq!(api(&h, Method::DELETE, &format!("/volumes/{vid}"), None).await.0, StatusCode::NO_CONTENT);
}
