//! Creating a sandbox: the row is written `creating` first, then the runtime boots it.

use stasis_runtime::SandboxSpec;
use stasis_store::{Level, SandboxRow, SandboxState};

use super::{ms, network_policy, snapshots, CreateParams, Lifecycle, Result};
use crate::ids::{self, SandboxId};
use crate::metrics::Op;

impl Lifecycle {
    /// Creates a sandbox from a template, or from a snapshot when `p.template` names one.
    pub async fn create(&self, p: CreateParams) -> Result<SandboxRow> {
        match self.resolve_snapshot(&p.template).await? {
            Some(snap) => {
                // Its files are on the node that took it (routing sends the create there
                // while it answers), and in the object store when layers are shared.
                self.check_held_here(&snap)?;
                let mut p = p;
                p.template = snapshots::public_id(&snap);
                let elsewhere = snap.node_id != self.node_id();
                match self.create_with(p, Some(snap.id.clone())).await {
                    Err(super::LifecycleError::TemplateNotFound(_)) if elsewhere => Err(
                        super::LifecycleError::Conflict(super::affinity::not_shared_message(&snap.id, &snap.node_id)),
                    ),
                    other => other,
                }
            }
            None => self.create_with(p, None).await,
        }
    }

    /// Creates a sandbox; from runtime snapshot `snapshot` when given.
    pub(super) async fn create_with(&self, p: CreateParams, snapshot: Option<String>) -> Result<SandboxRow> {
        let id = SandboxId::generate().to_string();
        let now = self.now();
        // A copy runs with its snapshot's limits (its processes were sized for them); the
        // row says so, whatever the create asked.
        let mut p = p;
        if let Some(snap) = &snapshot {
            if let Some(l) = self.inner.runtime.snapshot_limits(snap).await? {
                (p.cpu_count, p.memory_mb, p.disk_mb) = (l.cpu_count, l.memory_mb, l.disk_mb);
            }
        }
        let row = SandboxRow {
            id: id.clone(),
            template_id: p.template.clone(),
            alias: Some(p.template.clone()),
            client_id: "stasis".into(),
            state: SandboxState::Creating,
            metadata: p.metadata,
            env_vars: p.env_vars.clone(),
            cpu_count: p.cpu_count,
            memory_mb: p.memory_mb,
            disk_size_mb: p.disk_mb,
            envd_access_token: Some(ids::token()),
            traffic_access_token: (!super::allows_public_traffic(&p.network)).then(ids::token),
            started_at: now,
            end_at: now + ms(p.timeout_secs),
            timeout_secs: p.timeout_secs,
            auto_pause: p.auto_pause,
            auto_resume: p.auto_resume,
            pause_memory: p.pause_memory,
            secure: p.secure,
            allow_internet_access: p.allow_internet_access,
            network: p.network,
            paused_at: None,
            idle_timeout_secs: p.idle_timeout_secs,
            created_at: now,
            updated_at: now,
            last_error: None,
            node_id: self.node_id().to_string(),
        };
        // A copy mounts what its snapshot's source mounted.
        let mut volumes = match (&snapshot, p.volumes.is_empty()) {
            (Some(snap), true) => self.inner.store.volume_mounts(snap).await?,
            _ => p.volumes.clone(),
        };
        // In the store's order (by path), which is the order the runtime keeps (hot mounts
        // are inserted in it too): a copy's list must equal its snapshot's.
        volumes.sort_by(|a, b| a.path.cmp(&b.path));
        // Recorded first: a crash during the boot leaves a `creating` row that recovery cleans.
        self.inner.store.insert_sandbox(&row).await?;
        // The mounts with it: from now on none of its volumes can be deleted.
        if let Err(e) = self.inner.store.set_volume_mounts(&id, &volumes).await {
            let _ = self.inner.store.delete_sandbox(&id).await;
            return Err(match e {
                stasis_store::StoreError::NotFound => {
                    super::LifecycleError::BadRequest("a volume to mount was deleted meanwhile".into())
                }
                other => other.into(),
            });
        }
        let lock = self.lock(&id);
        let _g = lock.lock().await;
        let policy = network_policy(p.allow_internet_access, &row.network);
        let spec = SandboxSpec {
            env: super::sandbox_env(p.env_vars, &policy),
            network: Some(policy),
            template: p.template,
            cpu_count: row.cpu_count,
            memory_mb: row.memory_mb,
            disk_mb: row.disk_size_mb,
            max_pids: self.inner.config.defaults.max_pids,
            access_token: row.envd_access_token.clone(),
            volumes: super::volumes::runtime_mounts(&volumes),
        };
        let t0 = std::time::Instant::now();
        let created = match &snapshot {
            Some(snap) => self.inner.runtime.create_from_snapshot(&id, snap, &spec).await,
            None => self.inner.runtime.create(&id, &spec).await,
        };
        self.inner.metrics.operation(Op::Create, t0.elapsed().as_secs_f64(), created.is_ok());
        if let Err(e) = created {
            let message = format!("create failed: {e}");
            self.event(&id, Level::Error, "create-failed", message, &[("error", e.to_string())]).await;
            let _ = self.inner.store.delete_sandbox(&id).await;
            let _ = self.inner.store.set_volume_mounts(&id, &[]).await;
            self.inner.routes.forget(&id);
            return Err(e.into());
        }
        let started = self.now();
        let timeout = row.timeout_secs;
        self.inner.activity.started(&id);
        let row = self
            .flip(&id, &[SandboxState::Creating], SandboxState::Running, move |r| {
                r.started_at = started;
                r.end_at = started + ms(timeout);
            })
            .await?;
        let total_ms = t0.elapsed().as_millis().to_string();
        let from = snapshot.as_deref().map_or(String::new(), |s| format!(" from snapshot {s}"));
        let message = format!("created from template {}{from} in {total_ms} ms", row.template_id);
        let mut fields = vec![("template", row.template_id.clone()), ("total_ms", total_ms)];
        fields.extend(snapshot.map(|s| ("snapshot", s)));
        self.event(&id, Level::Info, "created", message, &fields).await;
        Ok(row)
    }
}
