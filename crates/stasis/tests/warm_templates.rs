//! Issue 15 (and 16's start command): a template with a start command and a ready check
//! is warmed once (booted, checked, captured as a memory snapshot); every create starts
//! from that capture, with the service already running instead of booting it again.

mod common;

use common::Host;
use serde_json::json;

/// A service that draws a random token when it starts and serves it on port 8123
/// (`/health` answers 200 too). Sandboxes restored from one capture serve one token;
/// sandboxes that each booted the service would serve different ones.
const SERVICE: &str = r#"
import http.server, os
token = os.urandom(16).hex()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = token.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8123), H).serve_forever()
"#;

const GET_TOKEN: &str =
    "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8123/\", timeout=5).read().decode())'";

fn snapshots(host: &Host) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(host.data_dir.join("snapshots"))
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.retain(|n| !n.starts_with('.'));
    v.sort();
    v
}

#[test]
fn sandboxes_of_a_warm_template_start_with_its_service_running() {
    let host = Host::new("warm-template");
    host.template(
        "svc",
        &json!({
            "name": "svc",
            "start": {"cmd": format!("exec python3 -c '{SERVICE}'"), "user": "user"},
            "ready": {"port": 8123, "path": "/health", "timeoutSecs": 60},
        }),
    );
    host.rt(&["create", "a", "--template", "svc"]);
    let warm = snapshots(&host);
    assert_eq!(warm.len(), 1, "one warm snapshot: {warm:?}");
    assert!(warm[0].starts_with("tpl"), "{warm:?}");
    host.rt(&["create", "b", "--template", "svc", "--memory-mb", "256"]);
    assert_eq!(snapshots(&host), warm, "the second create reuses the warm snapshot");

    // Both serve the token drawn once, at warm time: neither booted the service.
    let (ta, tb) = (host.sh("a", GET_TOKEN), host.sh("b", GET_TOKEN));
    assert_eq!(ta.trim().len(), 32, "{ta:?}");
    assert_eq!(ta, tb);
    // Each sandbox is sized by its own create, not by the warm sandbox.
    assert_eq!(host.info("b")["usage"]["memoryLimitBytes"], 256u64 << 20, "{}", host.info("b"));
    // The service runs as the template says, and is part of the sandbox's state.
    assert_eq!(host.sh("a", "ps -o user= -C python3 | sort -u").trim(), "user");
    host.rt(&["pause", "a"]);
    host.rt(&["resume", "a"]);
    assert_eq!(host.sh("a", GET_TOKEN), ta);
    // Nothing of the warm sandbox is left.
    let ls = host.rt(&["ls"]);
    assert!(!ls.contains("warm"), "{ls}");
}

#[test]
fn a_template_whose_service_never_gets_ready_fails_its_creates_clearly() {
    let host = Host::new("warm-broken");
    host.template(
        "broken",
        &json!({
            "name": "broken",
            "start": {
                "cmd": "echo 'svc: cannot bind port 8123: no config' >/var/log/svc.log; exit 3",
                "user": "root",
                "env": {"STASIS_START_LOG": "/var/log/svc.log"},
            },
            "ready": {"port": 8123, "path": "/health", "timeoutSecs": 120},
        }),
    );
    let t0 = std::time::Instant::now();
    let out = host.rt_fails(&["create", "x", "--template", "broken"]);
    assert!(out.stderr.contains("start command exited before it was ready"), "{}", out.stderr);
    assert!(t0.elapsed() < std::time::Duration::from_secs(30), "not after the whole ready timeout");
    assert!(out.stderr.contains("svc: cannot bind port 8123: no config"), "the start command's log: {}", out.stderr);
    assert!(snapshots(&host).is_empty(), "{:?}", snapshots(&host));
    let ls = host.rt(&["ls"]);
    assert!(!ls.contains('x') && !ls.contains("warm"), "nothing left behind: {ls}");
}

#[test]
fn a_service_that_never_answers_fails_after_the_ready_timeout() {
    let host = Host::new("warm-silent");
    host.template(
        "silent",
        &json!({
            "name": "silent",
            "start": {"cmd": "exec sleep 1000", "user": "user"},
            "ready": {"port": 8123, "path": "/health", "timeoutSecs": 3},
        }),
    );
    let out = host.rt_fails(&["create", "x", "--template", "silent"]);
    assert!(out.stderr.contains("start command not ready after 3s"), "{}", out.stderr);
    assert!(snapshots(&host).is_empty(), "{:?}", snapshots(&host));
}

#[test]
fn a_warm_sandbox_left_by_a_stopped_daemon_is_removed_at_the_next_start() {
    let host = Host::new("warm-stale");
    // What a daemon killed in the middle of a warm leaves: a running sandbox with a warm id.
    host.rt(&["create", "warm0123456789ab"]);
    host.rt(&["create", "keepme"]);
    let server = common::Server::start_on(host, &[]);
    common::wait_for("the stale warm sandbox to go", || {
        !server.host.data_dir.join("sandboxes/warm0123456789ab").exists()
    });
    assert!(server.host.data_dir.join("sandboxes/keepme").exists(), "other sandboxes are left alone");
    let host = server.terminate();
    host.rt(&["kill", "keepme"]);
}

#[test]
fn a_daemon_stopped_during_a_warm_leaves_no_warm_sandbox() {
    let host = Host::new("warm-stop");
    host.template(
        "slow",
        &json!({
            "name": "slow",
            "start": {"cmd": "exec sleep 1000", "user": "user"},
            "ready": {"port": 8123, "path": "/health", "timeoutSecs": 120},
        }),
    );
    let server = common::Server::start_on(host, &[]);
    let sandboxes = server.host.data_dir.join("sandboxes");
    let warm_dirs = || -> Vec<String> {
        std::fs::read_dir(&sandboxes)
            .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    };
    common::wait_for("the start-up warm to begin", || !warm_dirs().is_empty());
    let host = server.terminate();
    assert!(warm_dirs().is_empty(), "left behind: {:?}", warm_dirs());
    assert!(host.rt(&["ls"]).trim().is_empty());
}
