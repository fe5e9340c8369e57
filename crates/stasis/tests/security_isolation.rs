//! Issue 9: in-sandbox root is contained. Every attempt below runs as root inside a
//! sandbox and must fail (or stay inside the sandbox), and a sandbox exhausting its
//! resources stops itself, never the host. See docs/security.md for the model.
//!
//! All network traffic stays on 127.0.0.1 of the host or inside the sandbox's own
//! network namespace.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique_id, wait_for, Host, HostMarker, Output};

/// Runs `cmd` as root in the sandbox, whatever its exit code.
fn root(h: &Host, id: &str, cmd: &str) -> Output {
    h.stasis(&["runtime", "exec", "--user", "root", id, cmd])
}

/// Runs `cmd` as root in the sandbox and requires exit 0; returns stdout.
fn root_ok(h: &Host, id: &str, cmd: &str) -> String {
    let out = root(h, id, cmd);
    assert_eq!(out.code, 0, "{cmd}: exit {}\n{}{}", out.code, out.stdout, out.stderr);
    out.stdout
}

fn sandbox(h: &Host, prefix: &str, extra: &[&str]) -> String {
    let id = unique_id(prefix);
    let mut args = vec!["create", id.as_str()];
    args.extend_from_slice(extra);
    h.rt(&args);
    id
}

fn cgroup_file(controller: &str, id: &str, file: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(controller).join("stasis").join(id).join(file)
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().parse().unwrap()
}

/// Host pids of a sandbox's processes (its pids cgroup, v1 or v2).
fn sandbox_pids(id: &str) -> Vec<u32> {
    for d in ["/sys/fs/cgroup/pids/stasis", "/sys/fs/cgroup/stasis"] {
        if let Ok(s) = std::fs::read_to_string(format!("{d}/{id}/cgroup.procs")) {
            return s.lines().filter_map(|l| l.parse().ok()).collect();
        }
    }
    vec![]
}

/// The host stays usable: it can start processes and open files.
fn assert_host_fine() {
    let out = std::process::Command::new("/bin/sh").args(["-c", "echo host-ok"]).output().expect("host can fork");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "host-ok");
    let files: Vec<_> =
        (0..64).map(|_| std::fs::File::open("/proc/self/status").expect("host can open files")).collect();
    drop(files);
}

