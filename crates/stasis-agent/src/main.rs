//! `stasis-agent boot CONFIG` (started by the host runtime) and `stasis-agent serve CONFIG`
//! (re-executed by the sandbox's PID 1 from inside the sandbox).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(config)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: stasis-agent boot|serve CONFIG_JSON");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "boot" => stasis_agent::boot::stage1(config),
        "serve" => stasis_agent::serve::run(config),
        other => Err(anyhow::anyhow!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stasis-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
