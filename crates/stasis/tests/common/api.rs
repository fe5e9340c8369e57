//! The control API and the sandbox API as tests call them (reqwest, no SDK).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Server, API_KEY};

pub struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(s: &Server) -> Self {
        Api { url: s.url.clone(), http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).header("x-api-key", API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create(&self, body: Value) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, "/v2/sandboxes", Some(body)).await;
        assert_eq!(s, 201, "create: {v}");
        v
    }

    pub async fn info(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None).await
    }

    pub async fn state(&self, id: &str) -> Option<String> {
        let (s, v) = self.info(id).await;
        (s == 200).then(|| v["state"].as_str().unwrap().to_string())
    }

    pub async fn connect(&self, id: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/v2/sandboxes/{id}/connect"), Some(body)).await
    }

    pub async fn pause(&self, id: &str) -> u16 {
        self.call(reqwest::Method::POST, &format!("/sandboxes/{id}/pause"), None).await.0
    }

    pub async fn kill(&self, id: &str) -> u16 {
        self.call(reqwest::Method::DELETE, &format!("/sandboxes/{id}"), None).await.0
    }

    /// Seconds until the sandbox's end, as info reports it.
    pub async fn secs_left(&self, id: &str) -> f64 {
        let (_, v) = self.info(id).await;
        let end = humantime::parse_rfc3339(v["endAt"].as_str().unwrap()).unwrap();
        match end.duration_since(std::time::SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    /// A unary envd call in the sandbox: [`envd_unary`].
    pub async fn envd(&self, sbx: &Value, method: &str, body: Value) -> (u16, Value) {
        envd_unary(&self.url, sbx, method, body).await
    }

    /// Runs a shell command through the sandbox proxy (envd), returns stdout.
    pub async fn sh(&self, sbx: &Value, cmd: &str) -> String {
        envd_run(&self.url, sbx["sandboxID"].as_str().unwrap(), sbx["envdAccessToken"].as_str().unwrap(), cmd).await
    }
}

/// A minimal envd `Start` over the proxy, collecting stdout.
pub async fn envd_run(url: &str, id: &str, token: &str, cmd: &str) -> String {
    let msg = json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd]}, "stdin": false}).to_string();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(msg.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{url}/process.Process/Start"))
        .header("content-type", "application/connect+json")
        .header("e2b-sandbox-id", id)
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i + 1..i + 5].try_into().unwrap()) as usize;
        let frame: Value = serde_json::from_slice(&bytes[i + 5..i + 5 + len]).unwrap();
        if let Some(b64) = frame["event"]["data"]["stdout"].as_str() {
            use base64::Engine;
            out.push_str(&String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()));
        }
        i += 5 + len;
    }
    out
}

/// A unary envd call (Connect, JSON) over the proxy, e.g. `filesystem.Filesystem/CreateWatcher`:
/// the status and the decoded answer.
pub async fn envd_unary(url: &str, sbx: &Value, method: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/{method}"))
        .header("content-type", "application/json")
        .header("e2b-sandbox-id", sbx["sandboxID"].as_str().unwrap())
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", sbx["envdAccessToken"].as_str().unwrap())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn wait_state(api: &Api, id: &str, want: Option<&str>, within: Duration) {
    let start = Instant::now();
    loop {
        let st = api.state(id).await;
        if st.as_deref() == want {
            return;
        }
        assert!(start.elapsed() < within, "sandbox {id}: state {st:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn id(v: &Value) -> String {
    v["sandboxID"].as_str().unwrap().to_string()
}
