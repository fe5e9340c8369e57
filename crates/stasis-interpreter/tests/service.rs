//! The service against real kernels: ipykernel (with numpy, pandas, matplotlib),
//! bash_kernel and Deno, found through `STASIS_INTERP_TEST_KERNELS` (a kernelspec dir as
//! `scripts/interpreter-dev-env.sh` makes it; the Python next to the kernels' `argv` must
//! also hold the PyPI SDK, and `sdk-js/` beside the dir the npm SDKs). Without it the test
//! fails, saying so: CI sets it.
//!
//! One service for the whole file (kernels take seconds to start on two cores), with
//! authentication on (a digest file) and a fake envd for the sandbox-wide envs. Then the
//! real SDKs (`tests/sdk/`) run against it, through `E2B_SANDBOX_URL`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const TOKEN: &str = "test-token-1";

struct Service {
    child: Child,
    url: String,
    digest_file: PathBuf,
    _dir: tempfile::TempDir,
    cwd: PathBuf,
    kernels: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGTERM: the service kills its kernels' process groups on the way out.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn kernels_dir() -> PathBuf {
    let Some(dir) = std::env::var_os("STASIS_INTERP_TEST_KERNELS") else {
        panic!(
            "STASIS_INTERP_TEST_KERNELS is not set: this test needs real Jupyter kernels. \
             Run scripts/interpreter-dev-env.sh and export the STASIS_INTERP_TEST_KERNELS it prints."
        )
    };
    let dir = PathBuf::from(dir);
    assert!(dir.join("python3/kernel.json").is_file(), "no python3 kernelspec in {}", dir.display());
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_digest(file: &Path, token: &str) {
    let hex: String = Sha512::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{hex}\n")).unwrap();
    std::fs::rename(tmp, file).unwrap();
}

/// A fake envd answering `GET /envs` for our token only.
async fn fake_envd() -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/envs",
        get(|h: axum::http::HeaderMap| async move {
            if h.get("x-access-token").and_then(|v| v.to_str().ok()) == Some(TOKEN) {
                (axum::http::StatusCode::OK, r#"{"SANDBOX_WIDE":"yes","FOO":"sandbox"}"#)
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, "bad token")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn start(envd_url: &str) -> (Service, Duration) {
    let kernels = kernels_dir();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("home");
    std::fs::create_dir(&cwd).unwrap();
    let digest_file = dir.path().join("access-token.sha512");
    write_digest(&digest_file, TOKEN);
    let port = free_port();
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_stasis-interpreter"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--kernels-dir")
        .arg(&kernels)
        .arg("--default-cwd")
        .arg(&cwd)
        .arg("--token-digest-file")
        .arg(&digest_file)
        .args(["--envd-url", envd_url])
        .arg("--python-dir")
        .arg(&python_dir)
        .arg("--runtime-dir")
        .arg(dir.path().join("run"))
        .env("STASIS_LOG", "info")
        .stdin(Stdio::null())
        .spawn()
        .expect("start stasis-interpreter");
    let svc = Service { child, url: format!("http://127.0.0.1:{port}"), digest_file, _dir: dir, cwd, kernels };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = client.get(format!("{}/health", svc.url)).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the service was not ready within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (svc, started.elapsed())
}

/// One run: its lines, each with when it arrived.
async fn run(svc: &Service, body: Value) -> Vec<(Duration, Value)> {
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{body}: {}", resp.text().await.unwrap_or_default());
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.unwrap());
        while let Some(at) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=at).collect();
            let v: Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            lines.push((started.elapsed(), v));
        }
    }
    assert!(buf.is_empty(), "a partial last line: {buf:?}");
    assert_eq!(lines.last().map(|l| l.1.clone()), Some(json!({"type": "end_of_execution"})), "{body}");
    lines
}

