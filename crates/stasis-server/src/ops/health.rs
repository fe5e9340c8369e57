//! Health checks for load balancers and orchestrators, without credentials:
//! `GET /health` (liveness: the daemon answers) and `GET /health/ready` (readiness: its
//! state database answers too, so it can serve the API).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::AppState;

pub async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match state.lifecycle.census(None).await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "message": e.to_string() })))
            .into_response(),
    }
}
