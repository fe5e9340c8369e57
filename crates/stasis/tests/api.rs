//! Issue 4: the control API against a real `stasis serve` and real sandboxes: every error
//! is `{code,message}`, bad requests neither crash the server nor leave anything behind,
//! and the CLI on top of it works with exit codes scripts can use.

mod common;

use common::{Server, API_KEY};
use serde_json::{json, Value};

async fn call(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", s.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("server answered");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

const KEY: (&str, &str) = ("x-api-key", API_KEY);

fn assert_error(what: &str, got: (u16, Value), status: u16) {
    assert_eq!(got.0, status, "{what}: {:?}", got.1);
    assert_eq!(got.1["code"].as_u64(), Some(status as u64), "{what}: body must carry code: {:?}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: body must carry a message: {:?}", got.1);
}

#[tokio::test]
async fn every_error_is_code_and_message_and_nothing_is_left_behind() {
    use reqwest::Method;
    let s = Server::start("apierr");
    assert_error("no key", call(&s, Method::GET, "/v2/sandboxes", &[], None).await, 401);
    assert_error("wrong key", call(&s, Method::GET, "/v2/sandboxes", &[("x-api-key", "e2b_wrong")], None).await, 401);
    assert_error("unknown sandbox", call(&s, Method::GET, "/sandboxes/nosuchsandbox", &[KEY], None).await, 404);
    assert_error("bad id", call(&s, Method::GET, "/sandboxes/Bad-Id..", &[KEY], None).await, 404);
    assert_error("kill unknown", call(&s, Method::DELETE, "/sandboxes/nosuch", &[KEY], None).await, 404);
    assert_error("pause unknown", call(&s, Method::POST, "/sandboxes/nosuch/pause", &[KEY], None).await, 404);
    assert_error(
        "connect unknown",
        call(&s, Method::POST, "/v2/sandboxes/nosuch/connect", &[KEY], Some(b"{}".to_vec())).await,
        404,
    );
    assert_error("bad json", call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(b"{not json".to_vec())).await, 400);
    assert_error(
        "wrong types",
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"timeout":"x"}"#.to_vec())).await,
        400,
    );
    assert_error(
        "timeout 0",
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"timeout":0}"#.to_vec())).await,
        400,
    );
    assert_error(
        "bad onTimeout",
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"lifecycle":{"onTimeout":"explode"}}"#.to_vec()))
            .await,
        400,
    );
    assert_error(
        "unknown template",
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"templateID":"nope"}"#.to_vec())).await,
        404,
    );
    let huge = format!("{{\"metadata\":{{\"k\":\"{}\"}}}}", "x".repeat(3 << 20));
    assert_error("huge body", call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(huge.into_bytes())).await, 413);
    assert_error("unknown endpoint", call(&s, Method::GET, "/nope", &[KEY], None).await, 404);
    assert_error("bad list state", call(&s, Method::GET, "/v2/sandboxes?state=dancing", &[KEY], None).await, 400);
    assert_error("bad list limit", call(&s, Method::GET, "/v2/sandboxes?limit=-3", &[KEY], None).await, 400);
    assert_error("bad next token", call(&s, Method::GET, "/v2/sandboxes?nextToken=%%%", &[KEY], None).await, 400);

    // Nothing half-created: no sandbox listed, no sandbox directory.
    let (status, list) = call(&s, Method::GET, "/v2/sandboxes", &[KEY], None).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([]));
    let dirs: Vec<_> = std::fs::read_dir(s.host.data_dir.join("sandboxes")).unwrap().collect();
    assert!(dirs.is_empty(), "bad requests left sandbox dirs: {dirs:?}");

    // Now one real sandbox, and its errors.
    let (status, sbx) =
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"templateID":"base","timeout":60}"#.to_vec())).await;
    assert_eq!(status, 201, "{sbx}");
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) && id.len() >= 16, "{id}");
    assert_error(
        "timeout without body",
        call(&s, Method::POST, &format!("/sandboxes/{id}/timeout"), &[KEY], None).await,
        400,
    );
    // The sandbox API needs the sandbox's access token.
    let envd = [("e2b-sandbox-id", id.as_str()), ("e2b-sandbox-port", "49983")];
    let (status, body) = call(&s, Method::GET, "/health", &envd, None).await;
    assert_eq!(status, 401, "{body}");
    let token = sbx["envdAccessToken"].as_str().unwrap();
    let with_token = [envd[0], envd[1], ("x-access-token", token)];
    assert_eq!(call(&s, Method::GET, "/health", &with_token, None).await.0, 204);
    // A proxied port nobody listens on: 502 with a message.
    let port = [("e2b-sandbox-id", id.as_str()), ("e2b-sandbox-port", "8123")];
    assert_error("closed port", call(&s, Method::GET, "/", &port, None).await, 502);

    assert_eq!(call(&s, Method::POST, &format!("/sandboxes/{id}/pause"), &[KEY], None).await.0, 204);
    assert_error("pause of paused", call(&s, Method::POST, &format!("/sandboxes/{id}/pause"), &[KEY], None).await, 409);
    // A paused sandbox's API answers 502 the way the SDKs read (isRunning false).
    let (status, body) = call(&s, Method::GET, "/health", &with_token, None).await;
    assert_eq!(status, 502);
    assert_eq!(body["sandboxId"], id.as_str());
    assert_eq!(body["message"], "The sandbox was not found");
    let (status, info) = call(&s, Method::GET, &format!("/sandboxes/{id}"), &[KEY], None).await;
    assert_eq!((status, info["state"].as_str()), (200, Some("paused")));
    assert_eq!(call(&s, Method::DELETE, &format!("/sandboxes/{id}"), &[KEY], None).await.0, 204);
    assert_error("info after kill", call(&s, Method::GET, &format!("/sandboxes/{id}"), &[KEY], None).await, 404);
    assert!(!s.host.sandbox_dir(&id).exists(), "kill left files");
    assert!(!s.log().contains("panicked"), "server log shows a panic:\n{}", s.log());
}

