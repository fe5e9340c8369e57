//! `GET /metrics`: the daemon's Prometheus metrics. Readable with the metrics token
//! (`stasis serve --metrics-token`, as `Authorization: Bearer TOKEN`) or an API key.
//! Prometheus text format by default; OpenMetrics when the `Accept` header asks for it.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::{auth, ApiError, AppState};

async fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(given) = auth::key_from(headers) else {
        return Err(ApiError::unauthorized(
            "missing credentials: send the metrics token (Authorization: Bearer) or an API key (X-API-KEY)",
        ));
    };
    if let Some(token) = &state.ops.metrics_token {
        if stasis_store::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Ok(());
        }
    }
    match state.lifecycle.verify_api_key(given).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::unauthorized("invalid metrics token or API key")),
        Err(e) => Err(ApiError::internal(format!("cannot check the API key: {e}"))),
    }
}

pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&state, &headers).await {
        return e.into_response();
    }
    let census = match state.lifecycle.census(state.ops.data_dir.as_deref()).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = state.lifecycle.metrics().render(&census, openmetrics);
    let ct = HeaderValue::from_static(crate::metrics::content_type(openmetrics));
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}
