//! Issue 18 against a real `stasis serve` and real sandboxes: `/metrics` parsed by a
//! Prometheus parser, `/health`, JSON logs with the sandbox id, a sandbox's logs and
//! events, and the CLI an operator reaches for (`exec` with argv and `-it` on a real
//! terminal, `cp`, `ls` showing when a sandbox paused, `logs -f`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{id, Api};
use common::pty::Pty;
use common::{Server, API_KEY};
use serde_json::{json, Value};

const TOKEN: &str = "scrape-only-token";

async fn get(s: &Server, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.url));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value::*;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Counter(v) | Gauge(v) | Untyped(v) => *v,
            Histogram(b) => b.last().map_or(0.0, |b| b.count),
            Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_health_json_logs_and_a_sandbox_history() {
    let s = Server::start_on(common::Host::new("observe"), &["--log-format", "json", "--metrics-token", TOKEN]);
    let api = Api::new(&s);
    assert_eq!(get(&s, "/health", None).await.0, 200);
    assert_eq!(get(&s, "/health/ready", None).await.0, 200);
    assert_eq!(get(&s, "/metrics", None).await.0, 401);

    let sbx = api.create(json!({"timeout": 120, "metadata": {"who": "observe"}})).await;
    let sid = id(&sbx);
    api.sh(&sbx, "head -c 20000000 /dev/urandom > /tmp/noise").await;
    assert_eq!(api.pause(&sid).await, 204);
    assert_eq!(api.connect(&sid, json!({"timeout": 120})).await.0, 201);

    let (status, text) = get(&s, "/metrics", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(sample(&scrape, "stasis_sandboxes", &[("state", "running"), ("template", "base")]), Some(1.0));
    assert_eq!(sample(&scrape, "stasis_sandbox_operation_duration_seconds", &[("operation", "pause")]), Some(1.0));
    assert_eq!(sample(&scrape, "stasis_pause_phase_duration_seconds", &[("phase", "dump")]), Some(1.0));
    let written = sample(&scrape, "stasis_checkpoint_bytes_total", &[("direction", "written")]).unwrap();
    let read = sample(&scrape, "stasis_checkpoint_bytes_total", &[("direction", "read")]).unwrap();
    assert!(written > 100e3 && read == written, "written {written}, read {read}");
    assert!(sample(&scrape, "stasis_proxy_requests_total", &[("kind", "http"), ("outcome", "ok")]).unwrap() >= 1.0);
    assert!(sample(&scrape, "stasis_proxy_bytes_total", &[("direction", "out")]).unwrap() > 0.0);
    assert!(sample(&scrape, "stasis_host_memory_bytes", &[("kind", "total")]).unwrap() > 0.0);

    let (_, logs) = api.call(reqwest::Method::GET, &format!("/v2/sandboxes/{sid}/logs"), None).await;
    let messages: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[1].starts_with("paused (asked by the API) in"), "{messages:?}");
    assert!(messages[2].starts_with("resumed (connect (API)) in"), "{messages:?}");

    // getMetrics: the point now, later a series sampled every 5 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (_, points) = api.call(reqwest::Method::GET, &format!("/sandboxes/{sid}/metrics"), None).await;
    let points = points.as_array().unwrap();
    assert!(points.len() >= 3, "{points:?}");
    assert!(points.iter().all(|p| p["memUsed"].as_u64().unwrap() > 0), "{points:?}");

    assert_eq!(api.kill(&sid).await, 204);
    let log = s.log();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let about: Vec<&Value> = lines.iter().filter(|l| l.to_string().contains(&sid)).collect();
    assert!(!about.is_empty(), "{log}");
    for l in &about {
        assert_eq!(l["sandbox"], sid.as_str(), "every JSON line about the sandbox carries its id: {l}");
    }
    assert!(about.iter().any(|l| l["message"] == "paused"), "{log}");
}

fn cli(s: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stasis"));
    c.env("STASIS_API_URL", &s.url).env("STASIS_API_KEY", API_KEY);
    c
}

