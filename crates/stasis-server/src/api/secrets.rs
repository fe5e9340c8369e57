//! E2B's secret endpoints: `POST /secrets`, `GET /secrets` (paged: `limit`, `nextToken`,
//! `X-Next-Token`), `GET /secrets/{id}`, `POST /secrets/{id}` (a new version), `DELETE
//! /secrets/{id}` (the SDKs' `Secret.create`, `list`, `getInfo`/`exists`, `update`,
//! `destroy`). `{id}` is an id or a name. No answer carries a value.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{json_body, wire, ApiError, AppState};
use crate::lifecycle::MAX_SECRETS_PAGE;

type ApiResult<T> = Result<T, ApiError>;

pub async fn create(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let req: wire::SecretBody = json_body(body).await?;
    let name = req.name.ok_or_else(|| ApiError::bad_request("name is required"))?;
    let value = req.value.ok_or_else(|| ApiError::bad_request("value is required"))?;
    let row = state.lifecycle.create_secret(&name, &value, req.metadata.unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(wire::Secret::from_row(&row))).into_response())
}

pub async fn update(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let req: wire::SecretBody = json_body(body).await?;
    if req.name.is_some() {
        return Err(ApiError::bad_request("a secret's name cannot be changed (send value and metadata)"));
    }
    let value = req.value.ok_or_else(|| ApiError::bad_request("value is required"))?;
    let row = state.lifecycle.update_secret(&id, &value, req.metadata).await?;
    Ok(Json(wire::Secret::from_row(&row)).into_response())
}

pub async fn info(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(wire::Secret::from_row(&state.lifecycle.secret(&id).await?)).into_response())
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.lifecycle.delete_secret(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit=1..100` (default 100) and `?nextToken=` from the previous page's `X-Next-Token`.
pub async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let (mut limit, mut token) = (MAX_SECRETS_PAGE, None);
    for (k, v) in url_pairs(raw.as_deref().unwrap_or("")) {
        match k.as_str() {
            "limit" => {
                limit = v.parse().ok().filter(|l| (1..=MAX_SECRETS_PAGE).contains(l)).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid limit {v:?} (expected an integer from 1 to {MAX_SECRETS_PAGE})"
                    ))
                })?
            }
            "nextToken" if !v.is_empty() => token = Some(v),
            _ => {}
        }
    }
    let (rows, next) = state.lifecycle.list_secrets(token.as_deref(), limit).await.map_err(|e| match e {
        crate::lifecycle::LifecycleError::Store(stasis_store::StoreError::InvalidQuery(q)) => {
            ApiError::bad_request(q.to_string())
        }
        other => other.into(),
    })?;
    let body: Vec<wire::Secret> = rows.iter().map(wire::Secret::from_row).collect();
    let mut r = Json(body).into_response();
    if let Some(v) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert("x-next-token", v);
    }
    Ok(r)
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
