//! `stasis node`: the cluster's nodes through `stasis serve` (ls, drain, activate).

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::exit;
use super::sandbox::{exit_code, Api, ApiArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the nodes: state, free memory/CPUs/disk of their capacity, last heartbeat.
    Ls,
    /// Stop placing sandboxes on NODE and pause those it runs (at its next heartbeat).
    Drain { node: String },
    /// Place sandboxes on NODE again after a drain.
    Activate { node: String },
}

pub async fn run(args: Args) -> u8 {
    let api = match args.api.client() {
        Ok(a) => a,
        Err(code) => return code,
    };
    match execute(&api, args.api.json, args.command).await {
        Ok(()) => exit::OK,
        Err(e) => exit_code(&e),
    }
}

fn enc(s: &str) -> String {
    stasis_store::query::encode_uri_component(s)
}

/// One node as a table row.
fn row(n: &Value) -> Vec<String> {
    let res = |k: &str, f: &str| n[k][f].as_u64().map_or("-".into(), |v| v.to_string());
    let id = n["nodeID"].as_str().unwrap_or_default();
    vec![
        if n["self"] == true { format!("{id}*") } else { id.to_string() },
        n["state"].as_str().unwrap_or_default().to_string(),
        format!("{}/{}", res("free", "memoryMb"), res("capacity", "memoryMb")),
        format!("{}/{}", res("free", "cpuCount"), res("capacity", "cpuCount")),
        format!("{}/{}", res("free", "diskMb"), res("capacity", "diskMb")),
        n["heartbeatAt"].as_str().unwrap_or_default().to_string(),
        n["url"].as_str().unwrap_or_default().to_string(),
    ]
}

fn print(nodes: &[Value]) {
    let headers = ["NODE", "STATE", "MEM MB FREE/CAP", "CPUS", "DISK MB", "HEARTBEAT", "URL"];
    let cells: Vec<Vec<String>> = nodes.iter().map(row).collect();
    let widths: Vec<usize> =
        (0..headers.len()).map(|i| cells.iter().map(|r| r[i].len()).chain([headers[i].len()]).max().unwrap()).collect();
    let line = |vals: Vec<&str>| {
        vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    println!("{}", line(headers.to_vec()));
    for r in &cells {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

async fn execute(api: &Api, as_json: bool, cmd: Cmd) -> Result<()> {
    use reqwest::Method;
    let (path, method) = match &cmd {
        Cmd::Ls => ("/stasis/nodes".to_string(), Method::GET),
        Cmd::Drain { node } => (format!("/stasis/nodes/{}/drain", enc(node)), Method::POST),
        Cmd::Activate { node } => (format!("/stasis/nodes/{}/activate", enc(node)), Method::POST),
    };
    let (_, v) = api.call(method, &path, None).await?;
    if as_json {
        println!("{v}");
    } else {
        let nodes = v.as_array().cloned().unwrap_or_else(|| vec![v]);
        print(&nodes);
    }
    Ok(())
}
