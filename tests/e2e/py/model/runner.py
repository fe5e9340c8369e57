"""Runs a sequence of operations against a real server through the SDK and checks every
result against the model (ops.World).

After each operation the runner checks what that operation can check cheaply (a write's
size and owner, a read's bytes, a pause's state, ...). After every resume, restart,
snapshot-create and fork it checks the whole sandbox: every file and directory of the
model (type, owner, size) by a recursive list, every file's content by a read, the
processes envd lists (exactly the model's secret processes and background sleeps), and
every secret process (same pid, same secret, its request counter one more than last time),
and in a code-interpreter sandbox every variable its Python kernel holds.
"""
import ast
import functools
import hashlib
import json
import os
import random
import shlex
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from e2b import FileType, PtySize, Sandbox, SandboxQuery, SandboxState, Secret, Template, Volume
from e2b.exceptions import NotFoundException, VolumeException
from e2b_code_interpreter import Sandbox as CodeInterpreter

from .ops import (AREAS, EGRESS, EGRESS_HOST, GIT_PATH, VOL_PATH, World, content, describe, eff, file_metadata,
                  sdk_user, under)
from .server import Server

# The process that holds a secret only in memory: it reads it from stdin, then serves
# "<pid> <secret> <n> <digest>" on 127.0.0.1:<port> inside the sandbox, n counting the
# requests. With a ballast (argv[3] MiB, seeded by the secret) it holds that much memory
# too and answers its hash, made at each request (a pause then writes memory images of
# several 16 MiB chunks, hashed while CRIU writes them: the digest shows every byte came
# back); without, the digest is "-".
SECRET_PY = r"""
import hashlib, os, random, socket, sys
secret = sys.stdin.readline().strip()
port, pidfile = int(sys.argv[1]), sys.argv[2]
mib = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ballast = bytearray(random.Random(secret).randbytes(mib << 20))
n = 0
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
srv.bind(("127.0.0.1", port))
srv.listen(16)
while True:
    c, _ = srv.accept()
    n += 1
    digest = hashlib.sha256(ballast).hexdigest()[:16] if mib else "-"
    try:
        c.sendall(f"{os.getpid()} {secret} {n} {digest}\n".encode())
    finally:
        c.close()
"""


@functools.lru_cache(maxsize=16)
def ballast_digest(secret: str, mib: int) -> str:
    """What a secret process holding `mib` MiB of ballast answers (SECRET_PY)."""
    if not mib:
        return "-"
    return hashlib.sha256(random.Random(secret).randbytes(mib << 20)).hexdigest()[:16]


# Asks it once (retrying only the connect, so each answer counts exactly one request);
# prints the answer, then the pid file's content.
QUERY_PY = r"""
import socket, sys, time
for _ in range(400):
    try:
        c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit(7)
data = b""
while not data.endswith(b"\n"):
    d = c.recv(4096)
    if not d:
        break
    data += d
sys.stdout.write(data.decode())
sys.stdout.write(open(sys.argv[2]).read().strip() + "\n")
"""

# The egress echo run.sh starts (tests/e2e/egress): where it answers, the CIDR a sandbox
# must be allowed to reach it, and the client a sandbox runs against it.
EGRESS_ADDR = os.environ.get("E2E_EGRESS_ADDR")
EGRESS_CIDR = os.environ.get("E2E_EGRESS_CIDR")
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "egress", "client.py")) as _f:
    EGRESS_CLIENT = _f.read()
EGRESS_ISSUER = "Stasis sandbox egress CA"

KEEPALIVE_MARGIN = 150  # seconds before a model deadline a running sandbox is extended
WATCH_WAIT = 15.0


class Mismatch(AssertionError):
    def __init__(self, check, detail):
        super().__init__(f"{check}: {detail}")
        self.check = check


@dataclass
class Failure:
    index: int
    op: dict
    sig: str      # what the shrinker preserves: "<op kind>:<exception or mismatch check>"
    message: str
    trace: str = ""


@dataclass
class Rt:
    """What only the real run knows about a sandbox."""
    sbx: Sandbox
    deadline: float
    secret_pid: Dict[int, int] = field(default_factory=dict)
    secret_n: Dict[int, int] = field(default_factory=dict)
    bg_pid: Dict[int, int] = field(default_factory=dict)
    pty_pid: Dict[int, int] = field(default_factory=dict)
    watch: object = None
    mem: int = 0  # the memory limit (MiB) getInfo must show: the default learnt at create + hotplugs
    # A cluster run: its lower layer may be a snapshot's (a copy of a snapshot, a fork, a
    # code interpreter started from its template's warm capture), so a takeover may be
    # refused with a 409 saying it resumes only on its node; others must move.
    pinned: bool = False
    lost: int = 0  # "lost" events (error level) it must have: its node was declared dead
    # Events the sandbox's event log must hold exactly this many of (kinds only one op
    # makes; pauses and resumes also come from restarts and commits, so are not counted).
    ev: Dict[str, int] = field(default_factory=lambda: {"created": 1, "snapshot": 0, "network": 0, "memory": 0, "reset": 0, "volume": 0})

    def inherit(self, other: "Rt"):
        self.secret_pid = dict(other.secret_pid)
        self.secret_n = dict(other.secret_n)
        self.bg_pid = dict(other.bg_pid)
        self.pty_pid = dict(other.pty_pid)
        self.mem = other.mem


@dataclass
class Result:
    ops: List[dict]
    failure: Optional[Failure]
    executed: int
    skipped: int
    counts: Dict[str, int]
    lines: List[str]
    seconds: float
    server_log: str = ""
    leaks: List[str] = field(default_factory=list)
    kept: str = ""  # the server's data dir and log, kept after a failure
    ids: Dict[int, str] = field(default_factory=dict)  # slot -> sandbox id


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _drain(pag):
    items = []
    while pag.has_next:
        items.extend(pag.next_items())
    return items


