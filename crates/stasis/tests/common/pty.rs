//! A command on a real pseudo-terminal, as a person's shell runs it: its stdin, stdout
//! and stderr are the terminal, which is its controlling terminal (so a resize sends it
//! SIGWINCH). The test types into the terminal and reads what it shows.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    master: std::fs::File,
    pub child: Child,
    screen: Arc<Mutex<String>>,
}

fn winsize(cols: u16, rows: u16) -> nix::libc::winsize {
    nix::libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

impl Pty {
    /// Starts `cmd` on a new terminal of `cols` x `rows`.
    pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> Pty {
        let ws = winsize(cols, rows);
        let pair = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let slave: OwnedFd = pair.slave;
        let slave_fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::setsid() < 0 || nix::libc::ioctl(slave_fd, nix::libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        let master = std::fs::File::from(pair.master);
        let screen = Arc::new(Mutex::new(String::new()));
        let (mut reader, shown) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty { master, child, screen }
    }

    pub fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        assert_eq!(unsafe { nix::libc::ioctl(self.master.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) }, 0);
    }

    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the terminal shows `text` (after what it showed when `from` was read).
    pub fn wait_for(&self, text: &str, from: usize) {
        let start = Instant::now();
        while !self.screen()[from.min(self.screen().len())..].contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the terminal never showed {text:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The command's exit code, waiting for it.
    pub fn wait(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the command did not end:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