#[tokio::test]
async fn the_cli_an_operator_reaches_for() {
    let s = Server::start("obscli");
    let sid = s.cli(&["create", "--timeout", "300"]).stdout.trim().to_string();
    assert_eq!(sid.len(), 20, "{sid}");

    // exec: argv as given, one argument a shell line, the command's exit code.
    let out = s.cli(&["exec", &sid, "--", "sh", "-c", r#"echo "[$1] [$2]""#, "x", "a  b", "c"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[a  b] [c]\n"), "{}", out.stderr);
    assert_eq!(s.cli(&["exec", &sid, "--", "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(s.cli(&["exec", &sid, "echo one && echo two"]).stdout, "one\ntwo\n");
    assert_eq!(s.cli(&["exec", &sid, "--", "whoami"]).stdout, "user\n");
    assert_eq!(s.cli(&["exec", "--user", "root", &sid, "--", "whoami"]).stdout, "root\n");

    // exec -i: stdin to the command.
    let mut c = cli(&s);
    c.args(["sandbox", "exec", "-i", &sid, "--", "wc", "-c"]);
    let out = run_with_stdin(c, b"12345");
    assert_eq!(out.trim(), "5");

    // exec -it on a real terminal: its size, a resize, Ctrl-C, the exit code.
    let mut c = cli(&s);
    c.args(["sandbox", "exec", "-it", &sid, "--", "bash"]);
    let mut t = Pty::spawn(c, 100, 30);
    t.type_in("stty size\n");
    t.wait_for("30 100", 0);
    let mark = t.screen().len();
    t.resize(120, 40);
    std::thread::sleep(Duration::from_millis(500));
    t.type_in("stty size\n");
    t.wait_for("40 120", mark);
    t.type_in("sleep 60; echo not-interrupted\n");
    std::thread::sleep(Duration::from_secs(1));
    let mark = t.screen().len();
    t.type_in("\x03");
    t.type_in("echo after-$((40+2))\n");
    t.wait_for("after-42", mark);
    t.type_in("exit 3\n");
    assert_eq!(t.wait(), 3, "{}", t.screen());
    // The typed line echoes the word; the interrupted command never printed it.
    assert!(!t.screen().lines().any(|l| l.trim() == "not-interrupted"), "{}", t.screen());

    // cp in and out.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    let out = s.cli(&["cp", local.to_str().unwrap(), &format!("{sid}:/home/user/in.txt")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.cli(&["exec", &sid, "--", "cat", "/home/user/in.txt"]).stdout, "copied in\n");
    s.cli(&["exec", &sid, "echo made inside > /tmp/out.txt"]);
    let out = s.cli(&["cp", &format!("{sid}:/tmp/out.txt"), dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "made inside\n");
    assert_eq!(s.cli(&["cp", &format!("{sid}:/no/such/file"), "-"]).code, 3);

    // ls: a paused sandbox shows when it paused, not an end.
    assert_eq!(s.cli(&["pause", &sid]).code, 0);
    let ls = s.cli(&["ls"]).stdout;
    let header = ls.lines().next().unwrap();
    assert!(header.contains("PAUSED"), "{ls}");
    let row = ls.lines().find(|l| l.starts_with(&sid)).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "paused", "{ls}");
    assert_eq!(cells[4], "-", "no end for a paused sandbox: {ls}");
    assert!(cells[5].ends_with('Z'), "the pause time: {ls}");
    let listed: Value = serde_json::from_str(&s.cli(&["ls", "--json"]).stdout).unwrap();
    assert!(listed[0]["pausedAt"].is_string(), "{listed}");

    // logs and events; -f follows until the sandbox is gone.
    let logs = s.cli(&["logs", &sid]).stdout;
    assert!(logs.contains("INFO  paused (asked by the API) in"), "{logs}");
    let events = s.cli(&["events", &sid]).stdout;
    assert!(events.lines().any(|l| l.contains(" paused ") && l.contains("dump_ms=")), "{events}");
    let mut follow = cli(&s);
    follow.args(["sandbox", "logs", "-f", &sid]).stdout(std::process::Stdio::piped());
    let follower = follow.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.cli(&["kill", &sid]).code, 0);
    let out = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().last().unwrap().contains("killed: asked by the API"), "{text}");
}

fn run_with_stdin(mut c: Command, input: &[u8]) -> String {
    use std::io::Write;
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The unit setup installs where systemd is PID 1, rendered as setup renders it: systemd
/// accepts every line, and a daemon that dies or restarts leaves the sandboxes running
/// (on cgroup v1 their processes share the unit's systemd cgroup).
#[test]
fn the_systemd_unit_is_valid_and_spares_the_sandboxes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(root.join("scripts/systemd/stasis.service")).unwrap();
    let unit = template
        .replace("@STASIS_BIN@", "/usr/local/bin/stasis")
        .replace("@ARGS@", "--listen 127.0.0.1:3000 --data-dir /var/lib/stasis");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stasis.service");
    std::fs::write(&path, &unit).unwrap();
    let out =
        Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (Debian's systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    let own: Vec<&str> = said.lines().filter(|l| l.contains("stasis.service")).collect();
    assert!(out.status.success() && own.is_empty(), "systemd-analyze verify: {said}");
    let setting = |key: &str| unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::trim);
    assert_eq!(setting("KillMode"), Some("process"));
    assert_eq!(setting("Restart"), Some("on-failure"));
    assert!(setting("ExecStart").unwrap().ends_with("--pause-on-shutdown"));
}
