//! `stasis-agent boot --stasis-boot-config-on-sync-fd-v1` (started by the host runtime;
//! config on the sync fd) and `stasis-agent serve`
//! (re-executed by the sandbox's PID 1 from inside the sandbox, config in the environment).

use std::process::ExitCode;

use stasis_agent::boot::config::CONFIG_ENV;
use stasis_proto::agent::BOOT_CONFIG_ON_SYNC_FD;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("boot"), Some(config)) => stasis_agent::boot::stage1(config),
        (Some("serve"), None) => match std::env::var(CONFIG_ENV) {
            Ok(config) => {
                std::env::remove_var(CONFIG_ENV);
                stasis_agent::serve::run(&config)
            }
            Err(_) => Err(anyhow::anyhow!("{CONFIG_ENV} is not set")),
        },
        _ => {
            eprintln!("usage: stasis-agent boot {BOOT_CONFIG_ON_SYNC_FD} (config on fd 3) | stasis-agent boot CONFIG_JSON | stasis-agent serve");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stasis-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
