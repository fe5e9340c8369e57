//! The Stasis agent: the init (PID 1) of every sandbox.
//!
//! It owns everything that happens *inside* a sandbox: entering the namespaces and the
//! root filesystem at boot (`boot`), starting and reaping processes (`supervisor`), and
//! serving the envd protocol to the host (`envd`), and relaying the proxy's connections to the
//! sandbox's ports so they survive a pause (`relay`). It never touches host state after boot:
//! the host side (cgroups, overlay, checkpoints) belongs to `stasis-runtime`.

pub mod boot;
pub mod envd;
pub mod relay;
pub mod serve;
pub mod supervisor;