#[test]
fn cli_drives_the_api_with_tables_json_and_exit_codes() {
    let s = Server::start("cli");
    let out = s.cli(&["create", "--metadata", "owner=cli test", "--env", "GREETING=hi"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();

    let out = s.cli(&["ls"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("ID"), "ls prints a table with a header: {}", out.stdout);
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("running") && out.stdout.contains("owner=cli test"),
        "{}",
        out.stdout
    );

    let out = s.cli(&["--json", "ls", "--metadata", "owner=cli test"]);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["sandboxID"], id.as_str());
    let out = s.cli(&["--json", "ls", "--metadata", "owner=someone else"]);
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), json!([]));

    let out = s.cli(&["exec", &id, "echo $GREETING from $(whoami)"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "hi from user"), "{}", out.stderr);
    let out = s.cli(&["exec", &id, "exit 7"]);
    assert_eq!(out.code, 7, "exec passes the command's exit code");

    assert_eq!(s.cli(&["pause", &id]).code, 0);
    let out = s.cli(&["pause", &id]);
    assert_eq!(out.code, 4, "pausing a paused sandbox is a conflict: {}", out.stderr);
    assert!(out.stderr.contains("already paused"), "{}", out.stderr);
    let out = s.cli(&["--json", "info", &id]);
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap()["state"], "paused");
    assert_eq!(s.cli(&["exec", &id, "true"]).code, 4, "exec on a paused sandbox is a conflict");

    assert_eq!(s.cli(&["resume", &id]).code, 0);
    assert_eq!(s.cli(&["exec", &id, "echo $GREETING"]).stdout.trim(), "hi", "env vars survive pause/resume");
    assert_eq!(s.cli(&["kill", &id]).code, 0);
    let out = s.cli(&["info", &id]);
    assert_eq!(out.code, 3, "unknown sandbox exits 3: {}", out.stderr);
    let out = Server::cli(&s, &["--api-key", "e2b_bad", "ls"]);
    assert_eq!(out.code, 5, "a wrong key exits 5: {}", out.stderr);
}

