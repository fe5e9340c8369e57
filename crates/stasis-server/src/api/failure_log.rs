//! Every failed API request in the server's log: method, path, status and the message the
//! client got. Without it, a client that reports "failed" (a dashboard alert, an SDK
//! exception in someone's CI) leaves nothing on the host to explain it.
//!
//! Only the path is logged, never the query (signed file URLs carry their signature there).

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

/// How loud a failed request is: a server fault is a warning; a refused request (bad
/// input, a conflict) is worth a line; an unknown id or key is routine (SDKs probe).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Loudness {
    Warn,
    Info,
    Debug,
}

pub(super) fn loudness(status: StatusCode) -> Option<Loudness> {
    if status.is_server_error() {
        Some(Loudness::Warn)
    } else if status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED {
        Some(Loudness::Debug)
    } else if status.is_client_error() {
        Some(Loudness::Info)
    } else {
        None
    }
}

/// Largest error body read to log its message (API errors are a line of JSON).
const MAX_LOGGED: usize = 64 * 1024;

pub(super) async fn log_failures(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let Some(level) = loudness(status) else {
        return resp;
    };
    // A stream (a file download that failed half-way) is never buffered here: only
    // bodies of a known small size are.
    let small = axum::body::HttpBody::size_hint(resp.body()).upper().is_some_and(|n| n as usize <= MAX_LOGGED);
    if !small {
        emit(&level, &method, &path, status, "");
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_LOGGED).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    emit(&level, &method, &path, status, &message);
    Response::from_parts(parts, Body::from(bytes))
}

fn emit(level: &Loudness, method: &axum::http::Method, path: &str, status: StatusCode, message: &str) {
    let status = status.as_u16();
    match level {
        Loudness::Warn => tracing::warn!(%method, path, status, "request failed: {message}"),
        Loudness::Info => tracing::info!(%method, path, status, "request refused: {message}"),
        Loudness::Debug => tracing::debug!(%method, path, status, "request refused: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[test]
    fn server_faults_warn_refusals_inform_unknown_ids_stay_quiet() {
        assert_eq!(loudness(StatusCode::INTERNAL_SERVER_ERROR), Some(Loudness::Warn));
        assert_eq!(loudness(StatusCode::INSUFFICIENT_STORAGE), Some(Loudness::Warn));
        assert_eq!(loudness(StatusCode::CONFLICT), Some(Loudness::Info));
        assert_eq!(loudness(StatusCode::BAD_REQUEST), Some(Loudness::Info));
        assert_eq!(loudness(StatusCode::NOT_FOUND), Some(Loudness::Debug));
        assert_eq!(loudness(StatusCode::OK), None);
        assert_eq!(loudness(StatusCode::NO_CONTENT), None);
    }

    #[tokio::test]
    async fn the_client_gets_the_same_answer_it_would_without_the_log() {
        let app = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/conflict", get(|| async { crate::api::ApiError::conflict("sandbox x is paused") }))
            .layer(axum::middleware::from_fn(log_failures));
        for (path, status, body) in [
            ("/ok", 200, "fine".to_string()),
            ("/conflict", 409, r#"{"code":409,"message":"sandbox x is paused"}"#.to_string()),
        ] {
            let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status().as_u16(), status);
            let got = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&got), body);
        }
    }
}
