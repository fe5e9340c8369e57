//! `stasis sandbox exec ID [-i] [-t] [--user U] -- CMD [ARG...]`, as `docker exec`: the
//! command is argv (no shell re-splits it); a single argument is still run by a login
//! shell, so `exec ID 'cd /tmp && ls'` keeps working. `-i` streams stdin to it, `-t` runs
//! it on a terminal (the PTY API): the local terminal goes raw, Ctrl-C reaches the
//! sandbox as a keystroke, a window resize resizes the sandbox's terminal, and the exit
//! code is the command's.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use stasis_proto::process as pb;
use tokio::io::AsyncReadExt;

use super::envd_target::EnvdTarget;
use super::sandbox::Api;
use super::terminal;
use stasis_runtime::agent_client as envd_client;

#[derive(clap::Args)]
pub struct ExecArgs {
    id: String,
    #[arg(long)]
    user: Option<String>,
    /// Keep stdin open and send it to the command.
    #[arg(short, long)]
    interactive: bool,
    /// Run the command on a terminal (PTY) in the sandbox.
    #[arg(short, long)]
    tty: bool,
    /// The command and its arguments (one argument: a shell command line).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// What the process exits with, for ours: its code, or 128 when it has none (killed).
fn exit_code(code: i32) -> u8 {
    if code < 0 {
        128
    } else {
        code.min(255) as u8
    }
}

fn process(command: &[String]) -> pb::ProcessConfig {
    match command {
        [one] => envd_client::shell(one, Default::default()),
        argv => envd_client::argv(argv, Default::default()),
    }
}

pub async fn run(api: &Api, as_json: bool, a: ExecArgs) -> Result<u8> {
    let target = EnvdTarget::of(api, &a.id, a.user.as_deref()).await?;
    if a.interactive || a.tty {
        return interactive(&target, process(&a.command), a.tty).await;
    }
    let out = envd_client::run(target.connect().await?, process(&a.command), None, &target.headers).await?;
    if as_json {
        let v = json!({"stdout": out.stdout, "stderr": out.stderr, "exitCode": out.exit_code, "status": out.status});
        println!("{v}");
    } else {
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
    }
    Ok(exit_code(out.exit_code))
}

/// Runs the process with stdin streamed to it (and on a PTY with `tty`) until it ends.
async fn interactive(target: &EnvdTarget, process: pb::ProcessConfig, tty: bool) -> Result<u8> {
    let size = terminal::size();
    let pty = tty.then_some(pb::Pty { size: Some(pb::pty::Size { cols: size.0, rows: size.1 }) });
    let req = pb::StartRequest { process: Some(process), pty, tag: None, stdin: Some(true) };
    // Raw only when our stdin is a terminal (a pipe has no mode); restored on drop.
    let _raw = if tty { terminal::RawMode::enter() } else { None };
    let (pid_tx, pid_rx) = tokio::sync::watch::channel(None::<u32>);
    let mut code = 0;
    let output = envd_client::start(target.connect().await?, &req, &target.headers, |event| {
        use pb::process_event::{data_event::Output, Event};
        match event {
            Event::Start(s) => {
                let _ = pid_tx.send(Some(s.pid));
            }
            Event::Data(d) => match d.output {
                Some(Output::Stdout(b)) | Some(Output::Pty(b)) => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&b).and_then(|()| o.flush());
                }
                Some(Output::Stderr(b)) => {
                    let _ = std::io::stderr().write_all(&b);
                }
                None => {}
            },
            Event::End(e) => code = e.exit_code,
            _ => {}
        }
    });
    let input = async {
        let mut rx = pid_rx.clone();
        let pid = loop {
            if let Some(pid) = *rx.borrow_and_update() {
                break pid;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        };
        let sent = tokio::select! {
            r = forward_stdin(target, pid, tty) => r,
            r = forward_resizes(target, pid), if tty => r,
        };
        // Our input ended: the command goes on until it ends by itself.
        sent?;
        std::future::pending::<Result<()>>().await
    };
    let result = tokio::select! {
        r = output => r,
        r = input => r,
    };
    drop(_raw);
    result.map(|()| exit_code(code))
}

fn selector(pid: u32) -> Option<pb::ProcessSelector> {
    Some(pb::ProcessSelector { selector: Some(pb::process_selector::Selector::Pid(pid)) })
}

/// Local stdin to the process: as keystrokes on its terminal, or to its stdin (closed at
/// our end of input; a terminal gets nothing more, as when typing stops).
async fn forward_stdin(target: &EnvdTarget, pid: u32, tty: bool) -> Result<()> {
    use pb::process_input::Input;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stdin.read(&mut buf).await?;
        if n == 0 {
            if !tty {
                let req = pb::CloseStdinRequest { process: selector(pid) };
                envd_client::unary(target.connect().await?, "/process.Process/CloseStdin", &req, &target.headers)
                    .await?;
            }
            return Ok(());
        }
        let data = buf[..n].to_vec();
        let input = if tty { Input::Pty(data) } else { Input::Stdin(data) };
        let req = pb::SendInputRequest { process: selector(pid), input: Some(pb::ProcessInput { input: Some(input) }) };
        envd_client::unary(target.connect().await?, "/process.Process/SendInput", &req, &target.headers).await?;
    }
}

/// Each local window resize to the sandbox's terminal.
async fn forward_resizes(target: &EnvdTarget, pid: u32) -> Result<()> {
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    while winch.recv().await.is_some() {
        let (cols, rows) = terminal::size();
        let req = pb::UpdateRequest {
            process: selector(pid),
            pty: Some(pb::Pty { size: Some(pb::pty::Size { cols, rows }) }),
        };
        envd_client::unary(target.connect().await?, "/process.Process/Update", &req, &target.headers).await?;
    }
    Ok(())
}
