"""A `stasis serve` the model test owns: its own data dir, port and API key (as
tests/e2e/run.sh starts one), so it can SIGTERM / SIGKILL and restart it."""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

STASIS_BIN = os.environ.get("STASIS_BIN", "/usr/local/bin/stasis")
STASIS_AGENT = os.environ.get("STASIS_AGENT", "/usr/local/lib/stasis/stasis-agent")
TEMPLATE_BASE = "/var/lib/stasis/templates/base"
TEMPLATE_INTERPRETER = "/var/lib/stasis/templates/code-interpreter-v1"
TEST_ROOT = "/var/lib/stasis-test"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def preflight():
    """Why the model test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (sandboxes use namespaces and cgroups)"
    if not os.access(STASIS_BIN, os.X_OK):
        return f"no stasis binary at {STASIS_BIN} (set STASIS_BIN)"
    if not os.path.isfile(STASIS_AGENT):
        return f"no static agent at {STASIS_AGENT} (set STASIS_AGENT)"
    if not os.path.isdir(TEMPLATE_BASE + "/rootfs"):
        return f"base template missing at {TEMPLATE_BASE} (run scripts/setup.sh)"
    if not os.path.isdir(TEMPLATE_INTERPRETER + "/rootfs"):
        return f"code-interpreter-v1 template missing at {TEMPLATE_INTERPRETER} (run scripts/setup.sh)"
    if os.environ.get("E2B_DEBUG"):
        return "E2B_DEBUG must not be set (it skips the control API)"
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mounts_under(path):
    """Mount points at or below `path` on the host."""
    with open("/proc/self/mountinfo") as f:
        mps = [ln.split()[4] for ln in f]
    return [m for m in mps if path and (m == path or m.startswith(path + "/"))]


def cgroup_leaks(ids):
    """What is left of the sandboxes `ids` in the cgroup tree."""
    return [f"cgroup left: /sys/fs/cgroup/stasis/{sid}" for sid in sorted(ids)
            if os.path.exists(f"/sys/fs/cgroup/stasis/{sid}")]


def record_seen(sandbox_id):
    """For run.sh's leak check (it looks for cgroups named after every id it was told)."""
    path = os.environ.get("E2E_SEEN_IDS")
    if path:
        with open(path, "a") as f:
            f.write(sandbox_id + "\n")


class Server:
    def __init__(self, label="model"):
        os.makedirs(TEST_ROOT, exist_ok=True)
        os.chmod(TEST_ROOT, 0o755)
        self.data = tempfile.mkdtemp(prefix=f"{label}-", dir=TEST_ROOT)
        os.chmod(self.data, 0o755)  # the sandboxes' user namespaces traverse it
        os.makedirs(self.data + "/templates")
        os.symlink(TEMPLATE_BASE, self.data + "/templates/base")
        # Code-interpreter sandboxes (ops with "ci"); the server warms the template at start.
        os.symlink(TEMPLATE_INTERPRETER, self.data + "/templates/code-interpreter-v1")
        self.log_path = self.data + ".server.log"
        self.key = "e2b_" + secrets.token_hex(20)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", self.url)
        self.proc = None
        self.pos = False
        self.starts = 0
        self.ids = set()

    @property
    def api(self):
        """The SDK options of every call: only this loopback server, never E2B_* from the env."""
        return {"api_url": self.url, "sandbox_url": self.url, "api_key": self.key, "request_timeout": 120}

    def seen(self, sandbox_id):
        self.ids.add(sandbox_id)
        record_seen(sandbox_id)

    def mark(self, text):
        with open(self.log_path, "a") as f:
            f.write(f"==== model: {text}\n")

    def start(self, pause_on_shutdown=False):
        self.pos = pause_on_shutdown
        self.starts += 1
        self.mark(f"start #{self.starts}{' --pause-on-shutdown' if pause_on_shutdown else ''}")
        args = [STASIS_BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data, "--api-key", self.key]
        if pause_on_shutdown:
            args.append("--pause-on-shutdown")
        if os.environ.get("E2E_EGRESS_CA"):  # run.sh's egress echo: its CA is not the host's
            args += ["--egress-extra-root", os.environ["E2E_EGRESS_CA"]]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "NOVITA_"))}
        env.update(STASIS_AGENT=STASIS_AGENT, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        log = open(self.log_path, "a")
        # Its own session: a Ctrl-C of the test does not reach it; teardown stops it.
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stasis serve exited at start (rc {self.proc.returncode}); log {self.log_path}:\n{self.tail(30)}")
            try:
                req = urllib.request.Request(self.url + "/v2/sandboxes", headers={"X-API-KEY": self.key})
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"stasis serve did not answer within 60 s; log {self.log_path}:\n{self.tail(30)}")

    def stop(self, sig="TERM", wait=180):
        """Signals the daemon (only its pid: sandboxes outlive it) and waits for it to exit."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.mark(f"SIG{sig}")
        self.proc.send_signal(getattr(signal, f"SIG{sig}"))
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.mark(f"did not exit within {wait}s of SIG{sig}: SIGKILL")
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"stasis serve did not exit within {wait} s of SIG{sig}")

    def restart(self, sig, pause_on_shutdown):
        self.stop(sig)
        self.start(pause_on_shutdown)

    def tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def grep(self, needles, n=30):
        """The last `n` log lines naming any of `needles` (sandbox ids), or an error/warn line."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return ""
        lines = [ANSI.sub("", ln) for ln in lines]
        hits = [ln for ln in lines if any(x in ln for x in needles) or " ERROR " in ln or " WARN " in ln or "ERROR" in ln[:40] or "WARN" in ln[:40] or ln.startswith("====")]
        return "".join(hits[-n:])

    # ------------------------------------------------------------------ teardown
    def kill_all(self):
        """Kills every sandbox the server knows (it is ours alone)."""
        from e2b import Sandbox
        try:
            pag = Sandbox.list(limit=100, **self.api)
            ids = set()
            while pag.has_next:
                ids.update(i.sandbox_id for i in pag.next_items())
        except Exception as e:  # noqa: BLE001 - fall back to the ids we saw
            print(f"model teardown: list failed: {e}")
            ids = set()
        for sid in sorted(ids | self.ids):
            try:
                Sandbox.kill(sid, **self.api)
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print(f"model teardown: kill {sid}: {e}")

    def mounts(self):
        return mounts_under(self.data)

    def leaks(self):
        out = []
        sdir = self.data + "/sandboxes"
        left = sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []
        if left:
            out.append(f"sandbox dirs left: {left}")
        out += cgroup_leaks(self.ids | set(left))
        m = self.mounts()
        if m:
            out.append(f"mounts left: {m}")
        return out

    def teardown(self, keep=False):
        """Kills all sandboxes, stops the daemon, checks that nothing leaked, removes the
        data dir (kept with its log when `keep`). Returns the leaks found."""
        leaks = []
        try:
            if self.proc and self.proc.poll() is None:
                self.kill_all()
            self.stop("TERM")
        finally:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            leaks = self.leaks()
            if leaks:
                # Clean up what is left so the machine is not left with running sandboxes.
                env = dict(os.environ, STASIS_DATA_DIR=self.data, STASIS_AGENT=STASIS_AGENT)
                sdir = self.data + "/sandboxes"
                for sid in (sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []):
                    subprocess.run([STASIS_BIN, "runtime", "kill", sid], env=env, capture_output=True, timeout=60)
            if not keep and not self.mounts():
                shutil.rmtree(self.data, ignore_errors=True)
                if not leaks:
                    try:
                        os.unlink(self.log_path)
                    except OSError:
                        pass
        return leaks
