//! What the agent's own boot stages agree on among themselves. The contract with the host
//! runtime (boot config, sync protocol, envd port) is `stasis_proto::agent`.

/// Environment variable carrying the boot config from PID 1 to `stasis-agent serve`.
pub const CONFIG_ENV: &str = "STASIS_BOOT_CONFIG";

/// Where, inside the sandbox, the agent keeps its own files (binary, device nodes, log).
pub const AGENT_DIR: &str = "/.stasis";
