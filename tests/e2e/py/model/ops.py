"""The operation vocabulary, the abstract model of what each sandbox must hold, and the
seeded generator.

An operation is a plain JSON-able dict (`{"op": "write", "s": 0, "path": ..., ...}`) that
carries everything needed to run it again: file contents are named by a content seed and
a size, secrets and tokens are in the op. Sandboxes are named by slot numbers (`s0`,
`s1`, ...) given in creation order, snapshots by `n0`, `n1`, ...

`World` is the abstract model: per sandbox its state, metadata, timeout, files
(path -> content seed, size, owner), directories (path -> owner), secret processes,
background commands and directory watch. `World.applicable(op)` says whether an op makes
sense in the current model and `World.apply(op)` performs its effect; both are pure, so
the generator runs against the model alone and a seed always gives the same sequence.
When a shrunk or edited sequence is replayed, ops that are not applicable any more (say,
a write to a sandbox whose create was dropped) are skipped.
"""
import copy
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

U_AREA = "/home/user/mdl"  # made by root at create, owned by user: user and root work here
R_AREA = "/root/mdl"       # made by root at create, 0700 root: only root works here
AREAS = (U_AREA, R_AREA)

MAX_ALIVE = 4      # sandboxes alive (running or paused) at once
MAX_SNAPS = 3      # snapshots kept at once
MAX_SECRETS = 2    # secret processes per sandbox
MAX_VOLS = 2       # volumes kept at once
MAX_TPLS = 2       # custom templates built at once
VOL_PATH = "/home/user/vol"    # where a create mounts a volume
HVOL_PATH = "/home/user/hvol"  # the other place a running sandbox mounts one (mountVolume)
MOUNT_PATHS = (VOL_PATH, HVOL_PATH)
GIT_PATH = "/home/user/repo"   # the git repository the git ops keep (the SDK's default user)
EGRESS = "$EGRESS"             # the egress echo's CIDR in allow_out (the runner knows it)
EGRESS_HOST = "api.egress.test"  # the name the egress rules give a header for
MAX_ESECRETS = 2               # secrets (E2B Secret) the egress rules name
TAGS = ("v1", "v2", "rc")      # template tags the tag ops assign
NETS = ("10.11.0.0/16", "10.12.0.0/16", "192.0.2.0/24", "198.51.100.7")  # never sent to
MAX_BGS = 2        # background sleeps per sandbox
MAX_PTYS = 1       # interactive shells (sandbox.pty) per sandbox
SECRET_PORT0 = 20000
BALLAST_MIB = 40   # memory a secret process may hold: memory images of several 16 MiB chunks
MIB = 1024 * 1024

# Who an op runs as: "default" passes no user (the SDK's default user, `user`),
# "user" passes user="user", "root" passes user="root".
AS_CHOICES = ("default", "user", "root")


def eff(as_: str) -> str:
    """The Linux user an op runs as."""
    return "root" if as_ == "root" else "user"


def sdk_user(as_: str) -> Optional[str]:
    """The `user=` argument of the SDK call."""
    return None if as_ == "default" else as_


def content(cs: int, size: int) -> bytes:
    """File content named by a content seed and a size."""
    return random.Random(cs).randbytes(size)


def file_metadata(cs: int) -> Dict[str, str]:
    """The metadata every upload of content seed `cs` carries (`user.e2b.cs` xattr)."""
    return {"cs": str(cs)}


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def basename(path: str) -> str:
    return path.rsplit("/", 1)[1]


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


@dataclass
class FileM:
    cs: int
    size: int
    owner: str

    def data(self) -> bytes:
        return content(self.cs, self.size)


@dataclass
class SecretM:
    secret: str
    port: int
    as_: str
    mib: int = 0   # ballast it holds (runner.SECRET_PY)


@dataclass
class SbM:
    slot: int
    state: str  # "running" | "paused"
    meta: Dict[str, str]
    timeout: int
    files: Dict[str, FileM] = field(default_factory=dict)
    dirs: Dict[str, str] = field(default_factory=dict)   # path -> owner
    secrets: Dict[int, SecretM] = field(default_factory=dict)
    bgs: Dict[int, str] = field(default_factory=dict)     # key -> as_
    ptys: Dict[int, str] = field(default_factory=dict)    # key -> as_: a bash on a PTY
    watch: Optional[str] = None                            # the watched dir
    ci: bool = False                                       # a code-interpreter-v1 sandbox
    vars: Dict[str, int] = field(default_factory=dict)     # its Python kernel's variables
    mounts: Dict[str, int] = field(default_factory=dict)   # path -> the volume v mounted there
    locked: set = field(default_factory=set)               # mounts made at create: the kernel locks them
                                                           # (unmount refused) until a CRIU restore
    tpl: Optional[tuple] = None                            # (template t, tag or None, its content seed then)
    git: Optional[tuple] = None                            # GIT_PATH's (commit count, last content seed)
    egress: Optional[int] = None                           # the secret k its egress rule names
    origin: Optional[int] = None                           # the snapshot n it was made from
    net: Optional[dict] = None                             # {"allow_out": [...], "deny_out": [...]}

    def fresh_dirs(self):
        self.dirs = {U_AREA: "user", R_AREA: "root"}

    # -- permissions (Linux semantics of the layout above)
    def accessible(self, path: str, who: str) -> bool:
        return who == "root" or under(path, U_AREA)

    def writable_dir(self, d: str, who: str) -> bool:
        if d not in self.dirs:
            return False
        return who == "root" or (under(d, U_AREA) and self.dirs[d] == "user")

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def subtree(self, top: str):
        """Files and dirs at or below `top`."""
        fs = [p for p in self.files if under(p, top)]
        ds = [p for p in self.dirs if under(p, top)]
        return fs, ds

    def pinned(self, path: str) -> bool:
        """May not be removed or renamed: an area root, or the watched dir or an ancestor."""
        if path in AREAS:
            return True
        return self.watch is not None and under(self.watch, path)

    def can_remove(self, path: str, who: str) -> bool:
        if not self.exists(path) or self.pinned(path) or not self.accessible(path, who):
            return False
        if not self.writable_dir(parent(path), who):
            return False
        if path in self.dirs and who != "root":
            # Removing a tree as user needs write access to every dir in it.
            _, ds = self.subtree(path)
            return all(self.dirs[d] == "user" for d in ds)
        return True

    def can_rename(self, src: str, dst: str, who: str) -> bool:
        if not self.exists(src) or self.exists(dst) or self.pinned(src):
            return False
        if not (self.accessible(src, who) and self.accessible(dst, who)):
            return False
        if not (self.writable_dir(parent(src), who) and self.writable_dir(parent(dst), who)):
            return False
        if src in self.dirs:
            if under(dst, src):
                return False
            if who != "root" and self.dirs[src] != "user":
                return False  # moving a dir rewrites its '..': needs write access to it
        return True

    def copy_content_from(self, other: "SbM"):
        self.files = copy.deepcopy(other.files)
        self.dirs = dict(other.dirs)
        self.secrets = copy.deepcopy(other.secrets)
        self.bgs = dict(other.bgs)
        self.ptys = dict(other.ptys)
        self.ci = other.ci
        self.vars = dict(other.vars)
        self.mounts = dict(other.mounts)
        self.locked = set()  # a copy is a CRIU restore: its mounts are made anew
        self.tpl = other.tpl
        self.git = other.git
        self.origin = other.origin

    def reset_content(self):
        """What Novita's reset leaves: the template's files, no processes, a fresh kernel."""
        self.files, self.secrets, self.bgs, self.vars, self.ptys = {}, {}, {}, {}, {}
        self.git = None
        self.watch = None
        self.fresh_dirs()


