//! Plain HTTP `/files`: download and upload file contents.
//!
//! Both directions stream: a download is read (and gzipped when the client asks for it)
//! on a blocking thread feeding the response body; an upload is written to disk as it
//! arrives (decompressed on the way when sent with `Content-Encoding: gzip`), with no size
//! limit. Files are opened with the user's rights (`fs::creds`), so uploads are owned by
//! the user and reads obey the file's permissions. The missing parents of an upload are
//! the exception, as in envd: created by the agent and handed to the user.
//!
//! Where a multipart upload puts each file: the `?path` query when given (one file), else
//! the part's `filename`, which the SDKs set to the file's full path (not a base name:
//! `FormData.append('file', blob, path)` in JS, `('file', (path, data))` in Python).

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::filesystem::fs::{creds, ops, path};
use super::{auth, State};
use crate::supervisor::User;

/// Read size for downloads and write buffer for uploads.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct FileQuery {
    path: Option<String>,
    username: Option<String>,
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

/// The token check and the user a `/files` call acts as.
fn caller(state: &State, headers: &HeaderMap, q: &FileQuery) -> Result<User, HttpError> {
    auth::check_token(state, headers).map_err(|e| HttpError::new(StatusCode::UNAUTHORIZED, e.message))?;
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
        let user = caller(&state, &headers, &q)?;
        serve_file(&user, q.path.as_deref().unwrap_or_default(), wants_gzip(&headers)).await
    }
    .await;
    result.unwrap_or_else(HttpError::into_response)
}

pub async fn upload(AxState(state): AxState<State>, Query(q): Query<FileQuery>, req: Request) -> Response {
    let result = async {
        let user = caller(&state, req.headers(), &q)?;
        let (content_type, encoding) =
            (header_text(req.headers(), header::CONTENT_TYPE), header_text(req.headers(), header::CONTENT_ENCODING));
        let data = decoded(&encoding, req.into_body())?;
        receive(&user, q.path.as_deref(), &content_type, data).await
    }
    .await;
    result.unwrap_or_else(HttpError::into_response)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Whether `Accept-Encoding` names gzip with a non-zero quality.
fn wants_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let q =
                parts.find_map(|p| p.strip_prefix("q=")).map(|q| q.trim().parse::<f32>().unwrap_or(0.0)).unwrap_or(1.0);
            coding.eq_ignore_ascii_case("gzip") && q > 0.0
        },
    )
}

async fn serve_file(user: &User, requested: &str, gzip: bool) -> Result<Response, HttpError> {
    let p = resolve(requested, user)?;
    let p2 = p.clone();
    let (file, len) = creds::as_user(user, move || {
        let f = std::fs::File::open(&p2)?;
        let md = f.metadata()?;
        if md.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        Ok((f, md.len()))
    })
    .await
    .map_err(|e| HttpError::io(&e, "cannot open", &p))?;

    let mut r = Response::new(Body::from_stream(read_chunks(file, gzip)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(r)
}

/// The file's bytes (gzipped on request), read on a blocking thread a chunk ahead of the
/// client. Dropping the stream stops the reader.
fn read_chunks(mut file: std::fs::File, gzip: bool) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut gz = gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let out = match gz.as_mut() {
                Some(enc) => match enc.write_all(&buf[..n]) {
                    Ok(()) => std::mem::take(enc.get_mut()),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                },
                None => buf[..n].to_vec(),
            };
            if !out.is_empty() && tx.blocking_send(Ok(Bytes::from(out))).is_err() {
                return; // client went away
            }
        }
        if let Some(enc) = gz {
            let _ = tx.blocking_send(enc.finish().map(Bytes::from));
        }
    });
    async_stream::stream! {
        while let Some(item) = rx.recv().await {
            yield item;
        }
    }
}

/// One uploaded file in the answer.
fn uploaded(p: &Path) -> serde_json::Value {
    serde_json::json!({ "name": path::base_name(p), "type": "file", "path": p.to_string_lossy() })
}

type Upload = futures::stream::BoxStream<'static, io::Result<Bytes>>;

/// The upload's bytes as the client meant them: gunzipped when it says `Content-Encoding:
/// gzip` (the SDKs' `gzip` option, on any upload), as they come otherwise.
fn decoded(encoding: &str, body: Body) -> Result<Upload, HttpError> {
    let data = body.into_data_stream().map(|c| c.map_err(io::Error::other));
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(data.boxed()),
        "gzip" | "x-gzip" => Ok(gunzip(data).boxed()),
        other => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: uploads may be sent as is or with gzip"),
        )),
    }
}

/// Compressed input a piece at a time, so that what one piece inflates to (a chunk of
/// zeros grows a thousandfold) stays a few MiB in memory.
const GUNZIP_PIECE: usize = 8 * 1024;

