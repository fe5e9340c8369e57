//! PID 1's reaper: every child and every orphan of the sandbox ends here.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::ExitInfo;

#[derive(Default)]
pub struct Reaper {
    state: std::sync::Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    watchers: HashMap<u32, watch::Sender<Option<ExitInfo>>>,
}

impl Reaper {
    pub fn start(&self) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                reap_all(&state);
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Runs `spawn` and registers the child it returns before the reaper can look the pid
    /// up: the reaper takes the same lock after `waitpid`, so even a child that exits at
    /// once finds its watcher.
    pub fn spawn_watched<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(u32, T)>,
    ) -> std::io::Result<(T, watch::Receiver<Option<ExitInfo>>)> {
        let mut s = self.state.lock().unwrap();
        let (pid, value) = spawn()?;
        let (tx, rx) = watch::channel(None);
        s.watchers.insert(pid, tx);
        Ok((value, rx))
    }
}

fn reap_all(state: &Mutex<State>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let (Some(pid), Some(info)) = (status.pid(), ExitInfo::from_wait(status)) else { continue };
                let pid = pid.as_raw() as u32;
                // Orphans adopted by PID 1 have no watcher: reaping them is all they need.
                if let Some(tx) = state.lock().unwrap().watchers.remove(&pid) {
                    let _ = tx.send(Some(info));
                }
            }
        }
    }
}
