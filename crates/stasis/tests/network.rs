//! Issue 7: services in sandboxes, reachable through the proxy (by Host and by header,
//! HTTP streaming and WebSocket), cut at pause, back after resume with the same process;
//! outbound access per policy; sandboxes cannot reach each other.
//! Traffic goes only to 127.0.0.1 and to a network namespace this test makes itself.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::api::{id, Api};
use common::{Host, Server};
use serde_json::{json, Value};

/// An HTTP server in the sandbox: `/` answers "hello from PID", `/stream` sends a line
/// every 100 ms forever, `/ws` is a WebSocket echo (stdlib only).
const APP: &str = r#"cat > /tmp/app.py <<'PY'
import base64, hashlib, http.server, os, socketserver, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/ws":
            key = self.headers["Sec-WebSocket-Key"]
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101); self.send_header("Upgrade", "websocket"); self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", acc); self.end_headers(); self.wfile.flush()
            while True:
                h = self.rfile.read(2)
                if len(h) < 2: return
                n = h[1] & 127
                if n == 126: n = int.from_bytes(self.rfile.read(2), "big")
                mask = self.rfile.read(4); data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                self.wfile.write(bytes([0x81, len(data)]) + data); self.wfile.flush()
        elif self.path == "/stream":
            self.send_response(200); self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            i = 0
            while True:
                line = ("line %d\n" % i).encode(); i += 1
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line)); self.wfile.flush(); time.sleep(0.1)
        else:
            body = ("hello from %d" % os.getpid()).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("0.0.0.0", 8000), H).serve_forever()
PY
nohup python3 /tmp/app.py >/dev/null 2>&1 &"#;

async fn start_app(api: &Api, sbx: &Value) {
    api.sh(sbx, APP).await;
    for _ in 0..100 {
        if api.sh(sbx, "python3 -c \"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8000/').status)\" 2>/dev/null").await.trim() == "200" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("app did not start");
}

fn by_host(s: &Server, sbx: &Value, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(format!("{}{path}", s.url)).header("host", format!("8000-{}.localhost", id(sbx)))
}

fn by_header(s: &Server, sbx: &Value, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .get(format!("{}{path}", s.url))
        .header("e2b-sandbox-id", id(sbx))
        .header("e2b-sandbox-port", "8000")
}

/// A WebSocket round trip over a raw TCP connection to the proxy.
fn websocket_echo(s: &Server, sbx: &Value, text: &str) -> String {
    let addr = s.url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /ws HTTP/1.1\r\nHost: 8000-{}.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        id(sbx)
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "accept key passes through: {head}");
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.write_all(&frame).unwrap();
    let mut hdr = [0u8; 2];
    c.read_exact(&mut hdr).unwrap();
    let mut data = vec![0u8; (hdr[1] & 127) as usize];
    c.read_exact(&mut data).unwrap();
    String::from_utf8(data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_answer_by_host_and_header_are_cut_at_pause_and_come_back() {
    let s = Server::start("ports");
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300})).await;
    start_app(&api, &sbx).await;

    let r = by_host(&s, &sbx, "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let hello = r.text().await.unwrap();
    assert!(hello.starts_with("hello from "), "{hello}");
    assert_eq!(by_header(&s, &sbx, "/").send().await.unwrap().text().await.unwrap(), hello);
    assert_eq!(websocket_echo(&s, &sbx, "ping over websocket"), "ping over websocket");

    // A streaming client is cut at pause (not left hanging), and gets no clean end.
    let mut stream = by_host(&s, &sbx, "/stream").send().await.unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("line 0"));
    let reader = tokio::spawn(async move {
        let mut lines = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.chunk()).await {
                Ok(Ok(Some(_))) => lines += 1,
                Ok(Ok(None)) => return (lines, "clean end"),
                Ok(Err(_)) => return (lines, "cut"),
                Err(_) => return (lines, "hung"),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.pause(&id(&sbx)).await, 204);
    let (lines, how) = reader.await.unwrap();
    assert_eq!(how, "cut", "the open connection must be disconnected at pause (after {lines} lines)");
    // While paused: 502.
    let r = by_host(&s, &sbx, "/").send().await.unwrap();
    assert_eq!(r.status(), 502);
    // After resume: the same URL, the same server process.
    assert_eq!(api.connect(&id(&sbx), json!({})).await.0, 201);
    let r = by_host(&s, &sbx, "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), hello, "after resume the same process answers");
    assert_eq!(websocket_echo(&s, &sbx, "again"), "again");
    api.kill(&id(&sbx)).await;
}

#[tokio::test]
async fn auto_resume_on_http_and_traffic_token_only_without_public_traffic() {
    let s = Server::start("portar");
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300, "autoResume": {"enabled": true}})).await;
    start_app(&api, &sbx).await;
    let hello = by_host(&s, &sbx, "/").send().await.unwrap().text().await.unwrap();
    assert_eq!(api.pause(&id(&sbx)).await, 204);
    let r = by_host(&s, &sbx, "/").send().await.unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, 200, "the request resumes the sandbox and is served: {body}");
    assert_eq!(body, hello);
    assert_eq!(api.state(&id(&sbx)).await.as_deref(), Some("running"));

    // `secure` guards the agent, not the ports (SDK releases create every sandbox secure).
    let sec = api.create(json!({"timeout": 300, "secure": true})).await;
    start_app(&api, &sec).await;
    assert!(sec["trafficAccessToken"].is_null(), "{sec}");
    assert_eq!(by_host(&s, &sec, "/").send().await.unwrap().status(), 200);
    // network.allowPublicTraffic: false: the ports need the traffic token.
    let closed = api.create(json!({"timeout": 300, "secure": true, "network": {"allowPublicTraffic": false}})).await;
    start_app(&api, &closed).await;
    let token = closed["trafficAccessToken"].as_str().expect("a closed sandbox gets a traffic token").to_string();
    assert_eq!(by_host(&s, &closed, "/").send().await.unwrap().status(), 403);
    let r = by_host(&s, &closed, "/").header("e2b-traffic-access-token", &token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for s in [&sbx, &sec, &closed] {
        api.kill(&id(s)).await;
    }
}

