"""Issue 17: three Stasis nodes on one PostgreSQL and one S3 bucket, through the PyPI e2b
SDK and the `stasis node` CLI (harness.py starts them). The tests run in order (-x) on
one cluster:

1. the nodes register and each lists all three;
2. a sandbox created through node a (the most free memory) is paused, its node drained,
   and a connect through node b resumes it on node c (b's placement: c has more free
   memory than b): files, a process and its memory are intact; a removes its stale copy;
3. a drain pauses what its node runs, a create through it goes elsewhere, and every
   sandbox it paused resumes elsewhere, a fork too (its snapshot's layer is in the
   bucket), and a snapshot of the draining node makes sandboxes on the others;
4. kill -9 of a node: the others keep serving at once; after its lease its running
   sandbox is reported lost, its paused sandbox resumes on another node, and its
   snapshot makes sandboxes there and is deleted through them.
"""
import json
import os
import time

import pytest
from e2b import Sandbox, Template, Volume

from harness import Cluster, wait

LEASE = 6  # seconds (--node-lease); heartbeats every second
GIB = 1024


@pytest.fixture(scope="module")
def cluster(request):
    c = Cluster()
    try:
        # Placement goes by free memory: a offers the most, then c, then b.
        # Volumes live on a filesystem every node shares (docs/architecture.md "Cluster").
        shared = os.path.join(c.work, "volumes")
        for name, mem in (("a", 24), ("b", 8), ("c", 16)):
            c.add_node(name, ["--node-memory", f"{mem}GiB", "--heartbeat-interval", "1s", "--node-lease", f"{LEASE}s"],
                       volumes=shared)
        yield c
    finally:
        failed = request.session.testsfailed > 0
        if failed:
            print(c.logs())
        left = c.close(keep=failed)
        print(f"cluster work dir: {c.work} ({'kept' if failed or left else 'removed'})")


def node_of(c, sandbox_id, via="a"):
    """The node the registry says runs or holds the sandbox."""
    status, info = c.nodes[via].rest("GET", f"/sandboxes/{sandbox_id}")
    assert status == 200, info
    return info["nodeID"]


def counter(sbx):
    """A process that counts in memory and writes the count to a file every 0.1 s."""
    sbx.commands.run("nohup python3 -c 'import time\nn=0\nwhile True:\n n+=1\n open(\"/tmp/n\",\"w\").write(str(n))\n time.sleep(0.1)' "
                     ">/dev/null 2>&1 &")
    wait("the counter", lambda: sbx.commands.run("cat /tmp/n 2>/dev/null || echo 0").stdout.strip() not in ("", "0"))


def count(sbx):
    return int(sbx.commands.run("cat /tmp/n").stdout)


def pid_of_counter(sbx):
    return sbx.commands.run("pgrep -f 'n+=1' | head -1").stdout.strip()


def test_nodes_register_and_each_lists_all(cluster):
    for name, node in cluster.nodes.items():
        nodes = {n["nodeID"]: n for n in node.cli("node", "ls")}
        assert set(nodes) == {"a", "b", "c"}, nodes
        assert all(n["state"] == "active" for n in nodes.values()), nodes
        assert nodes[name]["self"] is True
        assert nodes[name]["url"] == node.url


def test_created_on_a_paused_resumed_through_b_onto_c(cluster):
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    sbx = Sandbox.create(timeout=600, metadata={"test": "cluster"}, **b.api)
    assert node_of(cluster, sbx.sandbox_id) == "a", "placement: a has the most free memory"
    sbx.files.write("/home/user/kept.txt", "made on a")
    # /etc copied up into its own layer: after the move the template's files under it show
    # too (the fork below checks the same for a snapshot's layer, which here differs by node).
    sbx.commands.run("echo 1 > /etc/stasis-cluster-test", user="root")
    counter(sbx)
    pid, n0 = pid_of_counter(sbx), count(sbx)
    assert sbx.pause() is True
    a.cli("node", "drain", "a")  # nothing new goes to a; the sandbox is paused already
    back = Sandbox.connect(sbx.sandbox_id, **b.api)
    assert node_of(cluster, sbx.sandbox_id, via="b") == "c", "b placed the resume on c (more free memory than b)"
    assert back.files.read("/home/user/kept.txt") == "made on a"
    assert back.commands.run("cat /etc/stasis-cluster-test; grep -c '^user:' /etc/passwd").stdout == "1\n1\n"
    assert pid_of_counter(back) == pid, "the same process goes on"
    n1 = count(back)
    assert n1 >= n0
    wait("the counter to go on after the resume", lambda: count(back) > n1, limit=10)
    # a, draining, removes its stale copy (files only: c's processes and objects stay).
    wait("node a to remove its stale copy", lambda: sbx.sandbox_id not in a.sandbox_dirs(), limit=10)
    assert back.commands.run("echo still").stdout == "still\n"
    a.cli("node", "activate", "a")
    Sandbox.kill(sbx.sandbox_id, **a.api)


