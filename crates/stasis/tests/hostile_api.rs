//! Issue 9: hostile clients against a real `stasis serve`: traversal through `/files` and
//! snapshot ids, unicode everywhere, oversized bodies, slow and many connections. Every
//! request gets a clear answer, the server stays up, and nothing is left behind.
//!
//! All traffic goes to the test's own server on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::api::Api;
use common::{HostMarker, Server, API_KEY};
use serde_json::{json, Value};

const TEMPLATE_ROOTFS: &str = "/var/lib/stasis/templates/base/rootfs";

fn assert_json_error(what: &str, status: u16, body: &Value, want: &[u16]) {
    assert!(want.contains(&status), "{what}: status {status}, want one of {want:?}: {body}");
    assert_eq!(body["code"].as_u64(), Some(status as u64), "{what}: body must carry the code: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: body must carry a message: {body}");
}

/// A raw control call: any method, path as given (no normalisation), any body.
async fn raw(s: &Server, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", s.url))
        .header("x-api-key", API_KEY);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn files_get(s: &Server, sbx: &Value, path: &str, user: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/files", s.url))
        .query(&[("path", path), ("username", user)])
        .header("e2b-sandbox-id", sbx["sandboxID"].as_str().unwrap())
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", sbx["envdAccessToken"].as_str().unwrap())
        .send()
        .await
        .expect("proxy answers");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

async fn files_put(s: &Server, sbx: &Value, path: &str, user: &str, data: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/files", s.url))
        .query(&[("path", path), ("username", user)])
        .header("e2b-sandbox-id", sbx["sandboxID"].as_str().unwrap())
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", sbx["envdAccessToken"].as_str().unwrap())
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("proxy answers")
        .status()
        .as_u16()
}

fn sandbox_dirs(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.host.data_dir.join("sandboxes"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

async fn assert_alive_and_clean(s: &Server, expected_sandboxes: &[&str]) {
    let (status, list) = raw(s, "GET", "/v2/sandboxes", None).await;
    assert_eq!(status, 200, "a normal list must still work: {list}");
    let mut ids: Vec<String> =
        list.as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = expected_sandboxes.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(ids, want, "listed sandboxes");
    assert_eq!(sandbox_dirs(s), want, "sandbox dirs beyond those the test created");
    assert!(!s.log().contains("panicked"), "server log shows a panic:\n{}", s.log());
}

#[tokio::test]
async fn files_api_serves_only_inside_the_sandbox() {
    let s = Server::start("hfiles");
    let api = Api::new(&s);
    let sbx = api.create(json!({"templateID": "base", "timeout": 120})).await;
    let id = common::api::id(&sbx);
    let m = HostMarker::new();
    let marker = m.file.to_str().unwrap();

    // As `user`: traversal lands on the sandbox's /etc/shadow, which user may not read.
    for p in [
        "../../etc/shadow",
        "../../../../../../../../etc/shadow",
        "/etc/shadow",
        "/home/user/../../etc/shadow",
        "/proc/1/root/etc/shadow",
    ] {
        let (status, body) = files_get(&s, &sbx, p, "user").await;
        assert_eq!(status, 403, "user reading {p}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).expect("JSON error body");
        assert_json_error(p, status, &v, &[403]);
    }

    // As root: /etc/shadow is the sandbox's (the template's), never the host's.
    let (status, shadow) = files_get(&s, &sbx, "../../etc/shadow", "root").await;
    assert_eq!(status, 200);
    let template_shadow = std::fs::read(format!("{TEMPLATE_ROOTFS}/etc/shadow")).unwrap();
    assert_eq!(shadow, template_shadow, "root's /etc/shadow must be the sandbox's");
    if let Ok(host_shadow) = std::fs::read("/etc/shadow") {
        if host_shadow != template_shadow {
            assert_ne!(shadow, host_shadow, "the host's /etc/shadow was served");
        }
    }

    // Host paths, however spelled, do not exist in the sandbox.
    let data_dir = s.host.data_dir.join("stasis.db");
    let host_paths = [
        marker.to_string(),
        format!("../../../../../../..{marker}"),
        format!("/proc/1/root{marker}"),
        format!("/proc/self/root/../../..{marker}"),
        format!("/proc/1/cwd/../../..{marker}"),
        format!("{marker}\0"),
        data_dir.to_str().unwrap().to_string(),
    ];
    for p in &host_paths {
        let (status, body) = files_get(&s, &sbx, p, "root").await;
        assert!(!String::from_utf8_lossy(&body).contains(&m.secret), "{p}: the host's file was served");
        assert!(
            (400..500).contains(&status),
            "root reading host path {p:?}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{p:?}: not JSON: {}", String::from_utf8_lossy(&body)));
        assert_json_error(p, status, &v, &[400, 404]);
    }

    // Writing those paths writes the sandbox's files, never the host's.
    for p in &host_paths[..5] {
        let status = files_put(&s, &sbx, p, "root", b"pwned").await;
        assert!(status < 500, "upload to {p}: {status}");
    }
    assert_eq!(std::fs::read_to_string(&m.file).unwrap(), m.secret, "an upload changed a host file");
    assert_eq!(std::fs::read_dir(&m.dir).unwrap().count(), 1, "an upload created a host file");

    assert_eq!(api.sh(&sbx, "echo alive").await.trim(), "alive");
    assert_alive_and_clean(&s, &[&id]).await;
}

#[tokio::test]
async fn hostile_ids_unicode_and_traversal_get_clear_errors() {
    let s = Server::start("hids");
    let m = HostMarker::new();
    let canary = s.host.data_dir.join("canary");
    std::fs::write(&canary, "x").unwrap();
    let marker_dir = m.dir.file_name().unwrap().to_str().unwrap();

    // Traversal in snapshot / template ids: 404 JSON, nothing deleted.
    for p in [
        "/templates/..%2F..%2Fetc".to_string(),
        "/templates/..%2Fcanary".to_string(),
        "/templates/%2e%2e%2f%2e%2e%2fcanary".to_string(),
        format!("/templates/..%2F..%2F..%2F..%2F..%2F..%2Ftmp%2F{marker_dir}"),
        "/templates/%2Fetc%2Fpasswd".to_string(),
        "/templates/%00".to_string(),
        "/templates/%F0%9F%A6%80".to_string(),
        format!("/templates/{}", "a".repeat(5000)),
    ] {
        let (status, body) = raw(&s, "DELETE", &p, None).await;
        assert_json_error(&p, status, &body, &[400, 404]);
    }
    assert!(canary.exists() && m.file.exists(), "a traversal in a template id deleted files");

    // Traversal and unicode in sandbox ids and snapshot sources.
    for p in [
        "/sandboxes/..%2F..%2Fetc",
        "/sandboxes/%F0%9F%A6%80",
        "/sandboxes/%C3%A9t%C3%A9",
        "/sandboxes/a%00b",
        "/sandboxes/%2e%2e",
        "/v2/sandboxes/..%2F..%2Fx/connect",
    ] {
        for method in ["GET", "DELETE", "POST"] {
            let (status, body) = raw(&s, method, p, Some(b"{}".to_vec())).await;
            assert_json_error(&format!("{method} {p}"), status, &body, &[400, 404, 405]);
        }
    }
    let (status, body) = raw(&s, "GET", "/snapshots?sandboxID=..%2F..%2Fetc&name=%F0%9F%A6%80", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]));

    // Templates named like paths do not exist.
    for t in ["../../etc", "/etc", "base/../../../etc", "..", "base\u{0}", "🦀"] {
        let (status, body) =
            raw(&s, "POST", "/v2/sandboxes", Some(json!({"templateID": t, "timeout": 30}).to_string().into_bytes()))
                .await;
        assert_json_error(&format!("template {t:?}"), status, &body, &[400, 404]);
    }

    // Unicode and hostile strings in metadata and env vars are data, stored and filtered
    // exactly.
    let md = json!({"ключ🦀": "値\u{202e}rtl", "../../etc": "a&b=c%00", "": "", "k": "\u{0}\u{1f}"});
    let (status, sbx) = raw(
        &s,
        "POST",
        "/v2/sandboxes",
        Some(
            json!({"templateID": "base", "timeout": 60, "metadata": md, "envVars": {"X": "$(touch /tmp/pwned)`id`"}})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{sbx}");
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    let (status, info) = raw(&s, "GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(info["metadata"], md);
    let filter = stasis_store::query::metadata_filter_param([("ключ🦀", "値\u{202e}rtl")]);
    let (status, list) =
        raw(&s, "GET", &format!("/v2/sandboxes?metadata={}", stasis_store::query::form_urlencode(&filter)), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(!std::path::Path::new("/tmp/pwned").exists(), "an env var was run on the host");

    assert_alive_and_clean(&s, &[&id]).await;
    let (status, _) = raw(&s, "DELETE", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(status, 204);
    assert_alive_and_clean(&s, &[]).await;
}

fn port_of(s: &Server) -> u16 {
    s.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Reads an HTTP response head from `stream` (until the blank line or `within`).
fn read_head(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while start.elapsed() < within {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // The head, and the body when it is a (small, JSON) one.
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let body = &buf[at + 4..];
                    let text = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    if text.contains("content-length: 0") || !text.contains("content-length") || body.ends_with(b"}") {
                        break;
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_slow_and_many_clients_do_not_take_the_server_down() {
    let s = Server::start("hflood");
    let port = port_of(&s);

    // A 100 MB body: refused with 413 quickly (after at most the 1 MiB limit is read).
    let big = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let total: usize = 100 << 20;
        write!(c, "POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n").unwrap();
        let start = Instant::now();
        let mut writer = c.try_clone().unwrap();
        let w = std::thread::spawn(move || {
            let chunk = vec![b' '; 1 << 20];
            let mut sent = 0;
            while sent < total {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let head = read_head(&mut c, Duration::from_secs(10));
        let elapsed = start.elapsed();
        drop(c);
        let sent = w.join().unwrap();
        (head, elapsed, sent)
    });
    let (head, elapsed, sent) = big.await.unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "a 100 MB body must be refused with 413, got: {head:?}");
    assert!(elapsed < Duration::from_secs(5), "413 took {elapsed:?}");
    eprintln!("100 MB body: 413 after {elapsed:?}, client managed to send {} MiB", sent >> 20);
    let body = head.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("413 without a JSON body: {head:?}"));
    assert_json_error("100 MB body", 413, &v, &[413]);

    // Slow clients: several send their headers a byte every 100 ms; idle connections
    // sit open. Meanwhile normal requests are answered promptly.
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(tokio::task::spawn_blocking(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let req = format!("GET /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: {API_KEY}\r\n\r\n");
            for b in req.as_bytes().iter().take(40) {
                if c.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let start = Instant::now();
        let (status, _) = raw(&s, "GET", "/v2/sandboxes", None).await;
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a normal request waited {:?} behind slow clients",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in slow {
        t.await.unwrap();
    }
    drop(idle);

    // Many concurrent connections, good and bad: every one answered, errors as JSON.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let url = s.url.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let key = if i % 3 == 0 { "e2b_wrong" } else { API_KEY };
            let path = if i % 5 == 0 { "/sandboxes/..%2Fetc" } else { "/v2/sandboxes" };
            let r = c.get(format!("{url}{path}")).header("x-api-key", key).send().await.expect("answered");
            let status = r.status().as_u16();
            (status, serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap_or(Value::Null))
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        if i % 3 == 0 {
            assert_json_error("bad key", status, &body, &[401]);
        } else if i % 5 == 0 {
            assert_json_error("bad id", status, &body, &[404]);
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    eprintln!("300 concurrent connections answered in {:?}", start.elapsed());

    // Garbage that is not HTTP, and oversized heads: the connection gets an HTTP error
    // or is closed, the server stays up.
    let garbage = tokio::task::spawn_blocking(move || {
        let mut heads = Vec::new();
        let huge_header = format!("GET /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-junk: {}\r\n\r\n", "a".repeat(1 << 20));
        let many_headers = format!(
            "GET /v2/sandboxes HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..5000).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
        );
        for req in [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n".to_vec(),
            b"GET /v2/sandboxes HTTP/9.9\r\n\r\n".to_vec(),
            b"GET \x00\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\ncontent-length: -1\r\n\r\n".to_vec(),
            b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nzz\r\n"
                .to_vec(),
            huge_header.into_bytes(),
            many_headers.into_bytes(),
        ] {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = c.write_all(&req);
            heads.push(read_head(&mut c, Duration::from_secs(5)));
        }
        heads
    });
    for head in garbage.await.unwrap() {
        assert!(head.is_empty() || head.starts_with("HTTP/1.1 4"), "malformed request answered {head:?}");
    }

    assert_alive_and_clean(&s, &[]).await;
}

/// Axum's own rejection of a path segment that is not UTF-8 is plain text, not the
/// control API's JSON error.
#[tokio::test]
async fn invalid_utf8_in_path_ids_is_a_json_error() {
    let s = Server::start("hutf8");
    for p in [
        "/sandboxes/%FF%FE",
        "/sandboxes/%C3%28/pause",
        "/v2/sandboxes/%FF/connect",
        "/templates/%FF",
        "/sandboxes/%ED%A0%80/snapshots",
    ] {
        for method in ["GET", "DELETE", "POST"] {
            let (status, body) = raw(&s, method, p, Some(b"{}".to_vec())).await;
            assert_json_error(&format!("{method} {p}"), status, &body, &[400, 404, 405]);
        }
    }
    assert_alive_and_clean(&s, &[]).await;
}