/// The sandbox's agent answers a new command (within 20 s: a bomb may still be exiting).
fn assert_agent_answers(h: &Host, id: &str) {
    let start = Instant::now();
    loop {
        let out = h.stasis(&["runtime", "exec", id, "echo alive"]);
        if out.code == 0 && out.stdout.trim() == "alive" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent of {id} no longer answers: {}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn host_files_cannot_be_read_or_written() {
    let h = Host::new("secfs");
    let id = sandbox(&h, "secfs", &[]);
    let m = HostMarker::new();
    let path = m.path();
    let data_dir = h.data_dir.to_str().unwrap();
    let agent = std::fs::read(common::agent_binary()).unwrap();

    // Reading: by its path, through every /proc/*/root, by searching, through the data
    // dir paths the sandbox can learn from its mount table.
    let read = root(
        &h,
        &id,
        &format!(
            "cat {path}; for r in /proc/[0-9]*/root /proc/self/root /proc/thread-self/root; do cat $r{path}; done; \
             find / -xdev -name secret -path '*stasis-sec-*' 2>/dev/null; ls -la {data_dir}; \
             cat /proc/1/root/../../..{path}; true"
        ),
    );
    assert!(!read.stdout.contains(&m.secret), "the sandbox read a host file:\n{}", read.stdout);
    assert!(!read.stdout.contains("sandboxes"), "the sandbox lists the host data dir:\n{}", read.stdout);
    // /proc/1/root is the sandbox's own root.
    assert_eq!(root_ok(&h, &id, "readlink /proc/1/root").trim(), "/");
    assert_eq!(
        root_ok(&h, &id, "stat -c %d:%i /proc/1/root/ /").lines().collect::<std::collections::HashSet<_>>().len(),
        1,
        "/proc/1/root is not the sandbox root"
    );

    // Writing: the same path inside is the sandbox's own file, never the host's.
    let dir = m.dir.to_str().unwrap();
    root(&h, &id, &format!("mkdir -p {dir}; echo pwned > {path}; echo pwned > /proc/1/root{path}; echo pwned > /proc/self/root{path}; true"));
    assert!(m.unchanged(), "the sandbox wrote a host file");
    assert!(std::fs::read_dir(&m.dir).unwrap().count() == 1, "the sandbox created files on the host");

    // /proc/self/exe and /proc/1/exe (the agent, from a layer shared by all sandboxes):
    // writing them fails, and the host's copies are untouched.
    for target in ["/proc/self/exe", "/proc/1/exe", "/.stasis/agent"] {
        let out = root(&h, &id, &format!("cat /bin/true > {target}"));
        assert_ne!(out.code, 0, "writing {target} must fail: {}", out.stdout);
    }
    let out = root(&h, &id, "python3 -c \"open('/proc/self/exe','r+b').write(b'x')\"");
    assert_ne!(out.code, 0, "opening /proc/self/exe for writing must fail");
    assert_eq!(std::fs::read(common::agent_binary()).unwrap(), agent, "the host's agent binary changed");
    for layer in std::fs::read_dir(h.data_dir.join("agents")).unwrap() {
        let p = layer.unwrap().path().join(".stasis/agent");
        if p.exists() {
            assert_eq!(std::fs::read(&p).unwrap(), agent, "the shared agent layer changed: {}", p.display());
        }
    }
    // The sandbox still works after all this.
    assert_eq!(h.sh(&id, "echo alive").trim(), "alive");
}

#[test]
fn host_and_other_sandbox_processes_are_invisible_and_untouchable() {
    let h = Host::new("secps");
    let a = sandbox(&h, "secpsa", &[]);
    let b = sandbox(&h, "secpsb", &[]);
    h.sh_as(&b, "root", "(nohup sleep 300 >/dev/null 2>&1 &)");
    let mut b_sleep = 0;
    wait_for("b's sleep on the host", || {
        b_sleep = sandbox_pids(&b)
            .into_iter()
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default().starts_with("sleep\x00300")
            })
            .unwrap_or(0);
        b_sleep != 0
    });
    let me = std::process::id();

    // Only a's own processes: its agent (pid 1) and the command's shell.
    let procs = root_ok(&h, &a, "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; done");
    assert_eq!(
        root_ok(&h, &a, "tr '\\0' ' ' < /proc/1/cmdline").trim(),
        "/.stasis/agent serve",
        "pid 1 must be the sandbox's agent"
    );
    for line in procs.lines() {
        assert!(
            line.contains("/.stasis/agent") || line.contains("bash") || line.contains("tr "),
            "unexpected process in a: {line}\n{procs}"
        );
        assert!(!line.contains("sleep"), "a sees b's process: {line}");
    }
    assert!(procs.lines().count() <= 6, "a sees more than its own processes:\n{procs}");

    // Host pids (the test itself, b's sleep) cannot be signalled or traced from a.
    let ptrace = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for pid in map(int, sys.argv[1:]):
    r = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    print(pid, r, ctypes.get_errno())
"#;
    let out = root_ok(&h, &a, &format!("python3 -c '{ptrace}' {me} {b_sleep}; kill -0 {me} && echo signalled-host; kill -9 {b_sleep} && echo killed-b; true"));
    for line in out.lines().filter(|l| l.split(' ').count() == 3) {
        let f: Vec<i64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[1], -1, "ptrace of outside pid {} succeeded: {out}", f[0]);
        assert_eq!(f[2], 3, "ptrace of outside pid {} must be ESRCH (no such pid here): {out}", f[0]);
    }
    assert!(!out.contains("signalled-host") && !out.contains("killed-b"), "{out}");
    assert!(common::process_alive(b_sleep.into()), "b's process died from a's kill");
    // b itself sees its sleep: the check above is about isolation, not a missing process.
    assert!(h.sh(&b, "ps -eo args").contains("sleep 300"));
}

#[test]
fn mounts_and_new_namespaces_are_refused() {
    let h = Host::new("secmnt");
    let id = sandbox(&h, "secmnt", &[]);
    let before = root_ok(&h, &id, "cat /proc/self/mountinfo");
    for cmd in [
        "mount -t tmpfs x /mnt",
        "mount --bind /etc /mnt",
        "mount -t proc proc /mnt",
        "mount -o remount,rw /sys",
        "mount -o remount,exec /dev",
        "umount -l /proc",
        "umount /dev/null",
        "unshare -U true",
        "unshare -m true",
        "unshare -n true",
        "unshare -p -f true",
        "unshare -r true",
        "nsenter -t 1 -m true",
        "nsenter -t 1 -n true",
    ] {
        let out = root(&h, &id, cmd);
        assert_ne!(out.code, 0, "as root in a sandbox, `{cmd}` must fail: {}", out.stdout);
    }
    assert_eq!(root_ok(&h, &id, "cat /proc/self/mountinfo"), before, "the mount table changed");
    let status = root_ok(&h, &id, "grep ^Seccomp /proc/self/status");
    assert!(status.contains("Seccomp:\t2"), "the seccomp filter is not installed: {status}");
}

