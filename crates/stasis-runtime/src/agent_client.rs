//! A small envd client: runs commands in a sandbox over any byte stream to its agent
//! (a socket the runtime made in the sandbox's network namespace, or a tunnel through
//! `stasis serve`). Used by the CLI (`exec`, `exec -it`), the template builder (build
//! steps, with their output streamed) and a template's ready check (`readyCmd`). The SDKs
//! are the real clients.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use stasis_proto::connect::{decode_stream_message, encode_envelope, EnvelopeDecoder, StreamFrame};
use stasis_proto::process as pb;
use tokio::io::{AsyncRead, AsyncWrite};

/// What a finished command produced.
#[derive(Debug, Default, Clone)]
pub struct CommandOutput {
    pub pid: u32,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub status: String,
}

/// Which of a command's streams a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A build step or ready check to run: `cmd` is a shell line.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub cmd: String,
    /// `None`: envd's default user.
    pub user: Option<String>,
    pub envs: HashMap<String, String>,
    pub cwd: Option<String>,
    /// Run by `/bin/sh` (bash when the image has it, as `bash -c`) instead of `bash -l -c`:
    /// for images without bash (busybox, alpine) and without login scripts.
    pub portable_shell: bool,
}

/// `sh -c` that hands the line to bash when there is one (build steps are written for
/// bash, as with E2B), else runs it itself.
const PORTABLE: &str = "if command -v bash >/dev/null 2>&1; then exec bash -c \"$1\"; else exec sh -c \"$1\"; fi";

async fn post(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    path: &str,
    content_type: &str,
    body: Bytes,
    headers: &[(&str, String)],
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.context("envd handshake")?;
    tokio::spawn(conn);
    let mut req = hyper::Request::post(path).header("content-type", content_type).header("host", "envd");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = sender.send_request(req.body(Full::new(body))?).await.context("envd request")?;
    Ok(resp)
}

/// A shell command line, run by `/bin/bash -l -c` (the SDKs' `commands.run`).
pub fn shell(cmd: &str, envs: HashMap<String, String>) -> pb::ProcessConfig {
    pb::ProcessConfig { cmd: "/bin/bash".into(), args: vec!["-l".into(), "-c".into(), cmd.into()], envs, cwd: None }
}

/// A program and its arguments, as given (no shell parses them), found on the login
/// `PATH`: a login bash `exec`s it with `"$0" "$@"`, so no argument is ever re-split.
pub fn argv(argv: &[String], envs: HashMap<String, String>) -> pb::ProcessConfig {
    let mut args = vec!["-l".into(), "-c".into(), r#"exec "$0" "$@""#.into()];
    args.extend(argv.iter().cloned());
    pb::ProcessConfig { cmd: "/bin/bash".into(), args, envs, cwd: None }
}

/// `Authorization: Basic` naming the user a process runs as.
pub fn user_header(user: &str) -> (&'static str, String) {
    use base64::Engine;
    ("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))))
}

/// Starts `process` and collects its output until it ends.
pub async fn run(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    process: pb::ProcessConfig,
    user: Option<&str>,
    extra_headers: &[(&str, String)],
) -> Result<CommandOutput> {
    let req = pb::StartRequest { process: Some(process), pty: None, tag: None, stdin: Some(false) };
    let mut headers: Vec<(&str, String)> = extra_headers.to_vec();
    headers.extend(user.map(user_header));
    collect(io, &req, &headers, |_, _| {}).await
}

/// Runs `c`, calling `on_output` with each chunk of its output as it comes, and returns
/// the whole output with the exit code when it ends.
pub async fn run_streaming(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    c: &Command,
    extra_headers: &[(&str, String)],
    on_output: impl FnMut(Stream, &[u8]),
) -> Result<CommandOutput> {
    let mut process = if c.portable_shell {
        let args = vec!["-c".to_string(), PORTABLE.to_string(), "sh".to_string(), c.cmd.clone()];
        pb::ProcessConfig { cmd: "/bin/sh".into(), args, envs: c.envs.clone(), cwd: None }
    } else {
        shell(&c.cmd, c.envs.clone())
    };
    process.cwd = c.cwd.clone();
    let req = pb::StartRequest { process: Some(process), pty: None, tag: None, stdin: Some(false) };
    let mut headers: Vec<(&str, String)> = extra_headers.to_vec();
    headers.extend(c.user.as_deref().map(user_header));
    collect(io, &req, &headers, on_output).await
}

/// Runs `req` to its end, handing each chunk of output to `on_output`, and returns it all.
async fn collect(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    req: &pb::StartRequest,
    headers: &[(&str, String)],
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<CommandOutput> {
    let mut out = CommandOutput::default();
    start(io, req, headers, |event| {
        use pb::process_event::{data_event::Output, Event};
        match event {
            Event::Start(s) => out.pid = s.pid,
            Event::Data(d) => match d.output {
                Some(Output::Stdout(b)) | Some(Output::Pty(b)) => {
                    on_output(Stream::Stdout, &b);
                    out.stdout.push_str(&String::from_utf8_lossy(&b));
                }
                Some(Output::Stderr(b)) => {
                    on_output(Stream::Stderr, &b);
                    out.stderr.push_str(&String::from_utf8_lossy(&b));
                }
                None => {}
            },
            Event::End(e) => {
                out.exit_code = e.exit_code;
                out.status = e.status;
            }
            _ => {}
        }
    })
    .await?;
    Ok(out)
}

/// Starts a process as `req` says and hands each of its events to `on_event` until it
/// ends (an end event, then the stream's end frame).
pub async fn start(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    req: &pb::StartRequest,
    headers: &[(&str, String)],
    mut on_event: impl FnMut(pb::process_event::Event),
) -> Result<()> {
    let body = encode_envelope(0, &serde_json::to_vec(req)?);
    let resp = post(io, "/process.Process/Start", "application/connect+json", body, headers).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        bail!("sandbox answered {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    let mut body = resp.into_body();
    let mut dec = EnvelopeDecoder::new();
    let mut ended = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        dec.push(&data);
        while let Some(env) = dec.next_frame()? {
            match decode_stream_message::<pb::StartResponse>(&env)? {
                StreamFrame::Message(m) => {
                    if let Some(event) = m.event.and_then(|e| e.event) {
                        ended |= matches!(event, pb::process_event::Event::End(_));
                        on_event(event);
                    }
                }
                StreamFrame::End(Ok(())) => {
                    if !ended {
                        bail!("stream ended without an end event");
                    }
                    return Ok(());
                }
                StreamFrame::End(Err(e)) => return Err(anyhow!("envd: {e}")),
            }
        }
    }
    bail!("envd stream closed before its end frame")
}

/// A unary envd call (`SendInput`, `Update`...) with a JSON body, over `io`.
pub async fn unary(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    path: &str,
    body: &impl serde::Serialize,
    headers: &[(&str, String)],
) -> Result<()> {
    let resp = post(io, path, "application/json", Bytes::from(serde_json::to_vec(body)?), headers).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        bail!("sandbox answered {status} to {path}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(())
}
