//! Novita's own sandbox endpoints on top of E2B's: `POST /sandboxes/{id}/reset`,
//! `POST /sandboxes/{id}/hotplug-memory`, `POST /sandboxes/{id}/commit` (a sandbox
//! becomes a template), and `POST` / `DELETE /sandboxes/{id}/volume-mounts` (a volume
//! mounted into, or unmounted from, a running sandbox). (Its clone is a fork, in `snapshots.rs`; its `setNetwork` is
//! E2B's `PUT /sandboxes/{id}/network`, in `sandboxes.rs`.)

use axum::body::Body;
use axum::extract::{Query, State};
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

#[derive(Deserialize, Default)]
pub struct CommitBody {
    alias: Option<String>,
}

/// `Sandbox.commit(id, { alias })` (novita-sandbox 2.1, legacy domains): the sandbox
/// becomes a template named `alias`, answered as Novita's template info
/// (`templateType: "snapshot_template"`). It is a named snapshot *with memory* (the store
/// snapshots-as-templates already use: `Sandbox.create(alias)` resolves it), so a sandbox
/// created from it continues the committed one's processes, not only its files. A paused
/// sandbox is resumed for the capture and paused again (as it was: with or without memory).
/// Without an alias the template gets a generated name. Committing again under an alias
/// moves the alias to the new capture.
pub async fn commit(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CommitBody = json_body(body).await?;
    let alias =
        req.alias.filter(|a| !a.trim().is_empty()).unwrap_or_else(|| format!("commit-{}", crate::ids::snapshot_id()));
    let row = state.lifecycle.get(&id).await?;
    let paused = row.state == stasis_store::SandboxState::Paused;
    if paused {
        state.lifecycle.connect(&id, None, row.pause_memory).await?;
    }
    let taken = state.lifecycle.snapshot(&id, Some(alias), true).await;
    if paused {
        if let Err(e) = state.lifecycle.pause(&id, row.pause_memory).await {
            tracing::warn!(sandbox = %id, "commit: cannot pause the sandbox again: {e}");
        }
    }
    let snap = taken?;
    let created = stasis_proto::rfc3339_millis(snap.created_at);
    let names = crate::lifecycle::snapshots::public_names(&snap);
    Ok(Json(json!({
        "templateID": crate::lifecycle::snapshots::public_id(&snap),
        "buildID": snap.id,
        "buildStatus": "ready",
        "aliases": snap.names,
        "names": names,
        "templateType": "snapshot_template",
        "buildCount": 1,
        "cpuCount": row.cpu_count,
        "memoryMB": row.memory_mb,
        "diskSizeMB": row.disk_size_mb,
        "spawnCount": 0,
        "envdVersion": crate::api::wire::ENVD_VERSION,
        "public": false,
        "createdAt": created,
        "updatedAt": created,
    }))
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct MountBody {
    /// The volume's name.
    name: Option<String>,
    /// Where in the sandbox (absolute).
    path: Option<String>,
}

/// `sandbox.mountVolume(name, path)`: the volume mounted into the running sandbox; 200
/// with the sandbox's info (its `volumeMounts` include it). Unknown volume, bad path:
/// 400 (a 404 would read as "sandbox not found" in the SDK); paused, or a mount already
/// there: 409.
pub async fn mount_volume(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> Result<Response, ApiError> {
    let req: MountBody = json_body(body).await?;
    let name =
        req.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request("name (the volume's) is required"))?;
    let path = req.path.filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    state.lifecycle.mount_volume(&id, &name, &path).await?;
    super::sandboxes::info(State(state), SandboxPath(id)).await
}

#[derive(Deserialize)]
pub struct UnmountQuery {
    path: Option<String>,
    force: Option<String>,
}

/// `sandbox.unmountVolume(path, { force })`: 200 with the sandbox's info. Nothing
/// mounted there: 400; in use without `force`, or a mount the sandbox's namespace locks
/// (made at create or restored by a resume): 409.
pub async fn unmount_volume(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    Query(q): Query<UnmountQuery>,
) -> Result<Response, ApiError> {
    let path = q.path.filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    let force = matches!(q.force.as_deref(), Some("true") | Some("1"));
    state.lifecycle.unmount_volume(&id, &path, force).await?;
    super::sandboxes::info(State(state), SandboxPath(id)).await
}
