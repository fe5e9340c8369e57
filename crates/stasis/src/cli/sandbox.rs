//! `stasis sandbox`: the control API from the command line (what the SDKs do, for
//! scripts and operators). Tables for people, `--json` for scripts, exit codes for both.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::exit;
use stasis_runtime::agent_client as envd_client;

/// How to reach `stasis serve`: shared by every command that goes through the API.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// Base URL of `stasis serve`.
    #[arg(long, env = "STASIS_API_URL", default_value = "http://127.0.0.1:3000", global = true)]
    api_url: String,
    /// API key (default: the key `stasis serve` generated in /var/lib/stasis/api-key).
    #[arg(long, env = "STASIS_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    /// The client, or the exit code for a missing key.
    pub fn client(&self) -> Result<Api, u8> {
        Api::new(&self.api_url, self.api_key.clone()).ok_or_else(|| {
            eprintln!("error: no API key: pass --api-key or set STASIS_API_KEY");
            exit::USAGE
        })
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a sandbox; prints its id.
    Create {
        #[arg(long, default_value = "base")]
        template: String,
        /// Seconds until it ends (killed, or paused with --auto-pause).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// KEY=VALUE, repeatable.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// KEY=VALUE, repeatable: environment of every process.
        #[arg(long = "env")]
        envs: Vec<String>,
        /// Pause instead of kill at the timeout.
        #[arg(long)]
        auto_pause: bool,
        /// Resume on the first request through the proxy while paused.
        #[arg(long)]
        auto_resume: bool,
        /// Start from this snapshot (id or name) instead of a template.
        #[arg(long)]
        from: Option<String>,
    },
    /// List sandboxes (running and paused).
    Ls {
        /// running, paused, or running,paused.
        #[arg(long)]
        state: Option<String>,
        /// KEY=VALUE filter, repeatable (all must match).
        #[arg(long = "metadata")]
        metadata: Vec<String>,
    },
    /// Show one sandbox.
    Info { id: String },
    /// Run a shell command in a sandbox; exits with the command's exit code.
    Exec {
        id: String,
        #[arg(long)]
        user: Option<String>,
        cmd: String,
    },
    /// Pause a sandbox (memory and files, or files only).
    Pause {
        id: String,
        #[arg(long)]
        filesystem_only: bool,
    },
    /// Resume a paused sandbox (connect).
    Resume {
        id: String,
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Kill a sandbox, running or paused, and delete its state.
    Kill { id: String },
}

pub(super) struct Api {
    pub(super) base: String,
    key: String,
    http: reqwest::Client,
}

/// An error answer of the API, with the exit code it maps to.
#[derive(Debug)]
pub(super) struct ApiFailure {
    status: u16,
    message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiFailure {}

impl Api {
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base.trim_end_matches('/'), path))
            .header("x-api-key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach stasis serve at {}", self.base))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("request failed").to_string();
            return Err(ApiFailure { status: status.as_u16(), message }.into());
        }
        Ok((headers, value))
    }
}

fn pairs(kvs: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    kvs.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("{what} must be KEY=VALUE, got {kv:?}"))
        })
        .collect()
}

