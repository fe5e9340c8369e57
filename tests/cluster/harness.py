"""A Stasis cluster on this machine for tests/cluster (run.sh starts pytest on it).

What it starts, each of its own and torn down at the end (`Cluster.close`):
- PostgreSQL: Debian's binaries, a throwaway cluster (initdb as `postgres`) on 127.0.0.1,
  one database `stasis` every node shares (`--database`);
- an S3 server: moto's (`tests/objstore/s3_server.py`, docs/dependencies.md), one bucket,
  a signed-request key it made (`--object-store`, AWS_* in the nodes' environment);
- nodes: `stasis serve --node-id NAME --advertise URL --cluster-secret-file F`, each on its
  own loopback port with its own data dir (the base template linked in), so they share
  nothing but the database, the bucket, the secret and the checkpoint key, as machines would.

Only loopback: every address is 127.0.0.1.
"""
import json
import os
import pwd
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
TEMPLATE_BASE = os.environ.get("CLUSTER_TEMPLATE_BASE", "/var/lib/stasis/templates/base")
S3_PYTHON = os.environ.get("STASIS_TEST_S3_PYTHON", "/var/cache/stasis/s3-server/bin/python")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_ROOT = "/var/lib/stasis-test"
BUCKET = "stasis-cluster"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, limit=60.0, every=0.1):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {limit:.0f} s")


