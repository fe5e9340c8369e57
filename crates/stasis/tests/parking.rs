//! Issue 19 item 3: connections through the proxy that survive a pause (parked
//! connections, docs/architecture.md "Connections across a pause"). A WebSocket, a
//! streaming HTTP response and a raw TCP tunnel stay open while their sandbox pauses and
//! resumes; what the client sent while it was paused is delivered after; a kill or a
//! pause past the limit closes them cleanly; with parking off they are cut as before.
//! Traffic goes only to 127.0.0.1.

mod common;

use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// In the sandbox: on 8000 `/ws` is a WebSocket echo and `/count` streams the lines
/// `0`..`79`, one every 100 ms (chunked); on 9000 a raw TCP line echo.
const APP: &str = r#"cat > /tmp/app.py <<'PY'
import base64, hashlib, http.server, socket, socketserver, threading, time
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
                mask = self.rfile.read(4); data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                self.wfile.write(bytes([0x81, len(data)]) + data); self.wfile.flush()
        elif self.path == "/count":
            self.send_response(200); self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            for i in range(80):
                line = ("%d\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line)); self.wfile.flush(); time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n"); self.wfile.flush()
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
def echo(c):
    while True:
        d = c.recv(4096)
        if not d: c.close(); return
        c.sendall(d)
def raw():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 9000)); s.listen()
    while True:
        c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
threading.Thread(target=raw, daemon=True).start()
S(("0.0.0.0", 8000), H).serve_forever()
PY
nohup python3 /tmp/app.py >/dev/null 2>&1 &"#;

async fn start_app(api: &Api, sbx: &Value) {
    api.sh(sbx, APP).await;
    let ready = api.sh(sbx, "for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/9000) 2>/dev/null && ss -ltn | grep -q :8000 && { echo up; break; }; sleep 0.1; done").await;
    assert_eq!(ready.trim(), "up", "the app listens");
}

fn addr(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// Reads up to the blank line after the headers.
async fn read_head(c: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), c.read_line(&mut line)).await.expect("head").unwrap();
        assert!(n > 0, "connection closed in the head: {head}");
        head.push_str(&line);
        if line == "\r\n" {
            return head;
        }
    }
}

/// A raw TCP tunnel to `port` (CONNECT).
async fn tunnel(s: &Server, sid: &str, port: u16) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(addr(s)).await.unwrap());
    let host = format!("{port}-{sid}.localhost:{port}");
    c.get_mut().write_all(format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c
}

async fn websocket(s: &Server, sid: &str) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(addr(s)).await.unwrap());
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: 8000-{sid}.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    c.get_mut().write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c
}

async fn ws_send(c: &mut BufReader<TcpStream>, text: &str) {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.get_mut().write_all(&f).await.unwrap();
}

async fn ws_recv(c: &mut BufReader<TcpStream>) -> String {
    let mut h = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(60), c.read_exact(&mut h)).await.expect("a WebSocket message").unwrap();
    let mut data = vec![0u8; (h[1] & 127) as usize];
    c.read_exact(&mut data).await.unwrap();
    String::from_utf8(data).unwrap()
}

async fn line(c: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(60), c.read_line(&mut l)).await.expect("a line").unwrap();
    l
}

