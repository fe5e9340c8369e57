//! Issue 13: in-sandbox root holds a container's capabilities, not the full set, and the
//! seccomp profile cannot be stepped around (x32, foreign ABI) or into io_uring. All of it
//! must hold in a fresh sandbox and in every sandbox CRIU recreates: after pause and
//! resume, from a snapshot, in a fork. See docs/security.md.

mod common;

use common::api::{id, Api};
use common::{unique_id, Host, Output, Server};
use serde_json::json;

/// `CapBnd` the sandbox must show: Docker's default set without CAP_NET_RAW
/// (crates/stasis-agent/src/boot/caps.rs).
const BOUNDING: &str = "00000000a80405fb";

/// Probes run as root in the sandbox; one line per probe, `name result`. Calls that could
/// get the process killed run in a child so the script reports them.
const PROBES: &str = r#"
import ctypes, mmap, os, socket, struct, fcntl
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ok" if r >= 0 else "errno%d" % ctypes.get_errno()
def in_child(f):
    pid = os.fork()
    if pid == 0:
        f()
        os._exit(0)
    st = os.waitpid(pid, 0)[1]
    return "signal%d" % os.WTERMSIG(st) if os.WIFSIGNALED(st) else "exit%d" % os.WEXITSTATUS(st)
def int80_getpid():
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(b"\xb8\x14\x00\x00\x00\xcd\x80\xc3")  # mov eax, 20 (i386 getpid); int 0x80; ret
    ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()
def sock(*a):
    try:
        socket.socket(*a).close()
        return "ok"
    except OSError as e:
        return "errno%d" % e.errno
def lo_flags():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0))  # SIOCGIFFLAGS
    try:
        fcntl.ioctl(s, 0x8914, req)  # SIOCSIFFLAGS, the same flags: harmless if it worked
        return "ok"
    except OSError as e:
        return "errno%d" % e.errno
def status(pid, key):
    for line in open("/proc/%s/status" % pid):
        if line.startswith(key + ":"):
            return line.split()[1]
for key in ["CapBnd", "CapInh", "CapAmb", "CapEff"]:
    print("self_" + key, status("self", key))