async fn lines(svc: &Service, body: Value) -> Vec<Value> {
    run(svc, body).await.into_iter().map(|(_, v)| v).collect()
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

fn main_text(lines: &[Value]) -> Option<String> {
    lines
        .iter()
        .find(|l| l["type"] == "result" && l["is_main_result"] == true)
        .and_then(|l| l["text"].as_str())
        .map(String::from)
}

fn stdout(lines: &[Value]) -> String {
    of_type(lines, "stdout").iter().map(|l| l["text"].as_str().unwrap()).collect()
}

fn no_error(lines: &[Value]) {
    assert!(of_type(lines, "error").is_empty(), "unexpected error: {lines:?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_against_real_kernels() {
    let envd = fake_envd().await;
    let (svc, ready_in) = start(&envd).await;
    let rss = rss_kib(svc.child.id());
    println!("ready in {} ms; idle service RSS {} KiB", ready_in.as_millis(), rss);
    let http = reqwest::Client::new();

    // --- auth -------------------------------------------------------------------------
    let exec = |token: Option<&str>| {
        let mut r = http.post(format!("{}/execute", svc.url)).json(&json!({"code": "1"}));
        if let Some(t) = token {
            r = r.header("x-access-token", t);
        }
        r.send()
    };
    assert_eq!(exec(None).await.unwrap().status(), 401, "no token");
    assert_eq!(exec(Some("wrong")).await.unwrap().status(), 401, "wrong token");
    std::fs::remove_file(&svc.digest_file).unwrap();
    let r = exec(Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 503, "no digest file");
    assert_eq!(r.text().await.unwrap(), "authentication unavailable");
    write_digest(&svc.digest_file, "rotated");
    assert_eq!(exec(Some(TOKEN)).await.unwrap().status(), 401, "the old token after a rotation");
    write_digest(&svc.digest_file, TOKEN);
    assert_eq!(exec(Some(TOKEN)).await.unwrap().status(), 200);

    // --- streaming, state, counts ------------------------------------------------------
    let timed = run(&svc, json!({"code": "import time\nprint('a', flush=True)\ntime.sleep(1.5)\nprint('b')"})).await;
    let at = |text: &str| timed.iter().find(|(_, l)| l["type"] == "stdout" && l["text"] == text).unwrap().0;
    assert!(at("b\n") - at("a\n") > Duration::from_secs(1), "stdout is streamed, not buffered: {timed:?}");
    assert!(timed.iter().all(|(_, l)| l["type"] != "stdout" || l["timestamp"].is_string()));

    let first = lines(&svc, json!({"code": "x = 41", "context_id": null, "language": null, "env_vars": null})).await;
    no_error(&first);
    assert_eq!(main_text(&first), None);
    let second = lines(&svc, json!({"code": "x + 1"})).await;
    assert_eq!(main_text(&second).as_deref(), Some("42"));
    let n1 = first.iter().find(|l| l["type"] == "number_of_executions").unwrap()["execution_count"].as_u64().unwrap();
    let n2 = second.iter().find(|l| l["type"] == "number_of_executions").unwrap()["execution_count"].as_u64().unwrap();
    assert_eq!(n2, n1 + 1);
    let s = lines(&svc, json!({"code": "'quoted'", "language": "python"})).await;
    assert_eq!(main_text(&s).as_deref(), Some("quoted"), "string results lose their quotes (E2B)");

    // --- errors -------------------------------------------------------------------------
    let err = lines(&svc, json!({"code": "1 / 0"})).await;
    let e = of_type(&err, "error");
    assert_eq!(e.len(), 1, "{err:?}");
    assert_eq!(e[0]["name"], "ZeroDivisionError");
    assert_eq!(e[0]["value"], "division by zero");
    let tb = e[0]["traceback"].as_str().unwrap();
    assert!(tb.contains("ZeroDivisionError") && !tb.contains('\u{1b}'), "plain traceback: {tb:?}");

    // --- matplotlib: PNG and a line chart ----------------------------------------------
    let plot = lines(
        &svc,
        json!({"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [2, 4, 8], label='growth')\n\
                       plt.title('Growth'); plt.xlabel('day (d)'); plt.ylabel('count')\nplt.legend()\nplt.show()"}),
    )
    .await;
    no_error(&plot);
    let figs: Vec<&Value> = of_type(&plot, "result").into_iter().filter(|r| r["png"].is_string()).collect();
    assert_eq!(figs.len(), 1, "{plot:?}");
    assert!(figs[0]["png"].as_str().unwrap().len() > 1000);
    assert_eq!(figs[0]["is_main_result"], false);
    let chart = &figs[0]["chart"];
    assert_eq!(chart["type"], "line", "{chart}");
    assert_eq!(
        (chart["title"].as_str(), chart["x_label"].as_str(), chart["x_unit"].as_str()),
        (Some("Growth"), Some("day (d)"), Some("d"))
    );
    assert_eq!(chart["x_scale"], "linear");
    assert_eq!(chart["elements"], json!([{"label": "growth", "points": [[1.0, 2.0], [2.0, 4.0], [3.0, 8.0]]}]));

    // --- pandas -------------------------------------------------------------------------
    let df = lines(&svc, json!({"code": "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', None]})"})).await;
    let r = of_type(&df, "result");
    assert_eq!(r.len(), 1, "{df:?}");
    assert!(r[0]["html"].as_str().unwrap().contains("<table"));
    assert_eq!(r[0]["data"], json!({"a": [1, 2], "b": ["x", null]}));
    assert_eq!(r[0]["is_main_result"], true);

    // --- env vars: per run, restored; the sandbox's from envd ---------------------------
    let with = lines(
        &svc,
        json!({"code": "import os; os.environ.get('RUN_ONLY') == 'it\\'s \"here\"\\n'",
               "env_vars": {"RUN_ONLY": "it's \"here\"\n"}}),
    )
    .await;
    assert_eq!(main_text(&with).as_deref(), Some("True"), "quotes and newlines arrive intact: {with:?}");
    let after = lines(&svc, json!({"code": "os.environ.get('RUN_ONLY', 'gone')"})).await;
    assert_eq!(main_text(&after).as_deref(), Some("gone"));
    let wide = lines(&svc, json!({"code": "os.environ.get('SANDBOX_WIDE')"})).await;
    assert_eq!(main_text(&wide).as_deref(), Some("yes"), "envd's envs reach the kernel");
    let over = lines(&svc, json!({"code": "os.environ['FOO']", "env_vars": {"FOO": "run"}})).await;
    assert_eq!(main_text(&over).as_deref(), Some("run"));
    let back = lines(&svc, json!({"code": "os.environ['FOO']"})).await;
    assert_eq!(main_text(&back).as_deref(), Some("sandbox"), "a run's value gives way to the sandbox's again");
    let bad = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "1", "env_vars": {"NOT OK": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // --- JavaScript, TypeScript and Bash ----------------------------------------------------
    let js = lines(&svc, json!({"code": "console.log('from js')\nconst a = 20\na * 2 + 2", "language": "js"})).await;
    assert_eq!((stdout(&js).as_str(), main_text(&js).as_deref()), ("from js\n", Some("42")), "{js:?}");
    let js_env = lines(&svc, json!({"code": "Deno.env.get('JS_RUN') + process.cwd()", "language": "javascript", "env_vars": {"JS_RUN": "v:"}})).await;
    assert_eq!(main_text(&js_env), Some(format!("v:{}", svc.cwd.display())), "{js_env:?}");
    let ts = lines(&svc, json!({"code": "const n: number = 6\nn * 7", "language": "ts"})).await;
    assert_eq!(main_text(&ts).as_deref(), Some("42"), "{ts:?}");
    let bash = lines(
        &svc,
        json!({"code": "echo \"$BASH_RUN $SANDBOX_WIDE\"; pwd", "language": "bash", "env_vars": {"BASH_RUN": "b'1"}}),
    )
    .await;
    assert_eq!(stdout(&bash), format!("b'1 yes\n{}\n", svc.cwd.display()), "{bash:?}");
    let bash2 = lines(&svc, json!({"code": "echo ${BASH_RUN:-unset}", "language": "bash"})).await;
    assert_eq!(stdout(&bash2), "unset\n");
    let unknown = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "1", "language": "cobol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("not available"));

    // --- a client that leaves mid-run interrupts it; the context keeps its state ----------
    let long = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "import time\nwhile True: time.sleep(0.1)"}))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    if let Ok(resp) = long {
        let mut s = resp.bytes_stream();
        while let Some(Ok(_)) = s.next().await {}
    }
    let t = Instant::now();
    let next = lines(&svc, json!({"code": "x + 1"})).await;
    assert_eq!(main_text(&next).as_deref(), Some("42"), "{next:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "the next run waited {:?}", t.elapsed());
    // The same for Deno (interrupted by message: SIGINT would kill it).
    let _ = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "while (true) {}", "language": "js"}))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.bytes());
    let js_next = lines(&svc, json!({"code": "a", "language": "js"})).await;
    assert_eq!(main_text(&js_next).as_deref(), Some("20"), "{js_next:?}");

    // --- runs in one context wait for each other; contexts run side by side --------------
    let side: Value =
        http.post(format!("{}/contexts", svc.url)).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let nap = |ctx: Option<&str>| {
        let body = match ctx {
            Some(id) => json!({"code": "import time; time.sleep(1.5)", "context_id": id}),
            None => json!({"code": "import time; time.sleep(1.5)"}),
        };
        lines(&svc, body)
    };
    let t = Instant::now();
    tokio::join!(nap(None), nap(side["id"].as_str()));
    let apart = t.elapsed();
    let t = Instant::now();
    tokio::join!(nap(None), nap(None));
    let together = t.elapsed();
    assert!(apart < Duration::from_millis(2800), "two contexts ran one after the other: {apart:?}");
    assert!(together >= Duration::from_secs(3), "two runs in one context overlapped: {together:?}");
    http.delete(format!("{}/contexts/{}", svc.url, side["id"].as_str().unwrap())).send().await.unwrap();

    // --- an awaiting Deno run: interrupted, or (if Deno ignores it) its kernel replaced
    // after the grace period; either way the context answers the next run -----------------
    let _ = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "await new Promise((r) => setTimeout(r, 120000))", "language": "js"}))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map(|r| r.bytes());
    let t = Instant::now();
    let after = lines(&svc, json!({"code": "typeof a", "language": "js"})).await;
    let kept = main_text(&after);
    assert!(matches!(kept.as_deref(), Some("number") | Some("undefined")), "{after:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "waited {:?}", t.elapsed());
    println!(
        "awaiting Deno run: state {} after {:?}",
        if kept.as_deref() == Some("number") { "kept" } else { "lost (kernel replaced)" },
        t.elapsed()
    );

    // --- contexts -------------------------------------------------------------------------
    let other = tempfile::tempdir().unwrap();
    let created: Value = http
        .post(format!("{}/contexts", svc.url))
        .json(&json!({"language": "python", "cwd": other.path()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!((created["language"].as_str(), created["cwd"].as_str()), (Some("python"), other.path().to_str()));
    let listed: Vec<Value> = http.get(format!("{}/contexts", svc.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.last().unwrap()["id"], id.as_str(), "listed last: {listed:?}");
    assert!(listed.iter().any(|c| c["language"] == "python") && listed.iter().any(|c| c["language"] == "javascript"));
    let cwd = lines(&svc, json!({"code": "import os; y = 5; os.getcwd()", "context_id": id})).await;
    assert_eq!(main_text(&cwd).as_deref(), other.path().to_str());
    let both = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "1", "context_id": id, "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let default_x = lines(&svc, json!({"code": "'x' in globals()", "context_id": id})).await;
    assert_eq!(main_text(&default_x).as_deref(), Some("False"), "contexts do not share state");
    let r = http.post(format!("{}/contexts/{id}/restart", svc.url)).send().await.unwrap();
    assert!(r.status().is_success());
    let gone = lines(&svc, json!({"code": "y", "context_id": id})).await;
    assert_eq!(of_type(&gone, "error")[0]["name"], "NameError", "a restart forgets");
    assert!(http.delete(format!("{}/contexts/{id}", svc.url)).send().await.unwrap().status().is_success());
    let missing = http
        .post(format!("{}/execute", svc.url))
        .header("x-access-token", TOKEN)
        .json(&json!({"code": "1", "context_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(http.delete(format!("{}/contexts/{id}", svc.url)).send().await.unwrap().status(), 404);
    assert_eq!(http.post(format!("{}/contexts/{id}/restart", svc.url)).send().await.unwrap().status(), 404);

    // --- a kernel that dies: a clear error, then a fresh kernel -------------------------------
    let died = lines(&svc, json!({"code": "import os; os.kill(os.getpid(), 9)"})).await;
    let e = of_type(&died, "error");
    assert_eq!(e.len(), 1, "{died:?}");
    assert_eq!(e[0]["name"], "ContextRestarting");
    let fresh = lines(&svc, json!({"code": "'x' in globals()"})).await;
    assert_eq!(main_text(&fresh).as_deref(), Some("False"));

    // --- the real SDKs --------------------------------------------------------------------
    sdk_checks(&svc);
    println!("idle service RSS after the runs: {} KiB", rss_kib(svc.child.id()));
}

/// `python/tests/test_charts.py` (every chart type through the SDK's chart classes), then
/// `tests/sdk/check_python.py` and `check_js.mjs`: the PyPI and npm SDKs' `Sandbox`
/// objects run code against the service (their own request code and parsers).
fn sdk_checks(svc: &Service) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let spec: Value = serde_json::from_slice(&std::fs::read(svc.kernels.join("python3/kernel.json")).unwrap()).unwrap();
    let python = spec["argv"][0].as_str().unwrap().to_string();
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests/test_charts.py");
    let out = Command::new(&python).arg(charts).output().unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "chart schema test failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let envs = [("STASIS_TEST_URL", svc.url.as_str()), ("STASIS_TEST_TOKEN", TOKEN)];
    let out = Command::new(&python).arg(here.join("check_python.py")).envs(envs).output().unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "Python SDK check failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let sdk_js = svc.kernels.parent().unwrap().join("sdk-js");
    assert!(sdk_js.join("node_modules/@e2b/code-interpreter").is_dir(), "no npm SDKs in {}", sdk_js.display());
    let out = Command::new("node")
        .arg(here.join("check_js.mjs"))
        .envs(envs)
        .env("STASIS_TEST_SDK_JS", &sdk_js)
        .output()
        .expect("node");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "JS SDK check failed:\n{}", String::from_utf8_lossy(&out.stderr));
}
