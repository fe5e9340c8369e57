//! E2B's volume content API, `/volumecontent/{id}/...` (the SDKs' `Volume` file methods:
//! `list`, `makeDir`, `getInfo`, `exists`, `updateMetadata`, `readFile`, `writeFile`,
//! `remove`). Authenticated by the volume's own token (`Authorization: Bearer`, from
//! `Volume.create`/`connect`), not the API key. The file operations are
//! `stasis_runtime::volume_files`'s; this maps them to the wire.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use stasis_runtime::volume_files::{Attrs, Entry, FilesError, VolumeFiles};

type ApiResult<T> = Result<T, ApiError>;
use super::{json_body, ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumecontent/{id}/dir", get(list).post(make_dir))
        .route("/volumecontent/{id}/path", get(stat).patch(update).delete(remove))
        .route("/volumecontent/{id}/file", get(read).put(write))
}

#[derive(Debug, Deserialize, Default)]
pub struct Params {
    path: Option<String>,
    depth: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    force: Option<bool>,
}

impl Params {
    fn path(&self) -> ApiResult<&str> {
        self.path.as_deref().ok_or_else(|| ApiError::bad_request("query parameter path is required"))
    }
    fn attrs(&self) -> Attrs {
        Attrs { uid: self.uid, gid: self.gid, mode: self.mode }
    }
}

/// `VolumeEntryStat`.
#[derive(Debug, Serialize)]
struct Stat {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    path: String,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: String,
    mtime: String,
    ctime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

impl From<Entry> for Stat {
    fn from(e: Entry) -> Self {
        let t = stasis_proto::rfc3339_millis;
        Stat {
            name: e.name,
            kind: e.kind,
            path: e.path,
            size: e.size,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            atime: t(e.atime_ms),
            mtime: t(e.mtime_ms),
            ctime: t(e.ctime_ms),
            target: e.target,
        }
    }
}

fn files_error(e: FilesError) -> ApiError {
    match e {
        FilesError::NotFound(_) => ApiError::not_found(e.to_string()),
        FilesError::Exists(_) => ApiError::conflict(e.to_string()),
        FilesError::Invalid(_) => ApiError::bad_request(e.to_string()),
        FilesError::Io { .. } => ApiError::internal(e.to_string()),
    }
}

/// The volume's files, once the bearer token is checked. A wrong token and an unknown
/// volume get the same 401.
async fn volume(state: &AppState, id: &str, headers: &HeaderMap) -> ApiResult<VolumeFiles> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("a volume token is required (Authorization: Bearer)"))?;
    let dir = state
        .lifecycle
        .volume_files(id, token.trim())
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid volume token"))?;
    VolumeFiles::open(&dir).map_err(|e| ApiError::internal(format!("open volume {id}: {e}")))
}

/// Runs a blocking file operation.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, FilesError> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(files_error)
}

async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let (path, depth) = (q.path()?.to_string(), q.depth.unwrap_or(1));
    let entries = blocking(move || v.list(&path, depth)).await?;
    Ok(Json(entries.into_iter().map(Stat::from).collect::<Vec<_>>()).into_response())
}

async fn make_dir(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let (path, attrs, force) = (q.path()?.to_string(), q.attrs(), q.force.unwrap_or(false));
    let e = blocking(move || v.make_dir(&path, attrs, force)).await?;
    Ok((StatusCode::CREATED, Json(Stat::from(e))).into_response())
}

async fn stat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let path = q.path()?.to_string();
    Ok(Json(Stat::from(blocking(move || v.stat(&path)).await?)).into_response())
}

#[derive(Debug, Deserialize, Default)]
struct Metadata {
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let m: Metadata = json_body(body).await?;
    let path = q.path()?.to_string();
    let attrs = Attrs { uid: m.uid, gid: m.gid, mode: m.mode };
    Ok(Json(Stat::from(blocking(move || v.update(&path, attrs)).await?)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let v = volume(&state, &id, &headers).await?;
    let path = q.path()?.to_string();
    blocking(move || v.remove(&path)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let path = q.path()?.to_string();
    let file = blocking(move || v.read(&path)).await?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The upload streams to the file through a pipe: it is never held in memory whole.
async fn write(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = volume(&state, &id, &headers).await?;
    let (path, attrs, force) = (q.path()?.to_string(), q.attrs(), q.force.unwrap_or(false));
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let mut sync_reader = tokio_util::io::SyncIoBridge::new(reader);
    let e = blocking(move || v.write(&path, attrs, force, &mut sync_reader)).await?;
    Ok((StatusCode::CREATED, Json(Stat::from(e))).into_response())
}
