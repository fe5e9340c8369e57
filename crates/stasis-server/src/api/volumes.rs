//! E2B's volume endpoints: `POST /volumes`, `GET /volumes`, `GET /volumes/{id}`,
//! `DELETE /volumes/{id}` (the SDKs' `Volume.create`, `list`, `getInfo`/`connect`,
//! `destroy`). The files in a volume are `volume_content.rs`'s.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

type ApiResult<T> = Result<T, ApiError>;
use super::{json_body, wire, ApiError, AppState};

fn with_token(v: stasis_store::VolumeRow) -> wire::VolumeAndToken {
    wire::VolumeAndToken { volume_id: v.id, name: v.name, token: v.token }
}

pub async fn create(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let req: wire::NewVolume = json_body(body).await?;
    let name = req.name.ok_or_else(|| ApiError::bad_request("name is required"))?;
    let row = state.lifecycle.create_volume(&name).await?;
    Ok((StatusCode::CREATED, Json(with_token(row))).into_response())
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let rows = state.lifecycle.list_volumes().await?;
    let out: Vec<wire::Volume> = rows.into_iter().map(|v| wire::Volume { volume_id: v.id, name: v.name }).collect();
    Ok(Json(out).into_response())
}

pub async fn info(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(with_token(state.lifecycle.volume(&id).await?)).into_response())
}

/// 204; 404 when there is no such volume; 409 (naming them) while sandboxes mount it.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.lifecycle.delete_volume(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
