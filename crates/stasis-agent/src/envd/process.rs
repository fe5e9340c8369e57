//! `process.Process`: start, attach to, list, feed and signal processes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use stasis_proto::connect::{timeout_from_headers, Code, ConnectError, ProcessMethod};
use stasis_proto::process as pb;

use super::filesystem::fs::path;
use super::{auth, rpc, State};
use crate::supervisor::{ProcEvent, Process, ProcessSpec, PtySize};

/// Idle time after which a stream carries a keepalive event.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn dispatch(state: State, method: ProcessMethod, req: Request) -> Response {
    match method {
        ProcessMethod::Start => start(state, req).await,
        ProcessMethod::Connect => connect(state, req).await,
        ProcessMethod::List => rpc::unary(list(&state)),
        ProcessMethod::SendInput => rpc::unary(send_input(&state, req).await),
        ProcessMethod::StreamInput => stream_input(state, req).await,
        ProcessMethod::SendSignal => rpc::unary(send_signal(&state, req).await),
        ProcessMethod::CloseStdin => rpc::unary(close_stdin(&state, req).await),
        ProcessMethod::Update => rpc::unary(update(&state, req).await),
    }
}

fn io_error(e: std::io::Error) -> ConnectError {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => Code::NotFound,
        std::io::ErrorKind::AlreadyExists => Code::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => Code::PermissionDenied,
        std::io::ErrorKind::InvalidInput => Code::InvalidArgument,
        std::io::ErrorKind::BrokenPipe => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    ConnectError::new(code, e.to_string())
}

fn select(state: &State, sel: Option<&pb::ProcessSelector>) -> Result<Arc<Process>, ConnectError> {
    use pb::process_selector::Selector;
    match sel.and_then(|s| s.selector.as_ref()) {
        Some(Selector::Pid(pid)) => state
            .supervisor
            .get(*pid)
            .ok_or_else(|| ConnectError::not_found(format!("process with pid {pid} not found"))),
        Some(Selector::Tag(tag)) => state
            .supervisor
            .find_tag(tag)
            .ok_or_else(|| ConnectError::not_found(format!("process with tag {tag:?} not found"))),
        None => Err(ConnectError::invalid_argument("process selector (pid or tag) is required")),
    }
}

fn to_pb(ev: ProcEvent) -> pb::ProcessEvent {
    use pb::process_event::{data_event::Output, DataEvent, EndEvent, Event, StartEvent};
    let event = match ev {
        ProcEvent::Start { pid } => Event::Start(StartEvent { pid }),
        ProcEvent::Stdout(b) => Event::Data(DataEvent { output: Some(Output::Stdout(b.to_vec())) }),
        ProcEvent::Stderr(b) => Event::Data(DataEvent { output: Some(Output::Stderr(b.to_vec())) }),
        ProcEvent::Pty(b) => Event::Data(DataEvent { output: Some(Output::Pty(b.to_vec())) }),
        ProcEvent::End(info) => {
            Event::End(EndEvent { exit_code: info.exit_code, exited: info.exited, status: info.status, error: None })
        }
    };
    pb::ProcessEvent { event: Some(event) }
}

fn keepalive() -> pb::ProcessEvent {
    pb::ProcessEvent { event: Some(pb::process_event::Event::Keepalive(pb::process_event::KeepAlive {})) }
}

