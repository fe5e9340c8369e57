//! Warming a template: boot a sandbox of it, wait until its start command's service
//! answers the ready check, capture it as a memory snapshot. Sandboxes of the template
//! then start from that snapshot (`create.rs`) with the service already running, as fast
//! as any create from a snapshot, instead of booting it each time.
//!
//! The snapshot's id is derived from the template's `template.json` and the agent layer:
//! a rebuilt template or a new agent binary warms again (the old snapshot is marked
//! deleted and collected once no sandbox uses its layer). One warm per template at a
//! time; creates wait for it.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::template::{ReadyCheck, Template};
use super::{random_hex, Inner};

use crate::error::{Result, RuntimeError};
use crate::{PauseMode, SandboxSpec};

/// What a warm capture is made of, in its id: a change here warms every template again.
/// v2: captured with an eth0 (v1 captures had loopback only, and so had their copies).
const WARM_FORMAT: &[u8] = b"warm-v2";

/// `DATA/snapshots/.ready-KEY`: the id of the current warm snapshot of a template's
/// version `KEY` (`Template::warm_key`), in the data dir (a template dir may be shared by
/// several data dirs, as the tests' are).
fn ready_file(inner: &Inner, key: &str) -> std::path::PathBuf {
    inner.layout.snapshots().join(format!(".ready-{key}"))
}

impl Inner {
    /// The snapshot sandboxes of `t` start from, warming `t` first if it has none.
    pub(super) fn ready_snapshot(&self, t: &Template) -> Result<String> {
        let snap = self.ready_snapshot_id(t)?;
        if self.snapshot_meta(&snap).is_ok() {
            return Ok(snap);
        }
        let lock = self.warm_locks.lock().unwrap().entry(t.warm_key().to_string()).or_default().clone();
        let _warming = lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.snapshot_meta(&snap).is_ok() {
            return Ok(snap);
        }
        let t0 = Instant::now();
        tracing::info!(template = %t.name, snapshot = %snap, "warming template");
        self.warm(t, &snap)?;
        tracing::info!(template = %t.name, ms = t0.elapsed().as_millis() as u64, "template warm");
        self.replace_ready_snapshot(t, &snap);
        Ok(snap)
    }

