//! Command-line interface.
//!
//! `stasis runtime ...` drives the container runtime directly on this host (no daemon):
//! for operators and for the runtime's own end-to-end tests.

mod cp;
mod dockerfile;
mod envd_target;
mod exec;
mod logs;
mod node;
mod runtime;
mod sandbox;
mod serve;
mod snapshot;
mod template;
mod terminal;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stasis", version, about = "Sandboxes that pause and resume with their whole state")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: control API, sandbox proxy and lifecycle scheduler on one port.
    Serve(Box<serve::Args>),
    /// Manage sandboxes through `stasis serve` (create, ls, exec, pause, resume, kill, info).
    Sandbox(sandbox::Args),
    /// Snapshots through `stasis serve` (create, ls, rm).
    Snapshot(snapshot::Args),
    /// Templates through `stasis serve` (build from a Dockerfile, ls, rm).
    Template(template::Args),
    /// The cluster's nodes through `stasis serve` (ls, drain, activate).
    Node(node::Args),
    /// TLS for `stasis serve`: `stasis tls init` makes a local CA and a wildcard certificate.
    Tls(tls::Args),
    /// Drive the local container runtime directly (no daemon).
    Runtime(runtime::Args),
}

/// Exit codes scripts can rely on.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    pub const UNAUTHORIZED: u8 = 5;
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Sandbox(args) => sandbox::run(args).await,
            Command::Snapshot(args) => snapshot::run(args).await,
            Command::Template(args) => template::run(args).await,
            Command::Node(args) => node::run(args).await,
            Command::Tls(args) => tls::run(args),
            Command::Runtime(args) => runtime::run(args).await,
        }
    });
    // Not waiting for a read of stdin still blocked (`exec -i` after its command ended).
    rt.shutdown_background();
    ExitCode::from(code)
}
