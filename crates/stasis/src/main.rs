//! The `stasis` command: thin argument parsing over the library crates.

mod cli;
mod envd_client;

fn main() -> std::process::ExitCode {
    cli::main()
}