    fn ready_snapshot_id(&self, t: &Template) -> Result<String> {
        let agent = self.agent_layer()?;
        let mut h = Sha256::new();
        for part in [WARM_FORMAT, t.name.as_bytes(), &t.manifest, agent.as_os_str().as_encoded_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Ok(format!("tpl{}", &hex::encode(h.finalize())[..32]))
    }

    fn warm(&self, t: &Template, snap: &str) -> Result<()> {
        let ready = t.ready.as_ref().expect("only templates with a ready check warm");
        let id = warm_id();
        self.warming.lock().unwrap().insert(id.clone());
        // An eth0 with nothing allowed out: a service that needs the internet to get ready
        // is not a template, but the capture must hold an eth0, because CRIU restores
        // the network namespace as it was dumped and moves each copy's own veth in as
        // that eth0 (a capture without one gives copies with loopback only).
        // No token: each sandbox made from the capture gets its own at handover (one
        // left in the capture would stay the agent's token for creates without one).
        let closed = super::network::NetworkPolicy { allow_internet: false, ..Default::default() };
        let spec =
            SandboxSpec { template: t.name.clone(), access_token: None, network: Some(closed), ..Default::default() };
        // Whatever happens, the warm sandbox goes and the id leaves `warming` (a daemon
        // stopping waits for that: `abandon_warms`).
        let captured = self
            .create_cold(&id, &t.spec_for(&spec), t, super::create::Ids::Own)
            .and_then(|()| self.wait_ready(&id, t, ready))
            .and_then(|()| self.snapshot_here(&id, snap, PauseMode::Memory));
        let _ = self.kill(&id);
        self.warming.lock().unwrap().remove(&id);
        captured.map(|_| ())
    }

    /// Polls the ready check until it answers 200, the start command is gone, or the
    /// time is up.
    fn wait_ready(&self, id: &str, t: &Template, ready: &ReadyCheck) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(ready.timeout_secs);
        // The agent alone in the sandbox, twice in a row: the start command has exited.
        let mut alone = 0;
        loop {
            let rec = self.load(id)?;
            let init = self.init_of(&rec)?;
            let last = match probe(init, ready) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let what = match (&ready.cmd, ready.port) {
                (Some(cmd), _) => format!("{cmd:?}"),
                (None, port) => format!("GET {} on port {}", ready.path, port.unwrap_or(0)),
            };
            alone = if self.cgroups.usage(id).pids <= 1 { alone + 1 } else { 0 };
            let gone = alone >= 3;
            if gone || Instant::now() >= deadline {
                let why = if gone {
                    "start command exited before it was ready".to_string()
                } else {
                    format!("start command not ready after {}s", ready.timeout_secs)
                };
                return Err(RuntimeError::Boot(format!(
                    "template {}: {why} ({what}: {last}){}",
                    t.name,
                    self.start_log_tail(id, t)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of the start command's log, when the template names one.
    fn start_log_tail(&self, id: &str, t: &Template) -> String {
        let Some(log) = t.start.as_ref().and_then(|s| s.env.get("STASIS_START_LOG")) else { return String::new() };
        let path = self.dir(id).upper().join(log.trim_start_matches('/'));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("; end of {log}:\n{}", tail.join("\n"))
            }
            Err(_) => String::new(),
        }
    }

    /// Forgets the warm snapshot recorded under `key` (that version is gone).
    pub(super) fn drop_ready_snapshot(&self, key: &str) {
        let file = ready_file(self, key);
        if let Ok(old) = std::fs::read_to_string(&file) {
            let _ = std::fs::remove_file(&file);
            if self.snapshot_meta(old.trim()).is_ok() {
                let _ = self.delete_snapshot(old.trim());
            }
        }
    }

    /// Records `snap` as the template's ready snapshot and drops the one it replaces.
    fn replace_ready_snapshot(&self, t: &Template, snap: &str) {
        let file = ready_file(self, t.warm_key());
        let old = std::fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
        if let Err(e) = std::fs::write(&file, format!("{snap}\n")) {
            tracing::warn!(template = %t.name, "cannot record the ready snapshot: {e}");
        }
        if let Some(old) = old.filter(|o| o != snap) {
            if self.snapshot_meta(&old).is_ok() {
                let _ = self.delete_snapshot(&old);
            }
        }
    }
}

/// The id of a warm sandbox: `warm` + 12 hex digits, 16 characters, never an API
/// sandbox's (those have 20).
fn warm_id() -> String {
    format!("warm{}", random_hex(6))
}

pub(super) fn is_warm_id(id: &str) -> bool {
    id.len() == 16 && id.starts_with("warm") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Inner {
    /// Kills warm sandboxes a daemon left behind when it stopped in the middle of a warm
    /// (not this process's own, under way).
    pub(super) fn remove_stale_warms(&self) {
        let Ok(entries) = std::fs::read_dir(self.layout.sandboxes()) else { return };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if is_warm_id(&id) && !self.warming.lock().unwrap().contains(&id) {
                tracing::info!(sandbox = %id, "removing a warm sandbox left by an interrupted warm");
                let _ = self.kill(&id);
            }
        }
    }
}

impl Inner {
    /// Kills this process's warm sandboxes under way (the daemon is stopping).
    pub(super) fn abandon_warms(&self) {
        let ids: Vec<String> = self.warming.lock().unwrap().iter().cloned().collect();
        for id in &ids {
            tracing::info!(sandbox = %id, "stopping: removing the sandbox of a warm under way");
            let _ = self.kill(id);
        }
        // The warm's own thread may still be making that sandbox (a kill in the middle of
        // a create misses what the create makes next): it gives up at its next step and
        // removes what it made; wait for that, then remove whatever is still there.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ids.iter().any(|id| self.warming.lock().unwrap().contains(id)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for id in &ids {
            if self.dir(id).path().exists() {
                let _ = self.kill(id);
            }
        }
    }
}

/// One try of the ready check: its command, or a `GET`, over a socket made in the
/// sandbox's network namespace.
fn probe(init: Arc<super::InitHandle>, ready: &ReadyCheck) -> std::result::Result<(), String> {
    if let Some(cmd) = &ready.cmd {
        return probe_cmd(init, cmd);
    }
    let port = ready.port.ok_or("the ready check names neither a command nor a port")?;
    let mut s = crate::netns::connect_blocking(init, port, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let req = format!("GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", ready.path);
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!("status {:?}", line.lines().next().unwrap_or("")))
    }
}

/// Runs the ready command once through the sandbox's agent (as root; the warm sandbox has
/// no access token): ready when it exits 0.
fn probe_cmd(init: Arc<super::InitHandle>, cmd: &str) -> std::result::Result<(), String> {
    let s = crate::netns::connect_blocking(init, stasis_proto::agent::ENVD_PORT, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let c = crate::agent_client::Command {
        cmd: cmd.to_string(),
        user: Some("root".into()),
        portable_shell: true,
        ..Default::default()
    };
    let out = rt
        .block_on(async {
            s.set_nonblocking(true)?;
            let io = tokio::net::TcpStream::from_std(s)?;
            tokio::time::timeout(Duration::from_secs(30), crate::agent_client::run_streaming(io, &c, &[], |_, _| {}))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within 30 s"))?
        })
        .map_err(|e: anyhow::Error| e.to_string())?;
    if out.exit_code == 0 {
        Ok(())
    } else {
        let said = format!("{}{}", out.stdout, out.stderr);
        Err(format!(
            "exit code {}{}",
            out.exit_code,
            if said.trim().is_empty() { String::new() } else { format!(": {}", said.trim()) }
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn warm_ids_are_told_from_api_ids() {
        let id = super::warm_id();
        assert!(super::is_warm_id(&id), "{id}");
        assert!(crate::container::validate_id(&id).is_ok());
        assert!(!super::is_warm_id("warm0123456789abcdef0123"));
        assert!(!super::is_warm_id("warmabcdefghijkl"));
        assert!(!super::is_warm_id("wbrm0123456789ab"));
    }
}
