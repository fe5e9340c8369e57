//! A kernel's process: its connection file, its launch and its signals.
//!
//! The service picks the ports and writes the connection file (mode 0600, in a 0700
//! directory) before it starts the kernel, as jupyter_client does. Kernels listen on TCP
//! on [`KERNEL_IP`], a loopback address other than 127.0.0.1: the host's proxy reaches
//! sandbox ports on 127.0.0.1 only, so the kernels' sockets (whose IOPub would show any
//! subscriber the outputs) are not reachable from outside the sandbox. (IPC would be
//! tighter still, but Deno's kernel only speaks TCP.) Each kernel gets its own process
//! group, so an interrupt or a kill reaches the subprocesses its code started.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Serialize;
use tokio::sync::watch;

use super::spec::KernelSpec;
use crate::ids::uuid4;

/// Where kernels listen (see the module doc).
pub const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The connection file's contents (Jupyter's format).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub transport: &'static str,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    pub key: String,
    pub signature_scheme: &'static str,
    pub kernel_name: String,
}

impl ConnectionInfo {
    /// Fresh ports on `ip` and a random key.
    pub fn new(ip: Ipv4Addr, kernel_name: &str) -> std::io::Result<Self> {
        // Hold all five listeners at once so the ports differ, then let them go for the
        // kernel to bind (the same small race jupyter_client accepts).
        let listeners = (0..5)
            .map(|_| TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<Vec<_>>>()?;
        Ok(ConnectionInfo {
            transport: "tcp",
            ip: ip.to_string(),
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: uuid4(),
            signature_scheme: "hmac-sha256",
            kernel_name: kernel_name.to_string(),
        })
    }

    pub fn endpoint(&self, port: u16) -> String {
        format!("tcp://{}:{port}", self.ip)
    }
}

/// How a kernel process ended.
pub type ExitWatch = watch::Receiver<Option<String>>;

/// A running kernel process. Dropping it kills the process group.
pub struct KernelProcess {
    pid: i32,
    connection_file: PathBuf,
    exited: ExitWatch,
}

impl KernelProcess {
    /// Write the connection file into `runtime_dir` and start the kernel in `cwd`.
    pub fn spawn(
        spec: &KernelSpec,
        env: &BTreeMap<String, String>,
        info: &ConnectionInfo,
        cwd: &Path,
        runtime_dir: &Path,
    ) -> std::io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(runtime_dir)?;
        let connection_file = runtime_dir.join(format!("kernel-{}.json", uuid4()));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&connection_file)?;
            f.write_all(&serde_json::to_vec_pretty(info).expect("JSON"))?;
        }
        let argv = spec.command(&connection_file);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        // A kernel's outputs travel over IOPub; its stdout holds only banners. Its stderr
        // (start-up failures, crashes) goes to the service's log.
        cmd.args(&argv[1..])
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        // Kernels die with the service, however it ends (their process groups are killed
        // on the way out, but a SIGKILL of the service leaves no way out).
        // SAFETY: prctl is async-signal-safe and only sets the child's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&connection_file);
                return Err(std::io::Error::new(e.kind(), format!("{}: {e}", argv[0])));
            }
        };
        let pid = child.id().map(|p| p as i32).unwrap_or_default();
        let (tx, exited) = watch::channel(None);
        let file = connection_file.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => describe(s),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = std::fs::remove_file(&file);
            let _ = tx.send(Some(status));
        });
        Ok(KernelProcess { pid, connection_file, exited })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn exited(&self) -> ExitWatch {
        self.exited.clone()
    }

    pub fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// SIGINT to the kernel's process group (`interrupt_mode: signal`).
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// SIGKILL to the kernel's process group.
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, sig: i32) {
        // Once reaped, the pid (and group id) may name someone else's group.
        if self.pid > 0 && self.is_alive() {
            // SAFETY: killpg has no memory effects; the group is the kernel's own.
            unsafe { libc::killpg(self.pid, sig) };
        }
    }

    pub fn connection_file(&self) -> &Path {
        &self.connection_file
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_info_has_distinct_ports_and_jupyter_fields() {
        let info = ConnectionInfo::new(Ipv4Addr::LOCALHOST, "python3").unwrap();
        let mut ports = vec![info.shell_port, info.iopub_port, info.stdin_port, info.control_port, info.hb_port];
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["signature_scheme"], "hmac-sha256");
        assert_eq!(json["transport"], "tcp");
        assert_eq!(info.endpoint(5), "tcp://127.0.0.1:5");
    }
}
