//! `/contexts`: create, list, remove and restart contexts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{parse_json, ApiError};
use super::AppState;
use crate::language::Language;

#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: CreateBody = parse_json(&body)?;
    let language = Language::normalize(req.language.as_deref());
    let ctx = state.registry.create(language, req.cwd.as_deref()).await?;
    Ok(Json(ctx.info()).into_response())
}

pub async fn list(State(state): State<AppState>) -> Response {
    Json(state.registry.list()).into_response()
}

pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.registry.remove(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn restart(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let ctx = state.registry.get(&id)?;
    ctx.restart().await.map_err(crate::registry::RegistryError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
