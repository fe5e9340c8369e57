//! Template endpoints (E2B's build API, as the SDKs' `Template.build` use it):
//! `POST /v3/templates` (a build id), `GET /templates/{id}/files/{hash}` (upload or not),
//! `PUT /stasis/build-files/{hash}` (the upload itself: a signed URL, no API key, as the
//! SDKs send none with it), `POST /v2/templates/{id}/builds/{build}` (start),
//! `GET /templates/{id}/builds/{build}/status` (status and log from `logsOffset`),
//! `GET /templates/aliases/{alias}`, `GET /templates`, and tags: `POST /templates/tags`
//! (assign), `DELETE /templates/tags` (remove), `GET /templates/{id}/tags`. Parsing and
//! mapping only.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{json_body, ApiError, AppState};
use crate::templates::{log, spec::TemplateWire, BuildRequest, TemplateError};

type ApiResult<T> = Result<T, ApiError>;

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::BadRequest(m) => ApiError::bad_request(m),
            TemplateError::NotFound(m) => ApiError::not_found(m),
            TemplateError::Conflict(m) => ApiError::conflict(m),
            TemplateError::Internal(m) => ApiError::internal(m),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody {
    name: Option<String>,
    alias: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    cpu_count: Option<u32>,
    #[serde(rename = "memoryMB")]
    memory_mb: Option<u64>,
}

pub async fn request(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let b: RequestBody = json_body(body).await?;
    let name = b.name.or(b.alias).ok_or_else(|| ApiError::bad_request("a template build needs a name"))?;
    let req = BuildRequest { name, tags: b.tags.unwrap_or_default(), cpu_count: b.cpu_count, memory_mb: b.memory_mb };
    let (template, build, tags) = state.templates.request(req)?;
    let body = json!({
        "templateID": template, "buildID": build, "public": false,
        "names": [template], "aliases": [template], "tags": tags,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

pub async fn files(
    State(state): State<AppState>,
    Path((_id, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let body = match state.templates.upload_link(&hash)? {
        None => json!({"present": true}),
        Some(token) => {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            json!({"present": false, "url": format!("http://{host}/stasis/build-files/{hash}?token={token}")})
        }
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
pub struct UploadQuery {
    token: String,
}

pub async fn upload(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<StatusCode> {
    state.templates.store_upload(&hash, &q.token, body.into_data_stream()).await?;
    Ok(StatusCode::OK)
}

pub async fn start(
    State(state): State<AppState>,
    Path((id, build)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "template larger than 1 MiB"))?;
    let spec: TemplateWire =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid template: {e}")))?;
    state.templates.start(&id, &build, spec)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusQuery {
    logs_offset: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(rename = "buildID")]
    build_id: String,
    status: log::Status,
    logs: Vec<String>,
    log_entries: Vec<log::LogEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<log::Failure>,
}

pub async fn status(
    State(state): State<AppState>,
    Path((id, build)): Path<(String, String)>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (rec, entries) = state.templates.status(&id, &build, q.logs_offset.unwrap_or(0))?;
    let body = StatusBody {
        template_id: rec.template_id,
        build_id: rec.build_id,
        status: rec.status,
        logs: entries.iter().map(|e| format!("{} {}\n", e.timestamp, e.message)).collect(),
        log_entries: entries,
        reason: rec.reason,
    };
    Ok(Json(serde_json::to_value(body).expect("json")))
}

pub async fn alias(State(state): State<AppState>, Path(alias): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    if state.templates.exists(&alias).await? {
        Ok(Json(json!({"templateID": alias, "public": false})))
    } else {
        Err(ApiError::not_found(format!("template {alias:?} not found")))
    }
}

#[derive(Deserialize, Default)]
pub struct AssignTagsBody {
    #[serde(default)]
    target: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /templates/tags` (`Template.assignTags`): 201 `{tags, buildID}`.
pub async fn assign_tags(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let b: AssignTagsBody = json_body(body).await?;
    if b.target.trim().is_empty() {
        return Err(ApiError::bad_request("name the template to tag from in `target` (name or name:tag)"));
    }
    let (build, tags) = state.templates.assign_tags(&b.target, &b.tags).await?;
    Ok((StatusCode::CREATED, Json(json!({"tags": tags, "buildID": build}))).into_response())
}

#[derive(Deserialize, Default)]
pub struct RemoveTagsBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// `DELETE /templates/tags` (`Template.removeTags`): 204.
pub async fn remove_tags(State(state): State<AppState>, body: Body) -> ApiResult<StatusCode> {
    let b: RemoveTagsBody = json_body(body).await?;
    if b.name.trim().is_empty() {
        return Err(ApiError::bad_request("name the template in `name`"));
    }
    state.templates.remove_tags(&b.name, &b.tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /templates/{id}/tags` (`Template.getTags`): `[{tag, buildID, createdAt}]`.
pub async fn tags(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let tags = state.templates.tags(&id).await?;
    let rows: Vec<serde_json::Value> =
        tags.into_iter().map(|t| json!({"tag": t.tag, "buildID": t.build_id, "createdAt": t.created_at})).collect();
    Ok(Json(serde_json::Value::Array(rows)))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let list = state.templates.list().await?;
    let rows: Vec<serde_json::Value> = list
        .into_iter()
        .map(|t| {
            json!({
                "templateID": t.name, "buildID": t.build_id.clone().unwrap_or_default(), "public": false,
                "aliases": [t.name], "names": [t.name], "createdAt": t.created_at, "updatedAt": t.created_at,
                "buildStatus": "ready", "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 4096,
                "spawnCount": 0, "buildCount": u32::from(t.build_id.is_some()),
                "sizeBytes": t.size_bytes, "layers": t.layers, "startCmd": t.start_cmd,
                "tags": t.tags.iter().map(|x| json!({"tag": x.tag, "buildID": x.build_id})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(serde_json::Value::Array(rows)))
}