/// The events of `proc` as a stream, with keepalives while idle; with a deadline, the
/// process is killed when it passes and the stream ends with `deadline_exceeded`.
fn event_stream(
    proc: Arc<Process>,
    attach: bool,
    deadline: Option<Duration>,
) -> impl futures::Stream<Item = Result<pb::ProcessEvent, ConnectError>> + Send {
    async_stream::stream! {
        let until = deadline.map(|d| tokio::time::Instant::now() + d);
        let mut cursor = proc.output.cursor();
        if attach {
            yield Ok(to_pb(ProcEvent::Start { pid: proc.pid }));
        }
        loop {
            let batch = cursor.next_batch();
            let sleep_until = match until {
                Some(u) => u.min(tokio::time::Instant::now() + KEEPALIVE),
                None => tokio::time::Instant::now() + KEEPALIVE,
            };
            tokio::select! {
                evs = batch => {
                    if evs.is_empty() {
                        return;
                    }
                    for ev in evs {
                        if attach && matches!(ev, ProcEvent::Start { .. }) {
                            continue;
                        }
                        yield Ok(to_pb(ev));
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => {
                    if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(-(proc.pid as i32)),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        yield Err(ConnectError::deadline_exceeded("the command's timeout passed: it was killed"));
                        return;
                    }
                    yield Ok(keepalive());
                }
            }
        }
    }
}

async fn start(state: State, req: Request) -> Response {
    let deadline = match timeout_from_headers(req.headers()) {
        Ok(d) => d,
        Err(e) => return rpc::stream_error(e),
    };
    let user = match auth::user_name(req.headers(), None).and_then(|n| auth::lookup_user(&n)) {
        Ok(u) => u,
        Err(e) => return rpc::stream_error(e),
    };
    let r: pb::StartRequest = match rpc::read_stream_request(req).await {
        Ok(r) => r,
        Err(e) => return rpc::stream_error(e),
    };
    let Some(cfg) = r.process else {
        return rpc::stream_error(ConnectError::invalid_argument("process.cmd is required"));
    };
    if cfg.cmd.is_empty() {
        return rpc::stream_error(ConnectError::invalid_argument("process.cmd is required"));
    }
    let pty = r.pty.and_then(|p| p.size).map(|s| PtySize {
        cols: s.cols.clamp(1, u16::MAX as u32) as u16,
        rows: s.rows.clamp(1, u16::MAX as u32) as u16,
    });
    // A relative (or `~`) working directory is the user's home's, as paths are in the
    // filesystem API and in envd.
    let cwd = match cfg.cwd.filter(|c| !c.is_empty()).map(|c| path::resolve(&c, &user)).transpose() {
        Ok(c) => c.map(|p| p.to_string_lossy().into_owned()),
        Err(e) => return rpc::stream_error(e),
    };
    let spec = ProcessSpec {
        cmd: cfg.cmd,
        args: cfg.args,
        envs: cfg.envs.into_iter().collect(),
        cwd,
        user,
        pty,
        // Older SDKs do not send the field and expect stdin to be writable.
        stdin: r.stdin.unwrap_or(true),
        tag: r.tag,
    };
    match state.supervisor.spawn(spec) {
        Ok(proc) => rpc::stream(
            event_stream(proc, false, deadline).map(|r| r.map(|event| pb::StartResponse { event: Some(event) })),
        ),
        Err(e) => rpc::stream_error(io_error(e)),
    }
}

async fn connect(state: State, req: Request) -> Response {
    let r: pb::ConnectRequest = match rpc::read_stream_request(req).await {
        Ok(r) => r,
        Err(e) => return rpc::stream_error(e),
    };
    match select(&state, r.process.as_ref()) {
        Ok(proc) => rpc::stream(
            event_stream(proc, true, None).map(|r| r.map(|event| pb::ConnectResponse { event: Some(event) })),
        ),
        Err(e) => rpc::stream_error(e),
    }
}

fn list(state: &State) -> Result<pb::ListResponse, ConnectError> {
    let processes = state
        .supervisor
        .list()
        .into_iter()
        .map(|p| pb::ProcessInfo {
            config: Some(pb::ProcessConfig {
                cmd: p.spec.cmd.clone(),
                args: p.spec.args.clone(),
                envs: p.spec.envs.clone().into_iter().collect(),
                cwd: p.spec.cwd.clone(),
            }),
            pid: p.pid,
            tag: p.spec.tag.clone(),
        })
        .collect();
    Ok(pb::ListResponse { processes })
}

async fn write_input(proc: &Process, input: Option<pb::ProcessInput>) -> Result<(), ConnectError> {
    use pb::process_input::Input;
    match input.and_then(|i| i.input) {
        Some(Input::Stdin(b)) | Some(Input::Pty(b)) => proc.write_input(&b).await.map_err(io_error),
        None => Ok(()),
    }
}

async fn send_input(state: &State, req: Request) -> Result<pb::SendInputResponse, ConnectError> {
    let r: pb::SendInputRequest = rpc::read_unary(req).await?;
    let proc = select(state, r.process.as_ref())?;
    write_input(&proc, r.input).await?;
    Ok(pb::SendInputResponse {})
}

async fn send_signal(state: &State, req: Request) -> Result<pb::SendSignalResponse, ConnectError> {
    let r: pb::SendSignalRequest = rpc::read_unary(req).await?;
    let proc = select(state, r.process.as_ref())?;
    let sig = match pb::Signal::try_from(r.signal) {
        Ok(pb::Signal::Sigkill) => nix::sys::signal::Signal::SIGKILL,
        Ok(pb::Signal::Sigterm) => nix::sys::signal::Signal::SIGTERM,
        _ => return Err(ConnectError::invalid_argument(format!("unsupported signal {}", r.signal))),
    };
    state.supervisor.signal(proc.pid, sig).map_err(io_error)?;
    Ok(pb::SendSignalResponse {})
}

async fn close_stdin(state: &State, req: Request) -> Result<pb::CloseStdinResponse, ConnectError> {
    let r: pb::CloseStdinRequest = rpc::read_unary(req).await?;
    let proc = select(state, r.process.as_ref())?;
    proc.close_stdin().await;
    Ok(pb::CloseStdinResponse {})
}

async fn update(state: &State, req: Request) -> Result<pb::UpdateResponse, ConnectError> {
    let r: pb::UpdateRequest = rpc::read_unary(req).await?;
    let proc = select(state, r.process.as_ref())?;
    if let Some(size) = r.pty.and_then(|p| p.size) {
        proc.resize(PtySize {
            cols: size.cols.clamp(1, u16::MAX as u32) as u16,
            rows: size.rows.clamp(1, u16::MAX as u32) as u16,
        })
        .await
        .map_err(io_error)?;
    }
    Ok(pb::UpdateResponse {})
}

/// Client stream: a start message naming the process, then input messages.
async fn stream_input(state: State, req: Request) -> Response {
    use pb::stream_input_request::Event;
    use stasis_proto::connect::{decode_stream_message, EnvelopeDecoder, StreamFrame};
    let result: Result<pb::StreamInputResponse, ConnectError> = async {
        let mut body = req.into_body().into_data_stream();
        let mut decoder = EnvelopeDecoder::new();
        let mut target: Option<Arc<Process>> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ConnectError::new(Code::Canceled, format!("input stream: {e}")))?;
            decoder.push(&chunk);
            while let Some(env) = decoder.next_frame()? {
                let msg: pb::StreamInputRequest = match decode_stream_message(&env)? {
                    StreamFrame::Message(m) => m,
                    StreamFrame::End(_) => continue,
                };
                match msg.event {
                    Some(Event::Start(s)) => target = Some(select(&state, s.process.as_ref())?),
                    Some(Event::Data(d)) => {
                        let proc = target
                            .as_ref()
                            .ok_or_else(|| ConnectError::invalid_argument("input before the start message"))?;
                        write_input(proc, d.input).await?;
                    }
                    Some(Event::Keepalive(_)) | None => {}
                }
            }
        }
        decoder.finish()?;
        Ok(pb::StreamInputResponse {})
    }
    .await;
    rpc::stream(futures::stream::once(async move { result }))
}
