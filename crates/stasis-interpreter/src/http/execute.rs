//! `POST /execute {code, context_id, language, env_vars}`: run code, stream NDJSON.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stasis_proto::agent::ACCESS_TOKEN_HEADER;

use super::error::{parse_json, ApiError};
use super::AppState;
use crate::context::RunRequest;
use crate::envs;
use crate::language::Language;

/// The SDKs send every field; `null` and `""` both mean "not given" (as in E2B's server).
#[derive(Debug, Deserialize)]
struct ExecuteBody {
    code: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
}

pub async fn execute(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.auth.check(&headers).await?;
    let req: ExecuteBody = parse_json(&body)?;
    let context_id = req.context_id.filter(|s| !s.is_empty());
    let language = req.language.filter(|s| !s.trim().is_empty());
    let ctx = match (context_id, language) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("Only one of context_id or language can be provided")),
        (Some(id), None) => state.registry.get(&id)?,
        (None, lang) => state.registry.default_context(Language::normalize(lang.as_deref())).await?,
    };
    let env_vars = req.env_vars.unwrap_or_default();
    envs::check_names(env_vars.keys()).map_err(ApiError::bad_request)?;
    if !env_vars.is_empty() && !envs::supported(ctx.language.family()) {
        return Err(ApiError::bad_request(format!("env_vars are not supported in {} contexts", ctx.language)));
    }
    let token = headers.get(ACCESS_TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let rx = ctx.spawn_run(RunRequest { code: req.code, env_vars, token });
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx)) },
        );
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}
