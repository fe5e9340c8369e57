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
        let names = match self.pooled_gateway(rec, &policy)? {
            Some(names) => names,
            None => {
                let _g = self.net_alloc.lock().unwrap();
                // Transit subnets and device names are host-wide: every Stasis runtime on
                // the host (other data dirs too) allocates under the same lock, from the
                // devices that exist.
                let _host_lock = network::HostLock::acquire()?;
                let index = network::free_index(rec.net_index)?;
                rec.net_index = Some(index);
                rec.store(&self.dir(&rec.id).record())?;
                network::setup(&rec.id, index, &policy)?
            }
        };
        let index = rec.net_index.expect("set above");
        if policy.intercept_https {
            if let Err(e) = self.egress_open(&rec.id, &names.netns) {
                network::teardown(&rec.id, index);
                return Err(e);
            }
        }
        Ok(Some(names))
    }

    /// A ready gateway from the pool renamed to `rec`'s sandbox, with `policy`'s rules,
    /// its index kept in `rec`: for a fresh sandbox (no index yet; a resume keeps its
    /// own, `gateway_pool.rs`). `None`: the pool had none, or the entry could not be used
    /// (deleted; the caller builds one).
    fn pooled_gateway(&self, rec: &mut Record, policy: &network::NetworkPolicy) -> Result<Option<network::Names>> {
        if rec.net_index.is_some() {
            return Ok(None);
        }
        let Some(entry) = self.gateway_pool.take() else { return Ok(None) };
        let names = network::names(&rec.id, entry.index);
        rec.net_index = Some(entry.index);
        // Kept before the rename: a crash after it leaves a namespace the record names.
        if let Err(e) = rec.store(&self.dir(&rec.id).record()) {
            network::delete_netns(&entry.netns);
            rec.net_index = None;
            return Err(e);
        }
        let adopted = network::rename_netns(&entry.netns, &names.netns).and_then(|()| {
            if network::rules_for(policy, entry.index) == entry.rules {
                Ok(())
            } else {
                network::apply_policy(&rec.id, entry.index, policy)
            }
        });
        match adopted {
            Ok(()) => Ok(Some(names)),
            Err(e) => {
                tracing::warn!(sandbox = %rec.id, "gateway pool: a ready gateway could not be used: {e}");
                network::delete_netns(&entry.netns);
                network::delete_netns(&names.netns);
                rec.net_index = None;
                Ok(None)
            }
        }
    }

    /// Removes the sandbox's network; its egress listener (and every connection through
    /// it) first, since an open socket would keep the namespace alive.
    pub(super) fn network_down(&self, rec: &Record) {
        self.egress_close(&rec.id);
        if let Some(i) = rec.net_index {
            network::teardown(&rec.id, i);
        }
    }

    /// Holds (`held`) or lets through again the traffic from outside to a running
    /// sandbox: its gateway's route to it becomes a blackhole, or a route again
    /// (`network::gateway_hold`). A dump runs held, so no segment reaches a socket
    /// between CRIU's read of its queues and the end of the dump (acknowledged by the
    /// kernel, then lost); a restore runs held too (the gateway's end of the pair, made
    /// down by CRIU, comes up after it, `resume.rs`). This replaces CRIU's own network
    /// lock (iptables rules inside the sandbox: an `iptables-restore` pair at each lock
    /// and each unlock, ~60 ms of a resume), skipped (`criu.rs`). No network: nothing to
    /// hold.
    pub(super) fn hold_traffic(&self, rec: &Record, held: bool) -> Result<()> {
        match (&rec.spec.network, rec.net_index) {
            (Some(_), Some(index)) if held => network::gateway_hold(&network::names(&rec.id, index)),
            (Some(_), Some(index)) => network::gateway_link_up(&network::names(&rec.id, index)),
            _ => Ok(()),
        }
    }

    /// A running sandbox whose namespace outlived the daemon that had it (recovery): its
    /// traffic let through (a dump or restore under way when that daemon died held it)
    /// and its egress listener opened again.
    pub(super) fn network_readopt(&self, rec: &Record) {
        if let Err(e) = self.hold_traffic(rec, false) {
            tracing::warn!(sandbox = %rec.id, "gateway link not brought up: {e}");
        }
        self.egress_reopen(rec);
    }

    /// Opens the egress listener of a running sandbox whose namespace outlived the
    /// daemon that had it open (recovery).
    fn egress_reopen(&self, rec: &Record) {
        let intercepts = rec.spec.network.as_ref().is_some_and(|p| p.intercept_https);
        if let (true, Some(index)) = (intercepts, rec.net_index) {
            if let Err(e) = self.egress_open(&rec.id, &network::names(&rec.id, index).netns) {
                tracing::warn!(sandbox = %rec.id, "egress listener not reopened: {e}");
            }
        }
    }
}
