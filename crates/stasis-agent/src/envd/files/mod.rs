//! Plain HTTP `/files`: download and upload file contents.
//!
//! Files are opened with the user's rights (`fs::creds`), so uploads are owned by the user
//! and reads obey the file's permissions. A call is let in by the sandbox's access token
//! or, when it carries none, by a signed URL (`signing.rs`). `download.rs` and `upload.rs` do
//! the streaming; this module only authenticates, picks the user, and maps errors to the
//! JSON envd answers.

mod download;
mod signing;
mod upload;

use std::io;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::filesystem::fs::{metadata, path};
use super::{auth, State};
use crate::supervisor::User;

/// Read size for downloads and write buffer for uploads.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct FileQuery {
    path: Option<String>,
    username: Option<String>,
    signature: Option<String>,
    signature_expiration: Option<String>,
}

/// An HTTP failure, answered as envd does: `{"code":404,"message":"..."}`.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into() }
    }

    fn io(e: &io::Error, what: &str, p: &Path) -> Self {
        let status = match e.kind() {
            io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
            io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidInput => {
                StatusCode::BAD_REQUEST
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e.kind() {
            io::ErrorKind::NotFound => format!("path '{}' does not exist", p.display()),
            io::ErrorKind::IsADirectory => format!("path '{}' is a directory", p.display()),
            _ => format!("{what} '{}': {e}", p.display()),
        };
        HttpError { status, message }
    }

    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.status.as_u16(), "message": self.message });
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = self.status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

/// The token (or signature) check and the user a `/files` call acts as.
fn caller(state: &State, headers: &HeaderMap, q: &FileQuery, op: signing::Operation) -> Result<User, HttpError> {
    let token = state.access_token.read().unwrap().clone();
    signing::authorize(token.as_deref(), headers, q, op, signing::now()).map_err(|(status, message)| {
        HttpError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED), message)
    })?;
    let name = auth::user_name(headers, q.username.as_deref())
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.message))?;
    auth::lookup_user(&name)
        .map_err(|e| HttpError::new(StatusCode::UNAUTHORIZED, format!("error looking up user '{name}': {}", e.message)))
}

fn resolve(requested: &str, user: &User) -> Result<PathBuf, HttpError> {
    path::resolve(requested, user).map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.message))
}

pub async fn download(AxState(state): AxState<State>, Query(q): Query<FileQuery>, headers: HeaderMap) -> Response {
    let result = async {
        let user = caller(&state, &headers, &q, signing::Operation::Read)?;
        download::serve_file(&user, q.path.as_deref().unwrap_or_default(), download::wants_gzip(&headers)).await
    }
    .await;
    result.unwrap_or_else(HttpError::into_response)
}

pub async fn upload(AxState(state): AxState<State>, Query(q): Query<FileQuery>, req: Request) -> Response {
    let result = async {
        let user = caller(&state, req.headers(), &q, signing::Operation::Write)?;
        let meta = metadata::from_headers(req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        metadata::validate(&meta)
            .map_err(|m| HttpError::new(StatusCode::BAD_REQUEST, format!("invalid metadata: {m}")))?;
        let (content_type, encoding) =
            (header_text(req.headers(), header::CONTENT_TYPE), header_text(req.headers(), header::CONTENT_ENCODING));
        let data = upload::decoded(&encoding, req.into_body())?;
        upload::receive(&user, q.path.as_deref(), &content_type, &meta, data).await
    }
    .await;
    result.unwrap_or_else(HttpError::into_response)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Helpers of the unit tests of `download` and `upload`.
#[cfg(test)]
mod testing {
    use super::*;

    pub fn me(home: &Path) -> User {
        User::current_with_home(home)
    }

    pub async fn body_of(r: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = r.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec())
    }

    pub fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }
}