pub(super) fn default_key() -> Option<String> {
    std::fs::read_to_string("/var/lib/stasis/api-key").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Api {
    pub(super) fn new(url: &str, key: Option<String>) -> Option<Api> {
        let key = key.or_else(default_key)?;
        Some(Api { base: url.to_string(), key, http: reqwest::Client::new() })
    }
}

/// The exit code for an error of an API call.
pub(super) fn exit_code(e: &anyhow::Error) -> u8 {
    eprintln!("error: {e:#}");
    match e.downcast_ref::<ApiFailure>().map(|f| f.status) {
        Some(404) => exit::NOT_FOUND,
        Some(409) => exit::CONFLICT,
        Some(400) => exit::USAGE,
        Some(401) => exit::UNAUTHORIZED,
        _ => exit::ERROR,
    }
}

pub async fn run(args: Args) -> u8 {
    let api = match args.api.client() {
        Ok(a) => a,
        Err(code) => return code,
    };
    match execute(&api, args.api.json, args.command).await {
        Ok(code) => code,
        Err(e) => exit_code(&e),
    }
}

pub(super) fn print_table(rows: &[Value]) {
    let cols = ["sandboxID", "state", "templateID", "startedAt", "endAt", "metadata"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| match &r[*c] {
                    Value::String(s) => s.clone(),
                    Value::Object(m) => {
                        m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                    }
                    Value::Null => String::new(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    let headers = ["ID", "STATE", "TEMPLATE", "STARTED", "ENDS", "METADATA"];
    let widths: Vec<usize> =
        (0..cols.len()).map(|i| cells.iter().map(|r| r[i].len()).chain([headers[i].len()]).max().unwrap()).collect();
    let line = |vals: Vec<&str>| {
        vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    println!("{}", line(headers.to_vec()));
    for r in &cells {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// The sandbox's failed lifecycle action (`lastError` of its info), for people.
fn last_error_line(info: &Value) -> Option<String> {
    let e = info.get("lastError")?;
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let next = match e["nextAttemptAt"].as_str() {
        Some(t) => format!("next attempt at {t}"),
        None => "no more attempts until an API call (connect, pause, timeout, kill) touches the sandbox".to_string(),
    };
    Some(format!(
        "LAST ERROR: {} failed at {} ({} attempt(s) in a row; {next}): {}",
        s("operation"),
        s("at"),
        e["attempts"].as_u64().unwrap_or(0),
        s("message")
    ))
}

/// Runs a pause or resume call; on a terminal, shows the bytes written (pause) or read
/// (resume) as the server reports them, until the call returns.
async fn with_progress<T>(api: &Api, id: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return call.await;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap()
            .progress_chars("=> "),
    );
    let poll = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            if let Ok((_, v)) = api.call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None).await {
                if let Some(op) = v.get("operation") {
                    bar.set_message(op["kind"].as_str().unwrap_or("working").to_string());
                    bar.set_length(op["bytesTotal"].as_u64().unwrap_or(0));
                    bar.set_position(op["bytesDone"].as_u64().unwrap_or(0));
                }
            }
        }
    };
    let result = tokio::select! {
        r = call => r,
        _ = poll => unreachable!("the poll loop never ends"),
    };
    bar.finish_and_clear();
    result
}

async fn execute(api: &Api, as_json: bool, cmd: Cmd) -> Result<u8> {
    use reqwest::Method;
    match cmd {
        Cmd::Create { template, timeout, metadata, envs, auto_pause, auto_resume, from } => {
            let body = json!({
                "templateID": from.unwrap_or(template), "timeout": timeout,
                "metadata": pairs(&metadata, "--metadata")?, "envVars": pairs(&envs, "--env")?,
                "autoPause": auto_pause, "autoResume": {"enabled": auto_resume},
            });
            let (_, v) = api.call(Method::POST, "/v2/sandboxes", Some(body)).await?;
            if as_json {
                println!("{v}");
            } else {
                println!("{}", v["sandboxID"].as_str().unwrap_or_default());
            }
        }
        Cmd::Ls { state, metadata } => {
            let mut rows = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut q = vec![format!("limit=100")];
                if let Some(s) = &state {
                    q.push(format!("state={}", stasis_store::query::encode_uri_component(s)));
                }
                if !metadata.is_empty() {
                    let m = pairs(&metadata, "--metadata")?;
                    let param =
                        stasis_store::query::metadata_filter_param(m.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    q.push(format!("metadata={}", stasis_store::query::encode_uri_component(&param)));
                }
                if let Some(t) = &token {
                    q.push(format!("nextToken={}", stasis_store::query::encode_uri_component(t)));
                }
                let (h, v) = api.call(Method::GET, &format!("/v2/sandboxes?{}", q.join("&")), None).await?;
                rows.extend(v.as_array().cloned().unwrap_or_default());
                token =
                    h.get("x-next-token").and_then(|t| t.to_str().ok()).filter(|t| !t.is_empty()).map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if as_json {
                println!("{}", Value::Array(rows));
            } else {
                print_table(&rows);
            }
        }
        Cmd::Info { id } => {
            let (_, v) = api.call(Method::GET, &format!("/sandboxes/{id}"), None).await?;
            if as_json {
                println!("{v}");
            } else {
                print_table(std::slice::from_ref(&v));
                if let Some(line) = last_error_line(&v) {
                    println!("{line}");
                }
            }
        }
        Cmd::Exec { id, user, cmd } => {
            let (_, info) = api.call(Method::GET, &format!("/sandboxes/{id}"), None).await?;
            if info["state"] != "running" {
                return Err(ApiFailure {
                    status: 409,
                    message: format!("sandbox {id} is {}", info["state"].as_str().unwrap_or("not running")),
                }
                .into());
            }
            let url = reqwest::Url::parse(&api.base).context("bad --api-url")?;
            let addr =
                format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port_or_known_default().unwrap_or(80));
            let stream = tokio::net::TcpStream::connect(&addr).await.with_context(|| format!("connect {addr}"))?;
            let mut headers = vec![("e2b-sandbox-id", id.clone()), ("e2b-sandbox-port", "49983".to_string())];
            if let Some(t) = info["envdAccessToken"].as_str() {
                headers.push(("x-access-token", t.to_string()));
            }
            let out = envd_client::run(stream, &cmd, user.as_deref(), Default::default(), &headers).await?;
            if as_json {
                println!(
                    "{}",
                    json!({"stdout": out.stdout, "stderr": out.stderr, "exitCode": out.exit_code, "status": out.status})
                );
            } else {
                print!("{}", out.stdout);
                eprint!("{}", out.stderr);
            }
            return Ok(if out.exit_code < 0 { 128 } else { out.exit_code.min(255) as u8 });
        }
        Cmd::Pause { id, filesystem_only } => {
            let path = format!("/sandboxes/{id}/pause");
            let call = api.call(Method::POST, &path, Some(json!({"memory": !filesystem_only})));
            with_progress(api, &id, call).await?;
        }
        Cmd::Resume { id, timeout } => {
            let body = match timeout {
                Some(t) => json!({"timeout": t}),
                None => json!({}),
            };
            let path = format!("/v2/sandboxes/{id}/connect");
            let call = api.call(Method::POST, &path, Some(body));
            let (_, v) = with_progress(api, &id, call).await?;
            if as_json {
                println!("{v}");
            }
        }
        Cmd::Kill { id } => {
            api.call(Method::DELETE, &format!("/sandboxes/{id}"), None).await?;
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_shows_the_last_error_with_its_next_attempt_or_that_it_gave_up() {
        assert_eq!(last_error_line(&json!({"state": "running"})), None);
        let mut info = json!({"lastError": {
            "operation": "pause", "message": "checkpoint (dump) failed: disk full",
            "at": "2025-01-02T03:04:05.000Z", "attempts": 2, "nextAttemptAt": "2025-01-02T03:04:07.000Z"
        }});
        assert_eq!(
            last_error_line(&info).unwrap(),
            "LAST ERROR: pause failed at 2025-01-02T03:04:05.000Z (2 attempt(s) in a row; next attempt at \
             2025-01-02T03:04:07.000Z): checkpoint (dump) failed: disk full"
        );
        info["lastError"].as_object_mut().unwrap().remove("nextAttemptAt");
        assert!(last_error_line(&info).unwrap().contains("no more attempts until an API call"));
    }
}