/// Whether the connection ends (EOF or reset) within `within`.
async fn closes(c: &mut BufReader<TcpStream>, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(tokio::time::timeout(within, c.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// The body of a chunked response, chunk by chunk, until its end or the connection's.
async fn chunked_lines(mut c: BufReader<TcpStream>) -> Vec<String> {
    let mut body = Vec::new();
    loop {
        let size = line(&mut c).await;
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        let mut chunk = vec![0u8; n + 2];
        c.read_exact(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(body).unwrap().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_stream_and_tunnel_survive_pause_and_resume() {
    let s = Server::start_on(common::Host::new("park"), &["--park-connections=2m"]);
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300})).await;
    let sid = id(&sbx);
    start_app(&api, &sbx).await;

    let mut ws = websocket(&s, &sid).await;
    ws_send(&mut ws, "before").await;
    assert_eq!(ws_recv(&mut ws).await, "before");
    let mut raw = tunnel(&s, &sid, 9000).await;
    raw.get_mut().write_all(b"one\n").await.unwrap();
    assert_eq!(line(&mut raw).await, "one\n");
    let mut count = BufReader::new(TcpStream::connect(addr(&s)).await.unwrap());
    count
        .get_mut()
        .write_all(format!("GET /count HTTP/1.1\r\nHost: 8000-{sid}.localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut count).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let counted = tokio::spawn(chunked_lines(count));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(api.pause(&sid).await, 204);
    // Sent while the sandbox is paused: kept by the proxy, delivered after the resume.
    ws_send(&mut ws, "while paused").await;
    raw.get_mut().write_all(b"two\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.state(&sid).await.as_deref(), Some("paused"));
    let (status, body) = api.connect(&sid, json!({"timeout": 300})).await;
    assert!(status == 200 || status == 201, "connect: {status} {body}");

    assert_eq!(
        ws_recv(&mut ws).await,
        "while paused",
        "the message sent while paused is echoed on the same connection"
    );
    ws_send(&mut ws, "after").await;
    assert_eq!(ws_recv(&mut ws).await, "after");
    assert_eq!(line(&mut raw).await, "two\n");
    raw.get_mut().write_all(b"three\n").await.unwrap();
    assert_eq!(line(&mut raw).await, "three\n");
    let lines = tokio::time::timeout(Duration::from_secs(60), counted).await.expect("the stream ends").unwrap();
    let expected: Vec<String> = (0..80).map(|i| i.to_string()).collect();
    assert_eq!(lines, expected, "the stream goes on after the resume, no line lost or repeated");

    // A second pause and resume, on the same connections.
    assert_eq!(api.pause(&sid).await, 204);
    ws_send(&mut ws, "again").await;
    api.connect(&sid, json!({"timeout": 300})).await;
    assert_eq!(ws_recv(&mut ws).await, "again");

    // A kill closes a parked connection cleanly.
    assert_eq!(api.pause(&sid).await, 204);
    assert_eq!(api.kill(&sid).await, 204);
    assert!(closes(&mut raw, Duration::from_secs(10)).await, "a kill closes the parked tunnel");
    assert!(closes(&mut ws, Duration::from_secs(10)).await, "a kill closes the parked WebSocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sandbox_choice_limit_and_auto_resume() {
    // The server parks nothing by default: sandboxes opt in with their metadata.
    let s = Server::start("parkopt");
    let api = Api::new(&s);
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v2/sandboxes",
            Some(json!({"metadata": {"stasis_park_connections": "sometimes"}})),
        )
        .await;
    assert_eq!(status, 400, "a bad value is refused: {body}");
    assert!(body["message"].as_str().unwrap().contains("stasis_park_connections"), "{body}");

    // Off (the default): cut at pause, as before.
    let plain = api.create(json!({"timeout": 300})).await;
    start_app(&api, &plain).await;
    let mut raw = tunnel(&s, &id(&plain), 9000).await;
    raw.get_mut().write_all(b"x\n").await.unwrap();
    assert_eq!(line(&mut raw).await, "x\n");
    assert_eq!(api.pause(&id(&plain)).await, 204);
    assert!(closes(&mut raw, Duration::from_secs(10)).await, "without parking a pause cuts the tunnel");

    // A limit of 2 s: a longer pause closes the client cleanly.
    let short = api.create(json!({"timeout": 300, "metadata": {"stasis_park_connections": "2s"}})).await;
    start_app(&api, &short).await;
    let mut raw = tunnel(&s, &id(&short), 9000).await;
    // The limit counts from the pause's start (when the leg is dropped).
    let started = std::time::Instant::now();
    assert_eq!(api.pause(&id(&short)).await, 204);
    assert!(closes(&mut raw, Duration::from_secs(15)).await, "the limit passed: closed");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the limit: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30), "at the limit: {:?}", started.elapsed());

    // Auto-resume: traffic on a parked connection resumes the sandbox and is answered.
    let auto = api
        .create(json!({"timeout": 300, "autoResume": {"enabled": true}, "metadata": {"stasis_park_connections": "on"}}))
        .await;
    start_app(&api, &auto).await;
    let mut ws = websocket(&s, &id(&auto)).await;
    ws_send(&mut ws, "hi").await;
    assert_eq!(ws_recv(&mut ws).await, "hi");
    assert_eq!(api.pause(&id(&auto)).await, 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.state(&id(&auto)).await.as_deref(), Some("paused"));
    ws_send(&mut ws, "wake up").await;
    assert_eq!(ws_recv(&mut ws).await, "wake up", "the parked connection's traffic resumed the sandbox");
    assert_eq!(api.state(&id(&auto)).await.as_deref(), Some("running"));

    for sbx in [&plain, &short, &auto] {
        api.kill(&id(sbx)).await;
    }
}

/// A sandbox whose agent has no relay (one paused by an older Stasis resumes with the
/// agent it ran) is served as without parking, not refused. The installed agent is used
/// when it predates the relay; once it has one, there is nothing to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_relay_is_served_as_before() {
    let old = std::path::Path::new("/usr/local/lib/stasis/stasis-agent");
    let has_relay = |p: &std::path::Path| {
        std::fs::read(p).map(|b| b.windows(b"/stasis/relay".len()).any(|w| w == b"/stasis/relay")).unwrap_or(true)
    };
    if has_relay(old) {
        eprintln!("skipped: {} has the relay (nothing older to check against)", old.display());
        return;
    }
    let s = Server::start_with_agent(common::Host::new("parkold"), &["--park-connections"], old);
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 300})).await;
    let sid = id(&sbx);
    start_app(&api, &sbx).await;
    let mut raw = tunnel(&s, &sid, 9000).await;
    raw.get_mut().write_all(b"old\n").await.unwrap();
    assert_eq!(line(&mut raw).await, "old\n");
    let mut ws = websocket(&s, &sid).await;
    ws_send(&mut ws, "old agent").await;
    assert_eq!(ws_recv(&mut ws).await, "old agent");
    // Not parked: cut at pause, as before.
    assert_eq!(api.pause(&sid).await, 204);
    assert!(closes(&mut raw, Duration::from_secs(10)).await);
    api.kill(&sid).await;
}

/// Auto-pause at the timeout, then auto-resume by the parked connection's own traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_paused_then_resumed_by_its_parked_traffic() {
    let s = Server::start_on(common::Host::new("parkauto"), &["--park-connections"]);
    let api = Api::new(&s);
    let sbx = api.create(json!({"timeout": 10, "autoPause": true, "autoResume": {"enabled": true}})).await;
    let sid = id(&sbx);
    start_app(&api, &sbx).await;
    let mut ws = websocket(&s, &sid).await;
    ws_send(&mut ws, "before").await;
    assert_eq!(ws_recv(&mut ws).await, "before");
    let mut paused = false;
    for _ in 0..120 {
        if api.state(&sid).await.as_deref() == Some("paused") {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(paused, "the timeout paused the sandbox");
    ws_send(&mut ws, "after the auto-pause").await;
    assert_eq!(ws_recv(&mut ws).await, "after the auto-pause");
    assert_eq!(api.state(&sid).await.as_deref(), Some("running"));
    api.kill(&sid).await;
}
