//! Issue 2: sandboxes are isolated from each other and from the host; limits stop a
//! sandbox, never the host.

mod common;

use common::{wait_for, Host};

fn host_uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Host pids of a sandbox's processes (from its pids cgroup, v1 or v2).
fn sandbox_pids(id: &str) -> Vec<u32> {
    for d in ["/sys/fs/cgroup/pids/stasis", "/sys/fs/cgroup/stasis"] {
        if let Ok(s) = std::fs::read_to_string(format!("{d}/{id}/cgroup.procs")) {
            return s.lines().filter_map(|l| l.parse().ok()).collect();
        }
    }
    vec![]
}

fn cmdline(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ")
}

#[test]
fn sandboxes_cannot_see_each_other_and_root_is_unprivileged_on_the_host() {
    let h = Host::new("iso");
    let (a, b) = (common::unique_id("isoa"), common::unique_id("isob"));
    h.rt(&["create", &a]);
    h.rt(&["create", &b]);

    h.sh(&a, "echo secret-a > /tmp/only-in-a && (nohup sleep 300 >/dev/null 2>&1 &)");
    h.sh_as(&a, "root", "(nohup sleep 301 >/dev/null 2>&1 &)");
    assert_eq!(h.sh(&b, "test -e /tmp/only-in-a && echo visible || echo absent").trim(), "absent");
    let ps_b = h.sh(&b, "ps -eo args");
    assert!(!ps_b.contains("sleep 300") && !ps_b.contains("sleep 301"), "sandbox b sees a's processes:\n{ps_b}");
    // Nothing of the host either: only the sandbox's own init and the ps itself.
    let b_procs: Vec<&str> = ps_b.lines().skip(1).filter(|l| !l.contains("ps -eo")).collect();
    assert!(
        b_procs.iter().all(|l| l.contains("/.stasis/agent") || l.contains("bash")),
        "unexpected processes in b: {b_procs:?}"
    );

    // In-sandbox root and user are unprivileged, distinct host uids.
    wait_for("sleeps visible on the host", || {
        sandbox_pids(&a).iter().filter(|p| cmdline(**p).starts_with("sleep 30")).count() == 2
    });
    // The sandbox's own id range (`idBase` in its record; 100000 for sandboxes from before
    // per-sandbox ranges): its root is the range's first id, its user 1000 ids above.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.sandbox_dir(&a).join("record.json")).unwrap()).unwrap();
    let base = record["idBase"].as_u64().unwrap_or(100_000) as u32;
    assert!(base >= 100_000, "the range is above the host's own ids: {base}");
    for pid in sandbox_pids(&a) {
        let cmd = cmdline(pid);
        let uid = host_uid_of(pid);
        if cmd.starts_with("sleep 301") {
            assert_eq!(uid, base, "root in the sandbox must be the first host uid of its range");
        } else if cmd.starts_with("sleep 300") {
            assert_eq!(uid, base + 1000, "user 1000 in the sandbox must be host uid {} of its range", base + 1000);
        }
        assert_ne!(uid, 0, "process {pid} ({cmd}) of the sandbox runs as host root");
    }
    assert_eq!(h.sh_as(&a, "root", "id -u").trim(), "0", "inside, root is still uid 0");
    // Root inside cannot reach the host's filesystem or mount its way out.
    let out = h.stasis(&["runtime", "exec", "--user", "root", &a, "mount -t tmpfs x /mnt"]);
    assert_ne!(out.code, 0, "mount must be refused in a sandbox");
}

#[test]
fn memory_limit_stops_the_process_not_the_sandbox_or_host() {
    let h = Host::new("oom");
    let id = common::unique_id("oom");
    h.rt(&["create", &id, "--memory-mb", "128"]);
    let out = h.stasis(&["runtime", "exec", &id, "python3 -c \"b = b'x' * (400 << 20); print('survived')\""]);
    assert_ne!(out.code, 0, "a 400 MiB allocation under a 128 MiB limit must fail");
    assert!(!out.stdout.contains("survived"));
    assert!(out.stderr.contains("out of memory"), "the error must say why: {}", out.stderr);
    let usage = &h.info(&id)["usage"];
    assert!(usage["oomKills"].as_u64().unwrap() >= 1, "{usage}");
    assert_eq!(usage["memoryLimitBytes"].as_u64().unwrap(), 128 << 20);
    // The sandbox (its agent) is still there and serving.
    assert_eq!(h.sh(&id, "echo alive").trim(), "alive");
}
