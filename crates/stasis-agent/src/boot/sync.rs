//! The agent's end of the boot socket shared with the host runtime: one
//! `stasis_proto::agent::SyncMessage` per line.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Result};
use stasis_proto::agent::SyncMessage;

pub struct SyncChannel {
    stream: Option<UnixStream>,
}

impl SyncChannel {
    /// Adopts `fd` if it is open; a missing fd gives a channel that drops messages, so the
    /// agent can also be started by hand for debugging.
    pub fn from_fd(fd: i32) -> Self {
        // SAFETY: F_GETFD only queries the descriptor.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
        let stream = open.then(|| {
            // SAFETY: the host hands this fd to us and nothing else in the process owns it.
            UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        Self { stream }
    }

    pub fn send(&mut self, msg: &SyncMessage) {
        if let Some(s) = self.stream.as_mut() {
            let _ = s.write_all(format!("{}\n", msg.to_line()).as_bytes());
        }
    }

    pub fn recv(&mut self) -> Result<SyncMessage> {
        Ok(SyncMessage::parse(&self.recv_line()?)?)
    }

    /// One raw line (the boot config comes this way, before the protocol starts).
    pub fn recv_line(&mut self) -> Result<String> {
        let Some(s) = self.stream.as_ref() else { bail!("no sync channel") };
        // One byte at a time: a buffered reader could swallow a later message.
        let mut line = Vec::new();
        let mut reader = BufReader::with_capacity(1, s);
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                bail!("sync channel closed");
            }
            let b = buf[0];
            reader.consume(1);
            if b == b'\n' {
                return Ok(String::from_utf8(line)?);
            }
            line.push(b);
        }
    }

    /// Closes the channel: after this the process holds no host object.
    pub fn close(&mut self) {
        self.stream = None;
    }
}
