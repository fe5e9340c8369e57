//! `stasis template`: build (from a Dockerfile), list and remove templates through
//! `stasis serve`, with the same API the SDKs' `Template.build` uses: request a build,
//! upload each COPY's files by content hash (only those the server lacks), start it,
//! then follow its status and log until it ends.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::dockerfile::{self, Instr};
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
    /// Build a template from a Dockerfile (FROM a Stasis template or an image, RUN, COPY,
    /// ENV, WORKDIR, USER, CMD as the start command).
    Build {
        /// The Dockerfile (default: DIR/Dockerfile).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Template name (default: the name of DIR).
        #[arg(long)]
        name: Option<String>,
        /// Run every step, even those in the cache.
        #[arg(long)]
        no_cache: bool,
        /// With CMD/ENTRYPOINT: a shell command that exits 0 once the service is ready;
        /// the template is then captured running and sandboxes start with it up.
        #[arg(long)]
        ready_cmd: Option<String>,
        /// The build context (COPY sources are relative to it).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// List templates.
    Ls,
    /// Remove a built template (sandboxes made from it keep working).
    Rm { name: String },
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

async fn execute(api: &Api, as_json: bool, cmd: Cmd) -> Result<u8> {
    use reqwest::Method;
    match cmd {
        Cmd::Build { file, name, no_cache, ready_cmd, dir } => {
            build(api, as_json, file, name, no_cache, ready_cmd, &dir).await
        }
        Cmd::Ls => {
            let (_, v) = api.call(Method::GET, "/templates", None).await?;
            if as_json {
                println!("{v}");
            } else {
                println!("NAME\tLAYERS\tSIZE\tBUILD\tTAGS\tSTART");
                for t in v.as_array().cloned().unwrap_or_default() {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t["templateID"].as_str().unwrap_or_default(),
                        t["layers"],
                        human(t["sizeBytes"].as_u64().unwrap_or(0)),
                        t["buildID"].as_str().filter(|b| !b.is_empty()).unwrap_or("-"),
                        tags_column(&t),
                        t["startCmd"].as_str().unwrap_or("-"),
                    );
                }
            }
            Ok(exit::OK)
        }
        Cmd::Rm { name } => {
            api.call(Method::DELETE, &format!("/templates/{}", stasis_store::query::encode_uri_component(&name)), None)
                .await?;
            Ok(exit::OK)
        }
    }
}

/// `default,v2=1a2b3c4d`: each tag, with the first 8 of its build's id when that is not
/// the build the row shows (a tag left on an older build).
fn tags_column(t: &Value) -> String {
    let shown = t["buildID"].as_str().unwrap_or_default();
    let tags: Vec<String> = t["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let (tag, build) = (x["tag"].as_str().unwrap_or_default(), x["buildID"].as_str().unwrap_or_default());
            if build == shown {
                tag.to_string()
            } else {
                format!("{tag}={}", &build[..build.len().min(8)])
            }
        })
        .collect();
    if tags.is_empty() {
        "-".into()
    } else {
        tags.join(",")
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1}K", b as f64 / 1024.0),
    }
}

