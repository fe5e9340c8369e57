#!/usr/bin/env python3
"""Stasis benchmark harness (issue 8).

Starts its own `stasis serve` on 127.0.0.1, drives it through the E2B REST API and the
envd proxy exactly as SDK users do (lean client: http.client, one keep-alive connection
per endpoint kind), and prints one table: median / min / max of every figure next to its
target, plus the same workload checkpointed and restored with plain `runc checkpoint` /
`runc restore` (runc 1.1 driving the same CRIU) as a baseline, and the Stasis/baseline
ratio.

    sudo python3 bench/bench.py                       # 256 MiB + 1 GiB, 5 runs, baseline
    sudo python3 bench/bench.py --sizes 256,1024,4096 --runs 5
    sudo python3 bench/bench.py --density 100         # density benchmark only

Run as root (cgroups, runc, CRIU). Everything it starts (server, sandboxes, runc
containers, overlay mounts, data dirs) is removed at exit.
"""

import argparse
import base64
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_TEMPLATE = "/var/lib/stasis/templates/base"
API_KEY = "e2b_" + "b" * 38 + "01"
MiB = 1 << 20
LOAD_AT_START = "?"

# Targets from issue 8: (what, size) -> seconds or MiB.
# Issue 19's targets (issue 8's before it: pause 1 GiB 1.0, create 0.1, from snapshot 0.2).
TARGETS = {
    ("pause", 256): 0.3, ("pause", 1024): 0.8, ("pause", 4096): 4.0,
    ("resume", 256): 0.15, ("resume", 1024): 0.15, ("resume", 4096): 0.2,
    ("create_base", 0): 0.06,
    ("create_snapshot", 256): 0.15, ("create_snapshot", 1024): 0.15,
    ("idle_mem", 0): 16.0,
    ("paused_mem", 256): 0.0, ("paused_mem", 1024): 0.0, ("paused_mem", 4096): 0.0,
}

# Sandbox memory limit for each touched size (MiB): room for the filler and the rest.
def limit_for(size):
    return {256: 1024, 1024: 2048, 4096: 6144}.get(size, max(1024, size * 3 // 2 + 512))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fill_cmd(size):
    """Python one-liner that allocates `size` MiB of non-zero, non-uniform bytes and sleeps."""
    return (
        "import os,time\n"
        f"b=bytearray(os.urandom({MiB}))*{size}\n"
        "time.sleep(10**7)\n"
    )


# ---------------------------------------------------------------- host measurements

def cgroup_procs(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return None


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def proc_pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return "?"


def memory_stat(memcg):
    out = {}
    try:
        with open(os.path.join(memcg, "memory.stat")) as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
        with open(os.path.join(memcg, "memory.usage_in_bytes")) as f:
            out["usage_in_bytes"] = int(f.read())
    except FileNotFoundError:
        return None
    return out


def host_mem(pids_cg, memcg):
    """Host memory of one cgroup'd process tree: dict of MiB figures, or None if gone."""
    procs = cgroup_procs(os.path.join(pids_cg, "cgroup.procs"))
    ms = memory_stat(memcg)
    if procs is None and ms is None:
        return None
    procs = procs or []
    r = {
        "procs": len(procs),
        "comms": sorted(proc_comm(p) for p in procs),
        "rss": sum(proc_status(p, "VmRSS") for p in procs) / 1024,
        "pss": sum(proc_pss_kb(p) for p in procs) / 1024,
    }
    if ms:
        r["cg_usage"] = ms["usage_in_bytes"] / MiB
        r["cg_rss"] = ms.get("total_rss", ms.get("rss", 0)) / MiB
        r["cg_cache"] = ms.get("total_cache", ms.get("cache", 0)) / MiB
    return r


def dir_mib(d):
    """Apparent size of the files under d (MiB); files vanishing meanwhile count 0."""
    total = 0
    for dp, _, fs in os.walk(d):
        for f in fs:
            try:
                total += os.path.getsize(os.path.join(dp, f))
            except FileNotFoundError:
                pass
    return total / MiB


def lazy_restore_on():
    """Whether the server will restore lazily (CRIU lazy pages): the same test as the runtime."""
    try:
        with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
            uffd = f.read().strip() == "1"
    except OSError:
        uffd = False
    return uffd and os.environ.get("STASIS_LAZY_RESTORE", "1") != "0"


def server_pause_phases(log_path, sid):
    """(dump_ms, sync_ms) of every pause of `sid` the server logged ("paused" lines)."""
    out = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                if sid in line and " paused" in line and "dump_ms=" in line:
                    d = re.search(r"dump_ms=(\d+)", line)
                    y = re.search(r"sync_ms=(\d+)", line)
                    if d and y:
                        out.append((int(d.group(1)), int(y.group(1))))
    except FileNotFoundError:
        pass
    return out


def server_boot_phases(log_path, sids):
    """{phase: [ms, ...]} of the boots of `sids` the server logged ("sandbox booted:"
    lines: the runtime's per-phase timings of a create, issue 19)."""
    out = {}
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                if "sandbox booted:" not in line or not any(s in line for s in sids):
                    continue
                for k, v in re.findall(r" ([a-z_]+)=([0-9.]+)\b", line.split("sandbox booted:", 1)[1]):
                    if k != "sandbox":
                        out.setdefault(k, []).append(float(v))
                if "pooled_disk=true" in line:
                    out.setdefault("pooled_disk", []).append(1.0)
    except FileNotFoundError:
        pass
    return out


def boot_phase_lines(phases):
    """Markdown rows: the median, min and max of each create phase (ms)."""
    if not phases:
        return ["(no \"sandbox booted:\" lines in the server's log: a build from before issue 19's timings)"]
    n = len(phases.get("total", []))
    rows = [f"Where a create's time goes (runtime's log, {n} creates, ms; "
            f"disk from the pool: {len(phases.get('pooled_disk', []))}):", "",
            "| phase | median | min | max |", "|---|---|---|---|"]
    for k, xs in phases.items():
        if k != "pooled_disk":
            rows.append(f"| {k} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")
    return rows


def wait_rss(pids_cg, size, within=180):
    """Waits until the processes of the cgroup hold >= size MiB resident."""
    t0 = time.time()
    while time.time() - t0 < within:
        procs = cgroup_procs(os.path.join(pids_cg, "cgroup.procs")) or []
        rss = max([proc_status(p, "VmRSS") for p in procs] or [0]) / 1024
        if rss >= size:
            return rss
        time.sleep(0.2)
    raise RuntimeError(f"{pids_cg}: RSS never reached {size} MiB")


# ---------------------------------------------------------------- Stasis API client

def start_body(cmd):
    """The request of envd `Process.Start` for `bash -l -c cmd`: one Connect envelope."""
    msg = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd]}, "stdin": False}).encode()
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def start_stdout(raw):
    """The stdout of a whole `Process.Start` response stream; fails unless it ended cleanly."""
    out, i, ended = b"", 0, False
    while i + 5 <= len(raw):
        flag, n = raw[i], int.from_bytes(raw[i + 1:i + 5], "big")
        frame = json.loads(raw[i + 5:i + 5 + n] or b"{}")
        if flag & 0x02:
            ended = True
            if frame.get("error"):
                raise RuntimeError(f"process.Start: {frame['error']}")
        else:
            d = frame.get("event", {}).get("data", {})
            if "stdout" in d:
                out += base64.b64decode(d["stdout"])
        i += 5 + n
    if not ended:
        raise RuntimeError("process stream did not end")
    return out.decode(errors="replace")


