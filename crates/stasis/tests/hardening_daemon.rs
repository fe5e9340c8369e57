//! Issue 13, items 7, 9 and 10: the daemon's own surface. Stasis's credentials never
//! reach code in a sandbox through the proxy; what the daemon keeps on disk is root's
//! alone and no token shows in a process list; slow, idle and numerous clients do not
//! stop it serving. See docs/security.md. All traffic goes to the test's own servers on
//! 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::api::{id, Api};
use common::{Server, API_KEY};
use serde_json::{json, Value};

/// An app in the sandbox that answers every request with the headers it received.
const ECHO_HEADERS: &str = r#"cat > /tmp/echo.py <<'PY'
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
PY
nohup python3 /tmp/echo.py >/dev/null 2>&1 &"#;

async fn headers_seen(s: &Server, sbx: &Value, extra: &[(&str, &str)]) -> Value {
    let mut req = reqwest::Client::new()
        .get(format!("{}/", s.url))
        .header("e2b-sandbox-id", id(sbx))
        .header("e2b-sandbox-port", "8000");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn wait_for_app(s: &Server, sbx: &Value) {
    for _ in 0..100 {
        let r = reqwest::Client::new()
            .get(format!("{}/", s.url))
            .header("e2b-sandbox-id", id(sbx))
            .header("e2b-sandbox-port", "8000")
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the app in the sandbox did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_keeps_stasis_credentials_from_sandbox_code() {
    let s = Server::start("cred");
    let api = Api::new(&s);
    let sbx = api.create(json!({"templateID": "base", "timeout": 300})).await;
    let token = sbx["envdAccessToken"].as_str().unwrap().to_string();
    api.sh(&sbx, ECHO_HEADERS).await;
    wait_for_app(&s, &sbx).await;

    // A client that sends its whole credential set with every request.
    let bearer = format!("Bearer {API_KEY}");
    let seen = headers_seen(
        &s,
        &sbx,
        &[
            ("x-api-key", API_KEY),
            ("authorization", &bearer),
            ("x-access-token", &token),
            ("e2b-traffic-access-token", "traffic-secret"),
            ("x-app-header", "kept"),
        ],
    )
    .await;
    let text = seen.to_string();
    eprintln!("the app saw: {text}");
    assert!(!text.contains(API_KEY), "the API key reached the sandbox: {text}");
    assert!(!text.contains(&token), "the envd token reached a user port: {text}");
    assert!(!text.contains("traffic-secret"), "the traffic token reached the sandbox: {text}");
    assert_eq!(seen["x-app-header"], "kept");

    // The application's own credentials in the same headers pass untouched.
    let seen =
        headers_seen(&s, &sbx, &[("x-api-key", "the-apps-own-key"), ("authorization", "Basic dXNlcjpwdw==")]).await;
    assert_eq!(
        (seen["x-api-key"].as_str(), seen["authorization"].as_str()),
        (Some("the-apps-own-key"), Some("Basic dXNlcjpwdw=="))
    );

    // envd still gets its token (every call through the proxy below needs it).
    assert_eq!(api.sh(&sbx, "echo ok").await.trim(), "ok");
    api.kill(&id(&sbx)).await;
}

fn connect(addr: &str) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Seconds until the server closes `c` (reads to EOF or reset); panics if it does not
/// within the read timeout.
fn closed_after(mut c: TcpStream, since: Instant) -> f64 {
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return since.elapsed().as_secs_f64(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return since.elapsed().as_secs_f64(),
            Err(e) => panic!("connection still open after {:?}: {e}", since.elapsed()),
        }
    }
}

/// A complete control call over a fresh connection: the status line.
fn list_sandboxes(addr: &str) -> String {
    let mut c = connect(addr);
    write!(c, "GET /sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: {API_KEY}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 11 and 12 after the command name.
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

#[test]
fn idle_slow_and_too_many_clients_do_not_stop_the_daemon() {
    let host = common::Host::new("slow");
    let out = host.stasis(&["tls", "init", "--data-dir", host.data_dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let s = Server::start_on(
        host,
        &[
            "--tls-listen",
            &tls_addr,
            "--header-timeout",
            "2s",
            "--tls-handshake-timeout",
            "2s",
            "--max-connections",
            "64",
        ],
    );
    common::wait_for("TLS listener", || common::listening(&tls_addr));
    let addr = s.url.trim_start_matches("http://").to_string();

    // Every connection slot taken: idle TCP, TLS without a hello, and slowloris clients
    // that trickle a header line every 300 ms and never finish.
    let t0 = Instant::now();
    let idle: Vec<TcpStream> = (0..50).map(|_| connect(&addr)).collect();
    let tls_idle: Vec<TcpStream> = (0..10).map(|_| connect(&tls_addr)).collect();
    let slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(&addr);
            c.write_all(b"GET /sandboxes HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    let trickle: Vec<_> = slow
        .iter()
        .map(|c| {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || {
                for i in 0..40 {
                    if write!(c, "X-Slow-{i}: 1\r\n").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();

    // A real client still gets its answer: at worst after the header timeout frees slots.
    let asked = Instant::now();
    assert_eq!(list_sandboxes(&addr), "HTTP/1.1 200 OK");
    let waited = asked.elapsed();
    eprintln!("answered in {waited:?} with every slot taken");
    assert!(waited < Duration::from_secs(5), "answered only after {waited:?}");

    // And each of the hostile connections was closed by the server, slowloris included.
    let labelled = idle.into_iter().map(|c| ("idle", c)).chain(tls_idle.into_iter().map(|c| ("tls", c)));
    let mut closes: Vec<f64> = labelled
        .chain(slow.into_iter().map(|c| ("slowloris", c)))
        .map(|(what, c)| {
            eprintln!("waiting for a {what} connection");
            closed_after(c, t0)
        })
        .collect();
    closes.sort_by(f64::total_cmp);
    eprintln!("hostile connections closed after {:.1}..{:.1} s", closes[0], closes[closes.len() - 1]);
    assert!(closes[closes.len() - 1] < 6.0, "a connection stayed open {:.1} s", closes[closes.len() - 1]);
    for t in trickle {
        t.join().unwrap();
    }
    assert_eq!(list_sandboxes(&addr), "HTTP/1.1 200 OK");

    // The deadline is for headers only: a command streaming its output for longer than
    // it, through the proxy, is not cut.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api::new(&s);
        let sbx = api.create(json!({"templateID": "base", "timeout": 120})).await;
        let t = Instant::now();
        assert_eq!(api.sh(&sbx, "echo start; sleep 5; echo done").await, "start\ndone\n");
        assert!(t.elapsed() > Duration::from_secs(5));
        api.kill(&id(&sbx)).await;
    });
}

#[test]
fn running_out_of_file_descriptors_is_no_busy_loop() {
    let host = common::Host::new("emfile");
    let out = host.stasis(&["tls", "init", "--data-dir", host.data_dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let port = |()| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (addr, tls_addr) = (format!("127.0.0.1:{}", port(())), format!("127.0.0.1:{}", port(())));
    let log = std::fs::File::create(host.data_dir.join("serve.log")).unwrap();
    // Few descriptors: a flood of connections exhausts them, and accept fails with EMFILE.
    let child = std::process::Command::new("prlimit")
        .args(["--nofile=128:128", "--", env!("CARGO_BIN_EXE_stasis"), "serve", "--listen", &addr])
        .args(["--tls-listen", &tls_addr, "--api-key", API_KEY])
        .env("STASIS_DATA_DIR", &host.data_dir)
        .env("STASIS_AGENT", common::agent_binary())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Stopped however the test ends (a failed assertion included).
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Stop(child);
    common::wait_for("serve", || common::listening(&addr) && common::listening(&tls_addr));
    let flood: Vec<TcpStream> =
        (0..200).filter_map(|i| TcpStream::connect(if i % 2 == 0 { &addr } else { &tls_addr }).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(child.0.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(child.0.id()) - before;
    eprintln!("{} connections open; the daemon used {used:.2} s of CPU in 3 s", flood.len());
    drop(flood);
    assert!(used < 0.5, "the daemon spun on accept errors: {used:.2} s of CPU in 3 s");
    // Descriptors back: it serves again.
    common::wait_for("an answer after the flood", || list_sandboxes(&addr) == "HTTP/1.1 200 OK");
}

/// Whether host user `uid` can read `path` (`cat` a file, `ls` a directory, under
/// setpriv as that user only).
fn readable_by(uid: u32, path: &std::path::Path) -> bool {
    let u = uid.to_string();
    let reader = if path.is_dir() { "ls" } else { "cat" };
    std::process::Command::new("setpriv")
        .args(["--reuid", &u, "--regid", &u, "--clear-groups", "--", reader])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_root_only_and_no_secret_shows_in_a_process_list() {
    let s = Server::start("priv");
    let api = Api::new(&s);
    let secret = common::unique_id("topsecret");

    // Every command line on the host, read over and over while sandboxes boot.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, secret) = (stop.clone(), secret.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
                    if cmd.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                        seen.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
                    }
                }
            }
            seen
        })
    };
    let mut sandboxes = Vec::new();
    for _ in 0..3 {
        sandboxes
            .push(api.create(json!({"templateID": "base", "timeout": 300, "envVars": {"MY_SECRET": secret}})).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(seen.is_empty(), "the secret was in a command line: {:?}", &seen[..1]);

    let sbx = &sandboxes[0];
    assert_eq!(api.sh(sbx, "echo $MY_SECRET").await.trim(), secret);
    assert_eq!(api.pause(&id(sbx)).await, 204);
    let data = s.host.data_dir.clone();
    let dir = data.join("sandboxes").join(id(sbx));
    let record = dir.join("record.json");
    assert!(std::fs::read_to_string(&record).unwrap().contains(&secret), "the record holds the secret");
    let generation = std::fs::read_dir(dir.join("checkpoints")).unwrap().flatten().next().unwrap().path();
    let files = [
        data.join("stasis.db"),
        data.join("checkpoint.key"),
        record,
        dir.join("disk.img"),
        generation.join("checksums.json"),
        generation.join("pstree.img"),
        dir.join("checkpoints"),
        data.join("sandboxes"),
    ];
    // Host uid 100000 is every sandbox's root (what an escape would run as); 65534 is
    // any other local user.
    for uid in [100_000, 65_534] {
        for f in &files {
            assert!(!readable_by(uid, f), "host uid {uid} can read {}", f.display());
        }
    }
    // Still working: resumed, it reaches its root as root and as `user`.
    let (status, _) = api.connect(&id(sbx), json!({"timeout": 300})).await;
    assert!(status == 200 || status == 201, "resume: {status}");
    assert_eq!(api.sh(sbx, "id -un; ls / >/dev/null && echo ok").await.trim(), "user\nok");
    for sbx in &sandboxes {
        api.kill(&id(sbx)).await;
    }
}

#[test]
fn a_generated_api_key_is_never_written_to_the_service_log() {
    let host = common::Host::new("keylog");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = host.data_dir.join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // As a service runs it: stdout and stderr to a file, no key given.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_stasis"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("STASIS_DATA_DIR", &host.data_dir)
        .env("STASIS_AGENT", common::agent_binary())
        .env_remove("STASIS_API_KEY")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Stop(child);
    common::wait_for("serve", || common::listening(("127.0.0.1", port)));
    let key_file = host.data_dir.join("api-key");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert!(key.len() > 20);
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains(&key), "the key is in the service log: {text}");
    assert!(text.contains("api-key"), "the log says where the key is: {text}");
}
