//! Novita's own sandbox endpoints on top of E2B's: `POST /sandboxes/{id}/reset` and
//! `POST /sandboxes/{id}/hotplug-memory`. (Its clone is a fork, in `snapshots.rs`; its
//! `setNetwork` is E2B's `PUT /sandboxes/{id}/network`, in `sandboxes.rs`.)

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::sandboxes::SandboxPath;
use super::{json_body, ApiError, AppState};

#[derive(Deserialize, Default)]
pub struct ResetBody {
    /// Left running (the default) or paused after the reset.
    resume: Option<bool>,
    timeout: Option<u64>,
    // `secure`, `allowPublicTraffic`, `network`: the sandbox keeps its own settings (and
    // its tokens, which the caller's Sandbox object holds); they are not changed here.
}

/// `Sandbox.reset(id, { resume, timeoutMs })`: 200 `{trafficAccessToken}`; 409 (which the
/// SDK reads as `false`) when the sandbox is busy in another operation.
pub async fn reset(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> Result<Response, ApiError> {
    let req: ResetBody = json_body(body).await?;
    let d = state.defaults();
    let timeout = req.timeout.map(|t| super::sandboxes::check_timeout(t, d.max_timeout_secs)).transpose()?;
    let row = state.lifecycle.reset(&id, req.resume.unwrap_or(true), timeout).await?;
    Ok(Json(json!({ "sandboxID": row.id, "trafficAccessToken": row.traffic_access_token })).into_response())
}

#[derive(Deserialize, Default)]
pub struct HotplugBody {
    /// The memory the sandbox is to have, in MiB (not an amount to add).
    requested_size_mib: Option<u64>,
}

/// `sandbox.hotplugMemory(mib)` / `Sandbox.resize(id, { memoryMiB })`: the memory limit
/// of a running (or paused) sandbox raised to `requested_size_mib`; 204. Only up: a
/// smaller size is a 400.
pub async fn hotplug_memory(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> Result<Response, ApiError> {
    let req: HotplugBody = json_body(body).await?;
    let mib = req.requested_size_mib.ok_or_else(|| ApiError::bad_request("requested_size_mib is required"))?;
    state.lifecycle.hotplug_memory(&id, mib).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
