//! Sandbox networking: every sandbox sees the same address (169.254.0.21 on its eth0, so
//! restored and forked TCP state stays valid), and reaches the outside through a gateway
//! network namespace of its own that translates it to a unique address and enforces its
//! outbound policy with nftables, out of the sandbox's reach.
//!
//! ```text
//! sandbox netns                gateway netns "stasis-ID"           host
//! eth0 169.254.0.21/30  <->  gw 169.254.0.22/30
//!                            up 10.200.X.2/30 (masquerade) <->  stxN 10.200.X.1/30 -> masquerade out
//! ```
//! The host reaches sandbox ports without any of this: sockets made inside the sandbox's
//! namespace (see `netns`). Sandboxes cannot reach each other or the host's own services.
//!
//! Outbound, internet access does not mean the networks around the host: cloud metadata
//! (169.254.169.254), private and shared ranges ([`NOT_INTERNET`]) are dropped unless a
//! sandbox's `allowOut` names them; only DNS to the host's resolvers passes (the template
//! copies the host's `/etc/resolv.conf`). On the host, anything a sandbox sends to one of
//! the host's own addresses is dropped before NAT, so a port the host publishes with
//! DNAT (Docker's `-p`) is as unreachable as a local service, and so is what the host
//! DNATs elsewhere for them.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

pub const SANDBOX_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 21);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 22);
/// The /30 of [`SANDBOX_IP`] and [`GATEWAY_IP`].
const SANDBOX_NET: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 20);
/// Transit addresses: 10.200.0.0/16, one /30 per sandbox.
const TRANSIT_PREFIX: [u8; 2] = [10, 200];
pub const MAX_INDEX: u32 = 16_383;
/// Where the egress proxy listens in each gateway namespace (on [`GATEWAY_IP`]); the
/// sandbox's port-443 connections are redirected there when it has `network.rules`.
pub const EGRESS_PORT: u16 = 15443;

/// Not the internet: dropped for sandboxes unless in their `allowOut`. This network,
/// RFC 1918, shared address space (RFC 6598, carrier NAT and some clouds' internal
/// networks), loopback, link-local (cloud metadata), IETF protocol assignments,
/// multicast, reserved and broadcast.
pub const NOT_INTERNET: [&str; 10] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// What a sandbox may reach outside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Outbound access at all (E2B's `allow_internet_access`, default true).
    pub allow_internet: bool,
    /// CIDRs reachable even when internet access is off or they are denied.
    #[serde(default)]
    pub allow_out: Vec<String>,
    /// CIDRs never reachable (unless allowed above).
    #[serde(default)]
    pub deny_out: Vec<String>,
    /// New TCP connections to port 443 go to the egress proxy's listener in the gateway
    /// namespace (`egress.rs`) instead of being forwarded: the sandbox has `network.rules`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intercept_https: bool,
}

impl NetworkPolicy {
    pub fn open() -> Self {
        Self { allow_internet: true, ..Default::default() }
    }

    /// Checks every CIDR (`a.b.c.d` or `a.b.c.d/n`) before anything is configured.
    pub fn validate(&self) -> Result<()> {
        for c in self.allow_out.iter().chain(&self.deny_out) {
            parse_cidr(c)
                .ok_or_else(|| RuntimeError::InvalidNetwork(format!("{c:?} is not an IPv4 address or CIDR")))?;
        }
        Ok(())
    }
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    Some((ip.parse().ok()?, len))
}

fn transit(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = index * 4;
    let (c, d) = ((base >> 8) as u8, (base & 0xff) as u8);
    let host = Ipv4Addr::new(TRANSIT_PREFIX[0], TRANSIT_PREFIX[1], c, d + 1);
    let gw = Ipv4Addr::new(TRANSIT_PREFIX[0], TRANSIT_PREFIX[1], c, d + 2);
    (host, gw)
}

