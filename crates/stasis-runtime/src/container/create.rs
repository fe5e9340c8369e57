//! Creating a sandbox: its record, cgroups, disk and overlay root, network, and the boot
//! of its agent (`boot.rs` drives the agent's side of it).
//!
//! `boot` is also how a sandbox without a memory image resumes: a fresh boot on the
//! files it kept. A create that fails leaves nothing behind (`teardown.rs`).

use std::path::PathBuf;

use stasis_proto::agent::BootConfig;

use super::fs::{mount_disk, mount_root};
use super::layout::SandboxDir;
use super::phases::Phases;
use super::record::{self, Record};
use super::snapshot::Limits;
use super::template::Template;
use super::{agent_layer, boot, disk, network, random_hex, volumes, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::{SandboxSpec, SandboxState};

/// Which host ids a new sandbox runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ids {
    /// A range of its own (`id_ranges.rs`).
    Own,
    /// The shared layers' range: a template build, whose writable layer becomes a layer
    /// of the template.
    Layers,
}

impl Inner {
    pub(super) fn create(&self, id: &str, spec: &SandboxSpec) -> Result<()> {
        if self.dir(id).path().exists() {
            return Err(RuntimeError::AlreadyExists(id.to_string()));
        }
        let template = self.template(&spec.template)?;
        let spec = &template.spec_for(spec);
        // A warm capture has no volume mounts, and a restore cannot add one: a sandbox
        // with volumes boots its template's service cold.
        if template.warms() && spec.volumes.is_empty() {
            // The template's service is already running in its warm snapshot.
            let snap = self.ready_snapshot(&template)?;
            return self.create_from_snapshot_with(id, &snap, spec, Limits::Request);
        }
        self.create_cold(id, spec, &template, Ids::Own)
    }

    /// Creates `id` by booting `template` (its start command, if any, starts now).
    pub(super) fn create_cold(&self, id: &str, spec: &SandboxSpec, template: &Template, ids: Ids) -> Result<()> {
        let dir = self.dir(id);
        if dir.path().exists() {
            return Err(RuntimeError::AlreadyExists(id.to_string()));
        }
        let result = self.create_inner(id, spec, &dir, template, ids);
        if result.is_err() {
            self.destroy(id);
        }
        result
    }

    pub(super) fn agent_layer(&self) -> Result<PathBuf> {
        if let Some(l) = self.agent_layer.get() {
            return Ok(l.clone());
        }
        if !self.agent_binary.is_file() {
            return Err(RuntimeError::Boot(format!(
                "agent binary {} not found: run scripts/setup.sh (or set STASIS_AGENT)",
                self.agent_binary.display()
            )));
        }
        let interpreter = agent_layer::interpreter_binary(&self.agent_binary);
        let layer = agent_layer::ensure(&self.layout.agents(), &self.agent_binary, interpreter.as_deref())?;
        Ok(self.agent_layer.get_or_init(|| layer).clone())
    }

    /// A new id range for the sandbox of `dir` (whose directory exists), claimed under
    /// its record.
    pub(super) fn claim_ids(&self, dir: &SandboxDir) -> Result<u32> {
        self.id_ranges.claim(&dir.record())
    }

    fn create_inner(
        &self,
        id: &str,
        spec: &SandboxSpec,
        dir: &SandboxDir,
        template: &Template,
        ids: Ids,
    ) -> Result<()> {
        let mut phases = Phases::new();
        super::space::check(&self.layout.sandboxes(), self.disk_reserve, "create", super::space::CREATE_BYTES)?;
        let agent_layer = self.agent_layer()?;
        std::fs::create_dir_all(dir.path()).ctx(|| format!("create {}", dir.path().display()))?;
        super::perms::sandbox_dir(dir.path())?;
        let id_base = match ids {
            Ids::Own => Some(self.claim_ids(dir)?),
            Ids::Layers => None,
        };
        let mut rec = Record {
            id: id.to_string(),
            spec: spec.clone(),
            state: SandboxState::Running,
            init_pid: None,
            lower_dirs: std::iter::once(agent_layer.display().to_string())
                .chain(template.lowers.iter().cloned())
                .collect(),
            agent_path: agent_layer::AGENT_IN_SANDBOX.to_string(),
            checkpoint: None,
            boot_id: random_hex(16),
            init_start: None,
            net_index: None,
            start: template.start.clone(),
            id_base,
        };
        phases.mark("prepare");
        self.boot_timed(&mut rec, dir, phases)
    }

