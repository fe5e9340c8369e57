//! Novita's own sandbox endpoints on top of E2B's: `POST /sandboxes/{id}/reset`. (Its
//! clone is a fork, in `snapshots.rs`.)

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
