//! Changes to a sandbox after its create: its memory limit (Novita's `hotplugMemory`) and
//! its outbound network policy (`PUT /sandboxes/{id}/network`). A running sandbox gets
//! them at once (cgroup, gateway rules); every change is also written to the record, so a
//! resume, or a restore after a daemon restart, applies the new values, not the create's.
//! Memory only grows here: lowering a limit under what the processes hold would have the
//! kernel reclaim or OOM-kill them, which no caller asks for (the lifecycle refuses it).

use super::record::Record;
use super::{network, Inner};
use crate::error::{Result, RuntimeError};
use crate::{SandboxState, SandboxUpdate};

impl Inner {
    pub(super) fn update(&self, id: &str, u: &SandboxUpdate) -> Result<()> {
        let mut rec: Record = self.load(id)?;
        if let Some(policy) = &u.network {
            policy.validate()?;
            if rec.spec.network.is_none() {
                return Err(RuntimeError::InvalidUpdate(format!("sandbox {id} has no network to change")));
            }
        }
        if let Some(mb) = u.memory_mb {
            if mb < rec.spec.memory_mb {
                return Err(RuntimeError::InvalidUpdate(format!(
                    "memory can only grow: sandbox {id} has {} MiB, asked for {mb} MiB",
                    rec.spec.memory_mb
                )));
            }
        }
        let running = rec.state == SandboxState::Running && rec.init_pid.is_some();
        if running {
            if let Some(mb) = u.memory_mb {
                self.cgroups.set_memory(id, mb)?;
            }
            if let (Some(policy), Some(index)) = (&u.network, rec.net_index) {
                // The listener is there before connections are redirected to it, and
                // goes only after they no longer are.
                if policy.intercept_https {
                    self.trust_egress_ca(Some(policy), &self.dir(id).rootfs())?;
                    self.egress_open(id, &network::names(id, index).netns)?;
                }
                network::apply_policy(id, index, policy)?;
                if !policy.intercept_https {
                    self.egress_close(id);
                }
            }
        }
        if let Some(mb) = u.memory_mb {
            rec.spec.memory_mb = mb;
        }
        if let Some(policy) = &u.network {
            rec.spec.network = Some(policy.clone());
        }
        rec.store(&self.dir(id).record())
    }
}