@dataclass
class VolM:
    name: str
    files: Dict[str, FileM] = field(default_factory=dict)  # name (top level) -> file


@dataclass
class SnapM:
    n: int
    source: int
    content: SbM


class World:
    """The abstract model of everything the server must hold."""

    def __init__(self):
        self.sbs: Dict[int, SbM] = {}
        self.snaps: Dict[int, SnapM] = {}
        self.vols: Dict[int, VolM] = {}
        self.tpls: Dict[int, int] = {}  # template t -> content seed of its current build
        self.tags: Dict[tuple, int] = {}  # (t, tag) -> content seed of the build it names
        self.esecrets: Dict[int, int] = {}  # egress secret k -> its value's seed
        self.pos = False  # does the current server run with --pause-on-shutdown

    def running(self):
        return sorted(s for s, m in self.sbs.items() if m.state == "running")

    def paused(self):
        return sorted(s for s, m in self.sbs.items() if m.state == "paused")

    def _run(self, op) -> Optional[SbM]:
        sb = self.sbs.get(op.get("s"))
        return sb if sb is not None and sb.state == "running" else None

    # ------------------------------------------------------------------ applicable
    def applicable(self, op) -> bool:  # noqa: C901 - one branch per op kind
        k = op["op"]
        if k == "create":
            if op.get("vol") is not None and op["vol"] not in self.vols:
                return False
            if op.get("tpl") is not None and op["tpl"] not in self.tpls:
                return False
            if op.get("tag") is not None and (op["tpl"], op["tag"]) not in self.tags:
                return False
            return op["s"] not in self.sbs and len(self.sbs) < MAX_ALIVE
        if k == "vol_create":
            return op["v"] not in self.vols and len(self.vols) < MAX_VOLS
        if k in ("vol_put", "vol_check", "vol_destroy"):
            if op["v"] not in self.vols:
                return False
            if k == "vol_put":
                f = self.vols[op["v"]].files.get(op["name"])
                return f is None or f.owner == "user"
            return True
        if k == "tpl_build":
            return op["t"] in self.tpls or len(self.tpls) < MAX_TPLS
        if k == "tpl_delete":
            return op["t"] in self.tpls
        if k == "tpl_tag":
            return op["t"] in self.tpls and (op.get("src") is None or (op["t"], op["src"]) in self.tags)
        if k == "tpl_untag":
            return (op["t"], op["tag"]) in self.tags
        if k == "secret_update":
            return op["k"] in self.esecrets
        if k == "egress_set":
            return op["s"] in self.sbs and (op["k"] in self.esecrets or len(self.esecrets) < MAX_ESECRETS)
        if k == "vol_mount":
            sb = self.sbs.get(op["s"])
            return sb is not None and op["v"] in self.vols and op["path"] not in sb.mounts
        if k == "vol_unmount":
            sb = self.sbs.get(op["s"])
            return sb is not None and op["path"] in sb.mounts
        if k == "events":
            return op["s"] in self.sbs
        if k == "metrics":
            return True
        if k in ("commit", "reset", "net_update"):
            return op["s"] in self.sbs and (k != "commit" or (op["snap"] not in self.snaps and len(self.snaps) < MAX_SNAPS))
        if k in ("restart", "node_drain", "node_kill"):
            return True
        if k == "sdk_list":
            return True
        if k in ("from_snapshot",):
            return op["snap"] in self.snaps and op["s"] not in self.sbs and len(self.sbs) < MAX_ALIVE
        if k == "delete_snapshot":
            return op["snap"] in self.snaps
        if k == "kill":
            return op["s"] in self.sbs
        if k == "pause_again":
            sb = self.sbs.get(op["s"])
            return sb is not None and sb.state == "paused"
        if k == "connect":
            return op["s"] in self.sbs
        sb = self._run(op)
        if sb is None:
            return False
        who = eff(op.get("as", "root"))
        if k == "write":
            p = op["path"]
            if p in sb.dirs:
                return False
            if p in sb.files:
                return sb.files[p].owner == who and sb.accessible(p, who)
            return sb.accessible(p, who) and sb.writable_dir(parent(p), who)
        if k in ("read", "run_cat"):
            return op["path"] in sb.files and sb.accessible(op["path"], who)
        if k == "exists":
            return sb.accessible(op["path"], who) and (sb.exists(op["path"]) or parent(op["path"]) in sb.dirs)
        if k == "list":
            return op["path"] in sb.dirs and sb.accessible(op["path"], who)
        if k == "remove":
            return sb.can_remove(op["path"], who)
        if k == "rename":
            return sb.can_rename(op["src"], op["dst"], who)
        if k == "mkdir":
            p = op["path"]
            if p in sb.files:
                return False
            if p in sb.dirs:
                return sb.accessible(p, who)
            return sb.accessible(p, who) and sb.writable_dir(parent(p), who)
        if k == "watch":
            p = op["dir"] + "/" + op["name"]
            if op["mode"] == "start" and sb.watch is not None:
                return False
            return sb.writable_dir(op["dir"], who) and sb.accessible(op["dir"], who) and not sb.exists(p)
        if k == "watch_check":
            if sb.watch is None:
                return False
            p = sb.watch + "/" + op["name"]
            return sb.writable_dir(sb.watch, who) and sb.accessible(sb.watch, who) and not sb.exists(p)
        if k == "watch_stop":
            return sb.watch is not None
        if k == "run_echo":
            return True
        if k == "ci_run":
            return sb.ci
        if k == "vol_write":
            v = sb.mounts.get(op["at"])
            if v is None or v not in self.vols:
                return False
            f = self.vols[v].files.get(op["name"])
            return f is None or f.owner == who
        if k == "git_commit":
            return True
        if k == "egress_check":
            return sb.egress is not None
        if k == "mem_up":
            return True
        if k == "bg_start":
            return op["key"] not in sb.bgs and len(sb.bgs) < MAX_BGS
        if k == "bg_kill":
            return op["key"] in sb.bgs
        if k == "secret_start":
            return op["key"] not in sb.secrets and len(sb.secrets) < MAX_SECRETS
        if k == "secret_query":
            return op["key"] in sb.secrets
        if k == "pty_start":
            return op["key"] not in sb.ptys and len(sb.ptys) < MAX_PTYS
        if k in ("pty_check", "pty_kill"):
            return op["key"] in sb.ptys
        if k in ("pause", "set_timeout"):
            return True
        if k == "snapshot":
            return op["snap"] not in self.snaps and len(self.snaps) < MAX_SNAPS
        if k == "fork":
            return all(n not in self.sbs for n in op["new"]) and len(self.sbs) + len(op["new"]) <= MAX_ALIVE
        raise ValueError(f"unknown op {k}")

    # ------------------------------------------------------------------ apply
    def apply(self, op):  # noqa: C901 - one branch per op kind
        k = op["op"]
        sb = self.sbs.get(op.get("s"))
        who = eff(op.get("as", "root"))
        if k == "create":
            sb = SbM(slot=op["s"], state="running", meta=dict(op["meta"]), timeout=op["timeout"], ci=op.get("ci", False))
            sb.fresh_dirs()
            if op.get("vol") is not None:
                sb.mounts = {VOL_PATH: op["vol"]}
                sb.locked = {VOL_PATH}
            if op.get("tpl") is not None:
                tag = op.get("tag")
                sb.tpl = (op["tpl"], tag, self.tags[(op["tpl"], tag)] if tag else self.tpls[op["tpl"]])
            self.sbs[op["s"]] = sb
        elif k == "vol_create":
            self.vols[op["v"]] = VolM(op["name"])
        elif k == "vol_put":
            self.vols[op["v"]].files[op["name"]] = FileM(op["cs"], op["size"], "user")
        elif k == "vol_write":
            self.vols[sb.mounts[op["at"]]].files[op["name"]] = FileM(op["cs"], op["size"], who)
        elif k == "vol_mount":
            if sb.state == "running":
                sb.mounts[op["path"]] = op["v"]
        elif k == "vol_unmount":
            if sb.state == "running" and op["path"] not in sb.locked:
                del sb.mounts[op["path"]]
        elif k == "git_commit":
            sb.git = ((sb.git[0] if sb.git else 0) + 1, op["cs"])
        elif k == "secret_update":
            self.esecrets[op["k"]] = op["val"]
        elif k == "egress_set":
            self.esecrets[op["k"]] = op["val"]
            sb.net = {"allow_out": [EGRESS], "deny_out": []}
            sb.egress = op["k"]
        elif k == "tpl_tag":
            self.tags[(op["t"], op["tag"])] = self.tags[(op["t"], op["src"])] if op.get("src") else self.tpls[op["t"]]
        elif k == "tpl_untag":
            del self.tags[(op["t"], op["tag"])]
        elif k == "vol_destroy":
            if not self.vol_users(op["v"]):
                del self.vols[op["v"]]
        elif k == "tpl_build":
            self.tpls[op["t"]] = op["cs"]
        elif k == "tpl_delete":
            del self.tpls[op["t"]]
            for key in [key for key in self.tags if key[0] == op["t"]]:
                del self.tags[key]
        elif k == "net_update":
            sb.net = {"allow_out": list(op["allow"]), "deny_out": list(op["deny"])}
            sb.egress = None  # an update replaces the rules too
        elif k == "commit":
            c = SbM(slot=-1, state="paused", meta={}, timeout=0)
            c.copy_content_from(sb)
            c.origin = op["snap"]
            self.snaps[op["snap"]] = SnapM(op["snap"], op["s"], c)
        elif k == "reset":
            if self.reset_outcome(sb) == "ok":
                # A reset keeps the sandbox's mounts (its settings), made anew: from a
                # snapshot by CRIU's restore, from a template by a create (locked).
                if sb.origin is not None:
                    keep = (dict(sb.mounts), sb.tpl)
                    sb.copy_content_from(self.snaps[sb.origin].content)
                    sb.mounts, sb.tpl = keep
                else:
                    sb.reset_content()
                    sb.locked = set(sb.mounts)
                    if sb.tpl is not None:
                        t, tag, _ = sb.tpl
                        sb.tpl = (t, tag, self.tags[(t, tag)] if tag else self.tpls[t])
                sb.state = "running"
        elif k == "kill":
            del self.sbs[op["s"]]
        elif k == "write":
            old = sb.files.get(op["path"])
            sb.files[op["path"]] = FileM(op["cs"], op["size"], old.owner if old else who)
        elif k == "remove":
            fs, ds = sb.subtree(op["path"])
            for p in fs:
                del sb.files[p]
            for p in ds:
                del sb.dirs[p]
        elif k == "rename":
            src, dst = op["src"], op["dst"]
            fs, ds = sb.subtree(src)
            for p in fs:
                sb.files[dst + p[len(src):]] = sb.files.pop(p)
            for p in sorted(ds):
                sb.dirs[dst + p[len(src):]] = sb.dirs.pop(p)
        elif k == "mkdir":
            sb.dirs.setdefault(op["path"], who)
        elif k == "watch":
            sb.files[op["dir"] + "/" + op["name"]] = FileM(op["cs"], op["size"], who)
            if op["mode"] == "start":
                sb.watch = op["dir"]
        elif k == "watch_check":
            sb.files[sb.watch + "/" + op["name"]] = FileM(op["cs"], op["size"], who)
        elif k == "watch_stop":
            sb.watch = None
        elif k == "ci_run":
            sb.vars[op["name"]] = op["value"]
        elif k == "bg_start":
            sb.bgs[op["key"]] = op["as"]
        elif k == "bg_kill":
            del sb.bgs[op["key"]]
        elif k == "pty_start":
            sb.ptys[op["key"]] = op["as"]
        elif k == "pty_kill":
            del sb.ptys[op["key"]]
        elif k == "secret_start":
            sb.secrets[op["key"]] = SecretM(op["secret"], op["port"], op["as"], op.get("mib", 0))
        elif k == "pause":
            sb.state = "paused"
        elif k == "connect":
            if sb.state == "paused":
                sb.locked = set()  # CRIU's restore mounts them anew
            sb.state = "running"
        elif k == "set_timeout":
            sb.timeout = op["timeout"]
        elif k == "snapshot":
            c = SbM(slot=-1, state="paused", meta={}, timeout=0)
            c.copy_content_from(sb)
            c.origin = op["snap"]
            self.snaps[op["snap"]] = SnapM(op["snap"], op["s"], c)
        elif k == "from_snapshot":
            if not self.snap_usable(op["snap"]):
                return  # refused: nothing made
            new = SbM(slot=op["s"], state="running", meta=dict(op["meta"]), timeout=op["timeout"])
            new.copy_content_from(self.snaps[op["snap"]].content)
            self.sbs[op["s"]] = new
        elif k == "delete_snapshot":
            del self.snaps[op["snap"]]
        elif k == "fork":
            for n in op["new"]:
                new = SbM(slot=n, state="running", meta=dict(sb.meta), timeout=op["timeout"])
                new.copy_content_from(sb)
                new.net = copy.deepcopy(sb.net)  # a fork keeps its source's settings
                new.egress = sb.egress
                self.sbs[n] = new
        elif k == "restart":
            # Running sandboxes stay running (re-adopted, or paused at shutdown with
            # --pause-on-shutdown and resumed at start), paused ones stay paused.
            if op["sig"] == "TERM" and self.pos:  # paused at shutdown, restored at start
                for s in self.running():
                    self.sbs[s].locked = set()
            self.pos = op["pos"]
        # read, exists, list, run_*, secret_query, pause_again, sdk_list, vol_check, mem_up: no
        # effect on the model (mem_up's sizes are the runner's: it learns the default at create).
        # node_drain, node_kill: which sandboxes they touch depends on placement, which only
        # the run knows: the runner applies their effects to its own World (ops that are
        # then not applicable are skipped, as in a replay).

    def vol_users(self, v):
        """Who keeps volume v from being deleted: the sandboxes (running or paused) that mount
        it. Snapshots do not: a copy made from one whose volume is gone is refused."""
        return [f"s{s}" for s, sb in sorted(self.sbs.items()) if v in sb.mounts.values()]

    def snap_usable(self, n) -> bool:
        """Whether a sandbox can be made from snapshot n (its volume, if any, still exists)."""
        return all(v in self.vols for v in self.snaps[n].content.mounts.values())

    def reset_outcome(self, sb) -> str:
        """"ok", or why Novita's reset of `sb` is refused (the sandbox then stays as it was)."""
        if sb.origin is not None and sb.origin not in self.snaps:
            return "snapshot deleted"
        if sb.origin is None and sb.tpl is not None:
            t, tag, _ = sb.tpl
            if t not in self.tpls or (tag and (t, tag) not in self.tags):
                return "template deleted" if t not in self.tpls else f"tag {tag} removed"
        return "ok"


