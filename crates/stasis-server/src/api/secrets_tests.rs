//! The secret endpoints over the lifecycle: create, duplicate names, names as the SDKs
//! and E2B have them, versions, pages, deletion, and that no answer (nor the database
//! file) holds a value.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use stasis_store::Store;
use tower::ServiceExt;

use super::router;
use crate::lifecycle::tests::{harness, Harness};

const KEY: &str = "e2b_0000000000000000000000000000000000000000";
const VALUE: &str = "sk-value-that-must-never-be-read-back";

async fn api(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String, Option<String>) {
    let app = router(h.app_state());
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let req = Request::builder().method(method).uri(path).header("x-api-key", KEY).body(body).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let next = resp.headers().get("x-next-token").map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(!text.contains(VALUE) && !text.contains("rotated-"), "an answer carries a value: {text}");
    (status, text, next)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(start_paused = true)]
async fn secrets_are_created_versioned_paged_and_deleted_without_showing_a_value() {
    let h = harness().await;
    h.store.add_api_key("test", KEY).await.unwrap();
    let (s, body, _) = api(
        &h,
        Method::POST,
        "/secrets",
        Some(json!({"name": "OpenAI-Key", "value": VALUE, "metadata": {"env": "t"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let sec = parse(&body);
    let id = sec["secretID"].as_str().unwrap().to_string();
    assert!(id.starts_with("sec_"), "{id}");
    assert_eq!((sec["name"].as_str(), sec["currentVersion"].as_i64()), (Some("openai-key"), Some(1)));
    assert_eq!(sec["metadata"], json!({"env": "t"}));
    assert!(sec["createdAt"].as_str().unwrap().ends_with('Z') && sec.get("value").is_none());

    // Duplicate names (any case) are 409; bad names, values and bodies 400.
    let (s, body, _) = api(&h, Method::POST, "/secrets", Some(json!({"name": "openai-KEY", "value": "x"}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("already exists"), "{body}");
    for bad in [
        json!({"name": "a{b", "value": "x"}),
        json!({"name": "", "value": "x"}),
        json!({"name": "sec_abc", "value": "x"}),
        json!({"name": "ok", "value": "a\r\nInjected: 1"}),
        json!({"name": "ok", "value": ""}),
        json!({"name": "ok"}),
        json!({"value": "x"}),
    ] {
        assert_eq!(api(&h, Method::POST, "/secrets", Some(bad.clone())).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }

    // By id and by name (any case); unknown ones are 404 for every method.
    for sel in [id.as_str(), "openai-key", "OpenAI-Key"] {
        let (s, body, _) = api(&h, Method::GET, &format!("/secrets/{sel}"), None).await;
        assert_eq!((s, parse(&body)["secretID"].as_str()), (StatusCode::OK, Some(id.as_str())), "{sel}");
    }
    assert_eq!(api(&h, Method::GET, "/secrets/missing", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api(&h, Method::GET, "/secrets/sec_missing", None).await.0, StatusCode::NOT_FOUND);
    let upd = Some(json!({"value": "rotated-1"}));
    assert_eq!(api(&h, Method::POST, "/secrets/missing", upd.clone()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api(&h, Method::DELETE, "/secrets/missing", None).await.0, StatusCode::NOT_FOUND);

    // Updates add versions; metadata is kept unless sent; the value is the new one.
    let (s, body, _) = api(&h, Method::POST, &format!("/secrets/{id}"), upd).await;
    assert_eq!((s, parse(&body)["currentVersion"].as_i64()), (StatusCode::OK, Some(2)), "{body}");
    assert_eq!(parse(&body)["metadata"], json!({"env": "t"}));
    let (_, body, _) =
        api(&h, Method::POST, "/secrets/openai-key", Some(json!({"value": "rotated-2", "metadata": {}}))).await;
    assert_eq!((parse(&body)["currentVersion"].as_i64(), &parse(&body)["metadata"]), (Some(3), &json!({})));
    assert_eq!(h.lc.secret_value("OPENAI-key").await.unwrap(), "rotated-2");

    // Pages by name.
    for n in ["b-key", "c-key"] {
        assert_eq!(
            api(&h, Method::POST, "/secrets", Some(json!({"name": n, "value": VALUE}))).await.0,
            StatusCode::CREATED
        );
    }
    let (s, body, next) = api(&h, Method::GET, "/secrets?limit=2", None).await;
    let names = |b: &str| {
        parse(b).as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!((s, names(&body)), (StatusCode::OK, vec!["b-key".to_string(), "c-key".to_string()]));
    let (_, body, last) = api(&h, Method::GET, &format!("/secrets?limit=2&nextToken={}", next.unwrap()), None).await;
    assert_eq!((names(&body), last), (vec!["openai-key".to_string()], None));
    assert_eq!(api(&h, Method::GET, "/secrets?limit=0", None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api(&h, Method::GET, "/secrets?nextToken=zz", None).await.0, StatusCode::BAD_REQUEST);

    // Deleted: gone by id and name; the name is free again.
    assert_eq!(api(&h, Method::DELETE, &format!("/secrets/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api(&h, Method::GET, "/secrets/openai-key", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api(&h, Method::DELETE, &format!("/secrets/{id}"), None).await.0, StatusCode::NOT_FOUND);

    // At rest: the database holds no value in the clear; the key file is the server's.
    let mut db = Vec::new();
    for f in ["stasis.db", "stasis.db-wal"] {
        db.extend(std::fs::read(h.dir.path().join(f)).unwrap_or_default());
    }
    assert!(!db.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "a value is in the database in the clear");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.dir.path().join("secrets.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
