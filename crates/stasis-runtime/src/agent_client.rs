//! A small envd client: runs a command in a sandbox over any byte stream to its agent
//! (a socket the runtime made in the sandbox's network namespace, or a tunnel through
//! `stasis serve`). Used by the CLI, the template builder (build steps, with their output
//! streamed) and the ready check of a template (`readyCmd`). The SDKs are the real clients.

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

/// A command to run: `cmd` is a shell line.
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

/// Starts `cmd` (run by `/bin/bash -l -c`) and collects its output until it ends.
pub async fn run(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    cmd: &str,
    user: Option<&str>,
    envs: HashMap<String, String>,
    extra_headers: &[(&str, String)],
) -> Result<CommandOutput> {
    let c = Command { cmd: cmd.into(), user: user.map(str::to_string), envs, ..Default::default() };
    run_streaming(io, &c, extra_headers, |_, _| {}).await
}

/// Runs `c`, calling `on_output` with each chunk of its output as it comes, and returns
/// the whole output with the exit code when it ends.
pub async fn run_streaming(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    c: &Command,
    extra_headers: &[(&str, String)],
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<CommandOutput> {
    let (cmd, args) = if c.portable_shell {
        ("/bin/sh", vec!["-c".to_string(), PORTABLE.to_string(), "sh".to_string(), c.cmd.clone()])
    } else {
        ("/bin/bash", vec!["-l".to_string(), "-c".to_string(), c.cmd.clone()])
    };
    let req = pb::StartRequest {
        process: Some(pb::ProcessConfig { cmd: cmd.into(), args, envs: c.envs.clone(), cwd: c.cwd.clone() }),
        pty: None,
        tag: None,
        stdin: Some(false),
    };
    let body = encode_envelope(0, &serde_json::to_vec(&req)?);
    let mut headers: Vec<(&str, String)> = extra_headers.to_vec();
    if let Some(u) = &c.user {
        use base64::Engine;
        headers.push((
            "authorization",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:"))),
        ));
    }
    let resp = post(io, "/process.Process/Start", "application/connect+json", body, &headers).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        bail!("sandbox answered {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    let mut body = resp.into_body();
    let mut dec = EnvelopeDecoder::new();
    let mut out = CommandOutput::default();
    let mut ended = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        dec.push(&data);
        while let Some(env) = dec.next_frame()? {
            match decode_stream_message::<pb::StartResponse>(&env)? {
                StreamFrame::Message(m) => {
                    use pb::process_event::{data_event::Output, Event};
                    match m.event.and_then(|e| e.event) {
                        Some(Event::Start(s)) => out.pid = s.pid,
                        Some(Event::Data(d)) => match d.output {
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
                        Some(Event::End(e)) => {
                            out.exit_code = e.exit_code;
                            out.status = e.status;
                            ended = true;
                        }
                        _ => {}
                    }
                }
                StreamFrame::End(Ok(())) => {
                    if !ended {
                        bail!("stream ended without an end event");
                    }
                    return Ok(out);
                }
                StreamFrame::End(Err(e)) => return Err(anyhow!("envd: {e}")),
            }
        }
    }
    bail!("envd stream closed before its end frame")
}