/// Decompresses a gzip stream as it arrives. Damaged or truncated input is an error, so a
/// broken upload never leaves a file that looks complete.
fn gunzip(
    data: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let bad = |e: io::Error| io::Error::new(io::ErrorKind::InvalidData, format!("invalid gzip data: {e}"));
    async_stream::try_stream! {
        let mut dec = flate2::write::GzDecoder::new(Vec::new());
        futures::pin_mut!(data);
        while let Some(chunk) = data.next().await {
            for piece in chunk?.chunks(GUNZIP_PIECE) {
                dec.write_all(piece).map_err(bad)?;
                let out = std::mem::take(dec.get_mut());
                if !out.is_empty() {
                    yield Bytes::from(out);
                }
            }
        }
        dec.try_finish().map_err(bad)?;
        let out = std::mem::take(dec.get_mut());
        if !out.is_empty() {
            yield Bytes::from(out);
        }
    }
}

async fn receive(
    user: &User,
    query_path: Option<&str>,
    content_type: &str,
    data: Upload,
) -> Result<Response, HttpError> {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mut done: Vec<PathBuf> = Vec::new();
    if media == "application/octet-stream" {
        let requested = query_path.filter(|p| !p.is_empty()).ok_or_else(|| {
            HttpError::new(StatusCode::BAD_REQUEST, "path query parameter is required for raw body upload")
        })?;
        let p = resolve(requested, user)?;
        write_file(user, &p, data).await?;
        done.push(p);
    } else if media.starts_with("multipart/") {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, format!("bad multipart Content-Type: {e}")))?;
        let mut form = multer::Multipart::new(data, boundary);
        let bad_form = |e: multer::Error| HttpError::new(StatusCode::BAD_REQUEST, format!("error reading form: {e}"));
        while let Some(field) = form.next_field().await.map_err(bad_form)? {
            if field.name() != Some("file") {
                continue;
            }
            let requested = match query_path.filter(|p| !p.is_empty()) {
                Some(p) => p.to_string(),
                None => field.file_name().filter(|n| !n.is_empty()).map(str::to_string).ok_or_else(|| {
                    HttpError::new(
                        StatusCode::BAD_REQUEST,
                        "a file part needs a filename (its destination path) when ?path is not given",
                    )
                })?,
            };
            let p = resolve(&requested, user)?;
            if done.contains(&p) {
                return Err(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "you cannot upload multiple files to the same path '{}' in one upload request",
                        p.display()
                    ),
                ));
            }
            write_file(user, &p, field.map(|c| c.map_err(io::Error::other))).await?;
            done.push(p);
        }
    } else {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported content type {content_type:?}: expected multipart/form-data or application/octet-stream"
            ),
        ));
    }
    let body = serde_json::Value::Array(done.iter().map(|p| uploaded(p)).collect());
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Create (or truncate) `p` as `user`, with missing parent directories, and stream `data`
/// into it.
async fn write_file<S, E>(user: &User, p: &Path, data: S) -> Result<(), HttpError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let (p2, owner) = (p.to_path_buf(), (user.uid, user.gid));
    tokio::task::spawn_blocking(move || match p2.parent() {
        Some(parent) => ops::ensure_dirs_owned_by(parent, owner),
        None => Ok(()),
    })
    .await
    .map_err(io::Error::other)
    .and_then(|r| r.map_err(|e| io::Error::new(connect_kind(e.code), e.message)))
    .map_err(|e| HttpError::io(&e, "cannot open", p))?;
    let p2 = p.to_path_buf();
    let file = creds::as_user(user, move || {
        if std::fs::metadata(&p2).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&p2)
    })
    .await
    .map_err(|e| HttpError::io(&e, "cannot open", p))?;
    let mut out = tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
    futures::pin_mut!(data);
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| {
            HttpError::new(StatusCode::BAD_REQUEST, format!("error reading upload for '{}': {e}", p.display()))
        })?;
        out.write_all(&chunk).await.map_err(|e| HttpError::io(&e, "error writing file", p))?;
    }
    out.flush().await.map_err(|e| HttpError::io(&e, "error writing file", p))?;
    Ok(())
}

