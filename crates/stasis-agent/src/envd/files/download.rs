//! `GET /files`: a file's bytes, streamed (and gzipped when the client asks for it) from a
//! blocking thread that reads a chunk ahead of the client.

use std::io::{self, Read, Write};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use futures::Stream;

use super::{resolve, HttpError, CHUNK};
use crate::envd::filesystem::fs::creds;
use crate::supervisor::User;

/// Whether `Accept-Encoding` names gzip with a non-zero quality.
pub(super) fn wants_gzip(headers: &HeaderMap) -> bool {
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

pub(super) async fn serve_file(user: &User, requested: &str, gzip: bool) -> Result<Response, HttpError> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{body_of, json, me};
    use super::*;
    use axum::http::StatusCode;

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