/// The seccomp deny list (crates/stasis-agent/src/boot/seccomp.rs) with x86_64 numbers and
/// arguments that are harmless even if a call went through: each must answer EPERM.
#[cfg(target_arch = "x86_64")]
const DENIED_CALLS: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = {
  "kexec_load": (246, 0, 0, 0, 0), "kexec_file_load": (320, -1, -1, 0, 0, 0),
  "init_module": (175, 0, 0, 0), "finit_module": (313, -1, 0, 0), "delete_module": (176, 0, 0),
  "reboot": (169, 0xfee1dead, 672274793, 0, 0),
  "swapon": (167, 0, 0), "swapoff": (168, 0), "acct": (163, 0),
  "settimeofday": (164, 0, 0), "clock_settime": (227, 0, 0), "clock_adjtime": (305, 0, 0), "adjtimex": (159, 0),
  "open_by_handle_at": (304, -1, 0, 0), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, -1, -1, 0),
  "keyctl": (250, 0, 0, 0, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "request_key": (249, 0, 0, 0, 0),
  "lookup_dcookie": (212, 0, 0, 0), "quotactl": (179, 0, 0, 0, 0), "syslog": (103, 0, 0, 0),
  "iopl": (172, 0), "ioperm": (173, 0, 0, 0), "userfaultfd": (323, 0),
  "mount": (165, 0, 0, 0, 0, 0), "umount2": (166, 0, 0), "pivot_root": (155, 0, 0),
  "open_tree": (428, -1, 0, 0), "move_mount": (429, -1, 0, -1, 0, 0), "fsopen": (430, 0, 0),
  "fsconfig": (431, -1, 0, 0, 0, 0), "fsmount": (432, -1, 0, 0), "fspick": (433, -1, 0, 0),
  "mount_setattr": (442, -1, 0, 0, 0, 0), "unshare": (272, 0), "setns": (308, -1, 0),
}
for name, (nr, *args) in calls.items():
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    print(name, r, ctypes.get_errno())
# clone with namespace flags (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET) | SIGCHLD
for name, flag in [("clone_newuser", 0x10000000), ("clone_newns", 0x20000), ("clone_newnet", 0x40000000), ("clone_newtime", 0x80)]:
    r = libc.syscall(56, ctypes.c_long(flag | 17), 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    print(name, r, ctypes.get_errno())
r = libc.syscall(435, 0, 0)
print("clone3", r, ctypes.get_errno())
"#;

#[cfg(target_arch = "x86_64")]
#[test]
fn denied_syscalls_fail_for_root_kernel_modules_clock_reboot() {
    let h = Host::new("secsys");
    let id = sandbox(&h, "secsys", &[]);
    let out = root_ok(&h, &id, &format!("python3 -c '{DENIED_CALLS}'"));
    let mut seen = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (name, r, errno) = (f[0], f[1], f[2]);
        seen += 1;
        assert_eq!(r, "-1", "{name} succeeded as root in a sandbox:\n{out}");
        let want = if name == "clone3" { "38" } else { "1" }; // ENOSYS so libc falls back to clone; else EPERM
        assert_eq!(errno, want, "{name}: errno {errno}, want {want} (seccomp):\n{out}");
    }
    assert_eq!(seen, 37 + 4 + 1, "every denied call was tried:\n{out}");

    // The same through the tools an attacker would use. Values are chosen so that even
    // a success would not harm the host (the current time, sysrq help, the same pattern).
    let host_time = std::time::SystemTime::now();
    for cmd in [
        "date -s @$(date +%s)",
        "hwclock --systohc",
        "insmod /lib/modules/$(uname -r)/kernel/drivers/net/dummy.ko",
        "modprobe dummy",
        "echo h > /proc/sysrq-trigger",
        "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern",
        "cat /proc/sys/kernel/modprobe > /proc/sys/kernel/modprobe",
        "echo 0 > /proc/sys/kernel/randomize_va_space",
        "echo > /sys/kernel/uevent_helper",
        "dmesg",
        "cat /proc/kmsg",
        "cat /proc/kcore",
    ] {
        let out = root(&h, &id, &format!("timeout 5 sh -c '{cmd}' >/dev/null"));
        assert_ne!(out.code, 0, "as root in a sandbox, `{cmd}` must fail");
    }
    let drift = std::time::SystemTime::now().duration_since(host_time).unwrap();
    assert!(drift < Duration::from_secs(60), "host clock moved");
    assert_eq!(h.sh(&id, "echo alive").trim(), "alive");
}

