//! The command line. Every flag has an environment fallback (`STASIS_INTERP_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::language::Language;

#[derive(Debug, Clone, Parser)]
#[command(name = "stasis-interpreter", version, about = "Code-interpreter service of Stasis interpreter sandboxes")]
pub struct Config {
    /// Address to serve on (E2B's Jupyter port: the SDKs call 49999).
    #[arg(long, env = "STASIS_INTERP_LISTEN", default_value = "0.0.0.0:49999")]
    pub listen: SocketAddr,

    /// Directory of kernelspecs, one subdirectory with a kernel.json per kernel
    /// (python3, bash, deno; javascript and typescript specs are used before deno).
    #[arg(long, env = "STASIS_INTERP_KERNELS_DIR", default_value = "/usr/local/share/jupyter/kernels")]
    pub kernels_dir: PathBuf,

    /// Working directory of contexts created without one (and of the default contexts).
    #[arg(long, env = "STASIS_INTERP_CWD", default_value = "/home/user")]
    pub default_cwd: PathBuf,

    /// File with the SHA-512 of the sandbox's access token, written by the agent.
    #[arg(long, env = "STASIS_INTERP_TOKEN_DIGEST_FILE", default_value = stasis_proto::agent::ACCESS_TOKEN_DIGEST_PATH)]
    pub token_digest_file: PathBuf,

    /// envd, asked for the sandbox's environment variables (`GET /envs`, with the
    /// caller's token) before each run: kernels started before the sandbox existed (in
    /// the template's warm snapshot) get them so. Empty: none.
    #[arg(long, env = "STASIS_INTERP_ENVD_URL", default_value = "http://127.0.0.1:49983")]
    pub envd_url: String,

    /// Directory of the Python support code (`stasis_startup.py`, `stasis_kernel/`),
    /// loaded into every Python kernel through PYTHONSTARTUP.
    #[arg(long, env = "STASIS_INTERP_PYTHON_DIR", default_value = "/usr/local/share/stasis-interpreter")]
    pub python_dir: PathBuf,

    /// Accept /execute without an access token (local development only).
    #[arg(long, env = "STASIS_INTERP_NO_AUTH")]
    pub no_auth: bool,

    /// Languages whose default context starts with the service, before /health answers
    /// 200 (comma-separated). The others start on first use.
    #[arg(long, env = "STASIS_INTERP_PRESTART", value_delimiter = ',', default_value = "python")]
    pub prestart: Vec<Language>,

    /// Where connection files go (mode 0700; default: $XDG_RUNTIME_DIR or /tmp, in a
    /// `stasis-interpreter-<pid>` directory).
    #[arg(long, env = "STASIS_INTERP_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
}

impl Config {
    pub fn runtime_dir(&self) -> PathBuf {
        if let Some(d) = &self.runtime_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        base.join(format!("stasis-interpreter-{}", std::process::id()))
    }
}