# ---------------------------------------------------------------------- describe
def _who(op):
    return f" as={op['as']}" if "as" in op else ""


def _size(n):
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} B"


def describe(op) -> str:
    """One op as a line of SDK-like code; in cluster mode, the node it goes through."""
    return _describe(op) + (f"  @n{op['via']}" if "via" in op else "")


def _describe(op) -> str:  # noqa: C901
    k, s = op["op"], f"s{op['s']}" if "s" in op else ""
    if k == "create":
        cls = "CodeInterpreter" if op.get("ci") else "Sandbox"
        tag = f":{op['tag']}" if op.get("tag") else ""
        extra = (f", template=t{op['tpl']}{tag}" if op.get("tpl") is not None else "") + \
                (f", volume_mounts={{{VOL_PATH!r}: v{op['vol']}}}" if op.get("vol") is not None else "")
        return f"{s} = {cls}.create(timeout={op['timeout']}, metadata={op['meta']}{extra})"
    if k == "vol_create":
        return f"v{op['v']} = Volume.create({op['name']!r})"
    if k == "vol_put":
        return f"v{op['v']}.write_file('/{op['name']}', <{_size(op['size'])} cs={op['cs']}>)"
    if k == "vol_write":
        return f"{s}.files.write('{op['at']}/{op['name']}', <{_size(op['size'])} cs={op['cs']}>){_who(op)}"
    if k == "vol_mount":
        return f"Novita {s}.mountVolume(v{op['v']}, {op['path']!r})"
    if k == "vol_unmount":
        return f"Novita {s}.unmountVolume({op['path']!r}, force={op['force']})"
    if k == "git_commit":
        return f"{s}.git: write {GIT_PATH}/data <cs={op['cs']}>, add, commit 'm{op['cs']}'"
    if k == "secret_update":
        return f"Secret.update(esec{op['k']}, <value {op['val']}>)"
    if k == "egress_set":
        return (f"Secret esec{op['k']} = <value {op['val']}>; {s}.update_network(allow_out=[egress echo], "
                f"rules={{{EGRESS_HOST!r}: X-Api-Key <- esec{op['k']}}})")
    if k == "egress_check":
        return f"{s}: GET https://{EGRESS_HOST}/ (the egress echo), expect its secret's header"
    if k == "tpl_tag":
        src = f":{op['src']}" if op.get("src") else ""
        return f"Template.assign_tags('t{op['t']}{src}', [{op['tag']!r}])"
    if k == "tpl_untag":
        return f"Template.remove_tags('t{op['t']}', [{op['tag']!r}])"
    if k == "vol_check":
        return f"v{op['v']}.list('/') + read_file of each"
    if k == "vol_destroy":
        return f"Volume.destroy(v{op['v']})"
    if k == "tpl_build":
        return f"Template.build(base + RUN echo {op['cs']} > /opt/mdl-tpl + ENV MDL_TPL, 't{op['t']}')"
    if k == "tpl_delete":
        return f"DELETE /templates/t{op['t']}"
    if k == "mem_up":
        return f"{s} hotplug-memory +{op['add']} MiB"
    if k == "net_update":
        return f"{s}.update_network(allow_out={op['allow']}, deny_out={op['deny']})"
    if k == "commit":
        return f"n{op['snap']} = Novita commit({s}, alias={op['alias']!r})"
    if k == "reset":
        return f"Novita reset({s})"
    if k == "events":
        return f"stasis sandbox events {s}"
    if k == "metrics":
        return "GET /metrics: stasis_sandboxes by state"
    if k == "ci_run":
        return f"{s}.run_code('{op['name']} = {op['value']}')"
    if k == "kill":
        return f"{s}.kill()"
    if k == "write":
        return f"{s}.files.write({op['path']!r}, <{_size(op['size'])} cs={op['cs']}>){_who(op)}"
    if k in ("read", "exists", "list", "remove", "mkdir"):
        return f"{s}.files.{ {'mkdir': 'make_dir'}.get(k, k)}({op['path']!r}){_who(op)}"
    if k == "rename":
        return f"{s}.files.rename({op['src']!r}, {op['dst']!r}){_who(op)}"
    if k == "watch":
        return (f"{s}.files.watch_dir({op['dir']!r}) [{op['mode']}] + write {op['name']!r} "
                f"<{_size(op['size'])}>{_who(op)}")
    if k == "watch_check":
        return f"{s} write {op['name']!r} <{_size(op['size'])}> in the watched dir, expect its event{_who(op)}"
    if k == "watch_stop":
        return f"{s} watch.stop()"
    if k == "run_echo":
        return f"{s}.commands.run('echo {op['token']}; id -un'){_who(op)}"
    if k == "run_cat":
        return f"{s}.commands.run('sha256sum {op['path']}'){_who(op)}"
    if k == "bg_start":
        return f"{s}.commands.run('sleep 86400', background=True) [bg{op['key']}]{_who(op)}"
    if k == "bg_kill":
        return f"{s}.commands.kill(<bg{op['key']}>)"
    if k == "pty_start":
        return f"{s}.pty.create() [pty{op['key']}]{_who(op)}"
    if k == "pty_check":
        return f"{s}.pty: connect to pty{op['key']}, type 'echo {op['token']}-$(id -un)', read it back"
    if k == "pty_kill":
        return f"{s}.pty.kill(<pty{op['key']}>)"
    if k == "secret_start":
        ballast = f", holding {op['mib']} MiB" if op.get("mib") else ""
        return f"{s} start secret process k{op['key']} (port {op['port']}, secret {op['secret']}{ballast}){_who(op)}"
    if k == "secret_query":
        return f"{s} query secret process k{op['key']}{_who(op)}"
    if k == "pause":
        return f"{s}.pause()"
    if k == "pause_again":
        return f"{s}.pause() while paused (expect False)"
    if k == "connect":
        return f"Sandbox.connect({s}, timeout={op['timeout']})"
    if k == "set_timeout":
        return f"{s}.set_timeout({op['timeout']})"
    if k == "sdk_list":
        return f"Sandbox.list(state={op['state']})"
    if k == "snapshot":
        return f"n{op['snap']} = {s}.create_snapshot()"
    if k == "from_snapshot":
        return f"{s} = Sandbox.create(template=n{op['snap']}, timeout={op['timeout']}, metadata={op['meta']})"
    if k == "delete_snapshot":
        return f"Sandbox.delete_snapshot(n{op['snap']})"
    if k == "fork":
        return f"{', '.join(f's{n}' for n in op['new'])} = {s}.fork(count={len(op['new'])}, timeout={op['timeout']})"
    if k == "restart":
        nxt = " (next server: --pause-on-shutdown)" if op["pos"] else ""
        return f"daemon SIG{op['sig']} + restart{nxt}"
    if k == "node_drain":
        return f"node of {s}: drain, connect what it ran through another (taken over), activate"
    if k == "node_kill":
        lease = ", its lease runs out (dead), its paused ones connected through another" if op["lease"] else ""
        return f"node of {s}: kill -9{lease}, restart"
    return repr(op)


