//! The `stasis` command: thin argument parsing over the library crates.

mod cli;

fn main() -> std::process::ExitCode {
    // Everything Stasis writes (records with tokens, databases, images, logs) is root's
    // alone unless made reachable on purpose (stasis-runtime `container/perms.rs`).
    // SAFETY: umask only sets the process's file mode mask.
    unsafe { libc::umask(0o077) };
    cli::main()
}
