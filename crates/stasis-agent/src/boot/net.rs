//! The sandbox's own network namespace: loopback up. The host reaches the agent by
//! opening sockets inside this namespace, so no address is shared with the host.

use anyhow::{bail, Context, Result};

pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket + ioctl on a zeroed ifreq with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            bail!("SIOCGIFFLAGS lo: {e}");
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            bail!("SIOCSIFFLAGS lo: {e}");
        }
    }
    Ok(())
}

/// ICMP echo sockets for every gid of the sandbox: `ping` works without CAP_NET_RAW,
/// which the sandbox does not keep (see `caps`). The kernel takes only mapped gids.
pub fn allow_unprivileged_ping() -> Result<()> {
    let map = std::fs::read_to_string("/proc/self/gid_map")?;
    let last = map
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            Some(f.first()? + f.get(2)?.checked_sub(1)?)
        })
        .max()
        .context("empty gid map")?;
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", format!("0 {last}"))
        .context("write net.ipv4.ping_group_range")
}

fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("bad interface name {name:?}");
    }
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in and sockaddr have the same size; both plain data.
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
        std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin)
    }
}

fn ioctl(fd: i32, op: libc::Ioctl, arg: *mut libc::c_void, what: &str) -> Result<()> {
    // SAFETY: `arg` points at a live request structure of the type `op` expects.
    if unsafe { libc::ioctl(fd, op, arg) } < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Turns the device the host moved in into `eth0` with `ip`/30, up, and a default route
/// through `gateway`.
pub fn configure_eth0(device: &str, ip: &str, gateway: &str) -> Result<()> {
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| anyhow::anyhow!("bad sandbox ip {ip:?}"))?;
    let gw: std::net::Ipv4Addr = gateway.parse().map_err(|_| anyhow::anyhow!("bad gateway ip {gateway:?}"))?;
    // SAFETY: a plain datagram socket used only for configuration ioctls.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    let result = (|| -> Result<()> {
        let mut req = ifreq(device)?;
        let new = ifreq("eth0")?;
        req.ifr_ifru.ifru_newname = new.ifr_name;
        ioctl(fd, libc::SIOCSIFNAME, &mut req as *mut _ as *mut _, "rename to eth0")?;
        let mut req = ifreq("eth0")?;
        req.ifr_ifru.ifru_addr = sockaddr(ip);
        ioctl(fd, libc::SIOCSIFADDR, &mut req as *mut _ as *mut _, "set eth0 address")?;
        let mut req = ifreq("eth0")?;
        req.ifr_ifru.ifru_netmask = sockaddr(std::net::Ipv4Addr::new(255, 255, 255, 252));
        ioctl(fd, libc::SIOCSIFNETMASK, &mut req as *mut _ as *mut _, "set eth0 netmask")?;
        let mut req = ifreq("eth0")?;
        ioctl(fd, libc::SIOCGIFFLAGS, &mut req as *mut _ as *mut _, "get eth0 flags")?;
        // SAFETY: reading the union member SIOCGIFFLAGS filled.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        ioctl(fd, libc::SIOCSIFFLAGS, &mut req as *mut _ as *mut _, "bring eth0 up")?;
        // SAFETY: rtentry is plain data; zero is valid.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        ioctl(fd, libc::SIOCADDRT, &mut rt as *mut _ as *mut _, "add default route")
    })();
    // SAFETY: closing the socket made above.
    unsafe { libc::close(fd) };
    result
}