def pg_bin():
    found = sorted(os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
    found = [b for b in found if os.path.exists(os.path.join(b, "postgres"))]
    if not found:
        raise RuntimeError("PostgreSQL is not installed (run.sh installs Debian's postgresql)")
    return found[-1]


class Node:
    def __init__(self, cluster, name, port, data, log, extra):
        self.cluster, self.name, self.port, self.data, self.log_path, self.extra = cluster, name, port, data, log, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    @property
    def api(self):
        """The SDK options of a call through this node (never E2B_* from the env)."""
        return {"api_url": self.url, "sandbox_url": self.url, "api_key": self.cluster.key, "request_timeout": 120}

    def start(self):
        c = self.cluster
        args = [STASIS_BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data,
                "--api-key", c.key, "--node-id", self.name, "--advertise", self.url,
                "--cluster-secret-file", c.secret_file, "--database", c.database, "--object-store", c.object_store,
                *self.extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "STASIS_", "AWS_"))}
        env.update(STASIS_AGENT=STASIS_AGENT, RUST_LOG=os.environ.get("RUST_LOG", "info"),
                   AWS_ACCESS_KEY_ID=c.s3["accessKeyId"], AWS_SECRET_ACCESS_KEY=c.s3["secretAccessKey"])
        with open(self.log_path, "a") as log:
            log.write(f"==== cluster test: start {' '.join(args[1:2])} node {self.name}\n")
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait(f"node {self.name} answering on {self.url}", self.ready, limit=90)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"node {self.name} exited (rc {self.proc.returncode}):\n{self.tail()}")
        try:
            with urllib.request.urlopen(self.url + "/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, wait_s=180):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args):
        """`stasis ARGS --api-url NODE --json`: the parsed answer (a failure raises)."""
        env = dict(os.environ, STASIS_API_KEY=self.cluster.key)
        r = subprocess.run([STASIS_BIN, *args, "--api-url", self.url, "--json"], capture_output=True, text=True,
                           env=env, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"stasis {' '.join(args)} through {self.name}: rc {r.returncode}: {r.stderr.strip()}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def rest(self, method, path, body=None):
        """(status, parsed JSON or None) of a control-API call through this node."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-API-KEY": self.cluster.key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw.strip() else None)

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def sandbox_dirs(self):
        d = os.path.join(self.data, "sandboxes")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


class Cluster:
    def __init__(self):
        os.makedirs(TEST_ROOT, exist_ok=True)
        os.chmod(TEST_ROOT, 0o711)
        self.work = tempfile.mkdtemp(prefix="cluster-", dir=TEST_ROOT)
        os.chmod(self.work, 0o711)  # the sandboxes' user namespaces traverse the data dirs
        self.key = "e2b_" + secrets.token_hex(20)
        self.nodes = {}
        self.pg = self.s3_proc = None
        self.secret_file = os.path.join(self.work, "cluster-secret")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)
        try:
            self._start_postgres()
            self._start_s3()
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- PostgreSQL
    def _start_postgres(self):
        bin_ = pg_bin()
        pw = pwd.getpwnam("postgres")
        pgdir = os.path.join(self.work, "pg")
        os.makedirs(pgdir)
        os.chown(pgdir, pw.pw_uid, pw.pw_gid)
        as_pg = {"user": pw.pw_uid, "group": pw.pw_gid}
        subprocess.run([os.path.join(bin_, "initdb"), "-D", pgdir + "/data", "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, capture_output=True, **as_pg)
        port = free_port()
        self.pg = subprocess.Popen([os.path.join(bin_, "postgres"), "-D", pgdir + "/data", "-p", str(port), "-k", pgdir,
                                    "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
                                   stdout=open(pgdir + "/log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
                                   **as_pg)

        def ready():
            if self.pg.poll() is not None:
                raise RuntimeError(f"postgres exited: see {pgdir}/log")
            return subprocess.run([os.path.join(bin_, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0
        wait("postgres", ready, limit=30)
        subprocess.run([os.path.join(bin_, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "stasis"],
                       check=True, capture_output=True)
        self.database = f"postgres://postgres@127.0.0.1:{port}/stasis"

    # -------------------------------------------------------------- S3
    def _start_s3(self):
        port = free_port()
        self.s3_proc = subprocess.Popen([S3_PYTHON, os.path.join(REPO, "tests/objstore/s3_server.py"), str(port), BUCKET,
                                         os.path.join(self.work, "s3")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
                                        stderr=open(os.path.join(self.work, "s3.log"), "w"))
        line = self.s3_proc.stdout.readline()
        if not line:
            raise RuntimeError("the S3 server did not start (scripts/s3-test-server-env.sh installs it)")
        self.s3 = json.loads(line)
        self.object_store = f"s3://{BUCKET}/cluster?endpoint={self.s3['endpoint']}&region=us-east-1"

    # -------------------------------------------------------------- nodes
    def add_node(self, name, extra=(), templates=(), volumes=None):
        """`templates`: more of the host's templates (names in the base template's dir) the
        node has, as every node of a real cluster has what setup built. `volumes`: a dir
        every node shares as DATA/volumes (a cluster's volumes live on a shared
        filesystem: docs/architecture.md)."""
        data = os.path.join(self.work, name)
        os.makedirs(os.path.join(data, "templates"))
        os.chmod(data, 0o711)
        os.symlink(TEMPLATE_BASE, os.path.join(data, "templates", "base"))
        for t in templates:
            os.symlink(os.path.join(os.path.dirname(TEMPLATE_BASE), t), os.path.join(data, "templates", t))
        if volumes is not None:
            os.makedirs(volumes, exist_ok=True)
            os.symlink(volumes, os.path.join(data, "volumes"))
        # The nodes of a cluster share the checkpoint key (it signs the images' and layers'
        # manifests): the first node makes it, the others get a copy before they start.
        first = next(iter(self.nodes.values()), None)
        if first is not None:
            shutil.copy2(os.path.join(first.data, "checkpoint.key"), os.path.join(data, "checkpoint.key"))
        node = Node(self, name, free_port(), data, os.path.join(self.work, f"{name}.log"), list(extra))
        self.nodes[name] = node
        node.start()
        return node

    def logs(self, n=40):
        return "\n".join(f"--- node {name} ({node.log_path}), last {n} lines:\n{node.tail(n)}"
                         for name, node in self.nodes.items())

    def close(self, keep=False):
        """Kills every sandbox (through a live node, then each data dir's runtime for what a
        killed node left), stops the nodes, PostgreSQL and S3; removes the work dir unless
        `keep` (a failure: its logs stay)."""
        live = [n for n in self.nodes.values() if n.alive()]
        if live:
            try:
                status, items = live[0].rest("GET", "/v2/sandboxes?limit=100")
                for sbx in (items or []) if status == 200 else []:
                    live[0].rest("DELETE", f"/sandboxes/{sbx['sandboxID']}")
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print(f"cluster teardown: kill through {live[0].name}: {e}")
        for node in self.nodes.values():
            node.stop()
        for node in self.nodes.values():
            env = dict(os.environ, STASIS_DATA_DIR=node.data, STASIS_AGENT=STASIS_AGENT)
            for sid in node.sandbox_dirs():
                subprocess.run([STASIS_BIN, "runtime", "kill", sid], env=env, capture_output=True, timeout=120)
        if self.s3_proc and self.s3_proc.poll() is None:
            self.s3_proc.kill()
            self.s3_proc.wait()
        if self.pg and self.pg.poll() is None:
            self.pg.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.pg.wait(30)
            except subprocess.TimeoutExpired:
                self.pg.kill()
                self.pg.wait()
        left = [n.name for n in self.nodes.values() if n.sandbox_dirs()]
        if not keep and not left:
            shutil.rmtree(self.work, ignore_errors=True)
        return left