def test_a_drain_pauses_its_node_and_its_sandboxes_resume_elsewhere(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    made = [Sandbox.create(timeout=600, **c.api) for _ in range(2)]
    assert {node_of(cluster, s.sandbox_id) for s in made} == {"a"}
    for s in made:
        s.files.write("/home/user/who", s.sandbox_id)
    # A fork's lower layer is its snapshot's, taken on a: it went to the bucket with it, so
    # the fork moves too (fetched by the node that takes it over).
    fork = made[0].fork(count=1, timeout=600)[0]
    assert node_of(cluster, fork.sandbox_id) == "a"
    fork.files.write("/home/user/fork-only", "written after the fork")
    counter(fork)
    fork_pid = pid_of_counter(fork)
    # A named snapshot of a: creates from it go elsewhere while a drains.
    named = made[1].create_snapshot()
    assert c.cli("node", "drain", "a")["state"] == "draining"

    def all_paused():
        return all(Sandbox.get_info(s.sandbox_id, **b.api).state.value == "paused" for s in made + [fork])
    wait("node a to pause what it runs", all_paused, limit=120, every=0.5)
    other = Sandbox.create(timeout=300, **a.api)
    assert node_of(cluster, other.sandbox_id) != "a", "no placement on a draining node"
    # Through the draining node itself too: it places the resume elsewhere.
    for s, via in zip(made, (a, b)):
        back = Sandbox.connect(s.sandbox_id, **via.api)
        assert node_of(cluster, s.sandbox_id) in ("b", "c")
        assert back.files.read("/home/user/who") == s.sandbox_id
        Sandbox.kill(s.sandbox_id, **b.api)
    back = Sandbox.connect(fork.sandbox_id, **b.api)
    assert node_of(cluster, fork.sandbox_id) in ("b", "c"), "the fork moved with its snapshot's layer"
    assert back.files.read("/home/user/who") == made[0].sandbox_id, "its source's files (the snapshot's layer)"
    assert back.files.read("/home/user/fork-only") == "written after the fork"
    assert pid_of_counter(back) == fork_pid
    n = count(back)
    wait("the fork's counter to go on", lambda: count(back) > n, limit=10)
    copy = Sandbox.create(template=named.snapshot_id, timeout=300, **a.api)
    assert node_of(cluster, copy.sandbox_id) in ("b", "c"), "made from a's snapshot while a drains"
    assert copy.files.read("/home/user/who") == made[1].sandbox_id
    for s in (other, copy):
        Sandbox.kill(s.sandbox_id, **b.api)
    b.cli("node", "activate", "a")
    Sandbox.kill(fork.sandbox_id, **b.api)
    assert Sandbox.delete_snapshot(named.snapshot_id, **c.api) is True


def test_a_sandbox_with_a_volume_resumes_where_it_paused_and_after_a_takeover(cluster):
    """Its volume is staged in its own dir at restore, opened there by its range's root: the
    pause's layer upload (and the takeover's fetch) once left that dir closed (0700) and
    every such resume failed with CRIU's 'open_tree ... Permission denied'."""
    a, b, c = (cluster.nodes[n] for n in "abc")
    vol = Volume.create("shared-data", **b.api)
    s = Sandbox.create(timeout=600, volume_mounts={"/home/user/vol": vol.name}, **c.api)
    home = node_of(cluster, s.sandbox_id)
    s.commands.run("echo kept > /home/user/vol/f")
    assert s.pause() is True
    s = Sandbox.connect(s.sandbox_id, **b.api)
    assert node_of(cluster, s.sandbox_id) == home
    assert s.commands.run("cat /home/user/vol/f").stdout == "kept\n"
    assert s.pause() is True
    b.cli("node", "drain", home)
    try:
        s = Sandbox.connect(s.sandbox_id, **b.api)
        assert node_of(cluster, s.sandbox_id) != home
        assert s.commands.run("cat /home/user/vol/f").stdout == "kept\n"
    finally:
        b.cli("node", "activate", home)
    Sandbox.kill(s.sandbox_id, **b.api)
    Volume.destroy(vol.volume_id, **b.api)


def test_a_template_built_through_one_node_is_used_tagged_and_deleted_through_every_node(cluster):
    """A build's layers and its registry go to the bucket: every node makes sandboxes from
    it, lists it, sees its tags and its deletion, wherever each was made."""
    a, b, c = (cluster.nodes[n] for n in "abc")
    key = cluster.key

    def build(content, via):
        t = Template().from_template("base").run_cmd(f"echo {content} > /opt/cluster-tpl").set_envs({"CLUSTER_TPL": content})
        Template.build(t, "cluster-tpl", api_key=key, api_url=via.url)

    def content_of(ref, via):
        s = Sandbox.create(template=ref, timeout=120, **via.api)
        try:
            out = s.commands.run("cat /opt/cluster-tpl; echo $CLUSTER_TPL").stdout
            return out, node_of(cluster, s.sandbox_id, via="c")
        finally:
            Sandbox.kill(s.sandbox_id, **b.api)

    build("one", b)
    where = set()
    for via in (a, b, c):
        out, node = content_of("cluster-tpl", via)
        assert out == "one\none\n", (via.name, out)
        where.add(node)
    # Placement (by memory) puts creates on a: a node that did not build it.
    assert where - {"b"}, where
    for via in (a, c):
        status, listed = via.rest("GET", "/templates")
        assert status == 200 and "cluster-tpl" in json.dumps(listed), (via.name, listed)
    # Tagged through c, rebuilt through a: every node follows.
    Template.assign_tags("cluster-tpl", ["v1"], api_key=key, api_url=c.url)
    build("two", a)
    assert content_of("cluster-tpl", b)[0] == "two\ntwo\n"
    assert content_of("cluster-tpl:v1", c)[0] == "one\none\n"
    tags = {t.tag for t in Template.get_tags("cluster-tpl", api_key=key, api_url=b.url)}
    assert tags == {"default", "v1"}, tags
    Template.remove_tags("cluster-tpl", ["v1"], api_key=key, api_url=a.url)
    status, _ = b.rest("POST", "/sandboxes", {"templateID": "cluster-tpl:v1"})
    assert status in (400, 404), status
    # Deleted through c: gone on every node.
    status, _ = c.rest("DELETE", "/templates/cluster-tpl")
    assert status == 204, status
    for via in (a, b):
        status, _ = via.rest("POST", "/sandboxes", {"templateID": "cluster-tpl"})
        assert status in (400, 404), (via.name, status)


def test_a_killed_node_loses_its_running_sandboxes_and_its_paused_ones_resume_elsewhere(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    running = Sandbox.create(timeout=600, **b.api)
    paused = Sandbox.create(timeout=600, **b.api)
    assert {node_of(cluster, s.sandbox_id) for s in (running, paused)} == {"a"}
    paused.files.write("/home/user/state", "kept in the object store")
    counter(paused)
    pid = pid_of_counter(paused)
    snap = paused.create_snapshot()
    assert paused.pause() is True
    a.kill9()
    # The others keep serving at once, for everything that is not on a.
    t0 = time.monotonic()
    fresh = Sandbox.create(timeout=300, **b.api)
    assert fresh.commands.run("echo alive").stdout == "alive\n"
    assert node_of(cluster, fresh.sandbox_id, via="c") in ("b", "c")
    assert time.monotonic() - t0 < LEASE, "a create must not wait for the dead node's lease"

    def lost():
        # A lost sandbox is not listed; its info answers 404 saying it was lost with its node.
        status, info = c.rest("GET", f"/sandboxes/{running.sandbox_id}")
        return status == 404 and "lost" in (info or {}).get("message", "")
    wait("the running sandbox of the dead node reported lost", lost, limit=LEASE * 4, every=0.5)
    nodes = {n["nodeID"]: n for n in b.cli("node", "ls")}
    assert nodes["a"]["state"] == "dead", nodes
    back = Sandbox.connect(paused.sandbox_id, **c.api)
    assert node_of(cluster, paused.sandbox_id, via="c") in ("b", "c")
    assert back.files.read("/home/user/state") == "kept in the object store"
    assert pid_of_counter(back) == pid
    # Its snapshot is in the bucket: sandboxes are made from it on the live nodes, with
    # its files and its processes, and it is deleted through them.
    copy = Sandbox.create(template=snap.snapshot_id, timeout=300, **b.api)
    assert node_of(cluster, copy.sandbox_id, via="c") in ("b", "c")
    assert copy.files.read("/home/user/state") == "kept in the object store"
    assert pid_of_counter(copy) == pid
    assert Sandbox.delete_snapshot(snap.snapshot_id, **c.api) is True
    status, listed = c.rest("GET", "/snapshots")
    assert status == 200 and snap.snapshot_id.split(":")[0] not in json.dumps(listed), listed
    for s in (paused, fresh, copy):
        Sandbox.kill(s.sandbox_id, **b.api)