# ---------------------------------------------------------------------- generator
DEFAULT_WEIGHTS = {
    "create": 6, "kill": 3,
    "write": 14, "read": 7, "list": 4, "remove": 3, "exists": 3, "rename": 4, "mkdir": 4,
    "watch": 2, "watch_check": 3, "watch_stop": 1,
    "run_echo": 3, "run_cat": 4, "bg_start": 2, "bg_kill": 1,
    "secret_start": 3, "secret_query": 4,
    "pause": 6, "pause_again": 1, "connect": 7, "set_timeout": 2, "sdk_list": 3,
    "snapshot": 2, "from_snapshot": 3, "delete_snapshot": 1, "fork": 2,
    "restart": 2,
    "ci_run": 4,  # also makes ~30% of creates code-interpreter-v1 sandboxes (0: none)
    # Volumes (a create mounts one at VOL_PATH ~40% of the time once there is one).
    "vol_create": 1, "vol_put": 2, "vol_write": 3, "vol_check": 1, "vol_destroy": 1,
    # Custom templates (a create uses one ~40% of the time once built).
    "tpl_build": 2, "tpl_delete": 1, "tpl_tag": 2, "tpl_untag": 1,
    # Volumes mounted into / unmounted from a sandbox (Novita's mountVolume / unmountVolume).
    "vol_mount": 2, "vol_unmount": 2,
    # Git in the SDK's default user's home (sandbox.git).
    "git_commit": 3,
    # Egress rules naming a secret (needs run.sh's egress echo: 0 without it, see drive.py).
    "egress_set": 2, "egress_check": 2, "secret_update": 1,
    "mem_up": 1, "net_update": 2, "commit": 1, "reset": 1,
    "events": 1, "metrics": 1,
    # Interactive shells (sandbox.pty): started, typed into across pauses, forks, takeovers.
    "pty_start": 2, "pty_check": 3, "pty_kill": 1,
    # Cluster mode only (MODEL_CLUSTER=N: drive.py turns them on and `restart` off).
    "node_drain": 0, "node_kill": 0,
}
KINDS = tuple(DEFAULT_WEIGHTS)
EGRESS_KINDS = ("egress_set", "egress_check", "secret_update")
NODE_KINDS = ("node_drain", "node_kill")