class Stasis:
    def __init__(self, stasis_bin, agent, data_dir):
        self.bin, self.agent, self.dir = stasis_bin, agent, data_dir
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = None
        self.ctl = None
        self.px = None
        self.created = set()
        self.snapshots = set()

    def start(self):
        os.makedirs(os.path.join(self.dir, "templates"), exist_ok=True)
        os.chmod(self.dir, 0o711)
        os.symlink(BASE_TEMPLATE, os.path.join(self.dir, "templates/base"))
        logf = open(os.path.join(self.dir, "serve.log"), "wb")
        env = dict(os.environ, STASIS_AGENT=self.agent, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir, "--api-key", API_KEY],
            stdout=logf, stderr=logf, env=env, start_new_session=True)
        t0 = time.time()
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() - t0 > 30:
                    raise RuntimeError("stasis serve did not start; see " + os.path.join(self.dir, "serve.log"))
                time.sleep(0.05)
        self.ctl = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        self.px = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def _req(self, conn_attr, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("content-type", "application/json")
        for attempt in range(2):
            conn = getattr(self, conn_attr)
            try:
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                conn.close()
                setattr(self, conn_attr, http.client.HTTPConnection("127.0.0.1", self.port, timeout=600))
                if attempt:
                    raise

    def api(self, method, path, body=None, want=None):
        st, raw = self._req("ctl", method, path, body, {"x-api-key": API_KEY})
        if want is not None and st != want:
            raise RuntimeError(f"{method} {path}: {st} {raw[:500]!r}")
        return json.loads(raw) if raw else None

    def create(self, template="base", memory_mb=None, timeout=3600):
        body = {"templateID": template, "timeout": timeout}
        if memory_mb:
            body["memoryMB"] = memory_mb
        v = self.api("POST", "/v2/sandboxes", body, want=201)
        self.created.add(v["sandboxID"])
        return v

    def pause(self, sid):
        self.api("POST", f"/sandboxes/{sid}/pause", want=204)

    def connect(self, sid):
        return self.api("POST", f"/v2/sandboxes/{sid}/connect", {}, want=201)

    def kill(self, sid):
        self._req("ctl", "DELETE", f"/sandboxes/{sid}", headers={"x-api-key": API_KEY})
        self.created.discard(sid)

    def snapshot(self, sid):
        v = self.api("POST", f"/sandboxes/{sid}/snapshots", {}, want=201)
        self.snapshots.add(v["snapshotID"])
        return v["snapshotID"]

    def delete_snapshot(self, snap):
        self._req("ctl", "DELETE", f"/templates/{snap}", headers={"x-api-key": API_KEY})
        self.snapshots.discard(snap)

    def run(self, sbx, cmd):
        """Runs `bash -l -c cmd` through the proxy (envd Process.Start); returns stdout."""
        st, raw = self._req("px", "POST", "/process.Process/Start", start_body(cmd), {
            "content-type": "application/connect+json",
            "e2b-sandbox-id": sbx["sandboxID"],
            "e2b-sandbox-port": "49983",
            "x-access-token": sbx.get("envdAccessToken") or "",
        })
        if st != 200:
            raise RuntimeError(f"process.Start: {st} {raw[:300]!r}")
        return start_stdout(raw)

    def cg(self, sid):
        return (f"/sys/fs/cgroup/pids/stasis/{sid}", f"/sys/fs/cgroup/memory/stasis/{sid}")

    def stop(self):
        for snap in list(self.snapshots):
            try:
                self.delete_snapshot(snap)
            except Exception as e:  # noqa: BLE001
                log("cleanup snapshot", snap, e)
        for sid in list(self.created):
            try:
                self.kill(sid)
            except Exception as e:  # noqa: BLE001
                log("cleanup sandbox", sid, e)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Anything left behind (should be nothing): kill through the runtime CLI.
        out = subprocess.run([self.bin, "runtime", "--data-dir", self.dir, "ls"], capture_output=True, text=True,
                             env=dict(os.environ, STASIS_AGENT=self.agent)).stdout
        for line in out.splitlines():
            sid = line.split("\t")[0]
            if sid:
                log("leftover sandbox", sid, "- killing")
                subprocess.run([self.bin, "runtime", "--data-dir", self.dir, "kill", sid], capture_output=True)


# ---------------------------------------------------------------- runc baseline

class Runc:
    """The same workload in a plain runc container: overlay of the same base rootfs,
    checkpointed with `runc checkpoint` (CRIU) + syncfs of the images, restored with
    `runc restore -d`; commands run with `runc exec`."""

    def __init__(self, root):
        self.root = root
        self.live = set()
        self.mounts = []
        self.cgs = {}
        os.makedirs(root, exist_ok=True)

    def bundle(self, name, init_sh, memory_mb):
        b = os.path.join(self.root, name)
        for d in ("upper", "work", "rootfs"):
            os.makedirs(os.path.join(b, d), exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={BASE_TEMPLATE}/rootfs,upperdir={b}/upper,workdir={b}/work", f"{b}/rootfs"], check=True)
        self.mounts.append(f"{b}/rootfs")
        subprocess.run(["runc", "spec"], cwd=b, check=True)
        with open(f"{b}/config.json") as f:
            spec = json.load(f)
        spec["process"]["terminal"] = False
        # stdio to the container's own /dev/null: host files as stdio are external to CRIU.
        spec["process"]["args"] = ["/bin/bash", "-c", "exec </dev/null >/dev/null 2>&1; " + init_sh]
        spec["process"]["env"].append("HOME=/root")
        spec["root"]["readonly"] = False
        spec["linux"].setdefault("resources", {})["memory"] = {"limit": memory_mb * MiB}
        spec["linux"]["resources"]["pids"] = {"limit": 4096}
        with open(f"{b}/config.json", "w") as f:
            json.dump(spec, f)
        return b

    def run(self, bundle, cid):
        subprocess.run(["runc", "run", "-d", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        self.live.add(cid)

    def exec(self, cid, cmd):
        return subprocess.run(["runc", "exec", cid, "/bin/bash", "-c", cmd], capture_output=True, text=True, check=True).stdout

    def checkpoint(self, cid, images, leave_running=False):
        shutil.rmtree(images, ignore_errors=True)
        args = ["runc", "checkpoint", "--image-path", images, "--work-path", images + ".work"]
        if leave_running:
            args.append("--leave-running")
        r = subprocess.run(args + [cid], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"runc checkpoint: {r.stderr}")
        # Same durability as Stasis: syncfs of the filesystem holding the images.
        fd = os.open(images, os.O_RDONLY)
        try:
            os.syncfs(fd) if hasattr(os, "syncfs") else subprocess.run(["sync", "-f", images], check=True)
        finally:
            os.close(fd)
        if not leave_running:
            self.live.discard(cid)

    def restore(self, bundle, cid, images):
        r = subprocess.run(["runc", "restore", "-d", "--bundle", bundle, "--image-path", images,
                            "--work-path", images + ".rwork", cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode:
            raise RuntimeError(f"runc restore: {r.stderr}")
        self.live.add(cid)

    def kill(self, cid):
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
        self.live.discard(cid)

    def cg(self, cid):
        """(pids, memory) cgroup dirs of the container. runc puts it at /<id> relative to
        its own cgroup, so read the init's /proc/PID/cgroup (kept after the container is
        gone, to check that the cgroups went with it)."""
        st = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
        if st.returncode == 0:
            pid = json.loads(st.stdout)["pid"]
            paths = {}
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    _, ctrls, path = line.rstrip("\n").split(":", 2)
                    for c in ctrls.split(","):
                        paths[c] = path
            self.cgs[cid] = (f"/sys/fs/cgroup/pids{paths['pids']}", f"/sys/fs/cgroup/memory{paths['memory']}")
        return self.cgs[cid]

    def cleanup(self):
        for cid in list(self.live):
            self.kill(cid)
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- table

class Results:
    def __init__(self):
        self.rows = []  # (key, label, unit, stasis samples, baseline samples, note)

    def add(self, key, label, unit, stasis, baseline=None, note=""):
        self.rows.append((key, label, unit, list(stasis), list(baseline or []), note))

    def table(self, runs_note):
        def fmt(v, unit):
            if v is None:
                return "-"
            return f"{v:.3f}" if unit == "s" else f"{v:.1f}"

        def stats(xs):
            if not xs:
                return None, None, None
            return statistics.median(xs), min(xs), max(xs)

        lines = [
            "| what | size | unit | n | Stasis median | min | max | target | met | runc median | min | max | Stasis/runc |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, label, unit, s, b, note in self.rows:
            sm, smin, smax = stats(s)
            bm, bmin, bmax = stats(b)
            target = TARGETS.get(key)
            met = "-" if target is None or sm is None else ("yes" if sm <= target else "**no**")
            ratio = "-" if not bm or sm is None else f"{sm / bm:.2f}"
            size = f"{key[1]} MiB" if key[1] else ""
            t = "-" if target is None else (f"<= {target:g}" if target else "0")
            lines.append(f"| {label}{(' (' + note + ')') if note else ''} | {size} | {unit} | {len(s)} | {fmt(sm, unit)} | "
                         f"{fmt(smin, unit)} | {fmt(smax, unit)} | {t} | {met} | {fmt(bm, unit)} | {fmt(bmin, unit)} | "
                         f"{fmt(bmax, unit)} | {ratio} |")
        return "\n".join(lines) + "\n\n" + runs_note


# ---------------------------------------------------------------- benchmarks

def t_now():
    return time.perf_counter()


def bench_create_base(st, res, runs):
    times, create_only, mems = [], [], []
    for i in range(runs):
        t0 = t_now()
        sbx = st.create()
        t1 = t_now()
        out = st.run(sbx, "echo hi")
        t2 = t_now()
        assert out.strip() == "hi", out
        times.append(t2 - t0)
        create_only.append(t1 - t0)
        time.sleep(1.0)  # idle: let the agent settle
        m = host_mem(*st.cg(sbx["sandboxID"]))
        mems.append(m)
        st.kill(sbx["sandboxID"])
        log(f"create base #{i}: {t2 - t0:.3f}s (create {t1 - t0:.3f}s) idle mem {m}")
    res.add(("create_base", 0), "create from base + `echo` output", "s", times)
    res.add(("create_base_api", 0), "  of which: create answered", "s", create_only)
    return mems


def stasis_touched(st, size, runs, res, snapshot_runs):
    limit = limit_for(size)
    sbx = st.create(memory_mb=limit)
    sid = sbx["sandboxID"]
    pids_cg, memcg = st.cg(sid)
    code = fill_cmd(size).replace("'", "'\\''")
    st.run(sbx, f"setsid nohup python3 -c '{code}' >/dev/null 2>&1 < /dev/null & echo started")
    rss = wait_rss(pids_cg, size)
    running_mem = host_mem(pids_cg, memcg)
    log(f"[{size} MiB] filler resident: {rss:.0f} MiB; sandbox {running_mem}")
    pauses, resumes, connects, paused_procs, paused_mem, img = [], [], [], [], [], []
    for i in range(runs):
        t0 = t_now()
        st.pause(sid)
        t1 = t_now()
        pauses.append(t1 - t0)
        m = host_mem(pids_cg, memcg)
        # Paused: the cgroups must be gone; count any process still in them.
        paused_procs.append(0 if m is None else m["procs"])
        paused_mem.append(0.0 if m is None else m.get("cg_usage", 0.0))
        img.append(dir_mib(os.path.join(st.dir, "sandboxes", sid, "checkpoints")))
        t2 = t_now()
        st.connect(sid)
        t3 = t_now()
        out = st.run(sbx, "echo hi")
        t4 = t_now()
        assert out.strip() == "hi", out
        connects.append(t3 - t2)
        resumes.append(t4 - t2)
        after = wait_rss(pids_cg, size, within=30)
        log(f"[{size} MiB] cycle {i}: pause {t1 - t0:.3f}s resume {t4 - t2:.3f}s (connect {t3 - t2:.3f}s) "
            f"image {img[-1]:.0f} MiB paused procs {paused_procs[-1]} rss after {after:.0f}")
    snaps, snap_take = [], []
    if snapshot_runs and ("create_snapshot", size) in TARGETS:
        t0 = t_now()
        snap = st.snapshot(sid)
        snap_take.append(t_now() - t0)
        for i in range(snapshot_runs):
            t0 = t_now()
            s2 = st.create(template=snap, memory_mb=limit)
            out = st.run(s2, "echo hi")
            t1 = t_now()
            assert out.strip() == "hi", out
            snaps.append(t1 - t0)
            # The fork has the memory too.
            fr = wait_rss(st.cg(s2["sandboxID"])[0], size, within=30)
            st.kill(s2["sandboxID"])
            log(f"[{size} MiB] create from snapshot #{i}: {t1 - t0:.3f}s (fork RSS {fr:.0f} MiB)")
        st.delete_snapshot(snap)
    phases = server_pause_phases(os.path.join(st.dir, "serve.log"), sid)[:runs]
    st.kill(sid)
    return dict(dump_ms=[d / 1000 for d, _ in phases], sync_ms=[y / 1000 for _, y in phases], pause=pauses, resume=resumes, connect=connects, paused_procs=paused_procs, paused_mem=paused_mem,
                image=img, snapshot=snaps, snapshot_take=snap_take, running=running_mem)


def runc_touched(rc, size, runs, snapshot_runs):
    limit = limit_for(size)
    name = f"rb{size}"
    code = fill_cmd(size).replace("'", "'\\''")
    b = rc.bundle(name, f"python3 -c '{code}' & exec sleep 10000000", limit)
    cid = f"stasisbench-{name}-{random.randrange(1 << 30):x}"
    rc.run(b, cid)
    pids_cg, memcg = rc.cg(cid)
    wait_rss(pids_cg, size)
    running_mem = host_mem(pids_cg, memcg)
    images = os.path.join(b, "images")
    pauses, resumes, restores, paused_procs, paused_mem = [], [], [], [], []
    for i in range(runs):
        t0 = t_now()
        rc.checkpoint(cid, images)
        t1 = t_now()
        m = host_mem(pids_cg, memcg)
        paused_procs.append(0 if m is None else m["procs"])
        paused_mem.append(0.0 if m is None else m.get("cg_usage", 0.0))
        t2 = t_now()
        rc.restore(b, cid, images)
        t3 = t_now()
        out = rc.exec(cid, "echo hi")
        t4 = t_now()
        assert out.strip() == "hi", out
        pauses.append(t1 - t0)
        restores.append(t3 - t2)
        resumes.append(t4 - t2)
        wait_rss(pids_cg, size, within=30)
        log(f"[runc {size} MiB] cycle {i}: checkpoint+syncfs {t1 - t0:.3f}s restore+exec {t4 - t2:.3f}s "
            f"(restore {t3 - t2:.3f}s)")
    snaps = []
    if snapshot_runs and ("create_snapshot", size) in TARGETS:
        # A "snapshot": checkpoint --leave-running, then restore copies of it as new containers.
        rc.checkpoint(cid, images + "-snap", leave_running=True)
        rc.kill(cid)  # the restored copies reuse this bundle's rootfs
        for i in range(snapshot_runs):
            c2 = f"{cid}-s{i}"
            t0 = t_now()
            rc.restore(b, c2, images + "-snap")
            out = rc.exec(c2, "echo hi")
            t1 = t_now()
            assert out.strip() == "hi"
            snaps.append(t1 - t0)
            rc.kill(c2)
            log(f"[runc {size} MiB] restore-as-new + exec #{i}: {t1 - t0:.3f}s")
    rc.kill(cid)
    return dict(pause=pauses, resume=resumes, restore=restores, paused_procs=paused_procs, paused_mem=paused_mem,
                snapshot=snaps, running=running_mem)


def runc_create_base(rc, runs):
    b = rc.bundle("rbase", "exec sleep 10000000", 512)
    times, mems = [], []
    for i in range(runs):
        cid = f"stasisbench-base-{i}-{random.randrange(1 << 30):x}"
        t0 = t_now()
        rc.run(b, cid)
        out = rc.exec(cid, "echo hi")
        t1 = t_now()
        assert out.strip() == "hi"
        times.append(t1 - t0)
        time.sleep(1.0)
        mems.append(host_mem(*rc.cg(cid)))
        rc.kill(cid)
        log(f"[runc] run + exec #{i}: {t1 - t0:.3f}s idle mem {mems[-1]}")
    return times, mems


def runtime_breakdown(stasis_bin, agent, size, runs, work):
    """dumpMs / syncMs of pauses through `stasis runtime` (same runtime code as the API)."""
    d = os.path.join(work, f"rt{size}")
    os.makedirs(os.path.join(d, "templates"))
    os.chmod(d, 0o711)
    os.symlink(BASE_TEMPLATE, os.path.join(d, "templates/base"))
    env = dict(os.environ, STASIS_AGENT=agent, STASIS_DATA_DIR=d)
    sid = f"bench{random.randrange(1 << 30):x}"

    def rt(*args):
        r = subprocess.run([stasis_bin, "runtime", *args], capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"stasis runtime {args}: {r.stdout}{r.stderr}")
        return r.stdout

    out = []
    try:
        create_help = rt("create", "--help")
        mem_flag = ["--memory-mb", str(limit_for(size))] if "--memory-mb" in create_help else []
        rt("create", *mem_flag, sid)
        code = fill_cmd(size).replace("'", "'\\''")
        rt("exec", sid, f"setsid nohup python3 -c '{code}' >/dev/null 2>&1 </dev/null & true")
        wait_rss(f"/sys/fs/cgroup/pids/stasis/{sid}", size)
        for _ in range(runs):
            t0 = t_now()
            stats = json.loads(rt("pause", sid))
            stats["wallMs"] = round((t_now() - t0) * 1000)
            t0 = t_now()
            rt("resume", sid)
            stats["resumeWallMs"] = round((t_now() - t0) * 1000)
            out.append(stats)
            log(f"[runtime {size} MiB] {stats}")
    finally:
        subprocess.run([stasis_bin, "runtime", "kill", sid], capture_output=True, env=env)
        shutil.rmtree(d, ignore_errors=True)
    return out


def density(st, n, parallel):
    from concurrent.futures import ThreadPoolExecutor

    def per_thread_client():
        c = Stasis(st.bin, st.agent, st.dir)
        c.port = st.port
        c.ctl = http.client.HTTPConnection("127.0.0.1", st.port, timeout=600)
        c.px = http.client.HTTPConnection("127.0.0.1", st.port, timeout=600)
        return c

    import threading
    tl = threading.local()

    def client():
        if not hasattr(tl, "c"):
            tl.c = per_thread_client()
        return tl.c

    def timed(f):
        t0 = t_now()
        v = f()
        return t_now() - t0, v

    with open("/proc/meminfo") as f:
        avail0 = int([l for l in f if l.startswith("MemAvailable")][0].split()[1]) / 1024
    sbxs = []
    t0 = t_now()
    with ThreadPoolExecutor(parallel) as ex:
        for dt, sbx in ex.map(lambda _: timed(lambda: client().create(memory_mb=256)), range(n)):
            sbxs.append((dt, sbx))
            st.created.add(sbx["sandboxID"])
    create_total = t_now() - t0
    boot_phases = server_boot_phases(os.path.join(st.dir, "serve.log"), [s["sandboxID"] for _, s in sbxs])
    # Everyone answers.
    with ThreadPoolExecutor(parallel) as ex:
        outs = list(ex.map(lambda s: client().run(s[1], "echo hi").strip(), sbxs))
    assert all(o == "hi" for o in outs), outs
    time.sleep(3)
    mems = [host_mem(*st.cg(s["sandboxID"])) for _, s in sbxs]
    with open("/proc/meminfo") as f:
        avail1 = int([l for l in f if l.startswith("MemAvailable")][0].split()[1]) / 1024
    t0 = t_now()
    with ThreadPoolExecutor(parallel) as ex:
        pause_t = list(ex.map(lambda s: timed(lambda: client().pause(s[1]["sandboxID"]))[0], sbxs))
    pause_total = t_now() - t0
    left = [host_mem(*st.cg(s["sandboxID"])) for _, s in sbxs]
    with open("/proc/meminfo") as f:
        avail2 = int([l for l in f if l.startswith("MemAvailable")][0].split()[1]) / 1024
    t0 = t_now()
    with ThreadPoolExecutor(parallel) as ex:
        resume_t = list(ex.map(lambda s: timed(lambda: (client().connect(s[1]["sandboxID"]), client().run(s[1], "echo hi")))[0], sbxs))
    resume_total = t_now() - t0
    for _, s in sbxs:
        st.kill(s["sandboxID"])

    def summ(xs):
        p99 = sorted(xs)[max(0, math.ceil(0.99 * len(xs)) - 1)]  # nearest rank
        return f"p50 {statistics.median(xs):.3f} s, p99 {p99:.3f}, min {min(xs):.3f}, max {max(xs):.3f}"

    def msumm(key):
        xs = [m[key] for m in mems if m and key in m]
        return f"median {statistics.median(xs):.1f} MiB, min {min(xs):.1f}, max {max(xs):.1f}, total {sum(xs):.0f} MiB"

    lines = [
        f"Density: {n} sandboxes from `base` (memoryMB 256), {parallel} request(s) in flight",
        "",
        "| phase | total | per sandbox |",
        "|---|---|---|",
        f"| create {n} (create answered) | {create_total:.2f} s | {summ([d for d, _ in sbxs])} |",
        f"| pause all {n} (durable) | {pause_total:.2f} s | {summ(pause_t)} |",
        f"| resume all {n} (connect + `echo` output) | {resume_total:.2f} s | {summ(resume_t)} |",
        "",
        "Host memory per idle running sandbox:",
        "",
        f"- processes' PSS: {msumm('pss')}",
        f"- processes' RSS: {msumm('rss')}",
        f"- cgroup anon (memory.stat total_rss): {msumm('cg_rss')}",
        f"- cgroup usage incl. page cache (memory.usage_in_bytes): {msumm('cg_usage')}",
        f"- processes per sandbox: {statistics.median([m['procs'] for m in mems if m])} ({', '.join(mems[0]['comms']) if mems and mems[0] else ''})",
        f"- host MemAvailable: {avail0:.0f} MiB before, {avail1:.0f} MiB with {n} running "
        f"({(avail1 - avail0) / n:+.1f} MiB per sandbox; host-wide), {avail2:.0f} MiB with all paused",
        f"- after pausing all: sandboxes with a cgroup or process left: {sum(1 for m in left if m)}",
        "",
        *boot_phase_lines(boot_phases),
    ]
    return "\n".join(lines)


def mem_rows(res, label_prefix, stasis_mems, runc_mems, note):
    for key, label in (("pss", "processes' PSS"), ("rss", "processes' RSS"), ("cg_rss", "cgroup anon (total_rss)"),
                       ("cg_usage", "cgroup usage incl. page cache")):
        s = [m[key] for m in stasis_mems if m and key in m]
        b = [m[key] for m in runc_mems if m and key in m]
        res.add(("idle_mem", 0) if key in ("pss",) else ("idle_mem_" + key, 0), f"{label_prefix}: {label}", "MiB", s, b,
                note if key == "pss" else "")


def system_bandwidth(work):
    """What bounds pause/resume on this host: disk write (direct and buffered + fsync),
    disk read, memory copy. 1 GiB each; the files are removed."""
    f = os.path.join(work, "bw.tmp")
    out = []

    def dd(args):
        r = subprocess.run(["dd", *args], capture_output=True, text=True)
        return r.stderr.strip().splitlines()[-1]

    out.append("disk write, O_DIRECT 1 GiB (`dd if=/dev/zero of=F bs=1M count=1024 oflag=direct`): "
               + dd(["if=/dev/zero", f"of={f}", "bs=1M", "count=1024", "oflag=direct"]))
    out.append("disk read, O_DIRECT 1 GiB (`dd if=F of=/dev/null bs=1M iflag=direct`): "
               + dd([f"if={f}", "of=/dev/null", "bs=1M", "iflag=direct"]))
    os.unlink(f)
    chunk = bytes(bytearray(os.urandom(MiB)))
    for size in (256, 1024):
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        t0 = t_now()
        for _ in range(size):
            os.write(fd, chunk)
        t1 = t_now()
        os.fsync(fd)
        t2 = t_now()
        os.close(fd)
        os.unlink(f)
        out.append(f"buffered write {size} MiB to the page cache: {t1 - t0:.3f} s ({size / (t1 - t0):.0f} MiB/s); "
                   f"then fsync: {t2 - t1:.3f} s ({size / (t2 - t1):.0f} MiB/s)")
    src = bytearray(chunk) * 1024
    t0 = t_now()
    dst = bytes(src)
    t1 = t_now()
    del src, dst
    out.append(f"memory copy 1 GiB (memcpy of a touched buffer into fresh pages): {t1 - t0:.3f} s ({1024 / (t1 - t0):.0f} MiB/s)")
    return out


def machine_notes():
    notes = []
    try:
        with open("/proc/cpuinfo") as f:
            model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        notes.append(f"CPU: {len(model)} x {model[0] if model else '?'}")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        notes.append("RAM: " + f.readline().split(":", 1)[1].strip())
    notes.append("kernel: " + os.uname().release)
    notes.append(f"load average (1/5/15 min) at the start of the run: {LOAD_AT_START}; at the end: "
                 + " ".join(open("/proc/loadavg").read().split()[:3]) + " (the 2 cores are shared with other work)")
    notes.append("restore: " + ("lazy (CRIU lazy pages, userfaultfd)" if lazy_restore_on() else
                                "eager (STASIS_LAZY_RESTORE=0 or vm.unprivileged_userfaultfd != 1)"))
    for cmd in (["/usr/local/sbin/criu", "--version"], ["runc", "--version"]):
        try:
            notes.append(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0])
        except Exception:  # noqa: BLE001
            pass
    return notes


def prerequisites(a):
    """What the run needs and lacks, each with how to get it: checked before anything starts
    (the runc baseline runs after the Stasis half, so a missing runc used to surface as a
    traceback minutes in)."""
    out = []
    for p in (a.stasis, a.agent):
        if not os.path.isfile(p):
            out.append(f"{p}: cargo build --release -p stasis; RUSTFLAGS='-C target-feature=+crt-static' "
                       "cargo build --release -p stasis-agent --target x86_64-unknown-linux-gnu")
    if not os.path.isdir(BASE_TEMPLATE + "/rootfs"):
        out.append(f"the base template ({BASE_TEMPLATE}): sudo scripts/setup.sh --no-start")
    if shutil.which("criu") is None:
        out.append("criu: sudo scripts/setup.sh --no-start (builds CRIU 4.2.1)")
    if not a.no_baseline and not a.density and shutil.which("runc") is None:
        out.append("runc, for the baseline (setup does not install it): sudo apt-get install runc, "
                   "or pass --no-baseline")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stasis", default=os.path.join(REPO, "target/release/stasis"))
    ap.add_argument("--agent", default=os.path.join(REPO, "target/x86_64-unknown-linux-gnu/release/stasis-agent"))
    ap.add_argument("--sizes", default="256,1024", help="touched memory sizes in MiB (comma separated)")
    ap.add_argument("--runs", type=int, default=5, help="runs per figure")
    ap.add_argument("--runs-large", type=int, default=None, help="runs for sizes >= 4096 MiB (default: --runs)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the runc baseline")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the dump/sync breakdown via `stasis runtime`")
    ap.add_argument("--density", type=int, default=0, metavar="N", help="run the density benchmark with N sandboxes instead")
    ap.add_argument("--parallel", type=int, default=1, help="requests in flight in the density benchmark")
    ap.add_argument("--keep-log", metavar="PATH", help="copy the server's log (per-phase timings of every pause and resume) to PATH at exit")
    ap.add_argument("--work", default="/var/lib/stasis-bench", help="parent of the data dirs (removed at exit)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (cgroups, CRIU, runc)")
    missing = prerequisites(a)
    if missing:
        sys.exit("bench.py cannot start; missing:\n" + "\n".join(f"  - {m}" for m in missing))
    work = os.path.join(a.work, f"run-{os.getpid()}")
    os.makedirs(os.path.join(work, "bin"), exist_ok=True)
    # Private copies: the target dir may be rebuilt while the benchmark runs.
    for attr in ("stasis", "agent"):
        dst = os.path.join(work, "bin", os.path.basename(getattr(a, attr)))
        shutil.copy2(getattr(a, attr), dst)
        setattr(a, attr, dst)
    st = Stasis(a.stasis, a.agent, os.path.join(work, "data"))
    rc = Runc(os.path.join(work, "runc"))
    started = time.time()
    global LOAD_AT_START
    LOAD_AT_START = " ".join(open("/proc/loadavg").read().split()[:3])
    log(f"load average at start: {LOAD_AT_START}; restore {'lazy' if lazy_restore_on() else 'eager'}")
    try:
        st.start()
        log(f"stasis serve on 127.0.0.1:{st.port}, data dir {st.dir}")
        if a.density:
            report = density(st, a.density, a.parallel)
            print(report)
            print(f"\n(load average at start {LOAD_AT_START}, at end {' '.join(open('/proc/loadavg').read().split()[:3])}; "
                  f"restore {'lazy' if lazy_restore_on() else 'eager'})")
            print(f"\n(wall time {time.time() - started:.0f} s)")
            return
        res = Results()
        sizes = [int(x) for x in a.sizes.split(",") if x]
        s_mems = bench_create_base(st, res, a.runs)
        b_create, b_mems = ([], [])
        if not a.no_baseline:
            b_create, b_mems = runc_create_base(rc, a.runs)
            res.rows[-2] = res.rows[-2][:4] + (b_create, "runc: run -d + exec")
        mem_rows(res, "idle sandbox host memory", s_mems, b_mems, "target compared with PSS")
        comms = s_mems[0]["comms"] if s_mems and s_mems[0] else []
        breakdown = {}
        for size in sizes:
            runs = a.runs_large if (a.runs_large and size >= 4096) else a.runs
            sr = stasis_touched(st, size, runs, res, runs)
            br = runc_touched(rc, size, runs, runs) if not a.no_baseline else {}
            res.add(("pause", size), "pause until durable, API answered", "s", sr["pause"], br.get("pause"),
                    "runc: checkpoint + syncfs")
            if sr["dump_ms"]:
                res.add(("pause_dump", size), "  of which: CRIU dump (server log dump_ms)", "s", sr["dump_ms"])
                res.add(("pause_sync", size), "  of which: checksums + fsync images + syncfs (server log sync_ms)", "s",
                        sr["sync_ms"])
            res.add(("resume", size), "resume: connect + `echo` output", "s", sr["resume"], br.get("resume"),
                    "runc: restore -d + exec")
            res.add(("resume_connect", size), "  of which: connect answered", "s", sr["connect"], br.get("restore"),
                    "runc: restore -d")
            if sr["snapshot"]:
                res.add(("create_snapshot", size), "create from snapshot + `echo` output", "s", sr["snapshot"],
                        br.get("snapshot"), "runc: restore -d as new id + exec")
            res.add(("paused_mem", size), "paused: processes left in its cgroups", "", sr["paused_procs"],
                    br.get("paused_procs"))
            res.add(("paused_mem_cg", size), "paused: cgroup memory left", "MiB", sr["paused_mem"], br.get("paused_mem"))
            res.add(("image", size), "checkpoint image on disk", "MiB", sr["image"])
            if not a.no_breakdown:
                breakdown[size] = runtime_breakdown(a.stasis, a.agent, size, min(runs, 3), work)
        print("## Results\n")
        print(res.table(f"Idle sandbox processes: {', '.join(comms)}."))
        if breakdown:
            print("\n## Pause phases (`stasis runtime pause`, same runtime code, no API)\n")
            print("| size | dumpMs (CRIU dump, writeback and hashing overlapped) | syncMs (keyed hashes of the rest + fsync images + syncfs layer) | MiB hashed during the dump | pause wall ms (CLI) | resume wall ms (CLI) | image MiB |")
            print("|---|---|---|---|---|---|---|")
            for size, rows in breakdown.items():
                for r in rows:
                    print(f"| {size} MiB | {r.get('dump_ms', r.get('dumpMs'))} | {r.get('sync_ms', r.get('syncMs'))} | "
                          f"{r.get('hashedEarlyBytes', 0) / MiB:.0f} | {r['wallMs']} | {r['resumeWallMs']} | {r.get('image_bytes', r.get('imageBytes', 0)) / MiB:.0f} |")
        print("\n## Machine\n")
        for n in machine_notes():
            print("- " + n)
        print("\n## Host bandwidth (what bounds pause and resume)\n")
        for n in system_bandwidth(work):
            print("- " + n)
        print(f"- wall time of this run: {time.time() - started:.0f} s")
    finally:
        try:
            st.stop()
            if a.keep_log:
                shutil.copy(os.path.join(st.dir, "serve.log"), a.keep_log)
        finally:
            rc.cleanup()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
