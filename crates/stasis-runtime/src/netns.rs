//! Reaching into a sandbox's network namespace from the host.
//!
//! A socket belongs to the network namespace it was created in. The host creates the
//! socket inside the sandbox's namespace (on a short-lived thread that enters it), then
//! connects from anywhere: every sandbox can use the same addresses, with no routes, no
//! bridges and no address shared with the host.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use std::sync::Arc;

use crate::container::InitHandle;

// The namespace is entered through the init's pidfd, never through /proc/PID: a pid
// number can name another process once the init is gone.
fn socket_in_netns(init: Arc<InitHandle>) -> io::Result<OwnedFd> {
    std::thread::spawn(move || -> io::Result<OwnedFd> {
        // This thread exists only for this call, so leaving it in the sandbox's
        // namespace affects nothing else.
        init.enter_netns()?;
        // SAFETY: a fresh socket; ownership moves into the OwnedFd.
        let fd =
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .join()
    .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Blocking connect to `127.0.0.1:port` inside the network namespace of `init`.
pub fn connect_blocking(
    init: Arc<InitHandle>,
    port: u16,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    let fd = socket_in_netns(init)?;
    let sock = socket2::Socket::from(fd);
    sock.set_nonblocking(false)?;
    sock.connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into(), timeout)?;
    let stream: std::net::TcpStream = sock.into();
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// How long a connect into a sandbox may take: on its own loopback it either answers at
/// once or drops the SYN (a listener whose backlog is full, never accepting), and then
/// the kernel would retry for two minutes while the client waits.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `127.0.0.1:port` as seen inside the network namespace of `init`.
pub async fn connect(init: Arc<InitHandle>, port: u16) -> io::Result<tokio::net::TcpStream> {
    let fd = tokio::task::spawn_blocking(move || socket_in_netns(init)).await.map_err(io::Error::other)??;
    // SAFETY: `fd` is a valid, owned, non-blocking TCP socket.
    let socket = unsafe { tokio::net::TcpSocket::from_raw_fd(fd.into_raw_fd()) };
    let connect = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the sandbox did not accept the connection in 10 s"))?
}