/// The sandbox's own network: no host interface is visible, raw and packet sockets are
/// refused even to root (CAP_NET_RAW is not in the sandbox's set, issue 13), and what it
/// sends to 127.0.0.1 stays inside.
#[test]
fn raw_sockets_are_refused_and_the_network_is_the_sandbox_own() {
    let h = Host::new("secnet");
    let id = sandbox(&h, "secnet", &[]);

    // No host interface is visible (by MAC address; loopback has none).
    let host_macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("address")).ok())
        .map(|s| s.trim().to_string())
        .filter(|m| m != "00:00:00:00:00:00" && !m.is_empty())
        .collect();
    let inside = root_ok(&h, &id, "for i in /sys/class/net/*; do echo ${i##*/} $(cat $i/address); done");
    for mac in &host_macs {
        assert!(!inside.contains(mac.as_str()), "a host interface ({mac}) is visible in the sandbox:\n{inside}");
    }

    // The host's loopback traffic: a UDP socket of the test receives datagrams the test
    // sends to itself on 127.0.0.1 all along.
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let host_marker = unique_id("hostpkt");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sender = {
        let (stop, marker, received) = (stop.clone(), host_marker.clone(), received.clone());
        std::thread::spawn(move || {
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                tx.send_to(marker.as_bytes(), ("127.0.0.1", port)).unwrap();
                if let Ok(n) = rx.recv(&mut buf) {
                    received.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        })
    };

    // In the sandbox: raw sockets (which would sniff or forge packets) are refused; its
    // own datagrams to 127.0.0.1 go to its own loopback, never the host test's port.
    let sbx_marker = unique_id("sbxpkt");
    let probe = format!(
        r#"
import socket, time
for name, args in [("packet", (socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))), ("raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP))]:
    try:
        socket.socket(*args).close()
        print(name, "opened")
    except PermissionError:
        print(name, "refused")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + 2
while time.time() < end:
    u.sendto(b"{sbx_marker}", ("127.0.0.1", {port}))
    time.sleep(0.02)
"#
    );
    let out = root_ok(&h, &id, &format!("python3 -c '{probe}'"));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert_eq!(out.trim(), "packet refused\nraw refused", "root opened a raw socket in the sandbox");
    let got = received.lock().unwrap();
    assert!(got.iter().any(|m| m == &host_marker), "the host's own datagrams arrive (control)");
    assert!(!got.iter().any(|m| m.contains(&sbx_marker)), "the sandbox reached the host's 127.0.0.1");
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    let h = Host::new("secfork");
    let id = sandbox(&h, "secfork", &[]);
    let max = read_u64(&cgroup_file("pids", &id, "pids.max"));
    assert!(max > 0 && max <= 4096, "pids.max {max}");

    // An exponential bomb that ends by itself after 8 s: every process forks as fast as it
    // can; the original reports how many forks were refused.
    let bomb = r#"
import os, time
me = os.getpid()
end = time.time() + 8
refused = 0
while time.time() < end:
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        time.sleep(0.01)
        continue
if os.getpid() == me:
    print("refused", refused)
os._exit(0)
"#;
    let out = root(&h, &id, &format!("python3 -c '{bomb}'"));
    assert_host_fine();
    let peak = read_u64(&cgroup_file("pids", &id, "pids.peak"));
    assert!(peak <= max, "the sandbox had {peak} tasks, over its limit of {max}");
    let events = std::fs::read_to_string(cgroup_file("pids", &id, "pids.events")).unwrap();
    assert!(
        !events.contains("max 0"),
        "the bomb never reached the limit ({events}); output: {}{}",
        out.stdout,
        out.stderr
    );
    assert_agent_answers(&h, &id);

    // A bomb that never stops: the sandbox can still be killed, and nothing of it remains.
    root(&h, &id, "(nohup bash -c ':(){ :|:& };:' >/dev/null 2>&1 &)");
    wait_for("the second bomb to reach the limit", || read_u64(&cgroup_file("pids", &id, "pids.current")) + 16 >= max);
    assert_host_fine();
    let start = Instant::now();
    h.rt(&["kill", &id]);
    assert!(start.elapsed() < Duration::from_secs(30), "kill took {:?}", start.elapsed());
    assert!(sandbox_pids(&id).is_empty(), "processes of the bomb survived the kill");
    assert!(!h.sandbox_dir(&id).exists());
}

#[test]
fn memory_bomb_is_contained_by_the_memory_limit() {
    let h = Host::new("secmem");
    let id = sandbox(&h, "secmem", &["--memory-mb", "128"]);
    let limit = 128u64 << 20;
    // Several processes together, each under the limit alone, and a tmpfs filler.
    let bomb = "for i in 1 2 3 4; do python3 -c \"import time; b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)\" & done; wait; \
                dd if=/dev/zero of=/dev/shm/fill bs=1M count=512 2>&1; rm -f /dev/shm/fill; true";
    let out = root(&h, &id, bomb);
    let max_usage = read_u64(&cgroup_file("memory", &id, "memory.max_usage_in_bytes"));
    assert!(max_usage <= limit, "the sandbox used {max_usage} bytes, over its {limit} limit");
    let usage = &h.info(&id)["usage"];
    assert!(
        usage["oomKills"].as_u64().unwrap_or(0) >= 1,
        "4 x 100 MiB under 128 MiB must OOM: {usage}\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("No space left") || out.stdout.contains("out of memory") || out.code != 0,
        "/dev/shm filler: {}",
        out.stdout
    );
    assert_host_fine();
    assert_agent_answers(&h, &id);
}

/// The writable layer lives on the sandbox's own disk (a sparse ext4 image of its disk
/// size): neither fallocate nor dd gets past it, and the host disk is untouched.
#[test]
fn disk_filler_is_stopped_by_a_quota() {
    let h = Host::new("secdisk");
    // A small disk keeps the test quick; the default (4096 MiB) works the same way.
    let quota_mb = 256u64;
    let id = sandbox(&h, "secdisk", &["--disk-mb", "256"]);
    let want = quota_mb + 256;
    // fallocate reserves real blocks at once (what a quota must refuse); dd then writes.
    let out = root(&h, &id, &format!("fallocate -l {want}M /root/fill && echo allocated; rm -f /root/fill; dd if=/dev/zero of=/root/fill bs=1M count={want} 2>&1 | tail -1; du -sm /root/fill"));
    let written_mb: u64 =
        out.stdout.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    root(&h, &id, "rm -f /root/fill");
    assert!(
        !out.stdout.contains("allocated"),
        "fallocate of {want} MiB succeeded in a sandbox with a {quota_mb} MiB disk"
    );
    assert!(written_mb <= quota_mb, "the sandbox wrote {written_mb} MiB with a {quota_mb} MiB disk:\n{}", out.stdout);
    assert_host_fine();
    assert_agent_answers(&h, &id);
}

#[test]
fn open_file_flood_is_stopped_by_a_limit() {
    let h = Host::new("secnofile");
    let id = sandbox(&h, "secnofile", &[]);
    let hard: u64 = root_ok(&h, &id, "ulimit -Hn").trim().parse().expect("a finite hard limit on open files");
    // Root in the sandbox cannot raise it (CAP_SYS_RESOURCE of its own namespace only).
    let out = root(&h, &id, &format!("ulimit -Hn {}", hard * 4));
    assert_ne!(out.code, 0, "in-sandbox root raised its hard RLIMIT_NOFILE above {hard}");
    // One process opening files in a loop stops at the limit with EMFILE; four at once
    // stop too, and the host is fine.
    let flood = r#"
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds = []
try:
    while len(fds) < 10_000_000:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print("unbounded")
except OSError as e:
    print("stopped", len(fds), e.errno)
"#;
    let out = root_ok(&h, &id, &format!("for i in 1 2 3 4; do python3 -c '{flood}' & done; wait"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f[0], "stopped", "{out}");
        let n: u64 = f[1].parse().unwrap();
        assert!(n <= hard, "opened {n} files with a limit of {hard}");
        assert!(f[2] == "24" || f[2] == "23", "stopped by EMFILE/ENFILE, got errno {}", f[2]);
    }
    assert_host_fine();
    assert_agent_answers(&h, &id);
}
