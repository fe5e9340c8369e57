//! The sandbox proxy: routes sandbox API (envd) calls and user ports into sandboxes,
//! streaming both ways. Whether a request gets through (tokens, auto-resume) and its
//! connection are the lifecycle's (`lifecycle/admission.rs`); this module maps its answer
//! to HTTP. A paused or unknown sandbox answers 502, as E2B's proxy does. Stasis's own
//! credentials never reach the sandbox (`credentials.rs`).

mod counted;
mod credentials;
mod forward;
pub mod target;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use stasis_proto::file_signing::{Operation, SignedQuery, SignedQueryOwned};

use crate::api::AppState;
use crate::lifecycle::{Credentials, PortConnection, Refusal};
use crate::metrics::ProxyKind;
use target::Target;

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

fn refused(id: &str, r: Refusal) -> Response {
    match r {
        Refusal::NotRunning => not_running(id),
        Refusal::MissingAccessToken => {
            error(StatusCode::UNAUTHORIZED, id, "missing access token (X-Access-Token header)".into())
        }
        Refusal::InvalidAccessToken => error(StatusCode::UNAUTHORIZED, id, "invalid access token".into()),
        // Exactly envd's body: the SDKs' tests compare it whole.
        Refusal::FileSignature { status, message } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
            (status, Json(serde_json::json!({ "code": status.as_u16(), "message": message }))).into_response()
        }
        Refusal::TrafficTokenRequired => error(
            StatusCode::FORBIDDEN,
            id,
            "this sandbox's ports need its traffic access token (e2b-traffic-access-token header)".into(),
        ),
        Refusal::ResumeFailed(e) => error(StatusCode::BAD_GATEWAY, id, format!("cannot resume the sandbox: {e}")),
        Refusal::PortClosed(port) => {
            error(StatusCode::BAD_GATEWAY, id, format!("The sandbox is running but port {port} is not open"))
        }
        Refusal::Internal(e) => error(StatusCode::INTERNAL_SERVER_ERROR, id, e),
    }
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Admits the request and opens its connection, or answers instead.
/// `signed`: the request's `file_query`, taken by the caller (a request is not `Sync`, so
/// it cannot be borrowed across the await).
async fn connect(
    state: &AppState,
    target: &Target,
    headers: &axum::http::HeaderMap,
    signed: Option<(Operation, SignedQueryOwned)>,
    kind: ProxyKind,
) -> Result<PortConnection, Response> {
    let creds = Credentials {
        access_token: header(headers, "x-access-token"),
        traffic_token: header(headers, "e2b-traffic-access-token"),
        file_call: signed.as_ref().map(|(op, q)| (*op, q.borrow())),
    };
    let id = &target.sandbox_id;
    let conn = state.lifecycle.connect_port(id, target.port, creds).await;
    state.lifecycle.metrics().proxy_request(kind, conn.is_ok());
    conn.map_err(|r| refused(id, r))
}

/// The operation and signing parts of a call to the agent's `/files` (the path is the
/// agent's whatever the port: only the agent's port checks it).
fn file_query(req: &Request) -> Option<(Operation, SignedQueryOwned)> {
    if req.uri().path() != "/files" {
        return None;
    }
    let op = Operation::of_method(req.method())?;
    Some((op, SignedQuery::parse(req.uri().query().unwrap_or_default())))
}

pub async fn handle(state: AppState, target: Target, mut req: Request) -> Response {
    let conn = match connect(&state, &target, req.headers(), file_query(&req), ProxyKind::Http).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    credentials::strip(&state, target.port, req.headers_mut()).await;
    match forward::forward(conn.stream, req, conn.guard, state.lifecycle.metrics().clone()).await {
        Ok(r) => r,
        Err(e) => error(StatusCode::BAD_GATEWAY, &target.sandbox_id, e),
    }
}

/// `CONNECT {port}-{id}.{domain}:N` (or with the sandbox headers): a raw TCP tunnel to
/// the port, for protocols that are not HTTP. Cut at pause like every connection, unless
/// the sandbox parks its connections.
pub async fn tunnel(state: AppState, target: Target, mut req: Request) -> Response {
    let PortConnection { mut stream, guard } =
        match connect(&state, &target, req.headers(), file_query(&req), ProxyKind::Connect).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let upgrade = hyper::upgrade::on(&mut req);
    let metrics = state.lifecycle.metrics().clone();
    tokio::spawn(async move {
        let Ok(client) = upgrade.await else { return };
        let client = hyper_util::rt::TokioIo::new(client);
        forward::bridge(client, &mut stream, &guard, &metrics).await;
        drop(guard);
    });
    StatusCode::OK.into_response()
}
