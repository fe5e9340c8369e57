//! The egress proxy applies a sandbox's `network.rules`: an HTTPS request to a matching
//! name leaves with the rule's header, its `${e2b.secrets.NAME}` filled from the Secret
//! store, and the value never enters the sandbox (docs/architecture.md, "Secrets and the
//! egress proxy").
//!
//! The destination is an HTTPS echo server in a network namespace the test makes, its
//! certificate from a test CA the server is given with `--egress-extra-root`. The echo
//! answers with a SHA-256 of the header it got, not the header: so the sandbox never
//! holds the value, and the test can still look for it in the sandbox's files, env and
//! memory images. The client is Python's `ssl` (which reads the system bundle, like
//! curl), connecting to the server's address with the
//! rule's name as SNI and Host (what `curl --resolve NAME:443:ADDR` does).

mod common;

use std::process::{Child, Command, Stdio};

use common::api::{id, Api};
use common::{Host, Server};
use serde_json::{json, Value};

fn sh(cmd: &str) {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

const MATCHED: &str = "api.egress.test";
const UNMATCHED: &str = "plain.egress.test";

/// A namespace with an HTTPS echo server on 10.98.R.2:443, routed from the host.
struct Echo {
    r: u8,
    certs: tempfile::TempDir,
    server: Option<Child>,
}

impl Echo {
    fn start() -> Self {
        let r = (std::process::id() % 200) as u8 + 20;
        let certs = tempfile::tempdir().unwrap();
        let mut e = Echo { r, certs, server: None };
        e.cleanup();
        let d = e.certs.path().display().to_string();
        sh(&format!(
            "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
             -out ca.pem -days 2 -subj '/CN=Stasis egress test CA' && \
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr \
             -subj '/CN={MATCHED}' && \
             printf 'subjectAltName=DNS:{MATCHED},DNS:{UNMATCHED}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext && \
             openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext"
        ));
        let (ns, hi) = (e.ns(), format!("steh{r}"));
        sh(&format!("ip netns add {ns}"));
        sh(&format!("ip link add {hi} type veth peer name eth0 netns {ns}"));
        sh(&format!("ip addr add 10.98.{r}.1/30 dev {hi} && ip link set {hi} up"));
        sh(&format!(
            "ip -n {ns} addr add 10.98.{r}.2/30 dev eth0 && ip -n {ns} link set eth0 up && \
             ip -n {ns} link set lo up && ip -n {ns} route add default via 10.98.{r}.1"
        ));
        e.server = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, "/usr/bin/python3", ECHO])
                .arg(e.addr())
                .arg(e.certs.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: std::net::SocketAddr = format!("{}:443", e.addr()).parse().unwrap();
        common::wait_for("the echo server", || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok()
        });
        e
    }

    fn ns(&self) -> String {
        format!("stasisegr{}", self.r)
    }

    fn addr(&self) -> String {
        format!("10.98.{}.2", self.r)
    }

    fn ca(&self) -> String {
        std::fs::read_to_string(self.certs.path().join("ca.pem")).unwrap()
    }

    fn cleanup(&self) {
        for cmd in [format!("ip link del steh{}", self.r), format!("ip netns del {}", self.ns())] {
            let _ = Command::new("sh").arg("-c").arg(cmd).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.cleanup();
    }
}

/// The HTTPS echo the SDK tests use too: it answers with a SHA-256 of the header.
const ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/egress/echo.py");

/// A GET of `https://NAME/` sent to `addr` from inside the sandbox, verified against
/// the system bundle (or `cafile`): `{"issuer": ..., "status": ..., "body": {...}}` or
/// `{"error": ...}` (shared with the SDK tests).
const CLIENT: &str = include_str!("../../../tests/e2e/egress/client.py");

async fn get(api: &Api, sbx: &Value, name: &str, addr: &str, cafile: Option<&str>) -> Value {
    let out = api.sh(sbx, &format!("python3 /tmp/client.py {name} {addr} {}", cafile.unwrap_or(""))).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("client printed {out:?}"))
}

