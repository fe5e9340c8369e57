//! API key check for every control call: `X-API-KEY`, or `Authorization: Bearer` (Novita).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

pub fn key_from(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = key_from(req.headers()) else {
        return ApiError::unauthorized("missing API key: send it in the X-API-KEY header").into_response();
    };
    match state.lifecycle.verify_api_key(key).await {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError::unauthorized("invalid API key").into_response(),
        Err(e) => ApiError::internal(format!("cannot check the API key: {e}")).into_response(),
    }
}
