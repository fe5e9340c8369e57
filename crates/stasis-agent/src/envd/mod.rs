//! envd: the sandbox API the E2B / Novita SDKs speak, served by the agent.
//!
//! Connect (JSON codec) over HTTP/1.1 for `process.Process` and `filesystem.Filesystem`,
//! plain HTTP for `/files` and `/health`. This module maps the wire to the supervisor and
//! the filesystem; what a process *is* lives in `supervisor`.

mod auth;
mod files;
mod filesystem;
mod process;
mod rpc;
mod token_digest;

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use stasis_proto::connect::{parse_route, ConnectError, Route};

use stasis_proto::agent::{BootConfig, InitRequest, ACCESS_TOKEN_DIGEST_PATH, INIT_PATH};

use crate::supervisor::Supervisor;

pub use auth::DEFAULT_USER;

#[derive(Clone)]
pub struct State {
    pub supervisor: Supervisor,
    access_token: Arc<RwLock<Option<String>>>,
    watchers: filesystem::Watchers,
    relay: crate::relay::Sessions,
}

impl State {
    pub fn new(supervisor: Supervisor, cfg: &BootConfig) -> Self {
        publish_token_digest(cfg.access_token.as_deref());
        Self {
            supervisor,
            access_token: Arc::new(RwLock::new(cfg.access_token.clone())),
            watchers: Default::default(),
            relay: Default::default(),
        }
    }
}

impl State {
    /// The relay's sessions (`crate::relay`).
    pub(crate) fn relay_sessions(&self) -> crate::relay::Sessions {
        self.relay.clone()
    }
}

/// 401 unless the call carries the sandbox's access token (when it has one).
pub(crate) fn check_token(state: &State, headers: &axum::http::HeaderMap) -> Result<(), ConnectError> {
    auth::check_token(state, headers)
}

fn publish_token_digest(token: Option<&str>) {
    if let Err(e) = token_digest::publish(std::path::Path::new(ACCESS_TOKEN_DIGEST_PATH), token) {
        eprintln!("stasis-agent: cannot publish the access token digest: {e}");
    }
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(INIT_PATH, axum::routing::post(init))
        .route("/envs", get(envs))
        .route("/files", get(files::download).post(files::upload))
        .route(stasis_relay::handshake::PATH, get(crate::relay::handle))
        .fallback(connect_call)
        .with_state(state)
}

async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `POST /init` (as envd's): the host hands a sandbox started from a snapshot its own
/// access token, environment and boot id (the agent holds no other identity or random
/// state of its own: ids it makes come from the kernel's RNG at each use, which copies do
/// not share). Authenticated with the current token.
async fn init(AxState(state): AxState<State>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(e) = auth::check_token(&state, &headers) {
        return rpc::unary_error(&e);
    }
    let req = match InitRequest::from_json(&body) {
        Ok(r) => r,
        Err(e) => return rpc::unary_error(&ConnectError::invalid_argument(format!("invalid init body: {e}"))),
    };
    if let Some(token) = req.new_token() {
        *state.access_token.write().unwrap() = Some(token.to_string());
        publish_token_digest(Some(token));
    }
    if let Some(id) = &req.boot_id {
        if let Err(e) = crate::boot::mounts::set_boot_id(id) {
            return rpc::unary_error(&ConnectError::internal(format!("set the boot id: {e:#}")));
        }
    }
    state.supervisor.set_env(req.env_vars);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /envs` (as envd's): the sandbox-wide environment, for in-sandbox services whose
/// processes started before it was set (the code interpreter's kernels, restored from
/// the template's warm snapshot, learn the create request's `envs` here).
async fn envs(AxState(state): AxState<State>, headers: axum::http::HeaderMap) -> Response {
    if let Err(e) = auth::check_token(&state, &headers) {
        return rpc::unary_error(&e);
    }
    axum::Json(state.supervisor.env()).into_response()
}

/// Every Connect call: route, authenticate, dispatch.
async fn connect_call(AxState(state): AxState<State>, req: Request<Body>) -> Response {
    let route = match parse_route(req.uri().path()) {
        Ok(r) => r,
        Err(e) => return rpc::unary_error(&e),
    };
    if req.method() != axum::http::Method::POST {
        return rpc::unary_error(&ConnectError::new(
            stasis_proto::connect::Code::Unimplemented,
            format!("{} takes POST, not {}", route.path(), req.method()),
        ));
    }
    if let Err(e) = auth::check_token(&state, req.headers()) {
        return rpc::unary_error(&e);
    }
    match route {
        Route::Process(m) => process::dispatch(state, m, req).await,
        Route::Filesystem(m) => filesystem::dispatch(state, m, req).await,
    }
}
