//! The local terminal for `exec -t`: its size, and raw mode (keystrokes, Ctrl-C
//! included, go to the sandbox's terminal as they are typed) restored when done.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

/// Columns and rows of our terminal (stdout, else stdin), or 80x24 when there is none
/// (`STASIS_TTY_SIZE=COLSxROWS` overrides, for scripts and tests).
pub fn size() -> (u32, u32) {
    if let Some((c, r)) = std::env::var("STASIS_TTY_SIZE").ok().and_then(|s| {
        let (c, r) = s.split_once('x')?;
        Some((c.parse().ok()?, r.parse().ok()?))
    }) {
        return (c, r);
    }
    for fd in [1, 0] {
        let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass, nothing else.
        if unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return (u32::from(ws.ws_col), u32::from(ws.ws_row));
        }
    }
    (80, 24)
}

/// Our stdin in raw mode while this lives.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; `None` otherwise (a pipe has no mode).
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
