//! Issue 13, item 6: a sandbox with internet access does not reach what is around the
//! host: cloud metadata (169.254.169.254), private and shared ranges, the host's own
//! addresses, nor what the host publishes on them with DNAT, unless its `allowOut` names
//! the range (the host's own addresses never). A running sandbox's policy can be changed
//! (`PUT /sandboxes/{id}/network`), and the change outlives a pause. Every server here
//! lives in a network namespace (or on a dummy address) the test makes; nothing leaves
//! the machine.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::api::{id, Api};
use common::Server;
use serde_json::{json, Value};

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A namespace answering HTTP on :8080 at 10.97.R.2 (RFC 1918), 100.64.R.2 (RFC 6598) and
/// 169.254.169.254 (what a cloud's metadata service is), routed from the host; and on the
/// host an address 198.51.100.R (TEST-NET-2: a "public" address of the host) with a
/// local server on :8081 and a DNAT of :18080 to the namespace, as Docker publishes a
/// container's port.
struct Around {
    r: u8,
    servers: Vec<Child>,
}

impl Around {
    fn start() -> Self {
        // Distinct per test of this binary too (they run side by side).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = ((std::process::id() * 7 + n * 101) % 200) as u8 + 20;
        let a = Around { r, servers: vec![] };
        a.cleanup();
        let (ns, hi, dummy) = (a.ns(), format!("steg{r}h"), format!("stegd{r}"));
        sh(&format!("ip netns add {ns}"));
        sh(&format!("ip link add {hi} type veth peer name eth0 netns {ns}"));
        sh(&format!("ip addr add 10.97.{r}.1/30 dev {hi} && ip link set {hi} up"));
        // The metadata address is routed to the test's namespace before anything is sent.
        sh(&format!("ip route add 169.254.169.254/32 dev {hi} && ip route add 100.64.{r}.2/32 dev {hi}"));
        sh(&format!(
            "ip -n {ns} addr add 10.97.{r}.2/30 dev eth0 && ip -n {ns} addr add 100.64.{r}.2/32 dev eth0 && \
             ip -n {ns} addr add 169.254.169.254/32 dev eth0 && ip -n {ns} link set eth0 up && \
             ip -n {ns} link set lo up && ip -n {ns} route add default via 10.97.{r}.1"
        ));
        // A veth left alone as a stand-in for a dummy device (not every kernel has one).
        sh(&format!(
            "ip link add {dummy} type veth peer name {dummy}p && ip addr add 198.51.100.{r}/32 dev {dummy} && \
             ip link set {dummy} up && ip link set {dummy}p up"
        ));
        let nft = format!(
            "table ip stasistest{r} {{\n chain pre {{\n  type nat hook prerouting priority -100;\n  \
             ip daddr 198.51.100.{r} tcp dport 18080 dnat to 10.97.{r}.2:8080\n }}\n}}\n"
        );
        sh(&format!("printf '{nft}' | nft -f -"));
        let mut a = a;
        let server = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        a.servers.push(server(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "/usr/bin/python3",
            "-m",
            "http.server",
            "8080",
        ])));
        a.servers.push(server(Command::new("/usr/bin/python3").args([
            "-m",
            "http.server",
            "--bind",
            &format!("198.51.100.{r}"),
            "8081",
        ])));
        for addr in [format!("10.97.{r}.2:8080"), format!("198.51.100.{r}:8081")] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            common::wait_for("the test's servers", || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
        }
        a
    }

    fn ns(&self) -> String {
        format!("stasisteg{}", self.r)
    }

    fn cleanup(&self) {
        let r = self.r;
        for cmd in [
            format!("nft delete table ip stasistest{r}"),
            format!("ip route del 169.254.169.254/32 dev steg{r}h"),
            format!("ip link del stegd{r}"),
            format!("ip link del steg{r}h"),
            format!("ip netns del {}", self.ns()),
        ] {
            let _ = Command::new("sh").arg("-c").arg(cmd).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Around {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.cleanup();
    }
}

/// The tests here share host routes (169.254.169.254 goes to one `Around`): one at a time.
static AROUND: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn reach(api: &Api, sbx: &Value, url: &str) -> bool {
    let cmd = format!("python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=3).status)\" 2>/dev/null || echo blocked");
    api.sh(sbx, &cmd).await.trim() == "200"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_sandbox_reaches_no_metadata_private_range_or_host_address() {
    let _one_at_a_time = AROUND.lock().await;
    let s = Server::start("egress");
    let api = Api::new(&s);
    let around = Around::start();
    let r = around.r;
    let metadata = "http://169.254.169.254:8080/".to_string();
    let private = format!("http://10.97.{r}.2:8080/");
    let shared = format!("http://100.64.{r}.2:8080/");
    let published = format!("http://198.51.100.{r}:18080/");
    let host_local = format!("http://198.51.100.{r}:8081/");

    let open = api.create(json!({"timeout": 300})).await;
    let allowed = api
        .create(json!({"timeout": 300, "network": {"allowOut": ["169.254.169.254/32", format!("10.97.{r}.0/30"), format!("198.51.100.{r}/32")]}}))
        .await;
    for url in [&metadata, &private, &shared, &published, &host_local] {
        assert!(!reach(&api, &open, url).await, "a default sandbox reaches {url}");
    }
    // `allowOut` opens a range on purpose; the host's own addresses stay closed.
    assert!(reach(&api, &allowed, &metadata).await, "allowOut must open the metadata address");
    assert!(reach(&api, &allowed, &private).await, "allowOut must open a private range");
    assert!(!reach(&api, &allowed, &shared).await, "only what allowOut names");
    assert!(!reach(&api, &allowed, &published).await, "a DNAT-published host port is never reachable");
    assert!(!reach(&api, &allowed, &host_local).await, "a host address is never reachable");
    // The same after a pause and resume (the gateway is rebuilt).
    assert_eq!(api.pause(&id(&open)).await, 204);
    assert_eq!(api.connect(&id(&open), json!({})).await.0, 201);
    assert!(!reach(&api, &open, &metadata).await, "policy lost across pause/resume");
    for sbx in [&open, &allowed] {
        api.kill(&id(sbx)).await;
    }
}

/// `updateNetwork` / Novita's `setNetwork` on a running sandbox: its gateway's rules are
/// replaced at once, kept through a pause and resume (the gateway is rebuilt from the
/// record), and an update that clears them closes the range again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sandbox_gets_a_new_policy_that_outlives_a_pause() {
    let _one_at_a_time = AROUND.lock().await;
    let s = Server::start("egress-update");
    let api = Api::new(&s);
    let around = Around::start();
    let r = around.r;
    let private = format!("http://10.97.{r}.2:8080/");
    let metadata = "http://169.254.169.254:8080/".to_string();
    let sbx = api.create(json!({"timeout": 300})).await;
    let sid = id(&sbx);
    let path = format!("/sandboxes/{sid}/network");
    assert!(!reach(&api, &sbx, &private).await, "closed by default");

    let (status, body) =
        api.call(reqwest::Method::PUT, &path, Some(json!({"allowOut": [format!("10.97.{r}.0/30")]}))).await;
    assert_eq!(status, 204, "{body}");
    assert!(reach(&api, &sbx, &private).await, "the update opens the range at once");
    assert!(!reach(&api, &sbx, &metadata).await, "only what allowOut names");

    assert_eq!(api.pause(&sid).await, 204);
    assert_eq!(api.connect(&sid, json!({})).await.0, 201);
    assert!(reach(&api, &sbx, &private).await, "the updated policy is the one a resume rebuilds");

    // A paused sandbox takes the change too; its resume applies it.
    assert_eq!(api.pause(&sid).await, 204);
    let (status, _) = api.call(reqwest::Method::PUT, &path, Some(json!({}))).await;
    assert_eq!(status, 204);
    assert_eq!(api.connect(&sid, json!({})).await.0, 201);
    assert!(!reach(&api, &sbx, &private).await, "cleared while paused, closed after the resume");

    let (status, body) = api.call(reqwest::Method::PUT, &path, Some(json!({"allowOut": ["not-a-cidr"]}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(!reach(&api, &sbx, &private).await, "a refused update changes nothing");
    api.kill(&sid).await;
}
