//! `stasis sandbox logs ID [-f]` and `stasis sandbox events ID [-f]`: the sandbox's
//! lifecycle events (created, paused with timings, resumed, auto-paused because...,
//! failed because...), as log lines or with their kind and fields; `-f` follows new ones
//! until the sandbox is gone.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::sandbox::Api;

#[derive(clap::Args)]
pub struct LogsArgs {
    id: String,
    /// Keep printing new events as they happen (until the sandbox is killed, or Ctrl-C).
    #[arg(short, long)]
    follow: bool,
}

/// How often `-f` asks for new events.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(api: &Api, as_json: bool, a: LogsArgs, with_fields: bool) -> Result<u8> {
    let mut after: Option<i64> = None;
    loop {
        let q = after.map_or(String::new(), |s| format!("?after={s}"));
        let (_, v) = api.call(reqwest::Method::GET, &format!("/stasis/sandboxes/{}/events{q}", a.id), None).await?;
        let events = v.as_array().cloned().unwrap_or_default();
        for e in &events {
            print_event(e, as_json, with_fields);
            after = e["seq"].as_i64().or(after);
        }
        if !a.follow || events.iter().any(|e| e["kind"] == "killed") {
            return Ok(super::exit::OK);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_event(e: &Value, as_json: bool, with_fields: bool) {
    if as_json {
        println!("{e}");
        return;
    }
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    if !with_fields {
        println!("{} {:5} {}", s("timestamp"), s("level").to_uppercase(), s("message"));
        return;
    }
    let fields = e["fields"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>())
        .unwrap_or_default();
    println!("{} {:14} {}", s("timestamp"), s("kind"), fields.join(" "));
}
