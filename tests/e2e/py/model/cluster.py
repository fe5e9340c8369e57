"""The model test on a cluster (MODEL_CLUSTER=N): N `stasis serve` nodes on this machine
sharing a real PostgreSQL and a real S3 server (tests/cluster/harness.py starts them),
with the interface of `server.Server`, so the runner drives them as it drives one server.

- Each op goes through node `op["via"]` (the generator draws it): its REST calls, and the
  SDK objects it makes (a create's, a connect's) stay bound to that node, so envd
  traffic of one sandbox goes through whichever node made or last connected it, and a
  node forwards what is another's.
- Nodes have the base and code-interpreter-v1 templates and share DATA/volumes (a
  cluster's volumes are on a shared filesystem: docs/architecture.md "Cluster").
- Heartbeats every second, a lease of LEASE seconds: a node killed with the lease left to
  run out is declared dead within a few seconds.

Only loopback: every address is 127.0.0.1.
"""
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "cluster"))

from harness import Cluster  # noqa: E402

from .server import ANSI, TEMPLATE_INTERPRETER, cgroup_leaks, mounts_under, record_seen  # noqa: E402

LEASE = 6  # seconds (--node-lease); --heartbeat-interval 1s


class ClusterServer:
    def __init__(self, label="model", nodes=3):
        if nodes < 2:
            raise ValueError("MODEL_CLUSTER needs at least 2 nodes")
        self.label = label
        self.names = [f"n{i}" for i in range(nodes)]
        self.c = None
        self.via = 0
        self.pos = False
        self.ids = set()

    # ------------------------------------------------------------------ what Server offers
    @property
    def node_count(self):
        return len(self.names)

    def node(self, i):
        return self.c.nodes[self.names[i % len(self.names)]]

    @property
    def api(self):
        return self.node(self.via).api

    @property
    def url(self):
        return self.node(self.via).url

    @property
    def urls(self):
        return [self.node(i).url for i in range(len(self.names))]

    @property
    def key(self):
        return self.c.key

    @property
    def data(self):
        return self.c.work if self.c else ""

    @property
    def log_path(self):
        return os.path.join(self.data, "*.log")

    def seen(self, sandbox_id):
        self.ids.add(sandbox_id)
        record_seen(sandbox_id)

    def mark(self, text):
        for name in self.names:
            node = self.c.nodes.get(name)
            if node:
                with open(node.log_path, "a") as f:
                    f.write(f"==== model: {text}\n")

    def start(self, pause_on_shutdown=False):
        if pause_on_shutdown:
            raise ValueError("a cluster model has no --pause-on-shutdown (restarts are node ops)")
        self.c = Cluster()
        shared = os.path.join(self.c.work, "volumes")
        extra = ["--heartbeat-interval", "1s", "--node-lease", f"{LEASE}s"]
        templates = [os.path.basename(TEMPLATE_INTERPRETER)]
        for name in self.names:
            self.c.add_node(name, extra, templates=templates, volumes=shared)

    def restart(self, sig, pause_on_shutdown):
        raise RuntimeError("restart is not a cluster op (node_kill restarts one node)")

    def tail(self, n=40):
        return self.c.logs(n) if self.c else ""

    def grep(self, needles, n=30):
        """Per node, the last `n` log lines naming any of `needles`, or a warning/error."""
        out = []
        for name in self.names:
            node = self.c.nodes.get(name) if self.c else None
            if not node:
                continue
            try:
                with open(node.log_path, errors="replace") as f:
                    lines = [ANSI.sub("", ln) for ln in f]
            except OSError:
                continue
            hits = [ln for ln in lines if any(x in ln for x in needles) or re.search(r"\b(ERROR|WARN)\b", ln[:60])
                    or ln.startswith("====")]
            out += [f"[{name}] {ln}" for ln in hits[-n:]]
        return "".join(out)

    # ------------------------------------------------------------------ teardown
    def mounts(self):
        return mounts_under(self.data)

    def teardown(self, keep=False):
        """Kills every sandbox (through a live node; then each node's runtime for what is
        left), stops the nodes, PostgreSQL and S3; returns what leaked."""
        if not self.c:
            return []
        leaks = []
        left = self.c.close(keep=True)
        if left:
            leaks.append(f"sandbox dirs left on nodes {left}")
        leaks += cgroup_leaks(self.ids)
        m = self.mounts()
        if m:
            leaks.append(f"mounts left: {m}")
        if not keep and not leaks:
            shutil.rmtree(self.c.work, ignore_errors=True)
        return leaks
