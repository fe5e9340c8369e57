//! A client session with one kernel over ZeroMQ: the shell, IOPub and control sockets,
//! and the routing of what comes back to the request it answers.
//!
//! Every request registers its `msg_id` before it is sent; a reader task per socket
//! decodes each message and hands it to the request named by its `parent_header`
//! (replies on shell and control, outputs and status on IOPub). Messages for no pending
//! request (another client's, a finished run's) are dropped. When the kernel goes away,
//! every pending request is told why ([`Gone`]) and nothing waits forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{DealerSendHalf, DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use super::process::ConnectionInfo;
use super::wire::{Codec, Message};
use crate::ids::uuid4;

/// Why a kernel stopped answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The process ended by itself (crash, OOM, `exit()` in the code).
    Died(String),
    /// `POST /contexts/{id}/restart`.
    Restarted,
    /// The run did not end after an interrupt: the kernel was replaced.
    InterruptFailed,
    /// `DELETE /contexts/{id}` or the service shutting down.
    Removed,
}

/// What a request receives.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Message),
    Gone(Gone),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
}

type Pending = Arc<Mutex<PendingState>>;

#[derive(Default)]
struct PendingState {
    waiting: HashMap<String, mpsc::UnboundedSender<Event>>,
    /// Set once the kernel is gone: later requests are told at once.
    gone: Option<Gone>,
}

pub struct Session {
    codec: Codec,
    id: String,
    shell: tokio::sync::Mutex<DealerSendHalf>,
    control: tokio::sync::Mutex<DealerSendHalf>,
    pending: Pending,
    readers: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("connect to the kernel's {0} socket: {1}")]
pub struct ConnectError(&'static str, String);

impl Session {
    /// Connect to a kernel's sockets (retrying while it starts, up to `timeout`).
    pub async fn connect(info: &ConnectionInfo, timeout: Duration) -> Result<Self, ConnectError> {
        let codec = Codec::new(&info.key);
        let pending: Pending = Arc::default();
        let opts = || {
            let mut o = SocketOptions::default();
            o.connect_timeout(timeout);
            o
        };
        let mut iopub = SubSocket::with_options(opts());
        iopub.subscribe("").await.map_err(|e| ConnectError("iopub", e.to_string()))?;
        iopub.connect(&info.endpoint(info.iopub_port)).await.map_err(|e| ConnectError("iopub", e.to_string()))?;
        let mut shell = DealerSocket::with_options(opts());
        shell.connect(&info.endpoint(info.shell_port)).await.map_err(|e| ConnectError("shell", e.to_string()))?;
        let mut control = DealerSocket::with_options(opts());
        control.connect(&info.endpoint(info.control_port)).await.map_err(|e| ConnectError("control", e.to_string()))?;
        let (shell_tx, shell_rx) = shell.split();
        let (control_tx, control_rx) = control.split();

        let readers = vec![
            spawn_reader("iopub", iopub, codec.clone(), pending.clone()),
            spawn_reader("shell", shell_rx, codec.clone(), pending.clone()),
            spawn_reader("control", control_rx, codec.clone(), pending.clone()),
        ];
        Ok(Session {
            codec,
            id: uuid4(),
            shell: tokio::sync::Mutex::new(shell_tx),
            control: tokio::sync::Mutex::new(control_tx),
            pending,
            readers,
        })
    }

    /// Send a request; what answers it arrives on the receiver.
    pub async fn request(
        &self,
        channel: Channel,
        msg_type: &str,
        content: Value,
    ) -> (String, mpsc::UnboundedReceiver<Event>) {
        let msg = Message::request(&self.id, msg_type, content);
        let msg_id = msg.msg_id().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut p = self.pending.lock().unwrap();
            if let Some(g) = &p.gone {
                let _ = tx.send(Event::Gone(g.clone()));
                return (msg_id, rx);
            }
            p.waiting.insert(msg_id.clone(), tx);
        }
        let frames: Vec<Bytes> = self.codec.encode(&msg);
        let zmsg = ZmqMessage::try_from(frames).expect("frames are never empty");
        let sent = match channel {
            Channel::Shell => self.shell.lock().await.send(zmsg).await,
            Channel::Control => self.control.lock().await.send(zmsg).await,
        };
        if let Err(e) = sent {
            tracing::warn!(msg_type, "send to kernel failed: {e}");
            self.fail_all(Gone::Died(format!("send to the kernel failed: {e}")));
        }
        (msg_id, rx)
    }

    /// Stop routing messages to `msg_id`.
    pub fn forget(&self, msg_id: &str) {
        self.pending.lock().unwrap().waiting.remove(msg_id);
    }

    /// Tell every pending request (and every later one) that the kernel is gone. The
    /// first reason given sticks.
    pub fn fail_all(&self, why: Gone) {
        fail_all(&self.pending, why);
    }

    /// [`Session::fail_all`] for a task that must not keep the session alive.
    pub fn failer(&self) -> impl Fn(Gone) + Send + 'static {
        let pending = Arc::downgrade(&self.pending);
        move |why| {
            if let Some(p) = pending.upgrade() {
                fail_all(&p, why);
            }
        }
    }

    pub fn is_gone(&self) -> bool {
        self.pending.lock().unwrap().gone.is_some()
    }
}

fn fail_all(pending: &Mutex<PendingState>, why: Gone) {
    let mut p = pending.lock().unwrap();
    let why = p.gone.get_or_insert(why).clone();
    for (_, tx) in p.waiting.drain() {
        let _ = tx.send(Event::Gone(why.clone()));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

fn spawn_reader<S: SocketRecv + Send + 'static>(
    name: &'static str,
    mut socket: S,
    codec: Codec,
    pending: Pending,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let zmsg = match socket.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(socket = name, "kernel socket closed: {e}");
                    return;
                }
            };
            let msg = match codec.decode(&zmsg.into_vec()) {
                Ok(m) => m,
                Err(e) => {
                    // IOPub welcome messages (JEP 65) and the like are not for us.
                    tracing::debug!(socket = name, "dropped a kernel message: {e}");
                    continue;
                }
            };
            let Some(parent) = msg.parent_msg_id().map(str::to_string) else { continue };
            let p = pending.lock().unwrap();
            if let Some(tx) = p.waiting.get(&parent) {
                let _ = tx.send(Event::Message(msg));
            }
        }
    })
}