    /// Boots the sandbox of `rec` on its writable layer (a new boot: new boot id, no
    /// processes) and records it as running.
    pub(super) fn boot(&self, rec: &mut Record, dir: &SandboxDir) -> Result<()> {
        self.boot_timed(rec, dir, Phases::new())
    }

    /// [`Inner::boot`], its phases timed for the log line that says it booted.
    fn boot_timed(&self, rec: &mut Record, dir: &SandboxDir, mut phases: Phases) -> Result<()> {
        let id = rec.id.clone();
        let id = id.as_str();
        self.cgroups.create(id, &rec.spec)?;
        phases.mark("cgroups");
        let image = dir.disk_image();
        let mut pooled = false;
        if rec.spec.disk_mb > 0 && !image.exists() {
            pooled = self.disk_pool.take(rec.spec.disk_mb, &image);
            if !pooled {
                disk::make(&image, rec.spec.disk_mb)?;
            }
        }
        phases.mark("disk_image");
        mount_disk(rec, dir)?;
        phases.mark("disk_mount");
        mount_root(rec, dir, &self.layout)?;
        phases.mark("overlay");
        rec.boot_id = random_hex(16);
        let net = self.network_up(rec)?;
        phases.mark("network");
        let cfg = BootConfig {
            sandbox_id: id.to_string(),
            rootfs: dir.rootfs().display().to_string(),
            cgroup_procs: self.cgroups.procs_files(id).iter().map(|p| p.display().to_string()).collect(),
            hostname: "sandbox".into(),
            boot_id: rec.boot_id.clone(),
            agent_path: rec.agent_path.clone(),
            env: rec.spec.env.clone(),
            access_token: rec.spec.access_token.clone(),
            net_device: net.as_ref().map(|n| n.sandbox_if.clone()),
            sandbox_ip: network::SANDBOX_IP.to_string(),
            gateway_ip: network::GATEWAY_IP.to_string(),
            start: rec.start.clone(),
        };
        let bound = match volumes::bind(&self.layout, &dir.rootfs(), &rec.spec.volumes, rec.ids()) {
            Ok(b) => b,
            Err(e) => {
                self.network_down(rec);
                return Err(e);
            }
        };
        let mut plugged = std::time::Duration::ZERO;
        let booted = boot::boot(&self.agent_binary, &cfg, &dir.log("boot"), rec.ids(), |pid| match &net {
            Some(n) => {
                let t = std::time::Instant::now();
                let r = network::plug_into(n, pid);
                plugged = t.elapsed();
                r
            }
            None => Ok(()),
        });
        phases.mark("boot");
        phases.split_last("net_plug", plugged);
        // The sandbox's namespace has its own copies of the volume mounts by now.
        volumes::unbind(&bound);
        let pid = match booted {
            Ok(pid) => pid,
            Err(e) => {
                self.network_down(rec);
                return Err(e);
            }
        };
        // The agent is the sandbox's lifeline: the OOM killer takes the user's processes first.
        let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000");
        rec.state = SandboxState::Running;
        rec.init_pid = Some(pid);
        rec.init_start = record::start_time(pid);
        rec.checkpoint = None;
        rec.store(&dir.record())?;
        // Held and watched from now on.
        self.init_of(rec)?;
        phases.mark("record");
        tracing::info!(sandbox = %id, pooled_disk = pooled, "sandbox booted: {}", phases.summary());
        Ok(())
    }
}