def parse_weights(spec: str) -> Dict[str, int]:
    """`kind=w,kind=w` overrides of DEFAULT_WEIGHTS (w=0 disables a kind)."""
    w = dict(DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, val = part.partition("=")
        if name not in w:
            raise ValueError(f"MODEL_WEIGHTS: unknown op kind {name!r} (kinds: {', '.join(KINDS)})")
        w[name] = int(val)
    return w


class Generator:
    def __init__(self, seed: int, weights=None, as_choices=AS_CHOICES, nodes=0):
        self.rng = random.Random(seed)
        self.nodes = nodes  # MODEL_CLUSTER: each op names the node it goes through (`via`)
        self.w = World()
        self.weights = weights or dict(DEFAULT_WEIGHTS)
        self.as_choices = tuple(as_choices)
        self.next_slot = 0
        self.next_snap = 0
        self.next_name = 0
        self.next_key = 0
        self.next_vol = 0
        self.next_tpl = 0

    # -- helpers
    def _as(self):
        # weights: default 2, user 1, root 2 (when allowed by the as_choices)
        pool = [a for a in ("default", "default", "user", "root", "root") if a in self.as_choices]
        return self.rng.choice(pool)

    def _name(self, prefix):
        self.next_name += 1
        return f"{prefix}{self.next_name}"

    def _size(self):
        r = self.rng.random()
        if r < 0.05:
            return self.rng.randint(1 * MIB, 3 * MIB)
        if r < 0.15:
            return self.rng.randint(4097, 200_000)
        return self.rng.randint(0, 4096)

    def _cs(self):
        return self.rng.randrange(1 << 30)

    def _meta(self, slot):
        meta = {"slot": f"s{slot}", "k": self.rng.choice(["alpha", "beta", "gamma"])}
        if self.rng.random() < 0.3:
            meta["odd key & ="] = self.rng.choice(["a b", "x=y&z", "plain"])
        return meta

    def _timeout(self):
        return self.rng.randint(300, 600)

    def _running_sb(self):
        r = self.w.running()
        return self.w.sbs[self.rng.choice(r)] if r else None

    # -- builders: return an op or None when the kind is not possible now
    def b_create(self):
        if len(self.w.sbs) >= MAX_ALIVE:
            return None
        s = self.next_slot
        op = {"op": "create", "s": s, "timeout": self._timeout(), "meta": self._meta(s)}
        if self.weights.get("ci_run", 0) > 0 and self.rng.random() < 0.3:
            op["ci"] = True
        if self.w.vols and self.rng.random() < 0.4:
            op["vol"] = self.rng.choice(sorted(self.w.vols))
        if not op.get("ci") and self.w.tpls and self.rng.random() < 0.4:
            op["tpl"] = self.rng.choice(sorted(self.w.tpls))
            tags = sorted(tag for (t, tag) in self.w.tags if t == op["tpl"])
            if tags and self.rng.random() < 0.7:
                op["tag"] = self.rng.choice(tags)
        return op

    def b_vol_create(self):
        if len(self.w.vols) >= MAX_VOLS:
            return None
        return {"op": "vol_create", "v": self.next_vol, "name": f"vol{self.next_vol}"}

    def _vol_name(self, files, who):
        own = [n for n in sorted(files) if files[n].owner == who]
        if own and self.rng.random() < 0.35:
            return self.rng.choice(own)
        return self._name("vf")

    def b_vol_put(self):
        if not self.w.vols:
            return None
        v = self.rng.choice(sorted(self.w.vols))
        return {"op": "vol_put", "v": v, "name": self._vol_name(self.w.vols[v].files, "user"),
                "size": self._size(), "cs": self._cs()}

    def b_vol_write(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].mounts]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        at = self.rng.choice(sorted(sb.mounts))
        a = self._as()
        return {"op": "vol_write", "s": sb.slot, "as": a, "at": at,
                "name": self._vol_name(self.w.vols[sb.mounts[at]].files, eff(a)), "size": self._size(), "cs": self._cs()}

    def b_vol_mount(self):
        # Mostly running sandboxes; a paused one is refused (409) and keeps its mounts.
        cands = [s for s in sorted(self.w.sbs) if len(self.w.sbs[s].mounts) < len(MOUNT_PATHS)]
        if not self.w.vols or not cands:
            return None
        run = [s for s in cands if self.w.sbs[s].state == "running"]
        sb = self.w.sbs[self.rng.choice(run if run and self.rng.random() < 0.85 else cands)]
        path = self.rng.choice([p for p in MOUNT_PATHS if p not in sb.mounts])
        return {"op": "vol_mount", "s": sb.slot, "v": self.rng.choice(sorted(self.w.vols)), "path": path}

    def b_vol_unmount(self):
        cands = [s for s in sorted(self.w.sbs) if self.w.sbs[s].mounts]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        return {"op": "vol_unmount", "s": sb.slot, "path": self.rng.choice(sorted(sb.mounts)),
                "force": self.rng.random() < 0.3}

    def b_git_commit(self):
        sb = self._running_sb()
        return sb and {"op": "git_commit", "s": sb.slot, "cs": self._cs()}

    def b_secret_update(self):
        return self.w.esecrets and {"op": "secret_update", "k": self.rng.choice(sorted(self.w.esecrets)),
                                    "val": self._cs()}

    def b_egress_set(self):
        if not self.w.sbs:
            return None
        ks = sorted(self.w.esecrets)
        # An existing secret (its value updated), or a new one (secrets are never deleted:
        # the next k is their count).
        k = self.rng.choice(ks) if ks and (len(ks) >= MAX_ESECRETS or self.rng.random() < 0.5) else len(ks)
        return {"op": "egress_set", "s": self.rng.choice(sorted(self.w.sbs)), "k": k, "val": self._cs()}

    def b_egress_check(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].egress is not None]
        return cands and {"op": "egress_check", "s": self.rng.choice(cands)}

    def b_tpl_tag(self):
        if not self.w.tpls:
            return None
        t = self.rng.choice(sorted(self.w.tpls))
        srcs = sorted(tag for (tt, tag) in self.w.tags if tt == t)
        src = self.rng.choice(srcs) if srcs and self.rng.random() < 0.3 else None
        return {"op": "tpl_tag", "t": t, "tag": self.rng.choice(TAGS), "src": src}

    def b_tpl_untag(self):
        if not self.w.tags:
            return None
        t, tag = self.rng.choice(sorted(self.w.tags))
        return {"op": "tpl_untag", "t": t, "tag": tag}

    def b_vol_check(self):
        return self.w.vols and {"op": "vol_check", "v": self.rng.choice(sorted(self.w.vols))}

    def b_vol_destroy(self):
        return self.w.vols and {"op": "vol_destroy", "v": self.rng.choice(sorted(self.w.vols))}

    def b_tpl_build(self):
        if self.w.tpls and (len(self.w.tpls) >= MAX_TPLS or self.rng.random() < 0.3):
            t = self.rng.choice(sorted(self.w.tpls))  # a rebuild: a new version
        else:
            t = self.next_tpl
        return {"op": "tpl_build", "t": t, "cs": self._cs()}

    def b_tpl_delete(self):
        return self.w.tpls and {"op": "tpl_delete", "t": self.rng.choice(sorted(self.w.tpls))}

    def b_mem_up(self):
        sb = self._running_sb()
        return sb and {"op": "mem_up", "s": sb.slot, "add": self.rng.choice([64, 128, 256])}

    def b_net_update(self):
        if not self.w.sbs:
            return None
        k = self.rng.randint(0, 2)
        return {"op": "net_update", "s": self.rng.choice(sorted(self.w.sbs)),
                "allow": sorted(self.rng.sample(NETS, k)), "deny": sorted(self.rng.sample(NETS, self.rng.randint(0, 2)))}

    def b_commit(self):
        if not self.w.sbs or len(self.w.snaps) >= MAX_SNAPS:
            return None
        return {"op": "commit", "s": self.rng.choice(sorted(self.w.sbs)), "snap": self.next_snap,
                "alias": f"commit{self.next_snap}"}

    def b_events(self):
        return self.w.sbs and {"op": "events", "s": self.rng.choice(sorted(self.w.sbs))}

    def b_metrics(self):
        return {"op": "metrics"}

    def b_reset(self):
        return self.w.sbs and {"op": "reset", "s": self.rng.choice(sorted(self.w.sbs))}

    def b_ci_run(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].ci]
        if not cands:
            return None
        return {"op": "ci_run", "s": self.rng.choice(cands), "name": f"v{self.rng.randrange(4)}",
                "value": self.rng.randrange(1 << 40)}

    def b_kill(self):
        if not self.w.sbs:
            return None
        # kill more eagerly when the sandbox budget is used up
        if len(self.w.sbs) < MAX_ALIVE and self.rng.random() < 0.3:
            return None
        return {"op": "kill", "s": self.rng.choice(sorted(self.w.sbs))}

    def b_write(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        who = eff(a)
        own = [p for p in sorted(sb.files) if sb.files[p].owner == who and sb.accessible(p, who)]
        if own and self.rng.random() < 0.35:
            path = self.rng.choice(own)
        else:
            ds = [d for d in sorted(sb.dirs) if sb.writable_dir(d, who) and sb.accessible(d, who)]
            if not ds:
                return None
            path = self.rng.choice(ds) + "/" + self._name("f")
        return {"op": "write", "s": sb.slot, "as": a, "path": path, "size": self._size(), "cs": self._cs()}

    def _pick_file(self, sb, who):
        fs = [p for p in sorted(sb.files) if sb.accessible(p, who)]
        return self.rng.choice(fs) if fs else None

    def b_read(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        p = self._pick_file(sb, eff(a))
        return p and {"op": "read", "s": sb.slot, "as": a, "path": p}

    def b_run_cat(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        p = self._pick_file(sb, eff(a))
        return p and {"op": "run_cat", "s": sb.slot, "as": a, "path": p}

    def b_list(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        ds = [d for d in sorted(sb.dirs) if sb.accessible(d, eff(a))]
        return {"op": "list", "s": sb.slot, "as": a, "path": self.rng.choice(ds)}

    def b_exists(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        who = eff(a)
        if self.rng.random() < 0.6:
            cands = [p for p in sorted([*sb.files, *sb.dirs]) if sb.accessible(p, who)]
            p = self.rng.choice(cands)
        else:
            ds = [d for d in sorted(sb.dirs) if sb.accessible(d, who)]
            p = self.rng.choice(ds) + "/" + self._name("nx")
        return {"op": "exists", "s": sb.slot, "as": a, "path": p}

    def b_remove(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        cands = [p for p in sorted([*sb.files, *sb.dirs]) if sb.can_remove(p, eff(a))]
        if not cands:
            return None
        return {"op": "remove", "s": sb.slot, "as": a, "path": self.rng.choice(cands)}

    def b_rename(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        who = eff(a)
        srcs = [p for p in sorted([*sb.files, *sb.dirs]) if p not in AREAS and sb.accessible(p, who)]
        ds = [d for d in sorted(sb.dirs) if sb.writable_dir(d, who) and sb.accessible(d, who)]
        if not srcs or not ds:
            return None
        src = self.rng.choice(srcs)
        dst = self.rng.choice(ds) + "/" + self._name("r")
        if not sb.can_rename(src, dst, who):
            return None
        return {"op": "rename", "s": sb.slot, "as": a, "src": src, "dst": dst}

    def b_mkdir(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        who = eff(a)
        if self.rng.random() < 0.15:
            ds = [d for d in sorted(sb.dirs) if sb.accessible(d, who)]
            return {"op": "mkdir", "s": sb.slot, "as": a, "path": self.rng.choice(ds)}
        ds = [d for d in sorted(sb.dirs) if sb.writable_dir(d, who) and sb.accessible(d, who) and d.count("/") < 7]
        if not ds:
            return None
        return {"op": "mkdir", "s": sb.slot, "as": a, "path": self.rng.choice(ds) + "/" + self._name("d")}

    def b_watch(self):
        sb = self._running_sb()
        if not sb:
            return None
        a = self._as()
        who = eff(a)
        mode = "start" if sb.watch is None and self.rng.random() < 0.6 else "oneshot"
        ds = [d for d in sorted(sb.dirs) if sb.writable_dir(d, who) and sb.accessible(d, who)]
        if not ds:
            return None
        return {"op": "watch", "s": sb.slot, "as": a, "mode": mode, "dir": self.rng.choice(ds),
                "name": self._name("w"), "size": self.rng.randint(0, 2048), "cs": self._cs()}

    def b_watch_check(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].watch is not None]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        a = self._as()
        if not sb.writable_dir(sb.watch, eff(a)):
            a = "root"
        return {"op": "watch_check", "s": sb.slot, "as": a, "name": self._name("w"),
                "size": self.rng.randint(0, 2048), "cs": self._cs()}

    def b_watch_stop(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].watch is not None]
        return cands and {"op": "watch_stop", "s": self.rng.choice(cands)}

    def b_run_echo(self):
        sb = self._running_sb()
        return sb and {"op": "run_echo", "s": sb.slot, "as": self._as(), "token": f"t{self.rng.randrange(1 << 40):x}"}

    def b_bg_start(self):
        sb = self._running_sb()
        if not sb or len(sb.bgs) >= MAX_BGS:
            return None
        self.next_key += 1
        return {"op": "bg_start", "s": sb.slot, "as": self._as(), "key": self.next_key}

    def b_bg_kill(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].bgs]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        return {"op": "bg_kill", "s": sb.slot, "key": self.rng.choice(sorted(sb.bgs))}

    def b_pty_start(self):
        sb = self._running_sb()
        if not sb or len(sb.ptys) >= MAX_PTYS:
            return None
        self.next_key += 1
        return {"op": "pty_start", "s": sb.slot, "as": self._as(), "key": self.next_key}

    def b_pty_check(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].ptys]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        return {"op": "pty_check", "s": sb.slot, "key": self.rng.choice(sorted(sb.ptys)),
                "token": f"p{self.rng.randrange(1 << 32):08x}"}

    def b_pty_kill(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].ptys]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        return {"op": "pty_kill", "s": sb.slot, "key": self.rng.choice(sorted(sb.ptys))}

    def b_secret_start(self):
        sb = self._running_sb()
        if not sb or len(sb.secrets) >= MAX_SECRETS:
            return None
        self.next_key += 1
        return {"op": "secret_start", "s": sb.slot, "as": self._as(), "key": self.next_key,
                "port": SECRET_PORT0 + self.next_key, "secret": f"{self.rng.randrange(1 << 64):016x}",
                "mib": self.rng.choice((0, 0, BALLAST_MIB))}

    def b_secret_query(self):
        cands = [s for s in self.w.running() if self.w.sbs[s].secrets]
        if not cands:
            return None
        sb = self.w.sbs[self.rng.choice(cands)]
        return {"op": "secret_query", "s": sb.slot, "as": self._as(), "key": self.rng.choice(sorted(sb.secrets))}

    def b_pause(self):
        sb = self._running_sb()
        return sb and {"op": "pause", "s": sb.slot}

    def b_pause_again(self):
        p = self.w.paused()
        return p and {"op": "pause_again", "s": self.rng.choice(p)}

    def b_connect(self):
        if not self.w.sbs:
            return None
        p = self.w.paused()
        # mostly resumes; sometimes a connect to a running sandbox
        pool = p if p and self.rng.random() < 0.85 else sorted(self.w.sbs)
        t = self._timeout() if self.rng.random() < 0.5 else None
        return {"op": "connect", "s": self.rng.choice(pool), "timeout": t}

    def b_set_timeout(self):
        sb = self._running_sb()
        return sb and {"op": "set_timeout", "s": sb.slot, "timeout": self._timeout()}

    def b_sdk_list(self):
        if not self.w.sbs:
            return None
        return {"op": "sdk_list", "state": self.rng.choice([None, None, "running", "paused"])}

    def b_snapshot(self):
        sb = self._running_sb()
        if not sb or len(self.w.snaps) >= MAX_SNAPS:
            return None
        return {"op": "snapshot", "s": sb.slot, "snap": self.next_snap}

    def b_from_snapshot(self):
        if not self.w.snaps or len(self.w.sbs) >= MAX_ALIVE:
            return None
        s = self.next_slot
        return {"op": "from_snapshot", "snap": self.rng.choice(sorted(self.w.snaps)), "s": s,
                "timeout": self._timeout(), "meta": self._meta(s)}

    def b_delete_snapshot(self):
        return self.w.snaps and {"op": "delete_snapshot", "snap": self.rng.choice(sorted(self.w.snaps))}

    def b_fork(self):
        sb = self._running_sb()
        room = MAX_ALIVE - len(self.w.sbs)
        if not sb or room < 1:
            return None
        count = 2 if room >= 2 and self.rng.random() < 0.3 else 1
        return {"op": "fork", "s": sb.slot, "new": list(range(self.next_slot, self.next_slot + count)),
                "timeout": self._timeout()}

    # A node op names a sandbox: it acts on the node that sandbox is on (only the run knows
    # which), so it always touches one; `n` is the node when that sandbox is gone (a
    # replay), `k` picks the node the op goes through among the others.
    def b_node_drain(self):
        if self.nodes < 2 or not self.w.running():
            return None
        return {"op": "node_drain", "s": self.rng.choice(self.w.running()), "n": self.rng.randrange(self.nodes),
                "k": self.rng.randrange(self.nodes - 1)}

    def b_node_kill(self):
        if self.nodes < 2 or not self.w.sbs:
            return None
        return {"op": "node_kill", "s": self.rng.choice(sorted(self.w.sbs)), "n": self.rng.randrange(self.nodes),
                "k": self.rng.randrange(self.nodes - 1), "lease": self.rng.random() < 0.5}

    def b_restart(self):
        if not self.w.sbs:
            return None
        return {"op": "restart", "sig": self.rng.choice(["TERM", "KILL"]), "pos": self.rng.random() < 0.5}

    def next(self):
        kinds = [k for k in KINDS if self.weights.get(k, 0) > 0]
        for _ in range(100):
            k = self.rng.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
            op = getattr(self, f"b_{k}")()
            if op:
                if self.nodes:
                    op["via"] = self.rng.randrange(self.nodes)
                assert self.w.applicable(op), op
                self.w.apply(op)
                if op["op"] in ("create", "from_snapshot"):
                    self.next_slot += 1
                elif op["op"] == "fork":
                    self.next_slot += len(op["new"])
                elif op["op"] in ("snapshot", "commit"):
                    self.next_snap += 1
                elif op["op"] == "vol_create":
                    self.next_vol += 1
                elif op["op"] == "tpl_build" and op["t"] == self.next_tpl:
                    self.next_tpl += 1
                return op
        # Nothing else possible (e.g. creates disabled and nothing alive): create.
        op = self.b_create()
        if op is None:
            raise RuntimeError("the generator is stuck: check MODEL_WEIGHTS")
        if self.nodes:
            op["via"] = self.rng.randrange(self.nodes)
        self.w.apply(op)
        self.next_slot += 1
        return op


def generate(seed: int, n: int, weights=None, as_choices=AS_CHOICES, nodes=0) -> List[dict]:
    g = Generator(seed, weights, as_choices, nodes)
    return [g.next() for _ in range(n)]
