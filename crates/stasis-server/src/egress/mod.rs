//! The egress proxy's parts (docs/architecture.md, "Secrets and the egress proxy"): what
//! is built so far is the ClientHello reader that picks a connection's server name
//! (`sni`) and the sandbox egress CA that issues the leaves a matching connection is
//! terminated with (`ca`). The listener in each gateway namespace, the splice of
//! unmatched connections and the header-setting relay are not built yet.

pub mod ca;
pub mod sni;