/// An exclusive lock shared by every Stasis runtime on the host while it picks and sets
/// up a transit subnet.
pub struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    pub fn acquire() -> Result<Self> {
        use std::os::fd::AsRawFd;
        let _ = std::fs::create_dir_all("/run/stasis");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/stasis/network.lock")
            .map_err(|e| RuntimeError::Network(format!("open /run/stasis/network.lock: {e}")))?;
        // SAFETY: flock on an fd we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(RuntimeError::Network(format!("lock: {}", std::io::Error::last_os_error())));
        }
        Ok(HostLock { _file: f })
    }
}

/// Transit indexes in use on the host: from the addresses of existing `stx*` devices.
pub fn used_indexes() -> Result<std::collections::HashSet<u32>> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| RuntimeError::Network(format!("ip addr: {e}")))?;
    let mut used = std::collections::HashSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(addr)) = (f.get(1), f.get(3)) else { continue };
        if !dev.starts_with("stx") {
            continue;
        }
        if let Some((ip, _)) = parse_cidr(addr) {
            let o = ip.octets();
            if o[0] == TRANSIT_PREFIX[0] && o[1] == TRANSIT_PREFIX[1] {
                used.insert(((o[2] as u32) << 8 | o[3] as u32) / 4);
            }
        }
    }
    Ok(used)
}

/// Names of one sandbox's network objects.
pub struct Names {
    pub netns: String,
    /// Host end of the transit pair.
    pub host_if: String,
    /// The device that becomes the sandbox's eth0 (made in the host namespace).
    pub sandbox_if: String,
}

pub fn names(id: &str, index: u32) -> Names {
    names_in(&format!("stasis-{id}"), index)
}

/// The names of the objects at transit `index` with the gateway namespace `netns`.
pub fn names_in(netns: &str, index: u32) -> Names {
    Names { netns: netns.to_string(), host_if: format!("stx{index}"), sandbox_if: format!("sts{index}") }
}

/// A transit index nobody on the host uses: `preferred` if it is free, else the lowest.
/// The caller holds the [`HostLock`] until its devices exist.
pub fn free_index(preferred: Option<u32>) -> Result<u32> {
    let used = used_indexes()?;
    preferred
        .filter(|i| !used.contains(i))
        .or_else(|| (0..=MAX_INDEX).find(|i| !used.contains(i)))
        .ok_or_else(|| RuntimeError::Network("no free transit subnet (16384 sandboxes with a network)".into()))
}

