//! The `stasis` command: thin argument parsing over the library crates.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