async fn build(
    api: &Api,
    as_json: bool,
    file: Option<PathBuf>,
    name: Option<String>,
    no_cache: bool,
    ready_cmd: Option<String>,
    dir: &Path,
) -> Result<u8> {
    use reqwest::Method;
    let file = file.unwrap_or_else(|| dir.join("Dockerfile"));
    let text = std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let instrs = dockerfile::parse(&text)?;
    let name = match name {
        Some(n) => n,
        None => dir
            .canonicalize()?
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .ok_or_else(|| anyhow!("name the template with --name"))?,
    };
    let (_, v) = api.call(Method::POST, "/v3/templates", Some(json!({"name": name}))).await?;
    let (tid, bid) = (
        v["templateID"].as_str().unwrap_or_default().to_string(),
        v["buildID"].as_str().unwrap_or_default().to_string(),
    );
    let mut template = json!({"force": no_cache, "steps": []});
    let mut steps: Vec<Value> = Vec::new();
    let staging = tempdir()?;
    for i in instrs {
        match i {
            Instr::From(image) => {
                // A Stasis template of that name first; else an image.
                let is_template = api.call(Method::GET, &format!("/templates/aliases/{image}"), None).await.is_ok();
                template[if is_template { "fromTemplate" } else { "fromImage" }] = json!(image);
            }
            Instr::Run(cmd) => steps.push(json!({"type": "RUN", "args": [cmd], "force": no_cache})),
            Instr::Env(kv) => {
                let args: Vec<String> = kv.into_iter().flat_map(|(k, v)| [k, v]).collect();
                steps.push(json!({"type": "ENV", "args": args, "force": no_cache}));
            }
            Instr::Workdir(d) => steps.push(json!({"type": "WORKDIR", "args": [d], "force": no_cache})),
            Instr::User(u) => steps.push(json!({"type": "USER", "args": [u], "force": no_cache})),
            Instr::Start(cmd) => {
                template["startCmd"] = json!(cmd);
                if let Some(r) = &ready_cmd {
                    template["readyCmd"] = json!(r);
                }
            }
            Instr::Copy { srcs, dest, chown } => {
                for src in srcs {
                    let hash = upload(api, &tid, dir, &src, &dest, &staging).await?;
                    let user = chown.clone().unwrap_or_default();
                    steps.push(
                        json!({"type": "COPY", "args": [src, dest, user, ""], "force": no_cache, "filesHash": hash}),
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    template["steps"] = Value::Array(steps);
    api.call(Method::POST, &format!("/v2/templates/{tid}/builds/{bid}"), Some(template)).await?;
    follow(api, as_json, &tid, &bid).await
}

/// Packs `src` (relative to `dir`) as a tar, hashes it with the destination, and uploads
/// it unless the server has it. Returns the hash.
async fn upload(api: &Api, tid: &str, dir: &Path, src: &str, dest: &str, staging: &Path) -> Result<String> {
    let rel = src.trim_start_matches("./").trim_end_matches('/');
    if rel.is_empty() || rel.split('/').any(|p| p == "..") || rel.starts_with('/') {
        bail!("COPY {src}: sources must be inside the build context");
    }
    let tar = staging.join(format!("{}.tar", hex::encode(Sha256::digest(rel.as_bytes()))));
    let out = std::process::Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(dir)
        .arg("--")
        .arg(rel)
        .output()
        .context("run tar")?;
    if !out.status.success() {
        bail!("COPY {src}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let bytes = std::fs::read(&tar)?;
    let mut h = Sha256::new();
    h.update(dest.as_bytes());
    h.update([0]);
    h.update(&bytes);
    let hash = hex::encode(h.finalize());
    let (_, v) = api.call(reqwest::Method::GET, &format!("/templates/{tid}/files/{hash}"), None).await?;
    if v["present"].as_bool() != Some(true) {
        let url = v["url"].as_str().ok_or_else(|| anyhow!("the server gave no upload URL"))?;
        let resp = reqwest::Client::new().put(url).body(bytes).send().await.context("upload")?;
        if !resp.status().is_success() {
            bail!("upload of {src}: {}", resp.status());
        }
        eprintln!("uploaded {src}");
    }
    Ok(hash)
}

/// Prints the build's log as it comes; returns when it ends (exit code 1 on failure).
async fn follow(api: &Api, as_json: bool, tid: &str, bid: &str) -> Result<u8> {
    let mut offset = 0usize;
    loop {
        let (_, v) = api
            .call(reqwest::Method::GET, &format!("/templates/{tid}/builds/{bid}/status?logsOffset={offset}"), None)
            .await?;
        let entries = v["logEntries"].as_array().cloned().unwrap_or_default();
        offset += entries.len();
        if !as_json {
            for e in &entries {
                println!("{}", e["message"].as_str().unwrap_or_default());
            }
        }
        match v["status"].as_str() {
            Some("ready") => {
                if as_json {
                    println!("{}", json!({"templateID": tid, "buildID": bid, "status": "ready"}));
                }
                return Ok(exit::OK);
            }
            Some("error") => {
                if as_json {
                    println!("{v}");
                }
                eprintln!("error: {}", v["reason"]["message"].as_str().unwrap_or("the build failed"));
                return Ok(exit::ERROR);
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("stasis-build-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_column_names_tags_on_other_builds() {
        let row = json!({"buildID": "aaaaaaaa-1", "tags": [
            {"tag": "default", "buildID": "aaaaaaaa-1"},
            {"tag": "v2", "buildID": "bbbbbbbbcccc"},
        ]});
        assert_eq!(tags_column(&row), "default,v2=bbbbbbbb");
        assert_eq!(tags_column(&json!({"buildID": ""})), "-");
    }
}