print("agent_CapBnd", status(1, "CapBnd"))
print("x32_getpid", in_child(lambda: libc.syscall(ctypes.c_long(0x40000000 | 39))))
print("i386_getpid", in_child(int80_getpid))
params = ctypes.create_string_buffer(120)
print("io_uring_setup", call(425, 1, params))
print("io_uring_enter", call(426, -1, 0, 0, 0, 0, 0))
print("io_uring_register", call(427, -1, 0, 0, 0))
print("unshare_newuser", call(272, 0x10000000))
print("keyctl", call(250, 0, -3, 0, 0, 0))
print("bpf", call(321, 0, 0, 0))
print("personality_no_aslr", call(135, 0x0040000))
print("personality_query", call(135, 0xffffffff))
print("name_to_handle_at", call(303, -100, ctypes.c_char_p(b"/"), ctypes.create_string_buffer(128), ctypes.create_string_buffer(4), 0))
print("af_packet", sock(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
print("raw_ip", sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
print("icmp_dgram", sock(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
print("net_admin", lo_flags())
"#;

/// What each probe must answer. `signal31` is SIGSYS: the ABI guard kills the caller.
const EXPECTED: &[(&str, &str)] = &[
    ("self_CapBnd", BOUNDING),
    ("self_CapInh", "0000000000000000"),
    ("self_CapAmb", "0000000000000000"),
    ("self_CapEff", BOUNDING),
    ("agent_CapBnd", BOUNDING),
    ("x32_getpid", "signal31"),
    ("i386_getpid", "signal31"),
    ("io_uring_setup", "errno1"),
    ("io_uring_enter", "errno1"),
    ("io_uring_register", "errno1"),
    ("unshare_newuser", "errno1"),
    ("keyctl", "errno1"),
    ("bpf", "errno1"),
    ("personality_no_aslr", "errno1"),
    ("personality_query", "ok"),
    ("name_to_handle_at", "errno1"),
    ("af_packet", "errno1"),
    ("raw_ip", "errno1"),
    ("icmp_dgram", "ok"),
    ("net_admin", "errno1"),
];

/// Checks the whole profile through `run(user, command)`: the probes as root, and `sudo`
/// as the default user (it needs CAP_SETUID/SETGID and must keep working).
fn assert_hardened(what: &str, run: impl Fn(&str, &str) -> Output) {
    let out = run("root", &format!("python3 -c '{PROBES}'"));
    assert_eq!(out.code, 0, "{what}: probes failed: {}{}", out.stdout, out.stderr);
    let got: std::collections::BTreeMap<&str, &str> = out.stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    let wrong: Vec<String> = EXPECTED
        .iter()
        .filter(|(k, v)| got.get(k) != Some(v))
        .map(|(k, v)| format!("{k}: got {:?}, want {v}", got.get(k)))
        .collect();
    assert!(wrong.is_empty(), "{what}:\n{}\n(all probes:\n{})", wrong.join("\n"), out.stdout);

    let sudo = run("user", "sudo -n true && sudo -n grep CapBnd /proc/self/status && sudo -n id -u");
    assert_eq!(sudo.code, 0, "{what}: sudo as user failed: {}{}", sudo.stdout, sudo.stderr);
    assert!(sudo.stdout.contains(BOUNDING), "{what}: sudo's root has another bounding set: {}", sudo.stdout);
    assert_eq!(sudo.stdout.lines().last(), Some("0"), "{what}: sudo did not make root: {}", sudo.stdout);
}

fn runtime_exec<'a>(h: &'a Host, id: &str) -> impl Fn(&str, &str) -> Output + 'a {
    let id = id.to_string();
    move |user, cmd| h.stasis(&["runtime", "exec", "--user", user, &id, cmd])
}

/// A root process started before a pause: after the resume it is a task CRIU recreated.
fn start_sleeper(h: &Host, id: &str) -> String {
    h.sh_as(id, "root", "nohup sleep 100000 >/dev/null 2>&1 & echo $!").trim().to_string()
}

fn sleeper_bounding(h: &Host, id: &str, pid: &str) -> String {
    h.sh_as(id, "root", &format!("grep CapBnd /proc/{pid}/status")).split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn a_fresh_sandbox_has_a_container_capability_set_and_an_abi_tight_filter() {
    let h = Host::new("hard");
    let id = unique_id("hard");
    h.rt(&["create", &id]);
    assert_hardened("fresh sandbox", runtime_exec(&h, &id));
}

#[test]
fn pause_and_resume_keep_the_capability_set_and_the_filter() {
    let h = Host::new("hardpr");
    let id = unique_id("hardpr");
    h.rt(&["create", &id]);
    let sleeper = start_sleeper(&h, &id);
    h.rt(&["pause", &id]);
    h.rt(&["resume", &id]);
    assert_eq!(sleeper_bounding(&h, &id, &sleeper), BOUNDING, "a restored process got its capabilities back");
    assert_hardened("after pause and resume", runtime_exec(&h, &id));
    // A second cycle restores what the first one restored.
    h.rt(&["pause", &id]);
    h.rt(&["resume", &id]);
    assert_hardened("after a second pause and resume", runtime_exec(&h, &id));
}

#[test]
fn a_sandbox_from_a_snapshot_keeps_the_capability_set_and_the_filter() {
    let h = Host::new("hardsn");
    let src = unique_id("hardsn");
    h.rt(&["create", &src]);
    let sleeper = start_sleeper(&h, &src);
    let snap = unique_id("snap");
    h.rt(&["snapshot", &src, &snap]);
    let copy = unique_id("hardcp");
    h.rt(&["create", &copy, "--from", &snap]);
    assert_eq!(sleeper_bounding(&h, &copy, &sleeper), BOUNDING, "a restored process got its capabilities back");
    assert_hardened("sandbox from a snapshot", runtime_exec(&h, &copy));
    assert_hardened("snapshot source", runtime_exec(&h, &src));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_keeps_the_capability_set_and_the_filter() {
    let s = Server::start("hardfk");
    let api = Api::new(&s);
    let src = api.create(json!({"timeout": 600})).await;
    let (st, forks) = api
        .call(
            reqwest::Method::POST,
            &format!("/sandboxes/{}/fork", id(&src)),
            Some(json!({"count": 1, "timeout": 120})),
        )
        .await;
    assert_eq!(st, 201, "{forks}");
    let fork = forks[0]["sandbox"]["sandboxID"].as_str().unwrap_or_else(|| panic!("fork failed: {forks}")).to_string();
    assert_hardened("fork", |user, cmd| s.cli(&["exec", "--user", user, &fork, cmd]));
}

/// runc's masked and read-only kernel paths (crates/stasis-agent/src/boot/mounts.rs).
/// Paths a kernel lacks are skipped by the agent and here.
const MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Masks, read-only paths and the core limit, as in-sandbox root sees them.
fn assert_kernel_files_masked(what: &str, h: &Host, id: &str) {
    let script = format!(
        "for p in {masked}; do [ -e $p ] || continue; \
           if [ -d $p ]; then n=$(ls -A $p | wc -l); else n=$(cat $p 2>&1 | wc -c); fi; \
           echo masked $p $(awk -v p=$p '$5 == p {{print \"mount\"}}' /proc/self/mountinfo | head -1) $n; done; \
         for p in {ro}; do [ -e $p ] || continue; \
           echo ro $p $(awk -v p=$p '$5 == p {{split($6, o, \",\"); print o[1]}}' /proc/self/mountinfo | tail -1); done; \
         echo 1 > /proc/sys/net/ipv4/ip_forward && echo sysctl written; \
         ulimit -c unlimited 2>/dev/null && echo core raised; echo core $(ulimit -c) $(ulimit -Hc)",
        masked = MASKED.join(" "),
        ro = READ_ONLY.join(" ")
    );
    let out = h.stasis(&["runtime", "exec", "--user", "root", id, &script]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for l in lines.iter().filter(|l| l.starts_with("masked ")) {
        assert!(l.ends_with(" mount 0"), "{what}: not masked (want a mount showing nothing): {l}\n{}", out.stdout);
    }
    for l in lines.iter().filter(|l| l.starts_with("ro ")) {
        assert!(l.ends_with(" ro"), "{what}: not read-only: {l}\n{}", out.stdout);
    }
    for must in ["masked /proc/keys", "masked /sys/firmware", "ro /proc/sys"] {
        assert!(lines.iter().any(|l| l.starts_with(must)), "{what}: {must} not checked:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains("sysctl written"), "{what}: root changed a sysctl: {}", out.stdout);
    assert!(!out.stdout.contains("core raised"), "{what}: root raised RLIMIT_CORE: {}", out.stdout);
    assert!(out.stdout.contains("core 0 0"), "{what}: core dumps are on: {}", out.stdout);
}

#[test]
fn host_kernel_files_are_masked_and_core_dumps_off_also_after_resume() {
    let h = Host::new("hardmk");
    let id = unique_id("hardmk");
    h.rt(&["create", &id]);
    assert_kernel_files_masked("fresh sandbox", &h, &id);
    h.rt(&["pause", &id]);
    h.rt(&["resume", &id]);
    assert_kernel_files_masked("after pause and resume", &h, &id);
    let snap = unique_id("snap");
    h.rt(&["snapshot", &id, &snap]);
    let copy = unique_id("hardmc");
    h.rt(&["create", &copy, "--from", &snap]);
    assert_kernel_files_masked("sandbox from a snapshot", &h, &copy);
}
