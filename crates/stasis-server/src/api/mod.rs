//! The control API (E2B REST v1 + v2): parses and validates requests, calls the
//! lifecycle, maps results and errors back to the wire. No lifecycle rule lives here.

pub(crate) mod auth;
mod error;
mod failure_log;
mod logs;
mod nodes;
mod novita;
mod sandboxes;
mod secrets;
mod snapshots;
mod status;
mod templates;
mod volume_content;
mod volumes;
pub mod wire;

#[cfg(test)]
mod body_fuzz_tests;
#[cfg(test)]
mod logs_tests;
#[cfg(test)]
mod secrets_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volumes_tests;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;

pub use error::ApiError;

use crate::lifecycle::{Lifecycle, LifecycleError};

/// Largest JSON body the control API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct AppState {
    pub lifecycle: Lifecycle,
    pub templates: crate::templates::Templates,
    pub domain: String,
    /// The operator's endpoints' settings (`/metrics`, `/health`).
    pub ops: crate::ops::Config,
    /// This node in its cluster (forwarding, heartbeat); `None` in tests of one lifecycle.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl AppState {
    /// What a request gets for what it does not say (the lifecycle's config).
    pub fn defaults(&self) -> &crate::lifecycle::SandboxDefaults {
        &self.lifecycle.config().defaults
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sandboxes", post(sandboxes::create_v1).get(sandboxes::list_v1))
        .route("/v2/sandboxes", post(sandboxes::create_v2).get(sandboxes::list_v2))
        .route("/sandboxes/{id}", get(sandboxes::info).delete(sandboxes::kill))
        .route("/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/sandboxes/{id}/connect", post(sandboxes::connect))
        .route("/v2/sandboxes/{id}/connect", post(sandboxes::connect))
        .route("/sandboxes/{id}/timeout", post(sandboxes::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(sandboxes::refresh))
        .route("/sandboxes/{id}/metrics", get(sandboxes::metrics))
        .route("/sandboxes/{id}/logs", get(logs::logs_v1))
        .route("/v2/sandboxes/{id}/logs", get(logs::logs_v2))
        .route("/stasis/sandboxes/{id}/events", get(logs::events))
        .route("/sandboxes/{id}/snapshots", post(snapshots::create))
        .route("/sandboxes/{id}/fork", post(snapshots::fork))
        .route("/sandboxes/{id}/clone", post(snapshots::clone))
        .route("/sandboxes/{id}/reset", post(novita::reset))
        .route("/sandboxes/{id}/hotplug-memory", post(novita::hotplug_memory))
        .route("/sandboxes/{id}/network", put(sandboxes::update_network))
        .route("/sandboxes/{id}/commit", post(novita::commit))
        .route("/sandboxes/{id}/volume-mounts", post(novita::mount_volume).delete(novita::unmount_volume))
        .route("/snapshots", get(snapshots::list))
        .route("/templates/{id}", axum::routing::delete(snapshots::delete))
        .route("/templates", get(templates::list))
        .route("/v3/templates", post(templates::request))
        .route("/templates/{id}/files/{hash}", get(templates::files))
        .route("/v2/templates/{id}/builds/{build}", post(templates::start))
        .route("/templates/{id}/builds/{build}/status", get(templates::status))
        .route("/templates/aliases/{alias}", get(templates::alias))
        .route("/templates/tags", post(templates::assign_tags).delete(templates::remove_tags))
        .route("/templates/{id}/tags", get(templates::tags))
        .route("/volumes", post(volumes::create).get(volumes::list))
        .route("/volumes/{id}", get(volumes::info).delete(volumes::delete))
        .route("/secrets", post(secrets::create).get(secrets::list))
        .route("/secrets/{id}", get(secrets::info).post(secrets::update).delete(secrets::delete))
        .route("/stasis/lifecycle", get(status::lifecycle))
        .route("/stasis/nodes", get(nodes::list))
        .route("/stasis/nodes/{id}/drain", post(nodes::drain))
        .route("/stasis/nodes/{id}/activate", post(nodes::activate))
        .route("/stasis/templates", get(status::templates))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_api_key))
        // The SDKs upload a build's files to the URL they were given, with no API key: the
        // URL is signed (`templates::Templates::upload_token`).
        .merge(Router::new().route("/stasis/build-files/{hash}", put(templates::upload)))
        // A volume's files take the volume's own token (`Authorization: Bearer`), which the
        // SDKs send instead of the API key.
        .merge(volume_content::routes())
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(failure_log::log_failures))
        .with_state(state)
}

/// Errors made by the framework (a path segment that is not UTF-8, a wrong method...)
/// come as plain text: every error of the API is `{code,message}`, so wrap them.
async fn json_errors(resp: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if resp.status().is_success() || resp.status().is_informational() || is_json {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
    ApiError::new(status, message).into_response()
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(id) => ApiError::not_found(format!("sandbox {id} not found")),
            LifecycleError::NotRunning(msg) => ApiError::not_found(msg),
            LifecycleError::Conflict(m) => ApiError::conflict(m),
            LifecycleError::BadRequest(m) => ApiError::bad_request(m),
            LifecycleError::TemplateNotFound(t) => ApiError::not_found(format!("template {t:?} not found")),
            LifecycleError::VolumeNotFound(v) => ApiError::not_found(format!("volume {v} not found")),
            LifecycleError::SecretNotFound(s) => ApiError::not_found(format!("secret {s:?} not found")),
            LifecycleError::Store(e @ stasis_store::StoreError::InUse { .. }) => ApiError::conflict(e.to_string()),
            LifecycleError::Runtime(e @ stasis_runtime::RuntimeError::CorruptCheckpoint(_)) => {
                ApiError::internal(e.to_string())
            }
            LifecycleError::Runtime(e @ stasis_runtime::RuntimeError::InsufficientStorage { .. }) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Reads a JSON body: empty means `T::default()`; too big, or bad JSON, is a clear 4xx.
pub async fn json_body<T: DeserializeOwned + Default>(body: Body) -> Result<T, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY_BYTES} bytes"))
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
