//! `stasis sandbox cp SRC DST`, as `docker cp` for files: one side is `ID:/path` in a
//! running sandbox, the other a local path (`-` is stdin or stdout). Through the agent's
//! `/files` endpoint behind the server's proxy, as the SDKs' `files.read`/`files.write`.

use anyhow::{bail, Context, Result};

use super::envd_target::EnvdTarget;
use super::sandbox::{Api, ApiFailure};

#[derive(clap::Args)]
pub struct CpArgs {
    /// `ID:/path` or a local path (`-`: stdin).
    src: String,
    /// `ID:/path` or a local path (`-`: stdout). A local directory gets the file's name.
    dst: String,
    /// The sandbox user who reads or writes (default: the agent's default user).
    #[arg(long)]
    user: Option<String>,
}

/// `ID:/path` → (ID, /path); a local path is `None`.
fn remote(spec: &str) -> Option<(&str, &str)> {
    let (id, path) = spec.split_once(':')?;
    let is_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (is_id && !path.is_empty()).then_some((id, path))
}

fn files_path(path: &str) -> String {
    format!("/files?path={}", stasis_store::query::encode_uri_component(path))
}

pub async fn run(api: &Api, a: CpArgs) -> Result<u8> {
    match (remote(&a.src), remote(&a.dst)) {
        (None, Some((id, path))) => {
            let data = if a.src == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                v
            } else {
                std::fs::read(&a.src).with_context(|| format!("read {}", a.src))?
            };
            let target = EnvdTarget::of(api, id, a.user.as_deref()).await?;
            let resp = target
                .request(reqwest::Method::POST, &files_path(path))
                .header("content-type", "application/octet-stream")
                .body(data)
                .send()
                .await?;
            check(resp).await?;
        }
        (Some((id, path)), None) => {
            let target = EnvdTarget::of(api, id, a.user.as_deref()).await?;
            let resp = check(target.request(reqwest::Method::GET, &files_path(path)).send().await?).await?;
            let data = resp.bytes().await?;
            if a.dst == "-" {
                std::io::Write::write_all(&mut std::io::stdout(), &data)?;
            } else {
                let mut dst = std::path::PathBuf::from(&a.dst);
                if dst.is_dir() {
                    dst.push(path.rsplit('/').next().unwrap_or("file"));
                }
                std::fs::write(&dst, &data).with_context(|| format!("write {}", dst.display()))?;
            }
        }
        (Some(_), Some(_)) => bail!("cp copies between a sandbox and here: one side must be local"),
        (None, None) => bail!("cp needs one side in a sandbox: ID:/path"),
    }
    Ok(super::exit::OK)
}

/// The response, or its error as the API's (exit codes: 404 not found, 403...).
async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    Err(ApiFailure::new(status, message).into())
}

#[cfg(test)]
mod tests {
    use super::remote;

    #[test]
    fn a_sandbox_side_is_id_colon_path() {
        assert_eq!(remote("abc123:/tmp/x"), Some(("abc123", "/tmp/x")));
        assert_eq!(remote("abc123:rel/x"), Some(("abc123", "rel/x")));
        assert_eq!(remote("./local:file"), None);
        assert_eq!(remote("/tmp/x"), None);
        assert_eq!(remote("C:/x"), None);
        assert_eq!(remote("abc:"), None);
    }
}