fn connect_kind(code: stasis_proto::connect::Code) -> io::ErrorKind {
    use stasis_proto::connect::Code;
    match code {
        Code::NotFound => io::ErrorKind::NotFound,
        Code::PermissionDenied => io::ErrorKind::PermissionDenied,
        Code::InvalidArgument => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me(home: &Path) -> User {
        User::current_with_home(home)
    }

    async fn body_of(r: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = r.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec())
    }

    fn plain(b: impl Into<Body>) -> Upload {
        decoded("", b.into()).unwrap()
    }

    fn gzipped(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// `bytes` as a body arriving `size` bytes at a time.
    fn in_pieces(bytes: Vec<u8>, size: usize) -> Body {
        let pieces: Vec<_> = bytes.chunks(size).map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c))).collect();
        Body::from_stream(futures::stream::iter(pieces))
    }

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[tokio::test]
    async fn multipart_upload_of_two_files() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let b = t.path().join("x/b.txt");
        let body = format!(
            "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: text/plain\r\n\r\nb\r\n\
             --XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.txt\"\r\n\r\ncc\r\n--XX--\r\n",
            b.display()
        );
        let r = receive(&u, None, "multipart/form-data; boundary=XX", plain(body)).await.unwrap();
        let (status, _, out) = body_of(r).await;
        assert_eq!(status, StatusCode::OK);
        let c = t.path().join("c.txt");
        assert_eq!(
            json(&out),
            serde_json::json!([
                {"name": "b.txt", "type": "file", "path": b.to_str().unwrap()},
                {"name": "c.txt", "type": "file", "path": c.to_str().unwrap()},
            ])
        );
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        assert_eq!(std::fs::read(&c).unwrap(), b"cc");
        assert_eq!(std::fs::metadata(&b).unwrap().uid(), u.uid);
    }

    #[tokio::test]
    async fn multipart_with_query_path_and_duplicates() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let part = |c: &str| {
            format!("--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ignored\"\r\n\r\n{c}\r\n")
        };
        let r = receive(
            &u,
            Some("dir/a.txt"),
            "multipart/form-data; boundary=XX",
            plain(format!("{}--XX--\r\n", part("abc"))),
        )
        .await
        .unwrap();
        assert_eq!(body_of(r).await.0, StatusCode::OK);
        assert_eq!(std::fs::read(t.path().join("dir/a.txt")).unwrap(), b"abc");
        let two = format!("{}{}--XX--\r\n", part("1"), part("2"));
        let e = receive(&u, Some("dir/a.txt"), "multipart/form-data; boundary=XX", plain(two)).await.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn octet_stream_upload_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let chunks = futures::stream::iter((0..10).map(|i| Ok::<_, io::Error>(Bytes::from(vec![i as u8; 100_000]))));
        let r = receive(&u, Some("~/deep/er/raw.bin"), "application/octet-stream", plain(Body::from_stream(chunks)))
            .await
            .unwrap();
        let (status, _, out) = body_of(r).await;
        assert_eq!(status, StatusCode::OK);
        let p = t.path().join("deep/er/raw.bin");
        assert_eq!(json(&out)[0]["path"], p.to_str().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1_000_000);
        assert_eq!(
            receive(&u, None, "application/octet-stream", plain(Body::empty())).await.unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            receive(&u, Some("deep"), "application/octet-stream", plain(Body::empty())).await.unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            receive(&u, Some("x"), "text/plain", plain(Body::empty())).await.unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn gzip_uploads_are_stored_decompressed() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 7) as u8).collect();
        let gz = decoded("gzip", in_pieces(gzipped(&data), 7)).unwrap();
        receive(&u, Some("raw.bin"), "application/octet-stream", gz).await.unwrap();
        assert_eq!(std::fs::read(t.path().join("raw.bin")).unwrap(), data);

        // The whole multipart body compressed, as envd accepts it.
        let form = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m/a.txt\"\r\n\r\naaa\r\n\
                    --XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m/b.txt\"\r\n\r\nbb\r\n--XX--\r\n";
        let gz = decoded("GZIP", in_pieces(gzipped(form.as_bytes()), 5)).unwrap();
        receive(&u, None, "multipart/form-data; boundary=XX", gz).await.unwrap();
        assert_eq!(std::fs::read(t.path().join("m/a.txt")).unwrap(), b"aaa");
        assert_eq!(std::fs::read(t.path().join("m/b.txt")).unwrap(), b"bb");

        let mut cut = gzipped(&data);
        cut.truncate(cut.len() / 2);
        let e = receive(&u, Some("cut.bin"), "application/octet-stream", decoded("gzip", Body::from(cut)).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "a truncated stream is an error: {}", e.message);
        let e = receive(&u, Some("bad.bin"), "application/octet-stream", decoded("gzip", Body::from("plain")).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(decoded("br", Body::empty()).err().unwrap().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn download_plain_gzip_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(t.path().join("f.bin"), &data).unwrap();

        let (status, h, out) = body_of(serve_file(&u, "f.bin", false).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h[header::CONTENT_LENGTH], "1000000");
        assert_eq!(h[header::CONTENT_TYPE], "application/octet-stream");
        assert_eq!(out, data);

        let (_, h, out) = body_of(serve_file(&u, "f.bin", true).await.unwrap()).await;
        assert_eq!(h[header::CONTENT_ENCODING], "gzip");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, data);

        let e = serve_file(&u, "missing", false).await.unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let (_, _, b) = body_of(e.into_response()).await;
        assert_eq!(json(&b)["code"], 404);
        assert_eq!(serve_file(&u, "", false).await.unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn accept_encoding() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            wants_gzip(&m)
        };
        assert!(h("gzip, deflate"));
        assert!(h("br;q=1.0, GZIP;q=0.5"));
        assert!(!h("identity"));
        assert!(!h("gzip;q=0"));
        assert!(!wants_gzip(&HeaderMap::new()));
    }
}
