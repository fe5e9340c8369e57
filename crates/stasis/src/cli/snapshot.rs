//! `stasis snapshot`: take, list and delete snapshots through `stasis serve`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

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
    /// Snapshot a running sandbox (it keeps running); prints the snapshot id.
    Create {
        sandbox: String,
        #[arg(long)]
        name: Option<String>,
        /// Files only: sandboxes made from it boot fresh.
        #[arg(long)]
        filesystem_only: bool,
    },
    /// List snapshots.
    Ls {
        /// Only those taken from this sandbox.
        #[arg(long)]
        sandbox: Option<String>,
    },
    /// Delete a snapshot (sandboxes made from it keep working).
    Rm { snapshot: String },
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

async fn execute(api: &Api, as_json: bool, cmd: Cmd) -> Result<()> {
    use reqwest::Method;
    match cmd {
        Cmd::Create { sandbox, name, filesystem_only } => {
            let body = json!({"name": name, "memory": !filesystem_only});
            let (_, v) = api.call(Method::POST, &format!("/sandboxes/{sandbox}/snapshots"), Some(body)).await?;
            if as_json {
                println!("{v}");
            } else {
                println!("{}", v["snapshotID"].as_str().unwrap_or_default());
            }
        }
        Cmd::Ls { sandbox } => {
            let mut rows: Vec<Value> = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut q = vec!["limit=100".to_string()];
                if let Some(s) = &sandbox {
                    q.push(format!("sandboxID={}", enc(s)));
                }
                if let Some(t) = &token {
                    q.push(format!("nextToken={}", enc(t)));
                }
                let (h, v) = api.call(Method::GET, &format!("/snapshots?{}", q.join("&")), None).await?;
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
                println!("SNAPSHOT\tNAMES");
                for r in rows {
                    let names: Vec<&str> =
                        r["names"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                    println!("{}\t{}", r["snapshotID"].as_str().unwrap_or_default(), names.join(","));
                }
            }
        }
        Cmd::Rm { snapshot } => {
            api.call(Method::DELETE, &format!("/templates/{}", enc(&snapshot)), None).await?;
        }
    }
    Ok(())
}