/// A network namespace of the test's own, with an HTTP server at 198.18.R.2:8080: the
/// benchmarking range (RFC 2544), which sandboxes reach as they reach the internet
/// (private ranges are closed by default, `hardening_network.rs`).
struct TestServerNs {
    name: String,
    ip: String,
    server: std::process::Child,
}

impl TestServerNs {
    /// An HTTP server on port 8080.
    fn start() -> Self {
        Self::start_serving(|ip| {
            vec![
                "/usr/bin/python3".into(),
                "-m".into(),
                "http.server".into(),
                "--bind".into(),
                ip.into(),
                "8080".into(),
            ]
        })
    }

    /// `server(ip)`: the command that listens on `ip`:8080 in the namespace.
    fn start_serving(server: impl FnOnce(&str) -> Vec<String>) -> Self {
        // Tests of this file run at once: each server gets its own subnet and names.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = ((std::process::id() + n * 53) % 200) as u8 + 20;
        let name = format!("stasistest{r}");
        let (host_if, ip) = (format!("sttest{r}"), format!("198.18.{r}.2"));
        let sh = |cmd: &str| {
            let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().unwrap();
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip link add {host_if} type veth peer name eth0 netns {name}"));
        sh(&format!("ip addr add 198.18.{r}.1/30 dev {host_if} && ip link set {host_if} up"));
        sh(&format!(
            "ip -n {name} addr add {ip}/30 dev eth0 && ip -n {name} link set eth0 up && ip -n {name} link set lo up"
        ));
        sh(&format!("ip -n {name} route add default via 198.18.{r}.1"));
        let server = std::process::Command::new("ip")
            .args(["netns", "exec", &name])
            .args(server(&ip))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("{ip}:8080").parse().unwrap();
        common::wait_for("the test server in its namespace", || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        TestServerNs { name, ip, server }
    }
}

impl Drop for TestServerNs {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

async fn reach(api: &Api, sbx: &Value, url: &str) -> bool {
    let cmd = format!("python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=3).status)\" 2>/dev/null || echo blocked");
    api.sh(sbx, &cmd).await.trim() == "200"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_follows_the_policy_and_sandboxes_cannot_reach_each_other() {
    let s = Server::start("netpol");
    let api = Api::new(&s);
    let srv = TestServerNs::start();
    let url = format!("http://{}:8080/", srv.ip);
    let subnet = format!("{}/30", srv.ip.rsplit_once('.').map(|(a, _)| format!("{a}.0")).unwrap());

    let open = api.create(json!({"timeout": 120})).await;
    let closed = api.create(json!({"timeout": 120, "allow_internet_access": false})).await;
    let allowed =
        api.create(json!({"timeout": 120, "allow_internet_access": false, "network": {"allowOut": [subnet]}})).await;
    let denied = api.create(json!({"timeout": 120, "network": {"denyOut": [format!("{}/32", srv.ip)]}})).await;
    assert!(reach(&api, &open, &url).await, "default policy reaches the test server");
    assert!(!reach(&api, &closed, &url).await, "allow_internet_access=false must block");
    assert!(reach(&api, &allowed, &url).await, "allowOut opens a CIDR even with internet off");
    assert!(!reach(&api, &denied, &url).await, "denyOut blocks a CIDR");
    // The policy survives pause/resume.
    assert_eq!(api.pause(&id(&closed)).await, 204);
    assert_eq!(api.connect(&id(&closed), json!({})).await.0, 201);
    assert!(!reach(&api, &closed, &url).await, "policy lost across pause/resume");
    assert_eq!(api.pause(&id(&open)).await, 204);
    assert_eq!(api.connect(&id(&open), json!({})).await.0, 201);
    assert!(reach(&api, &open, &url).await, "network lost across pause/resume");

    // Two sandboxes: b cannot reach a's server, by the shared address or a's transit one.
    start_app(&api, &open).await;
    assert!(!reach(&api, &denied, "http://169.254.0.21:8000/").await, "169.254.0.21 is each sandbox itself");
    let transit = api.sh(&open, "python3 -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.connect(('10.99.0.1',9));print(s.getsockname()[0])\"").await;
    assert_eq!(transit.trim(), "169.254.0.21", "every sandbox has the same address");
    assert!(!reach(&api, &denied, "http://10.200.0.2:8000/").await);
    assert!(!reach(&api, &denied, "http://10.200.0.6:8000/").await);
    // Bad CIDRs are refused up front.
    let (st, body) =
        api.call(reqwest::Method::POST, "/v2/sandboxes", Some(json!({"network": {"denyOut": ["not-a-cidr"]}}))).await;
    assert_eq!(st, 400, "{body}");
    for sbx in [&open, &closed, &allowed, &denied] {
        api.kill(&id(sbx)).await;
    }
}

/// A sandbox of a warm template (restored from the capture of its booted service, as the
/// code interpreter's are) has an eth0 and follows its own policy, as a booted one does:
/// the capture used to hold loopback only, and so did every copy made from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_of_a_warm_template_reach_the_network_by_their_own_policy() {
    let host = Host::new("netwarm");
    host.template(
        "svc",
        &json!({
            "name": "svc",
            "start": {"cmd": "exec python3 -m http.server --bind 127.0.0.1 8123", "user": "user"},
            "ready": {"port": 8123, "path": "/", "timeoutSecs": 60},
        }),
    );
    let s = Server::start_on(host, &[]);
    let api = Api::new(&s);
    let srv = TestServerNs::start();
    let url = format!("http://{}:8080/", srv.ip);
    let open = api.create(json!({"templateID": "svc", "timeout": 120})).await;
    let closed = api.create(json!({"templateID": "svc", "timeout": 120, "allow_internet_access": false})).await;
    // Both were made from the capture (a memory snapshot `tpl...`), not booted.
    let snaps = std::fs::read_dir(s.host.data_dir.join("snapshots")).unwrap();
    assert!(snaps.flatten().any(|e| e.file_name().to_string_lossy().starts_with("tpl")), "no warm capture");
    assert_eq!(api.sh(&open, "grep -c eth0 /proc/net/dev").await.trim(), "1");
    assert!(reach(&api, &open, &url).await, "a warm template's sandbox reaches the test server");
    assert!(!reach(&api, &closed, &url).await, "allow_internet_access=false must block");
    assert_eq!(api.pause(&id(&open)).await, 204);
    assert_eq!(api.connect(&id(&open), json!({})).await.0, 201);
    assert!(reach(&api, &open, &url).await, "network lost across pause/resume");
    for sbx in [&open, &closed] {
        api.kill(&id(sbx)).await;
    }
}

#[tokio::test]
async fn https_with_the_local_ca_and_raw_tcp_through_connect() {
    let host = common::Host::new("tls");
    let out = host.stasis(&["tls", "init", "--data-dir", host.data_dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Server::start_on(host, &["--tls-listen", &format!("127.0.0.1:{tls_port}")]);
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300})).await;
    start_app(&api, &sbx).await;
    common::wait_for("TLS listener", || common::listening(("127.0.0.1", tls_port)));

    // https://{port}-{id}.{domain} verified against the CA `stasis tls init` made.
    let name = format!("8000-{}.localhost", id(&sbx));
    let ca = s.host.data_dir.join("tls/ca.pem");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", ca.to_str().unwrap()])
        .args(["--resolve", &format!("{name}:{tls_port}:127.0.0.1"), &format!("https://{name}:{tls_port}/")])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl over TLS failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("hello from "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same certificate does not verify for another domain.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", ca.to_str().unwrap()])
        .args([
            "--resolve",
            &format!("8000-x.example.test:{tls_port}:127.0.0.1"),
            &format!("https://8000-x.example.test:{tls_port}/"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a certificate for another name must not verify");

    // Raw TCP (not HTTP) through CONNECT.
    api.sh(
        &sbx,
        r#"cat > /tmp/echo.py <<'PY'
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 9000)); s.listen()
while True:
    c, _ = s.accept()
    data = c.recv(1024)
    c.sendall(b"echo:" + data); c.close()
PY
nohup python3 /tmp/echo.py >/dev/null 2>&1 &"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let sid = id(&sbx);
    let reply = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "CONNECT 9000-{sid}.localhost:9000 HTTP/1.1\r\nHost: 9000-{sid}.localhost:9000\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
        c.write_all(b"raw bytes\x00\x01").unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert_eq!(reply, b"echo:raw bytes\x00\x01");
    api.kill(&id(&sbx)).await;
}

/// The tag of the gateway pool of the daemon `pid`: the lock file it holds open.
fn pool_tag(pid: u32) -> String {
    let mut found = None;
    common::wait_for("the daemon's gateway pool lock", || {
        found = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten().find_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let name = target.file_name()?.to_str()?.to_string();
            Some(name.strip_prefix("gateway-pool-")?.strip_suffix(".lock")?.to_string())
        });
        found.is_some()
    });
    found.unwrap()
}

/// Transit indexes of the ready gateways of pool `tag` (`stasisp-TAG-INDEX`).
fn pool_entries(tag: &str) -> Vec<u32> {
    let prefix = format!("stasisp-{tag}-");
    let mut v: Vec<u32> = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn net_index(s: &Server, sbx: &Value) -> u32 {
    let rec: Value = serde_json::from_slice(
        &std::fs::read(s.host.data_dir.join("sandboxes").join(id(sbx)).join("record.json")).unwrap(),
    )
    .unwrap();
    rec["netIndex"].as_u64().expect("a sandbox with a network has a transit index") as u32
}

/// Issue 19: a create takes a ready gateway from the pool (renamed to the sandbox, with
/// the sandbox's own policy, not the default one the gateway was built with), and no
/// ready gateway outlives its daemon: a crashed daemon's are removed by the next start,
/// a stopped one removes its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_gateways_serve_creates_with_their_own_policy_and_never_outlive_their_daemon() {
    let s = Server::start("gwpool");
    let api = Api::new(&s);
    let srv = TestServerNs::start();
    let url = format!("http://{}:8080/", srv.ip);
    let tag = pool_tag(s.pid());
    assert!(pool_entries(&tag).is_empty(), "nothing is built before a create asks");

    let open = api.create(json!({"timeout": 300})).await;
    common::wait_for("a ready gateway after the first create", || !pool_entries(&tag).is_empty());
    let before = pool_entries(&tag);
    let closed = api.create(json!({"timeout": 300, "allow_internet_access": false})).await;
    let taken = net_index(&s, &closed);
    assert!(before.contains(&taken), "the create took a ready gateway: index {taken}, ready {before:?}");
    assert!(!pool_entries(&tag).contains(&taken), "a taken gateway leaves the pool");
    assert!(std::path::Path::new(&format!("/run/netns/stasis-{}", id(&closed))).exists(), "renamed to its sandbox");
    assert!(reach(&api, &open, &url).await, "the default policy reaches the test server");
    assert!(!reach(&api, &closed, &url).await, "a pooled gateway follows the sandbox's policy, not the default");
    assert_eq!(api.pause(&id(&closed)).await, 204);
    assert_eq!(api.connect(&id(&closed), json!({})).await.0, 201);
    assert!(!reach(&api, &closed, &url).await, "and keeps it across pause and resume");

    // A crash leaves the ready gateways; the next start removes them.
    common::wait_for("a ready gateway again", || !pool_entries(&tag).is_empty());
    let host = s.crash();
    assert!(!pool_entries(&tag).is_empty());
    let s = Server::start_on(host, &[]);
    let api = Api::new(&s);
    assert!(pool_entries(&tag).is_empty(), "a dead daemon's ready gateways are removed at the next start");
    assert!(!std::path::Path::new(&format!("/run/stasis/gateway-pool-{tag}.lock")).exists());
    assert!(reach(&api, &open, &url).await, "a sandbox that took one is untouched");

    // A daemon that stops removes its own.
    let tag = pool_tag(s.pid());
    let third = api.create(json!({"timeout": 300})).await;
    common::wait_for("a ready gateway of the new daemon", || !pool_entries(&tag).is_empty());
    for sbx in [&open, &closed, &third] {
        api.kill(&id(sbx)).await;
    }
    let _host = s.terminate();
    assert!(pool_entries(&tag).is_empty(), "a stopped daemon leaves no ready gateway");
    assert!(!std::path::Path::new(&format!("/run/stasis/gateway-pool-{tag}.lock")).exists());
}

/// A TCP server outside the sandboxes: each connection gets "N\n" every 50 ms, N from 0.
const TICKER: &str = r#"
import socket, sys, threading, time
def tick(c):
    n = 0
    try:
        while True:
            c.sendall(b"%d\n" % n); n += 1; time.sleep(0.05)
    except OSError:
        pass
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 8080)); l.listen(8)
while True:
    c, _ = l.accept(); threading.Thread(target=tick, args=(c,), daemon=True).start()
"#;

/// In the sandbox: reads the ticker's lines, writes the last one to /tmp/tick, and
/// "GAP"/"CLOSED"/the error to /tmp/tick.err if a number is missing or the stream ends.
const TICK_READER: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], 8080), timeout=60)
want = 0
try:
    for line in s.makefile():
        n = int(line)
        if n != want:
            open("/tmp/tick.err", "w").write("GAP: %d after %d" % (n, want - 1)); sys.exit(1)
        want += 1
        open("/tmp/tick.tmp", "w").write(str(n)); __import__("os").rename("/tmp/tick.tmp", "/tmp/tick")
    open("/tmp/tick.err", "w").write("CLOSED at %d" % want)