fn run(what: &str, cmd: &mut Command, input: Option<&str>) -> Result<()> {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| RuntimeError::Network(format!("{what}: cannot run: {e}")))?;
    if let Some(text) = input {
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| RuntimeError::Network(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(RuntimeError::Network(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Host-wide rules, once per daemon start: forwarding on, sandboxes' traffic masqueraded
/// out, never to each other nor to the host itself.
pub fn init_host() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| RuntimeError::Network(format!("enable ip_forward: {e}")))?;
    let rules = "table ip stasis\n\
        delete table ip stasis\n\
        table ip stasis {\n\
          chain input { type filter hook input priority -10; policy accept;\n\
            iifname \"stx*\" ct state established,related accept\n\
            iifname \"stx*\" drop\n\
          }\n\
          chain prerouting { type filter hook prerouting priority -150; policy accept;\n\
            iifname \"stx*\" fib daddr type local drop\n\
          }\n\
          chain forward { type filter hook forward priority -10; policy accept;\n\
            iifname \"stx*\" oifname \"stx*\" drop\n\
            iifname \"stx*\" ct status dnat drop\n\
          }\n\
          chain postrouting { type nat hook postrouting priority 100; policy accept;\n\
            ip saddr 10.200.0.0/16 oifname != \"stx*\" masquerade\n\
          }\n\
        }\n";
    run("nft host rules", Command::new("nft").arg("-f").arg("-"), Some(rules))
}

/// Makes the sandbox's gateway namespace and its uplink pair. The pair to the sandbox
/// comes later, made with its sandbox end directly in the sandbox's own namespace: by
/// [`plug_into`] at boot, by CRIU at restore (`criu.rs`). A veth moved across
/// namespaces costs the kernel 18-37 ms here (a network-wide synchronisation), one made
/// in place 3-5 ms (docs/benchmarks.md).
pub fn setup(id: &str, index: u32, policy: &NetworkPolicy) -> Result<Names> {
    let n = names(id, index);
    build(&n, index, policy)?;
    Ok(n)
}

/// [`setup`] under any names (a ready gateway of the pool: `gateway_pool.rs`).
pub fn build(n: &Names, index: u32, policy: &NetworkPolicy) -> Result<()> {
    delete_netns(&n.netns);
    let (host_ip, gw_ip) = transit(index);
    let host = format!(
        "netns add {ns}\n\
         link add {hi} type veth peer name uplink netns {ns}\n\
         addr add {host_ip}/30 dev {hi}\n\
         link set {hi} up\n",
        ns = n.netns,
        hi = n.host_if,
    );
    run("ip setup", Command::new("ip").arg("-batch").arg("-"), Some(&host))?;
    let inside = format!(
        "link set dev lo up\n\
         addr add {gw_ip}/30 dev uplink\n\
         link set dev uplink up\n\
         route add default via {host_ip}\n"
    );
    run("ip setup (gateway)", Command::new("ip").args(["-n", &n.netns, "-batch", "-"]), Some(&inside))?;
    enable_forwarding(&n.netns)?;
    let rules = gateway_rules(policy, gw_ip);
    run("nft gateway rules", Command::new("ip").args(["netns", "exec", &n.netns, "nft", "-f", "-"]), Some(&rules))
}

/// The gateway's nftables rules for `policy` at transit `index`: what [`build`] loads.
/// A ready gateway made for one policy serves another after [`apply_policy`].
pub fn rules_for(policy: &NetworkPolicy, index: u32) -> String {
    gateway_rules(policy, transit(index).1)
}

/// Gives a gateway namespace another name: its bind mount is made under the new name,
/// then the old one is detached and removed, without touching the namespace or anything
/// in it.
pub fn rename_netns(from: &str, to: &str) -> Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let (old, new) = (format!("/run/netns/{from}"), format!("/run/netns/{to}"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&new)
        .map_err(|e| RuntimeError::Network(format!("rename netns {from} to {to}: {e}")))?;
    if let Err(e) = mount(Some(old.as_str()), new.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        let _ = std::fs::remove_file(&new);
        return Err(RuntimeError::Network(format!("rename netns {from} to {to}: {e}")));
    }
    let _ = umount2(old.as_str(), MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(&old);
    Ok(())
}

/// Replaces the outbound policy of a running sandbox's gateway in one nft transaction
/// (the old rules and the new never both apply, and a failure leaves the old ones).
/// Connections already open stay open (`ct state established`), as at create.
pub fn apply_policy(id: &str, index: u32, policy: &NetworkPolicy) -> Result<()> {
    let n = names(id, index);
    let (_, gw_ip) = transit(index);
    let rules = format!("flush table ip gw\n{}", gateway_rules(policy, gw_ip));
    run(
        "nft gateway rules (update)",
        Command::new("ip").args(["netns", "exec", &n.netns, "nft", "-f", "-"]),
        Some(&rules),
    )
}

/// The gateway's nftables table for `policy`: forwarding from the sandbox filtered, the
/// sandbox's traffic translated to the gateway's transit address.
///
/// The allow/deny decision is one regular chain (`outbound`) that both paths out jump to:
/// `forward` for the sandbox's own connections, and `output` for the connections the
/// egress proxy opens from this namespace on the sandbox's behalf; so an intercepted
/// connection is held to the same policy, and, leaving through the uplink, to the host's
/// rules, exactly as forwarded traffic is. Nothing from the uplink reaches the proxy's
/// listener (`input`).
fn gateway_rules(policy: &NetworkPolicy, gw_ip: Ipv4Addr) -> String {
    let mut rules = String::from("table ip gw {\n  chain outbound {\n");
    for c in &policy.allow_out {
        rules.push_str(&format!("    ip daddr {c} accept\n"));
    }
    for c in &policy.deny_out {
        rules.push_str(&format!("    ip daddr {c} drop\n"));
    }
    if policy.allow_internet {
        let dns = host_resolvers();
        if !dns.is_empty() {
            let set = dns.join(", ");
            rules.push_str(&format!("    ip daddr {{ {set} }} udp dport 53 accept\n"));
            rules.push_str(&format!("    ip daddr {{ {set} }} tcp dport 53 accept\n"));
        }
        rules.push_str(&format!("    ip daddr {{ {} }} drop\n", NOT_INTERNET.join(", ")));
        rules.push_str("    accept\n");
    }
    rules.push_str(
        "    drop\n  }\n\
         \x20 chain forward { type filter hook forward priority 0; policy drop;\n\
         \x20   ct state established,related accept\n\
         \x20   iifname \"uplink\" drop\n\
         \x20   jump outbound\n\
         \x20 }\n\
         \x20 chain output { type filter hook output priority 0; policy accept;\n\
         \x20   oifname != \"uplink\" accept\n\
         \x20   ct state established,related accept\n\
         \x20   jump outbound\n\
         \x20 }\n\
         \x20 chain input { type filter hook input priority 0; policy accept;\n\
         \x20   iifname \"uplink\" ct state established,related accept\n\
         \x20   iifname \"uplink\" drop\n\
         \x20 }\n",
    );
    if policy.intercept_https {
        rules.push_str(&format!(
            "  chain prerouting {{ type nat hook prerouting priority -100; policy accept;\n    iifname \"{GATEWAY_IF}\" tcp dport 443 redirect to :{EGRESS_PORT}\n  }}\n"
        ));
    }
    rules.push_str(&format!(
        "  chain postrouting {{ type nat hook postrouting priority 100; policy accept;\n    oifname \"uplink\" snat to {gw_ip}\n  }}\n}}\n"
    ));
    rules
}

/// The IPv4 name servers of the host's `/etc/resolv.conf` (which templates copy): the
/// one thing in private ranges a sandbox with internet access reaches by default.
/// Loopback ones (systemd-resolved's 127.0.0.53) are the sandbox's own loopback inside:
/// useless, left out.
fn host_resolvers() -> Vec<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .map(|a| a.to_string())
        .collect()
}

/// Turns IPv4 forwarding on inside a named namespace (the setting is per namespace and
/// new ones start with it off): from a thread that enters the namespace.
fn enable_forwarding(netns: &str) -> Result<()> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))
        .map_err(|e| RuntimeError::Network(format!("open netns {netns}: {e}")))?;
    std::thread::spawn(move || -> std::io::Result<()> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
    })
    .join()
    .map_err(|_| RuntimeError::Network("forwarding thread panicked".into()))?
    .map_err(|e| RuntimeError::Network(format!("enable forwarding in {netns}: {e}")))
}

