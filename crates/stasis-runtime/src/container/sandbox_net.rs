//! Plugging one sandbox into the network and out of it: picks a free transit index
//! (host-wide, under a lock), keeps it in the record, and has `network.rs` build or
//! remove the gateway namespace and veths. Nothing here runs `ip` or `nft` itself.

use super::record::Record;
use super::{network, Inner};
use crate::error::{Result, RuntimeError};

impl Inner {
    /// Sets up the sandbox's network (gateway namespace, veths, policy) if it has one,
    /// choosing a free transit index; the index is kept in `rec`.
    pub(super) fn network_up(&self, rec: &mut Record) -> Result<Option<network::Names>> {
        let Some(policy) = rec.spec.network.clone() else {
            return Ok(None);
        };
        policy.validate()?;
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
        network::setup(&rec.id, index, &policy).map(Some)
    }

    pub(super) fn network_down(&self, rec: &Record) {
        if let Some(i) = rec.net_index {
            network::teardown(&rec.id, i);
        }
    }
}