except Exception as e:
    open("/tmp/tick.err", "w").write("%r at %d" % (e, want))
"#;

async fn last_tick(api: &Api, sbx: &Value) -> (i64, String) {
    let out = api.sh(sbx, "cat /tmp/tick 2>/dev/null || echo -1; echo; cat /tmp/tick.err 2>/dev/null").await;
    let mut lines = out.lines();
    let n = lines.next().unwrap_or("-1").trim().parse().unwrap_or(-1);
    (n, lines.collect::<Vec<_>>().join(" ").trim().to_string())
}

/// Issue 19: a TCP connection from a sandbox to a server outside survives pause and
/// resume with every byte: what the server sent while the sandbox was being dumped or
/// paused arrives after the resume, in order, nothing missing (the gateway holds the
/// sandbox's traffic during the dump and the restore instead of CRIU's iptables lock,
/// the sandbox's link is made in place at restore, and it keeps its transit address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_tcp_stream_survives_pause_and_resume_without_losing_a_byte() {
    let s = Server::start("tcpkeep");
    let api = Api::new(&s);
    let srv = TestServerNs::start_serving(|ip| vec!["/usr/bin/python3".into(), "-c".into(), TICKER.into(), ip.into()]);
    let sbx = api.create(json!({"timeout": 300})).await;
    api.sh(
        &sbx,
        &format!(
            "cat > /tmp/reader.py <<'PY'\n{TICK_READER}\nPY\nnohup python3 /tmp/reader.py {} >/dev/null 2>&1 &",
            srv.ip
        ),
    )
    .await;
    let mut seen = -1;
    for _ in 0..100 {
        seen = last_tick(&api, &sbx).await.0;
        if seen >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 5, "the sandbox reads the ticker");
    for cycle in 0..3 {
        let (before, err) = last_tick(&api, &sbx).await;
        assert!(err.is_empty(), "cycle {cycle}: {err}");
        assert_eq!(api.pause(&id(&sbx)).await, 204);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(api.connect(&id(&sbx), json!({})).await.0, 201);
        // 2 s paused is ~40 lines sent meanwhile: they all come, then more.
        let mut after = (before, String::new());
        for _ in 0..300 {
            after = last_tick(&api, &sbx).await;
            if after.0 >= before + 60 || !after.1.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(after.1.is_empty(), "cycle {cycle}: the stream broke: {}", after.1);
        assert!(after.0 >= before + 60, "cycle {cycle}: the stream did not go on: {} then {}", before, after.0);
    }
    api.kill(&id(&sbx)).await;
}
