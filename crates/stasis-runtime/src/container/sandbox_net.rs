//! Plugging one sandbox into the network and out of it: picks a free transit index
//! (host-wide, under a lock), keeps it in the record, and has `network.rs` build or
//! remove the gateway namespace and veths, and opens and closes the egress listener
//! (`egress.rs`) with them. Nothing here runs `ip` or `nft` itself.

use super::record::Record;
use super::{network, Inner};
use crate::error::{Result, RuntimeError};

impl Inner {
    /// Sets up the sandbox's network (gateway namespace, veths, policy, and for a policy
    /// that intercepts HTTPS the egress CA in its trust store and the listener) if it has
    /// one, choosing a free transit index; the index is kept in `rec`.
    pub(super) fn network_up(&self, rec: &mut Record) -> Result<Option<network::Names>> {
        let Some(policy) = rec.spec.network.clone() else {
            return Ok(None);
        };
        policy.validate()?;
        // Every way a sandbox starts (create, resume, from a snapshot) mounts its root
        // before this: the CA goes in whichever layer it was made from.
        self.trust_egress_ca(Some(&policy), &self.dir(&rec.id).rootfs())?;
        if let Err(e) = self.net_init.get_or_init(|| network::init_host().map_err(|e| e.to_string())) {
            return Err(RuntimeError::Network(e.clone()));
        }
        let _g = self.net_alloc.lock().unwrap();
        // Transit subnets and device names are host-wide: every Stasis runtime on the host
        // (other data dirs too) allocates under the same lock, from the devices that exist.
        let _host_lock = network::HostLock::acquire()?;
        let used = network::used_indexes()?;
        let index = rec
            .net_index
            .filter(|i| !used.contains(i))
            .or_else(|| (0..=network::MAX_INDEX).find(|i| !used.contains(i)))
            .ok_or_else(|| RuntimeError::Network("no free transit subnet (16384 sandboxes with a network)".into()))?;
        rec.net_index = Some(index);
        rec.store(&self.dir(&rec.id).record())?;
        let names = network::setup(&rec.id, index, &policy)?;
        if policy.intercept_https {
            if let Err(e) = self.egress_open(&rec.id, &names.netns) {
                network::teardown(&rec.id, index);
                return Err(e);
            }
        }
        Ok(Some(names))
    }

    /// Removes the sandbox's network; its egress listener (and every connection through
    /// it) first, since an open socket would keep the namespace alive.
    pub(super) fn network_down(&self, rec: &Record) {
        self.egress_close(&rec.id);
        if let Some(i) = rec.net_index {
            network::teardown(&rec.id, i);
        }
    }

    /// Opens the egress listener of a running sandbox whose namespace outlived the
    /// daemon that had it open (recovery).
    pub(super) fn egress_reopen(&self, rec: &Record) {
        let intercepts = rec.spec.network.as_ref().is_some_and(|p| p.intercept_https);
        if let (true, Some(index)) = (intercepts, rec.net_index) {
            if let Err(e) = self.egress_open(&rec.id, &network::names(&rec.id, index).netns) {
                tracing::warn!(sandbox = %rec.id, "egress listener not reopened: {e}");
            }
        }
    }
}