/// Removes the gateway namespace, and with it every veth of the sandbox (each pair has an
/// end in there). Devices are never deleted by name: once torn down, the index may
/// already belong to another sandbox. Idempotent.
pub fn teardown(id: &str, index: u32) {
    delete_netns(&names(id, index).netns);
}

/// Removes a named network namespace (and so every veth with an end in it). Idempotent.
pub fn delete_netns(netns: &str) {
    if std::fs::symlink_metadata(format!("/run/netns/{netns}")).is_err() {
        return;
    }
    let _ = run("ip netns del", Command::new("ip").args(["netns", "del", netns]), None);
}

/// Name of the gateway's end of the pair to the sandbox, in the gateway namespace.
pub const GATEWAY_IF: &str = "gw";

/// The interface index of the sandbox's eth0. CRIU restores it by asking, from the
/// gateway namespace, for a new link with the dumped index; the kernel looks that index
/// up in the asking namespace first, and a device found there (the gateway's own `lo` is
/// 1 and `uplink` 2) turns the request into a change of that device, refused. So eth0
/// never takes an index the gateway's devices have.
const SANDBOX_IF_INDEX: u32 = 10;

/// Plugs a booting sandbox (process `pid`, in its own network namespace) into its
/// gateway: the pair is made with one end, [`Names::sandbox_if`], directly in the
/// sandbox's namespace (its agent renames it eth0) and the other, [`GATEWAY_IF`], in the
/// gateway's, given its address and brought up; one `ip` run in the gateway namespace.
pub fn plug_into(n: &Names, pid: u32) -> Result<()> {
    let batch = format!(
        "link add {} index {SANDBOX_IF_INDEX} netns {pid} type veth peer name {GATEWAY_IF}\n{}",
        n.sandbox_if,
        gateway_link_up_batch()
    );
    run("veth into sandbox", Command::new("ip").args(["-n", &n.netns, "-batch", "-"]), Some(&batch))
}

