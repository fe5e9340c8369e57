//! Issue 12.4: one daemon per data dir. Two daemons on one data dir would both run their
//! timeouts and CRIU against the same sandboxes; the second must exit at once, naming the
//! first, and `stasis runtime` commands must not act behind a daemon's back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent_binary, Server};

#[test]
fn a_second_daemon_on_the_same_data_dir_exits_naming_the_first() {
    let first = Server::start("own");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_stasis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", common::API_KEY])
        .env("STASIS_DATA_DIR", &first.host.data_dir)
        .env("STASIS_AGENT", agent_binary())
        .output()
        .expect("run a second stasis serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "second serve: {stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "names the first daemon: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "exits at once");

    // A runtime command on the daemon's data dir is refused too, and changes nothing.
    let out = first.host.stasis(&["runtime", "ls"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("pid {}", first.pid())), "{}", out.stderr);

    // The first daemon still serves.
    let ls = first.cli(&["ls", "--json"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);

    // Once it is gone (even killed), the data dir is free again.
    let host = first.crash();
    let out = host.stasis(&["runtime", "ls"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again = Server::start_on(host, &[]);
    assert_eq!(again.cli(&["ls", "--json"]).code, 0);
}
