//! `stasis runtime`: create, exec, pause, resume, kill and inspect sandboxes through the
//! container runtime of this host, without the daemon.

use std::path::PathBuf;

use clap::Subcommand;
use stasis_runtime::container::{ContainerConfig, ContainerRuntime};
use stasis_runtime::lock::{DataDirLock, LockKind};
use stasis_runtime::objstore::ObjectStoreConfig;
use stasis_runtime::{PauseMode, Runtime, RuntimeError, SandboxSpec};

use super::exit;
use stasis_runtime::agent_client as envd_client;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "STASIS_DATA_DIR", default_value = "/var/lib/stasis", global = true)]
    data_dir: PathBuf,
    /// Keep checkpoint and snapshot images in this S3 bucket too (see `stasis serve --help`).
    #[arg(long, env = "STASIS_OBJECT_STORE", global = true)]
    object_store: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and boot a sandbox.
    Create {
        id: String,
        #[arg(long, default_value = "base")]
        template: String,
        #[arg(long, default_value_t = 512)]
        memory_mb: u64,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Disk size in MiB: the most the sandbox can write (0: no limit).
        #[arg(long, default_value_t = 4096)]
        disk_mb: u64,
        /// KEY=VALUE, repeatable: environment of every process.
        #[arg(long = "env")]
        envs: Vec<String>,
        /// Start from this snapshot (its files, and its processes if it holds memory).
        #[arg(long)]
        from: Option<String>,
    },
    /// Capture a running sandbox as a snapshot (it keeps running).
    Snapshot {
        id: String,
        snapshot: String,
        #[arg(long)]
        filesystem_only: bool,
    },
    /// Delete a snapshot (sandboxes made from it keep working).
    SnapshotRm { snapshot: String },
    /// Run a shell command in a sandbox; prints its output, exits with its exit code.
    Exec {
        id: String,
        #[arg(long)]
        user: Option<String>,
        cmd: String,
    },
    /// Checkpoint a sandbox to disk and stop it.
    Pause {
        id: String,
        /// Keep only the files (the next resume is a fresh boot).
        #[arg(long)]
        filesystem_only: bool,
    },
    /// Restore a paused sandbox.
    Resume {
        id: String,
        /// Boot fresh on the saved files instead of restoring memory.
        #[arg(long)]
        no_memory: bool,
    },
    /// Stop a sandbox and delete everything it owns.
    Kill { id: String },
    /// Print a sandbox's state and usage as JSON.
    Info { id: String },
    /// List sandbox ids and states.
    Ls,
}

fn code_for(e: &RuntimeError) -> u8 {
    match e {
        RuntimeError::NotFound(_) | RuntimeError::TemplateNotFound(_) | RuntimeError::SnapshotNotFound(_) => {
            exit::NOT_FOUND
        }
        RuntimeError::AlreadyExists(_)
        | RuntimeError::AlreadyPaused(_)
        | RuntimeError::NotPaused(_)
        | RuntimeError::NotRunning(_) => exit::CONFLICT,
        RuntimeError::InvalidId(_) => exit::USAGE,
        _ => exit::ERROR,
    }
}

pub async fn run(args: Args) -> u8 {
    // Held until the command is done; refused while `stasis serve` owns the data dir.
    let _lock = match DataDirLock::acquire(&args.data_dir, LockKind::Command) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let object_store = match args.object_store.as_deref().map(ObjectStoreConfig::from_url).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let rt = match ContainerRuntime::new(ContainerConfig {
        data_dir: args.data_dir,
        agent_binary: ContainerConfig::default_agent_binary(),
        disk_reserve: ContainerConfig::default_disk_reserve(),
        object_store,
        share_layers: false,
        egress: None,
        // One operation per process: a background refill would die with it.
        disk_pool: false,
        gateway_pool: false,
    }) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    match execute(&rt, args.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            code_for(&e)
        }
    }
}

async fn execute(rt: &ContainerRuntime, cmd: Cmd) -> Result<u8, RuntimeError> {
    match cmd {
        Cmd::Create { id, template, memory_mb, cpus, disk_mb, envs, from } => {
            let env =
                envs.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let spec = SandboxSpec { template, memory_mb, cpu_count: cpus, disk_mb, env, ..Default::default() };
            match from {
                Some(snap) => rt.create_from_snapshot(&id, &snap, &spec).await?,
                None => rt.create(&id, &spec).await?,
            }
            println!("{id}");
        }
        Cmd::Snapshot { id, snapshot, filesystem_only } => {
            let stats = rt
                .snapshot(&id, &snapshot, if filesystem_only { PauseMode::Filesystem } else { PauseMode::Memory })
                .await?;
            println!("{}", serde_json::to_string(&stats).unwrap());
        }
        Cmd::SnapshotRm { snapshot } => rt.delete_snapshot(&snapshot).await?,
        Cmd::Exec { id, user, cmd } => {
            let stream = rt.connect(&id, stasis_runtime::ENVD_PORT).await?;
            let oom_before = rt.usage(&id).await.map(|u| u.oom_kills).unwrap_or(0);
            match envd_client::run(stream, envd_client::shell(&cmd, Default::default()), user.as_deref(), &[]).await {
                Ok(out) => {
                    print!("{}", out.stdout);
                    eprint!("{}", out.stderr);
                    if out.exit_code < 0 {
                        let usage = rt.usage(&id).await.unwrap_or_default();
                        if usage.oom_kills > oom_before {
                            eprintln!(
                                "error: out of memory: the command exceeded the sandbox's memory limit ({} MiB) and was killed",
                                usage.memory_limit_bytes >> 20
                            );
                        } else {
                            eprintln!("error: the command ended by {}", out.status);
                        }
                        return Ok(128);
                    }
                    return Ok(out.exit_code.min(255) as u8);
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(exit::ERROR);
                }
            }
        }
        Cmd::Pause { id, filesystem_only } => {
            let stats = rt.pause(&id, if filesystem_only { PauseMode::Filesystem } else { PauseMode::Memory }).await?;
            println!("{}", serde_json::to_string(&stats).unwrap());
        }
        Cmd::Resume { id, no_memory } => {
            rt.resume(&id, if no_memory { PauseMode::Filesystem } else { PauseMode::Memory }).await?
        }
        Cmd::Kill { id } => rt.kill(&id).await?,
        Cmd::Info { id } => {
            let state = rt.state(&id).await?;
            let usage = rt.usage(&id).await.ok();
            let pid = rt.init_pid(&id).ok();
            println!("{}", serde_json::json!({"id": id, "state": state, "initPid": pid, "usage": usage}));
        }
        Cmd::Ls => {
            for id in rt.list().await? {
                let state = rt.state(&id).await?;
                println!("{id}\t{}", serde_json::to_value(state).unwrap().as_str().unwrap_or(""));
            }
        }
    }
    Ok(exit::OK)
}
