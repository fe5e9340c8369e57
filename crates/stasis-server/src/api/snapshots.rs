//! Snapshot endpoints: take one, list them, delete one (`DELETE /templates/{id}`, which
//! also removes a built template of that name), fork, and Novita's clone (a fork with
//! Novita's body and answer).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stasis_store::SnapshotQuery;

use super::sandboxes::SandboxPath;
use super::{json_body, wire, ApiError, AppState};
use crate::ids::SandboxId;
use crate::lifecycle::snapshots::{public_id, public_names};

type ApiResult<T> = Result<T, ApiError>;

/// Forks at once at most (each is a whole sandbox).
pub const MAX_FORKS: u32 = 20;

#[derive(Deserialize, Default)]
pub struct SnapshotBody {
    name: Option<String>,
    /// Stasis extension: `false` captures the files only.
    memory: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    #[serde(rename = "snapshotID")]
    snapshot_id: String,
    names: Vec<String>,
    /// Stasis extensions (the dashboard shows them): where it came from, when, its size.
    #[serde(rename = "sourceSandboxID")]
    source_sandbox_id: String,
    #[serde(rename = "templateID")]
    template_id: String,
    created_at: String,
    size_bytes: u64,
    memory: bool,
}

fn info(row: &stasis_store::SnapshotRow) -> SnapshotInfo {
    SnapshotInfo {
        snapshot_id: public_id(row),
        names: public_names(row),
        source_sandbox_id: row.source_sandbox_id.clone(),
        template_id: row.template_id.clone(),
        created_at: stasis_proto::rfc3339_millis(row.created_at),
        size_bytes: row.size_bytes,
        memory: row.memory,
    }
}

pub async fn create(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<Response> {
    let req: SnapshotBody = json_body(body).await?;
    let row = state.lifecycle.snapshot(&id, req.name, req.memory.unwrap_or(true)).await?;
    Ok((StatusCode::CREATED, Json(info(&row))).into_response())
}

pub async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q = SnapshotQuery::from_query_string(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (rows, next) = state.lifecycle.list_snapshots(q).await?;
    let mut r = Json(rows.iter().map(info).collect::<Vec<_>>()).into_response();
    if let Some(t) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert("x-next-token", t);
    }
    Ok(r)
}

/// `DELETE /templates/{id}`: the SDKs delete snapshots as templates; the id arrives
/// URL-encoded in one segment (`ns%2Fname%3Atag`) and the router hands it over decoded.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if id.is_empty() || id.len() > 300 {
        return Err(ApiError::not_found("no such snapshot"));
    }
    match state.lifecycle.delete_snapshot(&id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        // Not a snapshot: a built template of that name?
        Err(crate::lifecycle::LifecycleError::NotFound(_)) => match state.templates.remove(&id).await {
            Ok(()) => Ok(StatusCode::NO_CONTENT),
            Err(crate::templates::TemplateError::NotFound(_)) => {
                Err(ApiError::not_found(format!("snapshot or template {id:?} not found")))
            }
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct ForkBody {
    count: Option<u32>,
    timeout: Option<u64>,
}

pub async fn fork(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<Response> {
    let req: ForkBody = json_body(body).await?;
    let count = req.count.unwrap_or(1);
    if count == 0 || count > MAX_FORKS {
        return Err(ApiError::bad_request(format!("count must be between 1 and {MAX_FORKS}, got {count}")));
    }
    let d = state.defaults();
    let timeout = super::sandboxes::check_timeout(req.timeout.unwrap_or(d.fork_timeout_secs), d.max_timeout_secs)?;
    let results = state.lifecycle.fork(&id, count, timeout).await?;
    let body: Vec<serde_json::Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(row) => json!({ "sandbox": wire::Sandbox::from_row(&row, &state.domain) }),
            Err(e) => {
                let e = ApiError::from(e);
                json!({ "error": { "code": e.status.as_u16(), "message": e.message } })
            }
        })
        .collect();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Novita's `POST /sandboxes/{id}/clone` (`Sandbox.clone(id, { count, strict })`).
#[derive(Deserialize, Default)]
pub struct CloneBody {
    count: Option<u32>,
    /// All or nothing: when one clone fails, the others are killed and the call fails.
    strict: Option<bool>,
    timeout: Option<u64>,
    // `nodeID` (which host): one host here, so it is ignored.
}

/// The running copies of a sandbox, as Novita answers: `{sandboxes: [{sandboxID,
/// envdVersion, envdAccessToken, trafficAccessToken}]}`. Not strict: the clones that were
/// made (the call fails only when none was). No `snapshotTemplateId`: the capture is a
/// fork's, released once the clones are up, so there is no template to name.
pub async fn clone(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<Response> {
    let req: CloneBody = json_body(body).await?;
    let count = req.count.unwrap_or(1);
    if count == 0 || count > MAX_FORKS {
        return Err(ApiError::bad_request(format!("count must be between 1 and {MAX_FORKS}, got {count}")));
    }
    let d = state.defaults();
    let timeout = super::sandboxes::check_timeout(req.timeout.unwrap_or(d.fork_timeout_secs), d.max_timeout_secs)?;
    let (made, failed): (Vec<_>, Vec<_>) =
        state.lifecycle.fork(&id, count, timeout).await?.into_iter().partition(Result::is_ok);
    let made: Vec<_> = made.into_iter().flatten().collect();
    if let Some(Err(first)) = failed.into_iter().next() {
        if req.strict.unwrap_or(false) || made.is_empty() {
            for row in &made {
                if let Err(e) = state.lifecycle.kill(&SandboxId::parse(&row.id).expect("a stored id")).await {
                    tracing::warn!(sandbox = %row.id, "cannot kill the clone of a failed strict clone: {e}");
                }
            }
            return Err(first.into());
        }
    }
    let sandboxes: Vec<_> = made
        .iter()
        .map(|row| {
            let w = wire::Sandbox::from_row(row, &state.domain);
            json!({
                "sandboxID": w.sandbox_id,
                "templateID": w.template_id,
                "envdVersion": w.envd_version,
                "envdAccessToken": w.envd_access_token,
                "trafficAccessToken": w.traffic_access_token,
                "domain": w.domain,
            })
        })
        .collect();
    Ok((StatusCode::CREATED, Json(json!({ "sandboxes": sandboxes }))).into_response())
}