fn sha256(s: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(format!("printf %s '{s}' | sha256sum")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Files under `dir` holding `needle` (binary files too: memory images).
fn files_holding(dir: &std::path::Path, needle: &str) -> String {
    let out = Command::new("grep").args(["-rla", "--", needle]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_set_secret_headers_on_https_and_the_secret_never_enters_the_sandbox() {
    let echo = Echo::start();
    let ca_file = echo.certs.path().join("ca.pem").display().to_string();
    let s = Server::start_on(Host::new("egress-secrets"), &["--egress-extra-root", &ca_file]);
    let api = Api::new(&s);
    let (first, second) = ("egr-first-7Q2vX9kz", "egr-second-Lm4pR8wd");

    let (status, body) =
        api.call(reqwest::Method::POST, "/secrets", Some(json!({"name": "egress-key", "value": first}))).await;
    assert_eq!(status, 201, "{body}");
    let rules = json!({MATCHED: [{"transform": {"headers": {"X-Api-Key": "Key ${e2b.secrets.egress-key}"}}}]});
    let net = json!({"allowOut": [format!("10.98.{}.0/30", echo.r)], "rules": rules});
    let t0 = std::time::Instant::now();
    let sbx = api.create(json!({"timeout": 300, "network": net})).await;
    let created_in = t0.elapsed();
    let sid = id(&sbx);
    let script =
        format!("cat > /tmp/client.py <<'EOF'\n{CLIENT}\nEOF\ncat > /tmp/test-ca.pem <<'EOF'\n{}EOF\n", echo.ca());
    api.sh(&sbx, &script).await;
    let addr = echo.addr();

    // A matching name: intercepted (the egress CA, trusted through the system bundle),
    // the rule's header replaces the sandbox's own, the sandbox's other headers pass.
    let t1 = std::time::Instant::now();
    let got = get(&api, &sbx, MATCHED, &addr, None).await;
    let first_request = t1.elapsed();
    assert_eq!(got["issuer"], "Stasis sandbox egress CA", "{got}");
    assert_eq!(got["status"], "200", "{got}");
    assert_eq!(got["body"]["key_sha256"], sha256(&format!("Key {first}")), "{got}");
    assert_eq!(got["body"]["mine"], "kept", "{got}");
    assert_eq!(got["body"]["host"], MATCHED, "{got}");

    // No matching rule: spliced untouched, the server's own certificate (only the test
    // CA is trusted here), the sandbox's header as it sent it.
    let got = get(&api, &sbx, UNMATCHED, &addr, Some("/tmp/test-ca.pem")).await;
    assert_eq!(got["issuer"], "Stasis egress test CA", "{got}");
    assert_eq!(got["body"]["key_sha256"], sha256("sandbox-own"), "{got}");

    // Python and Node are pointed at the bundle that holds the CA.
    let env = api.sh(&sbx, "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $NODE_EXTRA_CA_CERTS").await;
    assert_eq!(env.trim(), ["/etc/ssl/certs/ca-certificates.crt"; 3].join(" "));

    // A new version of the secret: the next request carries it.
    let (status, body) = api.call(reqwest::Method::POST, "/secrets/egress-key", Some(json!({"value": second}))).await;
    assert_eq!(status, 200, "{body}");
    let got = get(&api, &sbx, MATCHED, &addr, None).await;
    assert_eq!(got["body"]["key_sha256"], sha256(&format!("Key {second}")), "{got}");

    // Across a pause and resume (the listener is closed with the namespace and made
    // again; the CA is in the writable layer).
    assert_eq!(api.pause(&sid).await, 204);
    let (status, body) = api.connect(&sid, json!({})).await;
    assert_eq!(status, 201, "{body}");
    let got = get(&api, &sbx, MATCHED, &addr, None).await;
    assert_eq!(got["issuer"], "Stasis sandbox egress CA", "{got}");
    assert_eq!(got["body"]["key_sha256"], sha256(&format!("Key {second}")), "{got}");

    // An upstream that fails verification fails the sandbox's handshake: a rule for a
    // name the server's certificate does not cover.
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &format!("/sandboxes/{sid}/network"),
            Some(json!({"allowOut": [format!("10.98.{}.0/30", echo.r)], "rules": {"other.egress.test": rules[MATCHED].clone()}})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let got = get(&api, &sbx, "other.egress.test", &addr, None).await;
    assert!(got["error"].is_string(), "an unverified upstream must not be relayed: {got}");
    // The rule for the old name is gone with the update: spliced again.
    let got = get(&api, &sbx, MATCHED, &addr, Some("/tmp/test-ca.pem")).await;
    assert_eq!(got["issuer"], "Stasis egress test CA", "{got}");

    // Never in the sandbox: not in its environment, nor anywhere in its files (writable
    // layer, memory images of the pause), nor in the server's log.
    let env = api.sh(&sbx, "cat /proc/1/environ | tr '\\0' '\\n'; env").await;
    for v in [first, second] {
        assert!(!env.contains(v), "the secret is in the sandbox's environment");
        let dir = s.host.data_dir.join("sandboxes").join(&sid);
        assert_eq!(files_holding(&dir, v), "", "the secret is in the sandbox's files");
        assert!(!s.log().contains(v), "the secret is in the server's log");
    }
    let inside =
        api.sh(&sbx, &format!("grep -rl -e {first} -e {second} /etc /tmp /root /home 2>/dev/null; echo done")).await;
    assert_eq!(inside.trim(), "done", "{inside}");
    eprintln!("egress: create with rules {created_in:?}, first intercepted request {first_request:?}");
    api.kill(&sid).await;
}
