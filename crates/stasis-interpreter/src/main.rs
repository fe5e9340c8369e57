//! `stasis-interpreter [FLAGS]`: see `Config` for the flags.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = stasis_interpreter::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STASIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One thread: the service only shuttles messages between HTTP and kernels; the
    // kernels do the work. It keeps the idle footprint of every interpreter sandbox small.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stasis-interpreter: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(stasis_interpreter::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stasis-interpreter: {e:#}");
            ExitCode::FAILURE
        }
    }
}