/// Issue 8: a long pause reports its progress (bytes written so far) in the sandbox's
/// info, which is what `stasis sandbox pause` draws on a terminal.
#[tokio::test]
async fn a_long_pause_reports_bytes_written() {
    use reqwest::Method;
    let s = Server::start("progress");
    let (st, sbx) =
        call(&s, Method::POST, "/v2/sandboxes", &[KEY], Some(br#"{"timeout":120,"memoryMB":1536}"#.to_vec())).await;
    assert_eq!(st, 201, "{sbx}");
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    let api = common::api::Api::new(&s);
    api.sh(&sbx, "nohup python3 -c \"import os,time; b = bytearray(os.urandom(1<<20)) * 768; open('/tmp/ready','w').write('1'); time.sleep(3600)\" >/dev/null 2>&1 &").await;
    for _ in 0..200 {
        if api.sh(&sbx, "cat /tmp/ready 2>/dev/null").await.trim() == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (url, sid) = (s.url.clone(), id.clone());
    let pause = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/sandboxes/{sid}/pause"))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    let mut seen = Vec::new();
    while !pause.is_finished() {
        let (_, info) = call(&s, Method::GET, &format!("/sandboxes/{id}"), &[KEY], None).await;
        if info["operation"]["kind"] == "pausing" {
            seen.push((
                info["operation"]["bytesDone"].as_u64().unwrap(),
                info["operation"]["bytesTotal"].as_u64().unwrap(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(pause.await.unwrap(), 204);
    assert!(!seen.is_empty(), "no progress was reported during a 768 MiB pause");
    let (done, total) = *seen.last().unwrap();
    assert!(total >= 768 << 20, "the estimate covers the sandbox's memory: {total}");
    assert!(seen.windows(2).all(|w| w[1].0 >= w[0].0), "bytes written never go back: {seen:?}");
    assert!(done > 0, "{seen:?}");
    let (_, info) = call(&s, Method::GET, &format!("/sandboxes/{id}"), &[KEY], None).await;
    assert!(info.get("operation").is_none(), "no operation once paused: {info}");
    assert_eq!(call(&s, Method::DELETE, &format!("/sandboxes/{id}"), &[KEY], None).await.0, 204);
}

/// envd's `GET /envs`: the sandbox-wide environment, with the sandbox's token only. The
/// code interpreter's kernels (restored from a warm snapshot) learn the create's `envs`
/// there; a sandbox made from a snapshot answers with its own create's.
#[tokio::test]
async fn envs_answers_the_sandbox_environment_to_its_token_only() {
    let s = Server::start("envs");
    let (st, sbx) = call(
        &s,
        reqwest::Method::POST,
        "/v2/sandboxes",
        &[KEY],
        Some(json!({"templateID": "base", "timeout": 120, "envVars": {"A": "1"}}).to_string().into_bytes()),
    )
    .await;
    assert_eq!(st, 201, "{sbx}");
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    let token = sbx["envdAccessToken"].as_str().unwrap().to_string();
    let envd = [("e2b-sandbox-id", id.as_str()), ("e2b-sandbox-port", "49983")];
    let with_token = [envd[0], envd[1], ("x-access-token", token.as_str())];
    assert_eq!(call(&s, reqwest::Method::GET, "/envs", &with_token, None).await, (200, json!({"A": "1"})));
    assert_eq!(call(&s, reqwest::Method::GET, "/envs", &envd, None).await.0, 401);
    let wrong = [envd[0], envd[1], ("x-access-token", "not-the-token")];
    assert_eq!(call(&s, reqwest::Method::GET, "/envs", &wrong, None).await.0, 401);

    let (st, snap) =
        call(&s, reqwest::Method::POST, &format!("/sandboxes/{id}/snapshots"), &[KEY], Some(b"{}".to_vec())).await;
    assert_eq!(st, 201, "{snap}");
    let (st, copy) = call(
        &s,
        reqwest::Method::POST,
        "/v2/sandboxes",
        &[KEY],
        Some(json!({"templateID": snap["snapshotID"], "timeout": 120, "envVars": {"B": "2"}}).to_string().into_bytes()),
    )
    .await;
    assert_eq!(st, 201, "{copy}");
    let copy_id = copy["sandboxID"].as_str().unwrap();
    let copy_token = copy["envdAccessToken"].as_str().unwrap();
    let h = [("e2b-sandbox-id", copy_id), ("e2b-sandbox-port", "49983"), ("x-access-token", copy_token)];
    let (st, envs) = call(&s, reqwest::Method::GET, "/envs", &h, None).await;
    assert_eq!((st, envs["B"].as_str()), (200, Some("2")), "{envs}");
    for sid in [id.as_str(), copy_id] {
        call(&s, reqwest::Method::DELETE, &format!("/sandboxes/{sid}"), &[KEY], None).await;
    }
}
