//! Boot: from a host process to the sandbox's PID 1.
//!
//! Stage 1 (`stasis-agent boot`) starts as host root, reads its config from the sync fd, joins the sandbox's cgroups,
//! unshares every namespace in one call (user first, so all are owned by the sandbox's user
//! namespace and CRIU can dump them), waits for the host to write its id maps, and forks the
//! sandbox's PID 1. PID 1 builds the mount tree, pivots into the overlay root, seals itself
//! with seccomp, cuts its capabilities to a container's set, and re-executes the agent from
//! inside the sandbox (`stasis-agent serve`) so a checkpoint never references a host file.

pub mod caps;
pub mod config;
pub mod mounts;
mod net;
pub mod seccomp;
pub mod sync;

use std::ffi::CString;

use anyhow::{bail, Context, Result};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, setresgid, setresuid, setsid, ForkResult, Gid, Uid};
use stasis_proto::agent::{BootConfig, SyncMessage, BOOT_CONFIG_ON_SYNC_FD, SYNC_FD};

use sync::SyncChannel;

/// Open files per sandbox process (soft and hard limit).
pub const OPEN_FILES: u64 = 65_536;

/// Entry of `stasis-agent boot ARG`: `ARG` is [`BOOT_CONFIG_ON_SYNC_FD`] (the config is
/// the first line on the sync fd) or, from runtimes that predate it, the config itself.
/// Returns only on failure; the error is also reported to the host on the sync channel.
pub fn stage1(arg: &str) -> Result<()> {
    let mut chan = SyncChannel::from_fd(SYNC_FD);
    let config = if arg == BOOT_CONFIG_ON_SYNC_FD {
        chan.recv_line().context("read the boot config from the sync fd")
    } else {
        Ok(arg.to_string())
    };
    let result = config.and_then(|c| stage1_inner(&c, &mut chan));
    if let Err(e) = &result {
        chan.send(&SyncMessage::Error(format!("stage1: {e:#}")));
    }
    result
}

fn stage1_inner(config_json: &str, chan: &mut SyncChannel) -> Result<()> {
    let cfg = BootConfig::from_json(config_json).context("parse boot config")?;
    let me = std::process::id().to_string();
    for procs in &cfg.cgroup_procs {
        std::fs::write(procs, &me).with_context(|| format!("join cgroup {procs}"))?;
    }
    // Open files per process: set here (while host root may), not inherited from whoever
    // started the daemon. Memory and pids cgroups bound the total.
    // (Capped by the current hard limit: raising it needs CAP_SYS_RESOURCE, which a
    // containerised host may not grant.)
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("get RLIMIT_NOFILE")?;
    let files = OPEN_FILES.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, files, files).context("set RLIMIT_NOFILE")?;
    // No core files: a crash would write the process's memory (secrets included) where
    // the host-wide core_pattern says, and fill the sandbox's disk. Hard limit 0: raising
    // it needs CAP_SYS_RESOURCE in the host's namespace.
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("set RLIMIT_CORE")?;
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID,
    )
    .context("unshare namespaces")?;
    chan.send(&SyncMessage::Unshared);
    let reply = chan.recv().context("wait for id maps")?;
    if reply != SyncMessage::Mapped {
        bail!("host did not map ids: {reply}");
    }
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).context("setresgid 0")?;
    nix::unistd::setgroups(&[]).context("setgroups")?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).context("setresuid 0")?;

    // SAFETY: stage 1 is single-threaded; the child only runs plain Rust until it execs.
    match unsafe { fork() }.context("fork sandbox init")? {
        ForkResult::Parent { child } => {
            chan.send(&SyncMessage::Pid(child.as_raw() as u32));
            // Stage 1 is done: PID 1 reports readiness itself on the same channel.
            std::process::exit(0);
        }
        ForkResult::Child => {
            if let Err(e) = pid1(&cfg, chan) {
                chan.send(&SyncMessage::Error(format!("init: {e:#}")));
                std::process::exit(1);
            }
            unreachable!("pid1 execs or fails");
        }
    }
}

/// Runs as PID 1 of the new PID namespace: builds the sandbox's world, then execs the
/// in-sandbox copy of the agent.
fn pid1(cfg: &BootConfig, _chan: &mut SyncChannel) -> Result<()> {
    setsid().context("setsid")?;
    mounts::enter_rootfs(&cfg.rootfs, &cfg.boot_id)?;
    nix::unistd::sethostname(&cfg.hostname).context("sethostname")?;
    net::loopback_up()?;
    if let Some(dev) = &cfg.net_device {
        net::configure_eth0(dev, &cfg.sandbox_ip, &cfg.gateway_ip).context("configure eth0")?;
    }
    net::allow_unprivileged_ping()?;
    mounts::mask_kernel_files().context("mask kernel files")?;
    mounts::redirect_stdio()?;
    seccomp::install().context("install seccomp filter")?;
    // Last: the filter above needs CAP_SYS_ADMIN, the agent and user code need far less.
    caps::drop_to_kept().context("drop capabilities")?;

    let path = CString::new(cfg.agent_path.as_str())?;
    let args = [path.clone(), CString::new("serve")?];
    // The config (it holds the access token) goes in the environment, which only
    // in-sandbox root can read, not in the world-readable command line.
    let env = [
        CString::new("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")?,
        CString::new(format!("{}={}", config::CONFIG_ENV, cfg.to_json()))?,
    ];
    // The sync fd stays open across exec (no CLOEXEC): `serve` reports readiness on it
    // and then closes it, so no host object is left in the checkpointed tree.
    nix::unistd::execve(&path, &args, &env).context("exec agent inside sandbox")?;
    Ok(())
}
