//! `POST /files`: uploads, written to disk as they arrive with no size limit (decompressed
//! on the way when sent with `Content-Encoding: gzip`), then given the metadata the request
//! named (`fs::metadata`; an upload replaces a file's metadata, as envd's does).
//!
//! The missing parents of an upload are created by the agent and handed to the user, as in
//! envd; the file itself is opened with the user's rights. Where a multipart upload puts
//! each file: the `?path` query when given (one file), else the part's `filename`, which
//! the SDKs set to the file's full path (not a base name: `FormData.append('file', blob,
//! path)` in JS, `('file', (path, data))` in Python).

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{resolve, HttpError, CHUNK};
use crate::envd::filesystem::fs::metadata::{self, Metadata};
use crate::envd::filesystem::fs::{creds, ops, path};
use crate::supervisor::User;

/// One uploaded file in the answer, with its metadata as stored (envd reads it back too);
/// no `metadata` key when there is none, as envd answers.
fn uploaded(p: &Path, stored: &Metadata) -> serde_json::Value {
    let mut v = serde_json::json!({ "name": path::base_name(p), "type": "file", "path": p.to_string_lossy() });
    if !stored.is_empty() {
        v["metadata"] = serde_json::json!(stored);
    }
    v
}

type Upload = futures::stream::BoxStream<'static, io::Result<Bytes>>;

/// The upload's bytes as the client meant them: gunzipped when it says `Content-Encoding:
/// gzip` (the SDKs' `gzip` option, on any upload), as they come otherwise.
pub(super) fn decoded(encoding: &str, body: Body) -> Result<Upload, HttpError> {
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

pub(super) async fn receive(
    user: &User,
    query_path: Option<&str>,
    content_type: &str,
    meta: &Metadata,
    data: Upload,
) -> Result<Response, HttpError> {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mut done: Vec<(PathBuf, Metadata)> = Vec::new();
    if media == "application/octet-stream" {
        let requested = query_path.filter(|p| !p.is_empty()).ok_or_else(|| {
            HttpError::new(StatusCode::BAD_REQUEST, "path query parameter is required for raw body upload")
        })?;
        let p = resolve(requested, user)?;
        let stored = write_file(user, &p, meta, data).await?;
        done.push((p, stored));
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
            if done.iter().any(|(d, _)| *d == p) {
                return Err(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "you cannot upload multiple files to the same path '{}' in one upload request",
                        p.display()
                    ),
                ));
            }
            let stored = write_file(user, &p, meta, field.map(|c| c.map_err(io::Error::other))).await?;
            done.push((p, stored));
        }
    } else {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported content type {content_type:?}: expected multipart/form-data or application/octet-stream"
            ),
        ));
    }
    let body = serde_json::Value::Array(done.iter().map(|(p, m)| uploaded(p, m)).collect());
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Create (or truncate) `p` as `user`, with missing parent directories, stream `data` into
/// it, then replace its metadata with `meta`. Returns the metadata as stored.
async fn write_file<S, E>(user: &User, p: &Path, meta: &Metadata, data: S) -> Result<Metadata, HttpError>
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
        let existed = match std::fs::metadata(&p2) {
            Ok(m) if m.is_dir() => return Err(io::Error::from(io::ErrorKind::IsADirectory)),
            Ok(_) => true,
            Err(_) => false,
        };
        // envd chowns every upload to its user: an existing file before it is opened, a
        // new one right after. Watchers see it as a CHMOD between CREATE and WRITE, and
        // the SDKs' own tests count those events. As the user, a chown to oneself changes
        // nothing but the ctime; a file of another owner that the user may write keeps
        // its owner (envd, acting as root, would take it), so a failure is ignored.
        let owner = (Some(owner.0), Some(owner.1));
        if existed {
            let _ = std::os::unix::fs::chown(&p2, owner.0, owner.1);
        }
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&p2)?;
        if !existed {
            let _ = std::os::unix::fs::fchown(&f, owner.0, owner.1);
        }
        Ok(f)
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
    let file = out.into_inner().into_std().await;
    let (p2, meta) = (p.to_path_buf(), meta.clone());
    creds::as_user(user, move || match metadata::replace(&file, &meta) {
        // /proc, /sys: the bytes are written; envd keeps the upload too.
        Err(e) if metadata::unsupported(&e) => Ok(Metadata::new()),
        Err(e) => Err(e),
        Ok(()) => Ok(metadata::read(&p2)),
    })
    .await
    .map_err(|e| HttpError::io(&e, "error writing file metadata", p))
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
    use super::super::testing::{body_of, json, me};
    use super::*;

    /// `receive` with no metadata, as most uploads come.
    async fn receive(u: &User, q: Option<&str>, ct: &str, data: Upload) -> Result<Response, HttpError> {
        super::receive(u, q, ct, &Metadata::new(), data).await
    }
    use std::os::unix::fs::MetadataExt;

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
    async fn metadata_is_stored_answered_and_replaced() {
        let t = tempfile::tempdir().unwrap();
        let u = me(t.path());
        let meta: Metadata = [("author".to_string(), "me".to_string())].into();
        let r = super::receive(&u, Some("m.txt"), "application/octet-stream", &meta, plain("x")).await.unwrap();
        let answer = json(&body_of(r).await.2);
        let p = t.path().join("m.txt");
        if metadata::read(&p).is_empty() {
            return; // the test dir's filesystem keeps no user xattrs
        }
        assert_eq!(answer[0]["metadata"], serde_json::json!({"author": "me"}));
        // Another upload to the same path without metadata clears it; the answer has no key.
        let r = receive(&u, Some("m.txt"), "application/octet-stream", plain("y")).await.unwrap();
        assert_eq!(json(&body_of(r).await.2)[0].get("metadata"), None);
        assert!(metadata::read(&p).is_empty());
    }
}