class Runner:
    def __init__(self, tag: str, label="model", verbose=False, nodes=0):
        self.tag = tag
        self.nodes = nodes
        self.label = label
        self.verbose = verbose
        self.w = World()
        self.rt: Dict[int, Rt] = {}
        self.snaps: Dict[int, tuple] = {}  # n -> (id to create from, Rt copy of the source, id to delete)
        self.vols: Dict[int, Volume] = {}
        self.lines: List[str] = []
        self.details: List[str] = []  # notes of the op running now, printed after its line
        self.counts: Dict[str, int] = {}
        self.ids: Dict[int, str] = {}
        self.server: Optional[Server] = None

    # ------------------------------------------------------------------ driver
    def run(self, ops, keep_server_on_failure=True, deadline=None) -> Result:
        """Runs `ops` on a fresh server (stopping early, between ops, at monotonic `deadline`)."""
        t0 = time.monotonic()
        if self.nodes:
            from .cluster import ClusterServer
            self.server = ClusterServer(self.label, self.nodes)
        else:
            self.server = Server(self.label)
        failure = None
        executed = skipped = 0
        log_tail = ""
        leaks = []
        try:
            self.server.start(pause_on_shutdown=False)
            for i, op in enumerate(ops):
                if deadline is not None and time.monotonic() > deadline:
                    self.note(f"#{i:<4} (time is up: the remaining {len(ops) - i} ops are not run)")
                    break
                if not self.w.applicable(op):
                    skipped += 1
                    self.note(f"#{i:<4} skip (not applicable now): {describe(op)}")
                    continue
                t = time.monotonic()
                if self.nodes:
                    self.server.via = op.get("via", 0) % self.nodes
                try:
                    self.keepalive(i)
                    getattr(self, "op_" + op["op"])(op)
                except Mismatch as m:
                    failure = Failure(i, op, f"{op['op']}:mismatch:{m.check}", str(m), traceback.format_exc())
                except Exception as e:  # noqa: BLE001 - any exception is a finding
                    msg = str(e).strip().splitlines()
                    failure = Failure(i, op, f"{op['op']}:{type(e).__name__}", f"{type(e).__name__}: {msg[0] if msg else ''}"
                                      + (f" [...{len(msg) - 1} more lines]" if len(msg) > 1 else ""), traceback.format_exc())
                executed += 1
                self.counts[op["op"]] = self.counts.get(op["op"], 0) + 1
                dt = time.monotonic() - t
                details, self.details = self.details, []
                if failure:
                    self.note(f"#{i:<4} {describe(op)}  [{dt:.2f}s]  <-- FAILED: {failure.message}")
                else:
                    self.note(f"#{i:<4} {describe(op)}  [{dt:.2f}s]")
                for d in details:
                    self.note(d)
                if failure:
                    break
        except Exception as e:  # noqa: BLE001 - the server itself failed
            failure = Failure(executed + skipped, {"op": "server"}, f"server:{type(e).__name__}", str(e), traceback.format_exc())
        finally:
            if failure:
                log_tail = self.server.grep(sorted(self.server.ids)) if self.server else ""
            if self.server:
                try:
                    leaks = self.server.teardown(keep=bool(failure) and keep_server_on_failure)
                except Exception as e:  # noqa: BLE001
                    leaks = [f"teardown failed: {e}"]
        kept = ""
        if failure and keep_server_on_failure and self.server:
            kept = f"{self.server.data} (log {self.server.log_path})"
        return Result(list(ops), failure, executed, skipped, self.counts, self.lines, time.monotonic() - t0, log_tail, leaks, kept,
                      self.ids)

    def note(self, line):
        self.lines.append(line)
        if self.verbose:
            print(line, flush=True)

    # ------------------------------------------------------------------ helpers
    def _sb(self, op):
        return self.w.sbs[op["s"]], self.rt[op["s"]]

    def _meta(self, meta):
        return {**meta, "mdl": self.tag}

    def keepalive(self, i):
        now = time.monotonic()
        for s in self.w.running():
            rt = self.rt[s]
            if rt.deadline - now < KEEPALIVE_MARGIN:
                t = self.w.sbs[s].timeout
                rt.sbx.set_timeout(t)
                rt.deadline = time.monotonic() + t
                self.note(f"#{i:<4} (keepalive: s{s}.set_timeout({t}))")

    def _info_check(self, slot, state):
        sb, rt = self.w.sbs[slot], self.rt[slot]
        info = Sandbox.get_info(rt.sbx.sandbox_id, **self.server.api)
        want = SandboxState.RUNNING if state == "running" else SandboxState.PAUSED
        if info.state != want:
            raise Mismatch("info.state", f"s{slot} is {info.state}, model says {state}")
        if info.metadata != self._meta(sb.meta):
            raise Mismatch("info.metadata", f"s{slot}: {info.metadata} != {self._meta(sb.meta)}")
        if rt.mem and info.memory_mb != rt.mem:
            raise Mismatch("info.memory", f"s{slot}: memory_mb {info.memory_mb}, expected {rt.mem}")
        net = info.network or {}
        got = {"allow_out": sorted(net.get("allow_out") or []), "deny_out": sorted(net.get("deny_out") or [])}
        want = sb.net or {"allow_out": [], "deny_out": []}
        want = {k: sorted(EGRESS_CIDR if c == EGRESS else c for c in v) for k, v in want.items()}
        if got != want:
            raise Mismatch("info.network", f"s{slot}: network {got}, model {want}")
        want_vols = [{"name": self.vols[v].name, "path": p} for p, v in sorted(sb.mounts.items())]
        if list(info.volume_mounts) != want_vols:
            raise Mismatch("info.volume_mounts", f"s{slot}: {info.volume_mounts}, model {want_vols}")
        return info

    def _rest(self, method, path, body=None, ok=(200, 201, 204)):
        """A control-API call the Python SDK has no method for (Novita's commit and reset,
        hotplug-memory, template delete): (status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server.url + path, data=data, method=method,
                                     headers={"X-API-KEY": self.server.key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        parsed = json.loads(raw) if raw.strip() else None
        if ok and status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return status, parsed

    def _tpl_name(self, t):
        return f"{self.tag}-t{t}"

    def _new_rt(self, slot, sbx, timeout):
        self.server.seen(sbx.sandbox_id)
        self.ids[slot] = sbx.sandbox_id
        rt = Rt(sbx, time.monotonic() + timeout)
        self.rt[slot] = rt
        return rt

    # ------------------------------------------------------------------ full check
    def full_check(self, slot, why):
        t = time.monotonic()
        sb, rt = self.w.sbs[slot], self.rt[slot]
        fs = rt.sbx.files
        # Tree: every entry below the areas, with type, owner, size and file metadata.
        for area in AREAS:
            got = {}
            for e in fs.list(area, depth=64, user="root"):
                got[e.path] = (e.type, e.owner, e.size if e.type == FileType.FILE else None, e.metadata)
            want = {}
            for p, f in sb.files.items():
                if under(p, area):
                    want[p] = (FileType.FILE, f.owner, f.size, file_metadata(f.cs))
            for p, owner in sb.dirs.items():
                if under(p, area) and p != area:
                    want[p] = (FileType.DIR, owner, None, None)
            if got != want:
                missing = sorted(set(want) - set(got))
                extra = sorted(set(got) - set(want))
                differ = sorted(p for p in set(got) & set(want) if got[p] != want[p])
                raise Mismatch("tree", f"s{slot} {area} after {why}: missing {missing}, unexpected {extra}, "
                               f"differ {[(p, got[p], want[p]) for p in differ]}")
        # Contents.
        for p in sorted(sb.files):
            f = sb.files[p]
            data = fs.read(p, format="bytes", user="root")
            if bytes(data) != f.data():
                raise Mismatch("content", f"s{slot} {p} after {why}: {len(data)} B sha {_sha(bytes(data))[:12]}, "
                               f"model {f.size} B sha {_sha(f.data())[:12]}")
        # Processes envd lists: exactly the secret processes and the background sleeps.
        self._procs_check(slot, why)
        # Secrets: same pid, same secret, counter continues.
        for key in sorted(sb.secrets):
            self._query(slot, key, sb.secrets[key].as_, why)
        # Shells: the same bash answers on its PTY, as the user it started as.
        for key in sorted(sb.ptys):
            self._pty_echo(slot, key, f"fc{slot}k{key}n{len(self.lines)}", why)
        if sb.ci:
            self._vars_check(slot, why)
        for path in sorted(sb.mounts):
            self._vol_in_sandbox_check(slot, path, why)
        if sb.tpl is not None:
            got = fs.read("/opt/mdl-tpl", user="root")
            if got != f"{sb.tpl[2]}\n":
                raise Mismatch("template.file", f"s{slot} after {why}: /opt/mdl-tpl holds {got!r}, model {sb.tpl[2]} (t{sb.tpl[0]})")
        self._git_check(slot, why)
        if sb.egress is not None:
            self._egress_check(slot, why)
        self.details.append(f"      full check of s{slot} after {why}: {len(sb.files)} files, {len(sb.dirs)} dirs, "
                  f"{len(sb.secrets)} secrets, {len(sb.bgs)} bg, {len(sb.ptys)} pty ok [{time.monotonic() - t:.2f}s]")

    def _vol_in_sandbox_check(self, slot, path, why):
        """The volume mounted at `path` as the sandbox sees it: exactly the model's files, with their bytes."""
        sb, rt = self.w.sbs[slot], self.rt[slot]
        v = sb.mounts[path]
        vm = self.w.vols[v]
        got = {e.name: (e.type, e.size, e.owner) for e in rt.sbx.files.list(path, depth=1, user="root")}
        want = {n: (FileType.FILE, f.size, f.owner) for n, f in vm.files.items()}
        if got != want:
            raise Mismatch("volume.tree", f"s{slot} {path} (v{v}) after {why}: {sorted(got.items(), key=str)} "
                           f"!= model {sorted(want.items(), key=str)}")
        for n in sorted(vm.files):
            data = bytes(rt.sbx.files.read(f"{path}/{n}", format="bytes", user="root"))
            if data != vm.files[n].data():
                raise Mismatch("volume.content", f"s{slot} {path}/{n} after {why}: sha {_sha(data)[:12]}, "
                               f"model sha {_sha(vm.files[n].data())[:12]}")

    def _vars_check(self, slot, why):
        """The kernel's variables are the model's: memory kept across whatever happened."""
        sb, rt = self.w.sbs[slot], self.rt[slot]
        names = sorted(sb.vars)
        ex = rt.sbx.run_code(f"{{k: globals().get(k) for k in {names!r}}}")
        if ex.error is not None:
            raise Mismatch("ci.error", f"s{slot} after {why}: {ex.error.name}: {ex.error.value}")
        got = ast.literal_eval(ex.text) if ex.text else None
        if got != sb.vars:
            raise Mismatch("ci.vars", f"s{slot} after {why}: kernel holds {got}, model {sb.vars}")

    def _procs_check(self, slot, why):
        rt = self.rt[slot]
        want = set(rt.secret_pid.values()) | set(rt.bg_pid.values()) | set(rt.pty_pid.values())
        # The template's start command (the code interpreter) is the sandbox's, not the model's.
        got = {p.pid for p in rt.sbx.commands.list() if p.tag != "stasis-start"}
        if got != want:
            raise Mismatch("procs", f"s{slot} after {why}: envd lists pids {sorted(got)}, model {sorted(want)}")

    def _query(self, slot, key, as_, why):
        sb, rt = self.w.sbs[slot], self.rt[slot]
        m = sb.secrets[key]
        pidfile = f"/tmp/mdl-secret-{key}.pid"
        r = rt.sbx.commands.run(f"python3 -c {shlex.quote(QUERY_PY)} {m.port} {pidfile}", user=sdk_user(as_), timeout=60)
        lines = r.stdout.split("\n")
        try:
            filepid = int(lines[1])
            pid, secret, n, digest = lines[0].split()
            pid, n = int(pid), int(n)
        except (ValueError, IndexError):
            raise Mismatch("secret.answer", f"s{slot} k{key} after {why}: {r.stdout!r} {r.stderr!r}")
        want = (rt.secret_pid[key], m.secret, rt.secret_n[key] + 1, ballast_digest(m.secret, m.mib))
        if (pid, secret, n, digest) != want or filepid != pid:
            raise Mismatch("secret", f"s{slot} k{key} after {why}: answered pid {pid} secret {secret} count {n} "
                           f"ballast {digest} (pid file {filepid}), model pid {want[0]} secret {want[1]} "
                           f"count {want[2]} ballast {want[3]} ({m.mib} MiB)")
        rt.secret_n[key] = n

    def _list_check(self, state=None):
        q = SandboxQuery(metadata={"mdl": self.tag},
                         state=None if state is None else [SandboxState.RUNNING if state == "running" else SandboxState.PAUSED])
        items = _drain(Sandbox.list(query=q, limit=2, **self.server.api))
        got = {}
        for i in items:
            if i.sandbox_id in got:
                raise Mismatch("list.duplicate", f"{i.sandbox_id} listed twice")
            got[i.sandbox_id] = (i.state.value if hasattr(i.state, "value") else str(i.state), dict(i.metadata))
        want = {}
        for s, sb in self.w.sbs.items():
            if state is None or sb.state == state:
                want[self.rt[s].sbx.sandbox_id] = (sb.state, self._meta(sb.meta))
        if got != want:
            names = {self.rt[s].sbx.sandbox_id: f"s{s}" for s in self.w.sbs}
            fmt = lambda d: {names.get(k, k): v for k, v in d.items()}  # noqa: E731
            raise Mismatch("list", f"state filter {state}: listed {fmt(got)}, model {fmt(want)}")

    def _write(self, fs, path, cs, size, as_):
        # Every upload carries metadata (user.e2b.* xattrs) named by its content seed, so the
        # full check can tell that it stayed with the file through renames and pauses.
        fs.write(path, content(cs, size), user=sdk_user(as_), metadata=file_metadata(cs))

    def _post_write_check(self, slot, path, as_):
        sb, rt = self.w.sbs[slot], self.rt[slot]
        f = sb.files[path]
        info = rt.sbx.files.get_info(path, user=sdk_user(as_))
        if info.type != FileType.FILE or info.size != f.size or info.owner != f.owner:
            raise Mismatch("write.info", f"s{slot} {path}: {info.type} {info.size} B owner {info.owner}, "
                           f"model file {f.size} B owner {f.owner}")

    def _await_event(self, handle, name, slot):
        deadline = time.monotonic() + WATCH_WAIT
        seen = []
        while time.monotonic() < deadline:
            for e in handle.get_new_events():
                seen.append((e.name, str(e.type)))
                if e.name == name or e.name.endswith("/" + name):
                    return
            time.sleep(0.05)
        raise Mismatch("watch.event", f"s{slot}: no event for {name} within {WATCH_WAIT}s (events: {seen[-10:]})")

    # ------------------------------------------------------------------ ops
    def op_create(self, op):
        meta = self._meta(op["meta"])
        cls = CodeInterpreter if op.get("ci") else Sandbox
        kw = {}
        if op.get("tpl") is not None:
            kw["template"] = self._tpl_name(op["tpl"]) + (f":{op['tag']}" if op.get("tag") else "")
        if op.get("vol") is not None:
            kw["volume_mounts"] = {VOL_PATH: self.vols[op["vol"]].name}
        sbx = cls.create(timeout=op["timeout"], metadata=meta, **kw, **self.server.api)
        rt = self._new_rt(op["s"], sbx, op["timeout"])
        rt.pinned = bool(op.get("ci"))
        self._make_areas(sbx)
        self.w.apply(op)
        rt.mem = Sandbox.get_info(sbx.sandbox_id, **self.server.api).memory_mb
        self._info_check(op["s"], "running")
        if op.get("tpl") is not None:
            r = sbx.commands.run("cat /opt/mdl-tpl; echo $MDL_TPL")
            want = f"{self.w.sbs[op['s']].tpl[2]}\n" * 2
            if r.stdout != want:
                raise Mismatch("template.create", f"s{op['s']} from t{op['tpl']}: {r.stdout!r}, want {want!r}")
        if op.get("vol") is not None:
            self._vol_in_sandbox_check(op["s"], VOL_PATH, "create")

    def _make_areas(self, sbx):
        # The two work areas (a command as root, not a files.* call).
        sbx.commands.run(f"install -d -o user -g user -m 755 {AREAS[0]} && install -d -m 700 {AREAS[1]}", user="root")

    def op_kill(self, op):
        _, rt = self._sb(op)
        if rt.sbx.kill() is not True:
            raise Mismatch("kill.result", f"s{op['s']}.kill() did not return True")
        self.w.apply(op)
        del self.rt[op["s"]]
        try:
            Sandbox.get_info(rt.sbx.sandbox_id, **self.server.api)
        except NotFoundException:
            return
        raise Mismatch("kill.gone", f"s{op['s']} still has info after kill")

    def op_write(self, op):
        _, rt = self._sb(op)
        self._write(rt.sbx.files, op["path"], op["cs"], op["size"], op["as"])
        self.w.apply(op)
        self._post_write_check(op["s"], op["path"], op["as"])

    def op_read(self, op):
        sb, rt = self._sb(op)
        data = bytes(rt.sbx.files.read(op["path"], format="bytes", user=sdk_user(op["as"])))
        want = sb.files[op["path"]].data()
        if data != want:
            raise Mismatch("read", f"s{op['s']} {op['path']}: {len(data)} B sha {_sha(data)[:12]}, model {len(want)} B sha {_sha(want)[:12]}")

    def op_run_cat(self, op):
        sb, rt = self._sb(op)
        r = rt.sbx.commands.run(f"sha256sum {shlex.quote(op['path'])}", user=sdk_user(op["as"]))
        got = r.stdout.split()[0] if r.stdout.split() else ""
        want = _sha(sb.files[op["path"]].data())
        if got != want:
            raise Mismatch("cat", f"s{op['s']} {op['path']}: sha256sum {got[:12]}, model {want[:12]}")

    def op_exists(self, op):
        sb, rt = self._sb(op)
        got = rt.sbx.files.exists(op["path"], user=sdk_user(op["as"]))
        if got != sb.exists(op["path"]):
            raise Mismatch("exists", f"s{op['s']} {op['path']}: {got}, model {sb.exists(op['path'])}")

    def op_list(self, op):
        sb, rt = self._sb(op)
        d = op["path"]
        got = {}
        for e in rt.sbx.files.list(d, depth=1, user=sdk_user(op["as"])):
            got[e.name] = (e.type, e.owner, e.size if e.type == FileType.FILE else None)
        want = {}
        for p, f in sb.files.items():
            if p.rsplit("/", 1)[0] == d:
                want[p.rsplit("/", 1)[1]] = (FileType.FILE, f.owner, f.size)
        for p, owner in sb.dirs.items():
            if p != d and p.rsplit("/", 1)[0] == d:
                want[p.rsplit("/", 1)[1]] = (FileType.DIR, owner, None)
        if got != want:
            raise Mismatch("list", f"s{op['s']} {d}: {sorted(got.items(), key=str)} != model {sorted(want.items(), key=str)}")

    def op_remove(self, op):
        sb, rt = self._sb(op)
        rt.sbx.files.remove(op["path"], user=sdk_user(op["as"]))
        self.w.apply(op)
        if rt.sbx.files.exists(op["path"], user=sdk_user(op["as"])):
            raise Mismatch("remove", f"s{op['s']} {op['path']} still exists")

    def op_rename(self, op):
        sb, rt = self._sb(op)
        rt.sbx.files.rename(op["src"], op["dst"], user=sdk_user(op["as"]))
        self.w.apply(op)
        u = sdk_user(op["as"])
        if rt.sbx.files.exists(op["src"], user=u) or not rt.sbx.files.exists(op["dst"], user=u):
            raise Mismatch("rename", f"s{op['s']} {op['src']} -> {op['dst']}: source still there or destination missing")

    def op_mkdir(self, op):
        sb, rt = self._sb(op)
        want = op["path"] not in sb.dirs
        got = rt.sbx.files.make_dir(op["path"], user=sdk_user(op["as"]))
        if got != want:
            raise Mismatch("make_dir", f"s{op['s']} {op['path']}: returned {got}, model expects {want}")
        self.w.apply(op)

    def op_watch(self, op):
        sb, rt = self._sb(op)
        u = sdk_user(op["as"])
        h = rt.sbx.files.watch_dir(op["dir"], user=u)
        self._write(rt.sbx.files, op["dir"] + "/" + op["name"], op["cs"], op["size"], op["as"])
        self.w.apply(op)
        self._await_event(h, op["name"], op["s"])
        if op["mode"] == "start":
            rt.watch = h
        else:
            h.stop()

    def op_watch_check(self, op):
        sb, rt = self._sb(op)
        d = sb.watch
        self._write(rt.sbx.files, d + "/" + op["name"], op["cs"], op["size"], op["as"])
        self.w.apply(op)
        self._await_event(rt.watch, op["name"], op["s"])

    def op_watch_stop(self, op):
        _, rt = self._sb(op)
        rt.watch.stop()
        rt.watch = None
        self.w.apply(op)

    def op_run_echo(self, op):
        _, rt = self._sb(op)
        r = rt.sbx.commands.run(f"echo {op['token']}; id -un", user=sdk_user(op["as"]))
        want = f"{op['token']}\n{eff(op['as'])}\n"
        if r.stdout != want or r.exit_code != 0:
            raise Mismatch("echo", f"s{op['s']}: stdout {r.stdout!r} exit {r.exit_code}, want {want!r}")

    def op_bg_start(self, op):
        _, rt = self._sb(op)
        h = rt.sbx.commands.run("sleep 86400", background=True, timeout=0, user=sdk_user(op["as"]))
        h.disconnect()
        rt.bg_pid[op["key"]] = h.pid
        self.w.apply(op)
        self._procs_check(op["s"], "bg_start")

    def op_bg_kill(self, op):
        _, rt = self._sb(op)
        pid = rt.bg_pid.pop(op["key"])
        if rt.sbx.commands.kill(pid) is not True:
            raise Mismatch("bg_kill", f"s{op['s']} kill of bg pid {pid} returned False")
        self.w.apply(op)
        self._await_unlisted(rt, pid, "bg_kill.listed", f"s{op['s']} pid {pid}")

    @staticmethod
    def _await_unlisted(rt, pid, check, what):
        """A killed process leaves envd's list within 10 s."""
        deadline = time.monotonic() + 10
        while pid in {p.pid for p in rt.sbx.commands.list()}:
            if time.monotonic() > deadline:
                raise Mismatch(check, f"{what} still listed 10 s after kill")
            time.sleep(0.1)

    def op_secret_start(self, op):
        _, rt = self._sb(op)
        pidfile = f"/tmp/mdl-secret-{op['key']}.pid"
        h = rt.sbx.commands.run(f"exec python3 -u -c {shlex.quote(SECRET_PY)} {op['port']} {pidfile} {op.get('mib', 0)}",
                                background=True, stdin=True, timeout=0, user=sdk_user(op["as"]))
        rt.sbx.commands.send_stdin(h.pid, op["secret"] + "\n")
        h.disconnect()
        rt.secret_pid[op["key"]] = h.pid
        rt.secret_n[op["key"]] = 0
        self.w.apply(op)
        self._query(op["s"], op["key"], op["as"], "secret_start")

    def op_ci_run(self, op):
        _, rt = self._sb(op)
        ex = rt.sbx.run_code(f"{op['name']} = {op['value']}")
        if ex.error is not None:
            raise Mismatch("ci_run.error", f"s{op['s']}: {ex.error.name}: {ex.error.value}")
        self.w.apply(op)

    def _pty_echo(self, slot, key, token, why):
        """Connects to the sandbox's shell on its PTY, types a command and reads its output
        back: only the shell running it (as its user) prints `TOKEN-USER`."""
        sb, rt = self.w.sbs[slot], self.rt[slot]
        pid = rt.pty_pid[key]
        want = f"{token}-{eff(sb.ptys[key])}"
        h = rt.sbx.pty.connect(pid, timeout=30)
        seen = b""
        try:
            rt.sbx.pty.send_stdin(pid, f"echo {token}-$(id -un)\n".encode())
            for _, _, out in h:
                if out:
                    seen += out
                    if want.encode() in seen:
                        return
        except Exception as e:  # noqa: BLE001 - the stream's end or timeout is the finding
            raise Mismatch("pty", f"s{slot} pty{key} (pid {pid}) after {why}: {type(e).__name__}: {e}; "
                           f"output {seen[-200:]!r}, want {want!r}")
        finally:
            h.disconnect()
        raise Mismatch("pty.ended", f"s{slot} pty{key} (pid {pid}) after {why}: the shell ended; output {seen[-200:]!r}")

    def op_pty_start(self, op):
        _, rt = self._sb(op)
        h = rt.sbx.pty.create(PtySize(rows=24, cols=80), user=sdk_user(op["as"]), timeout=0)
        h.disconnect()
        rt.pty_pid[op["key"]] = h.pid
        self.w.apply(op)
        self._pty_echo(op["s"], op["key"], f"ps{op['key']}", "pty_start")
        self._procs_check(op["s"], "pty_start")

    def op_pty_check(self, op):
        self._pty_echo(op["s"], op["key"], op["token"], "pty_check")

    def op_pty_kill(self, op):
        _, rt = self._sb(op)
        pid = rt.pty_pid.pop(op["key"])
        if rt.sbx.pty.kill(pid) is not True:
            raise Mismatch("pty_kill", f"s{op['s']} kill of pty pid {pid} returned False")
        self.w.apply(op)
        self._await_unlisted(rt, pid, "pty_kill.listed", f"s{op['s']} pty pid {pid}")

    def op_secret_query(self, op):
        self._query(op["s"], op["key"], op["as"], "query")

    def op_pause(self, op):
        _, rt = self._sb(op)
        r = rt.sbx.pause()
        if r is not True:
            raise Mismatch("pause.result", f"s{op['s']}.pause() returned {r!r}")
        self.w.apply(op)
        self._info_check(op["s"], "paused")
        if rt.sbx.is_running():
            raise Mismatch("pause.is_running", f"s{op['s']}.is_running() is True while paused")

    def op_pause_again(self, op):
        _, rt = self._sb(op)
        r = rt.sbx.pause()
        if r is not False:
            raise Mismatch("pause_again.result", f"s{op['s']}.pause() of a paused sandbox returned {r!r}")
        self._info_check(op["s"], "paused")

    def op_connect(self, op):
        sb, rt = self._sb(op)
        was = sb.state
        cls = CodeInterpreter if sb.ci else Sandbox
        rt.sbx = cls.connect(rt.sbx.sandbox_id, timeout=op["timeout"], **self.server.api)
        self.w.apply(op)
        now = time.monotonic()
        if was == "paused":
            rt.deadline = now + (op["timeout"] or sb.timeout)
            self._info_check(op["s"], "running")
            self.full_check(op["s"], "resume")
        else:
            if op["timeout"]:
                rt.deadline = max(rt.deadline, now + op["timeout"])
            if not rt.sbx.is_running():
                raise Mismatch("connect.running", f"s{op['s']} not running after connect")

    def op_set_timeout(self, op):
        _, rt = self._sb(op)
        rt.sbx.set_timeout(op["timeout"])
        self.w.apply(op)
        rt.deadline = time.monotonic() + op["timeout"]
        info = self._info_check(op["s"], "running")
        left = info.end_at.timestamp() - time.time()
        if abs(left - op["timeout"]) > 30:
            raise Mismatch("set_timeout.end", f"s{op['s']}: end_at is {left:.0f} s away, set {op['timeout']} s")

    def op_sdk_list(self, op):
        self._list_check(op["state"])

    def op_snapshot(self, op):
        _, rt = self._sb(op)
        snap = rt.sbx.create_snapshot()
        copy = Rt(rt.sbx, 0)
        copy.inherit(rt)
        self.snaps[op["snap"]] = (snap.snapshot_id, copy, snap.snapshot_id)
        rt.ev["snapshot"] += 1
        self.w.apply(op)
        if not rt.sbx.is_running():
            raise Mismatch("snapshot.source", f"s{op['s']} not running after create_snapshot")
        self.full_check(op["s"], "create_snapshot (source)")

    def op_from_snapshot(self, op):
        snap_id, src, _ = self.snaps[op["snap"]]
        cls = CodeInterpreter if self.w.snaps[op["snap"]].content.ci else Sandbox
        if not self.w.snap_usable(op["snap"]):
            try:
                sbx = cls.create(template=snap_id, timeout=op["timeout"], metadata=self._meta(op["meta"]), **self.server.api)
            except Exception as e:  # noqa: BLE001 - the refusal is the expected outcome
                if "volume" not in str(e):
                    raise Mismatch("from_snapshot.refusal", f"n{op['snap']} (its volume is deleted): {e}")
                self.details.append(f"      refused as expected (its volume is deleted): {str(e)[:200]}")
                self._list_check(None)
                return
            self.server.seen(sbx.sandbox_id)
            raise Mismatch("from_snapshot.volume_gone", f"n{op['snap']}: a sandbox was made though its volume is deleted")
        sbx = cls.create(template=snap_id, timeout=op["timeout"], metadata=self._meta(op["meta"]), **self.server.api)
        rt = self._new_rt(op["s"], sbx, op["timeout"])
        rt.inherit(src)
        rt.pinned = True
        self.w.apply(op)
        self._info_check(op["s"], "running")
        self.full_check(op["s"], f"create from n{op['snap']}")

    def op_delete_snapshot(self, op):
        _, _, snap_id = self.snaps.pop(op["snap"])
        if Sandbox.delete_snapshot(snap_id, **self.server.api) is not True:
            raise Mismatch("delete_snapshot", f"n{op['snap']} ({snap_id}) delete did not return True")
        self.w.apply(op)

    def op_fork(self, op):
        _, rt = self._sb(op)
        results = rt.sbx.fork(count=len(op["new"]), timeout=op["timeout"])
        forks = []
        for r in results:
            if isinstance(r, Sandbox):
                self.server.seen(r.sandbox_id)
        for r in results:
            if not isinstance(r, Sandbox):
                raise r if isinstance(r, Exception) else Mismatch("fork.result", repr(r))
        if len(results) != len(op["new"]):
            raise Mismatch("fork.count", f"{len(results)} results for count={len(op['new'])}")
        for slot, f in zip(op["new"], results):
            new = self._new_rt(slot, f, op["timeout"])
            new.inherit(rt)
            new.pinned = True
            forks.append(slot)
        self.w.apply(op)
        if not rt.sbx.is_running():
            raise Mismatch("fork.source", f"s{op['s']} not running after fork")
        for slot in forks:
            self._info_check(slot, "running")
            self.full_check(slot, f"fork of s{op['s']}")

    def op_restart(self, op):
        was_pos = self.server.pos
        self.server.restart(op["sig"], op["pos"])
        self.w.apply(op)
        now = time.monotonic()
        if was_pos and op["sig"] == "TERM":
            # Paused at shutdown, resumed at start with the sandbox's timeout.
            for s in self.w.running():
                self.rt[s].deadline = now + self.w.sbs[s].timeout
        self._list_check(None)
        for s in self.w.running():
            self.full_check(s, f"SIG{op['sig']} + restart")

    # ------------------------------------------------------------------ volumes
    def _vol_api(self):
        """The volume content API's options: this server, never E2B_VOLUME_API_URL."""
        return {"api_url": self.server.url, "request_timeout": 120}

    def op_vol_create(self, op):
        name = f"{self.tag}-{op['name']}"
        vol = Volume.create(name, **self.server.api)
        self.vols[op["v"]] = vol
        self.w.apply(op)
        if Volume.get_info(vol.volume_id, **self.server.api).name != name:
            raise Mismatch("vol_create.info", f"v{op['v']}: get_info does not name it {name}")

    def op_vol_put(self, op):
        vol = self.vols[op["v"]]
        st = vol.write_file("/" + op["name"], content(op["cs"], op["size"]), **self._vol_api())
        self.w.apply(op)
        if st.size != op["size"] or st.uid != 1000:
            raise Mismatch("vol_put.stat", f"v{op['v']} /{op['name']}: size {st.size} uid {st.uid}, want {op['size']} and 1000")

    def op_vol_write(self, op):
        sb, rt = self._sb(op)
        path = f"{op['at']}/{op['name']}"
        rt.sbx.files.write(path, content(op["cs"], op["size"]), user=sdk_user(op["as"]))
        self.w.apply(op)
        info = rt.sbx.files.get_info(path, user=sdk_user(op["as"]))
        if info.size != op["size"] or info.owner != eff(op["as"]):
            raise Mismatch("vol_write.info", f"s{op['s']} {path}: {info.size} B owner {info.owner}")

    def op_vol_check(self, op):
        """The volume through its content API: exactly the model's files, with their bytes."""
        vol, vm = self.vols[op["v"]], self.w.vols[op["v"]]
        got = {e.name: (e.type.value, e.size, e.uid) for e in vol.list("/", depth=1, **self._vol_api())}
        want = {n: ("file", f.size, 0 if f.owner == "root" else 1000) for n, f in vm.files.items()}
        if got != want:
            raise Mismatch("vol_check.tree", f"v{op['v']}: {sorted(got.items())} != model {sorted(want.items())}")
        for n in sorted(vm.files):
            data = bytes(vol.read_file("/" + n, format="bytes", **self._vol_api()))
            if data != vm.files[n].data():
                raise Mismatch("vol_check.content", f"v{op['v']} /{n}: sha {_sha(data)[:12]}, model {_sha(vm.files[n].data())[:12]}")

    def op_vol_destroy(self, op):
        vol = self.vols[op["v"]]
        users = self.w.vol_users(op["v"])
        if users:
            try:
                Volume.destroy(vol.volume_id, **self.server.api)
            except VolumeException as e:
                if "mounted" not in str(e) and "needed" not in str(e):
                    raise Mismatch("vol_destroy.message", f"v{op['v']} used by {users}: {e}")
                self.details.append(f"      refused as expected (used by {', '.join(users)}): {e}")
                return
            raise Mismatch("vol_destroy.in_use", f"v{op['v']} was deleted while {', '.join(users)} need it")
        if Volume.destroy(vol.volume_id, **self.server.api) is not True:
            raise Mismatch("vol_destroy.result", f"v{op['v']}: destroy did not return True")
        self.w.apply(op)
        del self.vols[op["v"]]
        if any(v.volume_id == vol.volume_id for v in Volume.list(**self.server.api)):
            raise Mismatch("vol_destroy.listed", f"v{op['v']} still listed after destroy")

    # ------------------------------------------------------------------ templates
    def op_tpl_build(self, op):
        t = (Template().from_template("base")
             .run_cmd(f"echo {op['cs']} > /opt/mdl-tpl")
             .set_envs({"MDL_TPL": str(op["cs"])}))
        Template.build(t, self._tpl_name(op["t"]), api_key=self.server.key, api_url=self.server.url)
        self.w.apply(op)

    def op_tpl_delete(self, op):
        self._rest("DELETE", f"/templates/{self._tpl_name(op['t'])}", ok=(204,))
        self.w.apply(op)
        status, _ = self._rest("POST", "/sandboxes", {"templateID": self._tpl_name(op["t"])}, ok=None)
        if status != 404 and status != 400:
            raise Mismatch("tpl_delete.create", f"t{op['t']}: a create from the deleted template answered {status}")

    # ------------------------------------------------------------------ settings
    def op_mem_up(self, op):
        _, rt = self._sb(op)
        want = rt.mem + op["add"]
        self._rest("POST", f"/sandboxes/{rt.sbx.sandbox_id}/hotplug-memory", {"requested_size_mib": want}, ok=(204,))
        rt.mem = want
        rt.ev["memory"] += 1
        self.w.apply(op)
        self._info_check(op["s"], "running")

    def op_net_update(self, op):
        sb, rt = self._sb(op)
        Sandbox.update_network(rt.sbx.sandbox_id, {"allow_out": op["allow"], "deny_out": op["deny"]}, **self.server.api)
        rt.ev["network"] += 1
        self.w.apply(op)
        self._info_check(op["s"], sb.state)
        if sb.state == "running":
            r = rt.sbx.commands.run("echo net-ok")
            if r.stdout != "net-ok\n":
                raise Mismatch("net_update.run", f"s{op['s']}: {r.stdout!r}")

    # ------------------------------------------------------------------ Novita
    def op_commit(self, op):
        sb, rt = self._sb(op)
        was = sb.state
        _, body = self._rest("POST", f"/sandboxes/{rt.sbx.sandbox_id}/commit", {"alias": op["alias"]})
        if op["alias"] not in (body or {}).get("aliases", []):
            raise Mismatch("commit.answer", f"s{op['s']}: {body}")
        copy = Rt(rt.sbx, 0)
        copy.inherit(rt)
        self.snaps[op["snap"]] = (op["alias"], copy, body["templateID"])
        rt.ev["snapshot"] += 1
        self.w.apply(op)
        self._info_check(op["s"], was)
        if was == "running":
            self.full_check(op["s"], "commit (source)")

    def op_reset(self, op):
        sb, rt = self._sb(op)
        why = self.w.reset_outcome(sb)
        was = sb.state
        status, body = self._rest("POST", f"/sandboxes/{rt.sbx.sandbox_id}/reset", {}, ok=None)
        if why != "ok":
            if status != 409:
                raise Mismatch("reset.refused", f"s{op['s']} ({why}): HTTP {status} {body}")
            self.details.append(f"      refused as expected ({why}): {(body or {}).get('message')}")
            self._info_check(op["s"], was)
            if was == "running":
                self.full_check(op["s"], "refused reset")
            return
        if status != 200:
            raise Mismatch("reset.status", f"s{op['s']}: HTTP {status} {body}")
        rt.ev["reset"] += 1
        self.w.apply(op)
        if rt.watch is not None:
            try:
                rt.watch.stop()
            except Exception:  # noqa: BLE001 - its stream went with the old processes
                pass
            rt.watch = None
        cls = CodeInterpreter if sb.ci else Sandbox
        rt.sbx = cls.connect(rt.sbx.sandbox_id, **self.server.api)
        rt.deadline = time.monotonic() + sb.timeout
        if sb.origin is not None:
            mem = rt.mem  # a reset keeps the sandbox's settings
            rt.inherit(self.snaps[sb.origin][1])
            rt.mem = mem
        else:
            rt.secret_pid, rt.secret_n, rt.bg_pid, rt.pty_pid = {}, {}, {}, {}
            self._make_areas(rt.sbx)
        self._info_check(op["s"], "running")
        self.full_check(op["s"], "reset")

    # ------------------------------------------------------------------ observability
    def op_events(self, op):
        """The sandbox's event log (`stasis sandbox events`, the dashboard's): in order, and
        exactly as many of each counted kind as the ops made, across restarts and pauses."""
        _, rt = self._sb(op)
        _, events = self._rest("GET", f"/stasis/sandboxes/{rt.sbx.sandbox_id}/events?limit=1000")
        seqs = [e["seq"] for e in events]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            raise Mismatch("events.order", f"s{op['s']}: seqs {seqs}")
        got = {k: sum(1 for e in events if e["kind"] == k) for k in rt.ev}
        if got != rt.ev:
            raise Mismatch("events.count", f"s{op['s']}: {got}, model {rt.ev} (kinds: {[e['kind'] for e in events]})")
        lost = sum(1 for e in events if e["kind"] == "lost")
        if lost != rt.lost:
            raise Mismatch("events.lost", f"s{op['s']}: {lost} 'lost' events, model {rt.lost} (its node declared dead)")
        errors = [e for e in events if e["level"] == "error" and e["kind"] != "lost"]
        if errors:
            raise Mismatch("events.error", f"s{op['s']}: {errors[:3]}")

    def op_metrics(self, op):
        """`/metrics` (Prometheus text): `stasis_sandboxes` by state is the model's census."""
        # A cluster: each node counts its own sandboxes; the census is their sum.
        text = ""
        for url in getattr(self.server, "urls", [self.server.url]):
            req = urllib.request.Request(url + "/metrics", headers={"X-API-KEY": self.server.key})
            with urllib.request.urlopen(req, timeout=60) as r:
                text += r.read().decode()
        got = {}
        for line in text.splitlines():
            if line.startswith("stasis_sandboxes{"):
                labels, value = line.rsplit(" ", 1)
                state = labels.split('state="', 1)[1].split('"', 1)[0]
                got[state] = got.get(state, 0) + int(float(value))
        want = {st: n for st, n in (("running", len(self.w.running())), ("paused", len(self.w.paused()))) if n}
        got = {k: v for k, v in got.items() if v}
        if got != want:
            raise Mismatch("metrics.sandboxes", f"stasis_sandboxes by state {got}, model {want}")

    # ------------------------------------------------------------------ volumes mounted live
    def op_vol_mount(self, op):
        """Novita's mountVolume: into a running sandbox at once; a paused one is refused."""
        sb, rt = self._sb(op)
        name = self.vols[op["v"]].name
        status, body = self._rest("POST", f"/sandboxes/{rt.sbx.sandbox_id}/volume-mounts",
                                  {"name": name, "path": op["path"]}, ok=None)
        if sb.state == "paused":
            if status != 409 or "paused" not in (body or {}).get("message", ""):
                raise Mismatch("vol_mount.paused", f"s{op['s']} is paused: HTTP {status} {body}")
            self.details.append(f"      refused as expected (paused): {(body or {}).get('message')}")
            self._info_check(op["s"], "paused")
            return
        if status != 200:
            raise Mismatch("vol_mount.status", f"s{op['s']} v{op['v']} at {op['path']}: HTTP {status} {body}")
        rt.ev["volume"] += 1
        self.w.apply(op)
        self._info_check(op["s"], "running")
        self._vol_in_sandbox_check(op["s"], op["path"], "mountVolume")

    def op_vol_unmount(self, op):
        """Novita's unmountVolume: refused while paused, and for a mount the kernel locks (made
        at create, not restored by CRIU since); otherwise gone from the sandbox at once."""
        sb, rt = self._sb(op)
        path = op["path"]
        q = f"path={urllib.parse.quote(path)}" + ("&force=true" if op["force"] else "")
        status, body = self._rest("DELETE", f"/sandboxes/{rt.sbx.sandbox_id}/volume-mounts?{q}", ok=None)
        message = (body or {}).get("message", "")
        why = "paused" if sb.state == "paused" else ("locks it" if path in sb.locked else None)
        if why:
            if status != 409 or why not in message:
                raise Mismatch("vol_unmount.refused", f"s{op['s']} {path} (expected a 409 saying {why!r}): HTTP {status} {body}")
            self.details.append(f"      refused as expected: {message}")
            self._info_check(op["s"], sb.state)
            return
        if status != 200:
            raise Mismatch("vol_unmount.status", f"s{op['s']} {path}: HTTP {status} {body}")
        rt.ev["volume"] += 1
        self.w.apply(op)
        self._info_check(op["s"], "running")
        r = rt.sbx.commands.run(f"grep -c ' {path} ' /proc/mounts || true")
        if r.stdout != "0\n":
            raise Mismatch("vol_unmount.mounts", f"s{op['s']}: {path} still in /proc/mounts ({r.stdout!r})")

    # ------------------------------------------------------------------ git
    def op_git_commit(self, op):
        """sandbox.git as the SDK's default user: init once, then write, add, commit."""
        sb, rt = self._sb(op)
        g = rt.sbx.git
        if sb.git is None:
            g.init(GIT_PATH, initial_branch="main")
        rt.sbx.files.write(f"{GIT_PATH}/data", content(op["cs"], 256))
        g.add(GIT_PATH)
        g.commit(GIT_PATH, f"m{op['cs']}", author_name="Model", author_email="model@stasis.invalid")
        self.w.apply(op)
        self._git_check(op["s"], "commit")

    def _git_check(self, slot, why):
        """The repository holds the model's commits: their count, the last one's message, a
        clean tree; none where the model has none."""
        sb, rt = self.w.sbs[slot], self.rt[slot]
        r = rt.sbx.commands.run(f"cd {GIT_PATH} 2>/dev/null && git rev-list --count HEAD && git log -1 --format=%s "
                                f"&& git status --porcelain || echo none")
        want = f"{sb.git[0]}\nm{sb.git[1]}\n" if sb.git else "none\n"
        if r.stdout != want:
            raise Mismatch("git", f"s{slot} after {why}: {r.stdout!r} {r.stderr[-200:]!r}, model {want!r}")

    # ------------------------------------------------------------------ egress rules
    def _secret_name(self, k):
        return f"{self.tag}-esec{k}"

    @staticmethod
    def _secret_value(val):
        return f"mdl-{val}"

    def _put_secret(self, k, val):
        """Egress secret k holds value `val` now (made on first use)."""
        name, value = self._secret_name(k), self._secret_value(val)
        if k in self.w.esecrets:
            Secret.update(name, value, **self.server.api)
        else:
            Secret.create(name, value, **self.server.api)
        return name

    def op_secret_update(self, op):
        self._put_secret(op["k"], op["val"])
        self.w.apply(op)

    def op_egress_set(self, op):
        """A secret (new, or a new value) and a rule naming it: the sandbox's HTTPS to the
        echo carries it as a header, set outside the sandbox."""
        sb, rt = self._sb(op)
        name = self._put_secret(op["k"], op["val"])
        rules = {EGRESS_HOST: [{"transform": {"headers": {"X-Api-Key": Secret.fill(name)}}}]}
        Sandbox.update_network(rt.sbx.sandbox_id, {"allow_out": [EGRESS_CIDR], "rules": rules}, **self.server.api)
        rt.ev["network"] += 1
        self.w.apply(op)
        self._info_check(op["s"], sb.state)
        if sb.state == "running":
            self._egress_check(op["s"], "rules set")

    def op_egress_check(self, op):
        self._egress_check(op["s"], "a request")

    def _egress_check(self, slot, why):
        sb, rt = self.w.sbs[slot], self.rt[slot]
        r = rt.sbx.commands.run(f"python3 -c {shlex.quote(EGRESS_CLIENT)} {EGRESS_HOST} {EGRESS_ADDR}", timeout=60)
        try:
            got = json.loads(r.stdout)
        except ValueError:
            raise Mismatch("egress.answer", f"s{slot} after {why}: {r.stdout!r} {r.stderr[-300:]!r}")
        want = hashlib.sha256(self._secret_value(self.w.esecrets[sb.egress]).encode()).hexdigest()
        body = got.get("body") or {}
        if got.get("issuer") != EGRESS_ISSUER or body.get("key_sha256") != want or body.get("host") != EGRESS_HOST:
            raise Mismatch("egress", f"s{slot} after {why}: {got}, model: esec{sb.egress}'s value (sha {want[:12]})")

    # ------------------------------------------------------------------ template tags
    def op_tpl_tag(self, op):
        src = self._tpl_name(op["t"]) + (f":{op['src']}" if op.get("src") else "")
        info = Template.assign_tags(src, [op["tag"]], api_key=self.server.key, api_url=self.server.url)
        self.w.apply(op)
        if info.tags != [op["tag"]]:
            raise Mismatch("tpl_tag.answer", f"t{op['t']}: assign_tags answered tags {info.tags}")
        self._tags_check(op["t"])

    def op_tpl_untag(self, op):
        Template.remove_tags(self._tpl_name(op["t"]), [op["tag"]], api_key=self.server.key, api_url=self.server.url)
        self.w.apply(op)
        self._tags_check(op["t"])
        status, _ = self._rest("POST", "/sandboxes", {"templateID": f"{self._tpl_name(op['t'])}:{op['tag']}"}, ok=None)
        if status not in (400, 404):
            raise Mismatch("tpl_untag.create", f"t{op['t']}:{op['tag']}: a create from the removed tag answered {status}")

    def _tags_check(self, t):
        """get_tags lists the model's tags of t (and `default`); tags naming one build share its id."""
        got = {x.tag: x.build_id for x in Template.get_tags(self._tpl_name(t), api_key=self.server.key, api_url=self.server.url)}
        want = {tag: cs for (tt, tag), cs in self.w.tags.items() if tt == t}
        want["default"] = self.w.tpls[t]
        if set(got) != set(want):
            raise Mismatch("tpl_tags", f"t{t}: get_tags {sorted(got)}, model {sorted(want)}")
        # Tags naming the same build (content seed) share its id; different builds differ.
        pairs = {(got[tag], want[tag]) for tag in want}
        if len({b for b, _ in pairs}) != len(pairs) or len({c for _, c in pairs}) != len(pairs):
            raise Mismatch("tpl_tags.builds", f"t{t}: build ids {got}, model content seeds {want}")

    # ------------------------------------------------------------------ cluster nodes
    def _node_of(self, slot, node=None):
        """The node the registry says runs or holds sandbox `slot` (asked through `node`)."""
        sid = self.rt[slot].sbx.sandbox_id
        node = node or self.server.node(self.server.via)
        status, info = node.rest("GET", f"/sandboxes/{sid}")
        if status != 200:
            raise Mismatch("node_of", f"s{slot} ({sid}): HTTP {status} {info}")
        return info["nodeID"]

    def _node_state(self, name, through):
        return {n["nodeID"]: n["state"] for n in through.rest("GET", "/stasis/nodes")[1]}.get(name)

    def _wait(self, what, cond, limit, every=0.25):
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline:
                raise Mismatch("wait", f"{what}: not within {limit:.0f} s")
            time.sleep(every)

    def _resume_through(self, slot, node, why, moved_from=None):
        """Connects paused sandbox `slot` through `node` and checks it whole. `moved_from`:
        the node it must leave (a takeover), unless it is pinned and refused (False then)."""
        sb, rt = self._sb({"s": slot})
        cls = CodeInterpreter if sb.ci else Sandbox
        try:
            sbx = cls.connect(rt.sbx.sandbox_id, timeout=sb.timeout, **node.api)
        except Exception as e:  # noqa: BLE001 - a pinned sandbox's refusal is allowed
            if moved_from and rt.pinned and "resumes only there" in str(e):
                self.details.append(f"      s{slot} stays on {moved_from} (made from a snapshot): {str(e)[:160]}")
                self._info_check(slot, "paused")
                return False
            raise Mismatch("takeover" if moved_from else "resume", f"s{slot} through {node.name} ({why}): {e}")
        rt.sbx = sbx
        self.w.apply({"op": "connect", "s": slot, "timeout": sb.timeout})
        rt.deadline = time.monotonic() + sb.timeout
        where = self._node_of(slot, node)
        if moved_from and where == moved_from:
            raise Mismatch("takeover.node", f"s{slot} resumed on {where}, the node it was to leave ({why})")
        self._info_check(slot, "running")
        self.full_check(slot, f"{why}, now on {where}")
        return True

    def _nodes_for(self, op):
        """(the node of sandbox op["s"], or node op["n"] when it is gone; another node the
        op goes through, and with it every other call of the op)."""
        count = self.server.node_count
        n = op["n"] % count
        if op.get("s") in self.rt:
            n = self.server.names.index(self._node_of(op["s"]))
        self.server.via = (n + 1 + op["k"] % (count - 1)) % count
        return self.server.node(n), self.server.node(self.server.via)

    def op_node_drain(self, op):
        """`stasis node drain`: the node pauses what it runs; each of those is connected
        through another node and resumes elsewhere (taken over from the object store) with
        everything it held, but a pinned one, refused with a 409, which resumes on its node
        once that is active again."""
        n, to = self._nodes_for(op)
        on = [s for s in self.w.running() if self._node_of(s, to) == n.name]
        self.details.append(f"      on {n.name}: {', '.join(f's{s}' for s in on) or 'nothing running'}")
        status, body = to.rest("POST", f"/stasis/nodes/{n.name}/drain")
        if status != 200 or body.get("state") != "draining":
            raise Mismatch("node_drain", f"{n.name}: HTTP {status} {body}")
        paused = lambda: all(Sandbox.get_info(self.rt[s].sbx.sandbox_id, **to.api).state == SandboxState.PAUSED  # noqa: E731
                             for s in on)
        self._wait(f"{n.name} to pause {len(on)} sandboxes", paused, limit=180)
        for s in on:
            self.w.apply({"op": "pause", "s": s})
        stayed = [s for s in on if not self._resume_through(s, to, f"takeover from drained {n.name}", moved_from=n.name)]
        status, body = to.rest("POST", f"/stasis/nodes/{n.name}/activate")
        if status != 200 or body.get("state") != "active":
            raise Mismatch("node_activate", f"{n.name}: HTTP {status} {body}")
        for s in stayed:
            self._resume_through(s, self.server.node(self.server.via), f"resume on {n.name} after activate")
            if self._node_of(s) != n.name:
                raise Mismatch("pinned.node", f"s{s} left {n.name} though made from one of its snapshots")

    def op_node_kill(self, op):
        """kill -9 of a node, then its restart. Its sandboxes keep running meanwhile. With
        `lease`, its lease runs out first: it is declared dead, its running sandboxes are
        reported lost (404), its paused ones resume through another node (taken over); the
        restarted node finds the lost ones running and takes them up again."""
        n, to = self._nodes_for(op)
        mine = {s: self.w.sbs[s].state for s in sorted(self.w.sbs) if self._node_of(s, to) == n.name}
        self.details.append(f"      on {n.name}: {', '.join(f's{s} ({st})' for s, st in mine.items()) or 'nothing'}")
        n.kill9()
        if op["lease"]:
            from .cluster import LEASE
            self._wait(f"{n.name} declared dead", lambda: self._node_state(n.name, to) == "dead", limit=LEASE * 5)
            for s, st in mine.items():
                if st != "running":
                    continue
                status, info = to.rest("GET", f"/sandboxes/{self.rt[s].sbx.sandbox_id}")
                if status != 404 or "lost" not in (info or {}).get("message", ""):
                    raise Mismatch("node_kill.lost", f"s{s} of dead {n.name}: HTTP {status} {info}")
                self.rt[s].lost += 1
            for s, st in mine.items():
                if st == "paused":
                    self._resume_through(s, to, f"takeover from dead {n.name}", moved_from=n.name)
        n.start()
        self._wait(f"{n.name} active again", lambda: self._node_state(n.name, to) == "active", limit=60)
        for s, st in mine.items():
            if st == "running":
                self._info_check(s, "running")
                self.full_check(s, f"kill -9 of {n.name}{' (declared dead)' if op['lease'] else ''} + restart")
        self._list_check(None)