/// Gives the gateway's end of the pair to the sandbox, made by CRIU at restore (in the
/// gateway namespace, where it runs: `criu.rs`), its address and brings it up; or brings
/// the route to the sandbox back after [`gateway_hold`]. Idempotent.
pub fn gateway_link_up(n: &Names) -> Result<()> {
    run("gateway link up", Command::new("ip").args(["-n", &n.netns, "-batch", "-"]), Some(&gateway_link_up_batch()))
}

/// Holds what comes for the sandbox in its gateway: the route to it becomes a blackhole
/// (nothing from outside or from the egress proxy reaches it) until
/// [`gateway_link_up`]. The link itself stays up: a sandbox whose eth0 lost its carrier
/// would have its routes dumped as "linkdown", which CRIU cannot restore.
pub fn gateway_hold(n: &Names) -> Result<()> {
    run(
        "gateway hold",
        Command::new("ip").args(["-n", &n.netns, "route", "replace", "blackhole", &format!("{SANDBOX_NET}/30")]),
        None,
    )
}

fn gateway_link_up_batch() -> String {
    // `replace`: the same again if it is there (recovery may not know).
    format!(
        "addr replace {GATEWAY_IP}/30 dev {GATEWAY_IF}\n\
         link set dev {GATEWAY_IF} up\n\
         route replace {SANDBOX_NET}/30 dev {GATEWAY_IF} src {GATEWAY_IP}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transit_subnets_do_not_overlap() {
        assert_eq!(transit(0), (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2)));
        assert_eq!(transit(1), (Ipv4Addr::new(10, 200, 0, 5), Ipv4Addr::new(10, 200, 0, 6)));
        assert_eq!(transit(64), (Ipv4Addr::new(10, 200, 1, 1), Ipv4Addr::new(10, 200, 1, 2)));
        assert_eq!(transit(MAX_INDEX).1, Ipv4Addr::new(10, 200, 255, 254));
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(NetworkPolicy { allow_out: vec!["10.0.0.0/8".into(), "1.2.3.4".into()], ..NetworkPolicy::open() }
            .validate()
            .is_ok());
        assert!(NetworkPolicy { deny_out: vec!["10.0.0.0/33".into()], ..NetworkPolicy::open() }.validate().is_err());
        assert!(NetworkPolicy { deny_out: vec!["example.com".into()], ..NetworkPolicy::open() }.validate().is_err());
        assert!(NetworkPolicy { deny_out: vec!["1.2.3.4; drop".into()], ..NetworkPolicy::open() }.validate().is_err());
    }

    #[test]
    fn gateway_rules_are_valid_nftables_with_and_without_interception() {
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipped: no nft");
            return;
        }
        for intercept_https in [false, true] {
            let policy = NetworkPolicy {
                allow_out: vec!["10.1.0.0/16".into()],
                deny_out: vec!["1.2.3.4".into()],
                intercept_https,
                ..NetworkPolicy::open()
            };
            let rules = gateway_rules(&policy, Ipv4Addr::new(10, 200, 0, 2));
            assert_eq!(rules.contains(&format!("redirect to :{EGRESS_PORT}")), intercept_https);
            let checked = Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    c.stdin.take().unwrap().write_all(rules.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            if String::from_utf8_lossy(&checked.stderr).contains("Operation not permitted") {
                eprintln!("skipped: nft -c needs CAP_NET_ADMIN");
                return;
            }
            assert!(checked.status.success(), "{rules}\n{}", String::from_utf8_lossy(&checked.stderr));
        }
    }
}
