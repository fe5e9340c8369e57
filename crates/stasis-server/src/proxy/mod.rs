//! The sandbox proxy: routes sandbox API (envd) calls and user ports into sandboxes,
//! streaming both ways. A paused or unknown sandbox answers 502, unless it asked for
//! auto-resume: then it is resumed and the request served.

pub mod activity;
mod forward;
pub mod target;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::AppState;
use target::{Target, ENVD_PORT};

/// What the SDKs expect from a sandbox that is not running (`isRunning()` reads it).
fn not_running(id: &str) -> Response {
    let body = serde_json::json!({ "sandboxId": id, "message": "The sandbox was not found", "code": 502 });
    (StatusCode::BAD_GATEWAY, Json(body)).into_response()
}

fn error(status: StatusCode, id: &str, message: String) -> Response {
    let body = serde_json::json!({ "sandboxId": id, "message": message, "code": status.as_u16() });
    let mut r = (status, Json(body)).into_response();
    if status.is_client_error() {
        r.headers_mut().insert("should-retry", HeaderValue::from_static("false"));
    }
    r
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the request's tokens and makes sure the sandbox runs (auto-resuming it when it
/// asked for that). `Err` is the answer to send instead.
async fn admit(state: &AppState, target: &Target, headers: &axum::http::HeaderMap) -> Result<(), Response> {
    let id = target.sandbox_id.as_str();
    // Authenticate before anything else: an unauthenticated request must not even
    // auto-resume a sandbox.
    let row = match state.lifecycle.store().get_sandbox(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(not_running(id)),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, id, format!("store: {e}"))),
    };
    if target.port == ENVD_PORT {
        if let Some(token) = &row.envd_access_token {
            match header(headers, "x-access-token") {
                Some(t) if same(t, token) => {}
                Some(_) => return Err(error(StatusCode::UNAUTHORIZED, id, "invalid access token".into())),
                None => return Err(error(StatusCode::UNAUTHORIZED, id, "missing access token (X-Access-Token header)".into())),
            }
        }
    } else if let Some(token) = &row.traffic_access_token {
        match header(headers, "e2b-traffic-access-token") {
            Some(t) if same(t, token) => {}
            _ => {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    id,
                    "this sandbox's ports need its traffic access token (e2b-traffic-access-token header)".into(),
                ))
            }
        }
    }
    match state.lifecycle.route(id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(not_running(id)),
        Err(e) => Err(error(StatusCode::BAD_GATEWAY, id, format!("cannot resume the sandbox: {e}"))),
    }
}

async fn open(state: &AppState, target: &Target) -> Result<tokio::net::TcpStream, Response> {
    let id = target.sandbox_id.as_str();
    match state.lifecycle.runtime().connect(id, target.port).await {
        Ok(s) => Ok(s),
        Err(stasis_runtime::RuntimeError::NotRunning(_)) | Err(stasis_runtime::RuntimeError::NotFound(_)) => Err(not_running(id)),
        Err(_) => Err(error(StatusCode::BAD_GATEWAY, id, format!("The sandbox is running but port {} is not open", target.port))),
    }
}

pub async fn handle(state: AppState, target: Target, req: Request) -> Response {
    let id = target.sandbox_id.as_str();
    if let Err(r) = admit(&state, &target, req.headers()).await {
        return r;
    }
    let guard = state.lifecycle.activity().enter(id);
    let stream = match open(&state, &target).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match forward::forward(stream, req, guard).await {
        Ok(r) => r,
        Err(e) => error(StatusCode::BAD_GATEWAY, id, e),
    }
}

/// `CONNECT {port}-{id}.{domain}:N` (or with the sandbox headers): a raw TCP tunnel to
/// the port, for protocols that are not HTTP. Cut at pause like every connection.
pub async fn tunnel(state: AppState, target: Target, mut req: Request) -> Response {
    if let Err(r) = admit(&state, &target, req.headers()).await {
        return r;
    }
    let stream = match open(&state, &target).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let guard = state.lifecycle.activity().enter(&target.sandbox_id);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(client) = upgrade.await else { return };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut stream = stream;
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut stream) => {}
            _ = guard.cancel.cancelled() => {}
        }
        drop(guard);
    });
    StatusCode::OK.into_response()
}
