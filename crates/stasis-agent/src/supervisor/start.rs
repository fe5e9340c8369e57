//! A template's start command: launched once by PID 1 after a boot, supervised like any
//! process started through envd (tag `stasis-start`, listed by `commands.list`).
//!
//! A sandbox restored from memory already runs it: only a boot launches it.

use stasis_proto::agent::StartCommand;

use super::spawn::ProcessSpec;
use super::users::User;
use super::Supervisor;

/// Tag of the start command's process.
pub const START_TAG: &str = "stasis-start";

impl Supervisor {
    /// Launches `start`; a failure is returned for the caller to log (the sandbox stays
    /// up: its envd is what lets a user see why the service did not start).
    pub fn launch_start(&self, start: &StartCommand) -> std::io::Result<u32> {
        let user = User::lookup(&start.user)?;
        let spec = ProcessSpec {
            cmd: "/bin/sh".into(),
            args: vec!["-c".into(), start.cmd.clone()],
            envs: start.env.clone(),
            cwd: start.cwd.clone(),
            user,
            pty: None,
            stdin: false,
            tag: Some(START_TAG.into()),
        };
        Ok(self.spawn(spec)?.pid)
    }
}
