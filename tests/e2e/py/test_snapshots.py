"""Snapshots and forks with PyPI e2b 2.63 (sync API): create_snapshot (full and
filesystem-only), list_snapshots (filters, pagination), Sandbox.create from a snapshot,
delete_snapshot, fork."""
import secrets

import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException, SandboxNotFoundException

from conftest import drain, run_tag, seen

# A process whose state lives only in memory: a random value picked at start and a count
# of the SIGUSR1s it got; each SIGUSR1 writes "<value> <count>" to /tmp/holder.out.
HOLDER = """
import os, secrets, signal, time
value = secrets.token_hex(8)
count = 0
def on_usr1(sig, frame):
    global count
    count += 1
    with open('/tmp/holder.out.tmp', 'w') as f:
        f.write(f'{value} {count}')
    os.rename('/tmp/holder.out.tmp', '/tmp/holder.out')
signal.signal(signal.SIGUSR1, on_usr1)
open('/tmp/holder.ready', 'w').close()
while True:
    time.sleep(0.05)
"""


def start_holder(sbx):
    sbx.files.write("/tmp/holder.py", HOLDER)
    h = sbx.commands.run("exec python3 -u /tmp/holder.py", background=True, timeout=0)
    sbx.commands.run("for i in $(seq 1 300); do [ -f /tmp/holder.ready ] && exit 0; sleep 0.05; done; exit 1")
    h.disconnect()
    return h.pid


def ask_holder(sbx, pid):
    """(value, count) of the holder; the signal is re-sent until the answer appears (right
    after a restore memory comes in lazily)."""
    r = sbx.commands.run(
        f"rm -f /tmp/holder.out; for i in $(seq 1 200); do kill -USR1 {pid} 2>/dev/null; "
        "for j in 1 2 3 4 5; do [ -f /tmp/holder.out ] && { cat /tmp/holder.out; exit 0; }; sleep 0.02; done; done; exit 7",
        timeout=60,
    )
    value, count = r.stdout.strip().split(" ")
    return value, int(count)


def exists(sbx, path):
    return sbx.commands.run(f"test -e {path} && echo yes || echo no").stdout.strip() == "yes"


def test_snapshot_create_list_create_from_delete(sandboxes):
    tag = run_tag("snap")
    src = sandboxes.create(metadata={"suite": "snapshots-py", "tag": tag})
    content = secrets.token_hex(16)
    src.files.write("/home/user/snap.txt", content)
    pid = start_holder(src)
    value, _ = ask_holder(src, pid)
    made_snaps = []
    try:
        plain = src.create_snapshot()
        made_snaps.append(plain.snapshot_id)
        assert plain.snapshot_id.endswith(":default") and plain.names == [], plain
        name = f"e2e-{tag}"
        named = Sandbox.create_snapshot(src.sandbox_id, name=name)
        made_snaps.append(named.snapshot_id)
        assert named.snapshot_id == f"stasis/{name}:default"
        assert named.names == [f"stasis/{name}:default"]
        assert src.is_running(), "the source keeps running"
        src.files.write("/home/user/after.txt", "after")
        assert ask_holder(src, pid) == (value, 2)

        want = sorted([plain.snapshot_id, named.snapshot_id])
        items, _ = drain(Sandbox.list_snapshots(sandbox_id=src.sandbox_id))
        assert sorted(s.snapshot_id for s in items) == want, items
        assert next(s for s in items if s.snapshot_id == named.snapshot_id).names == named.names
        items, _ = drain(src.list_snapshots())
        assert sorted(s.snapshot_id for s in items) == want
        items, pages = drain(Sandbox.list_snapshots(sandbox_id=src.sandbox_id, limit=1))
        assert sorted(s.snapshot_id for s in items) == want, "each once across pages"
        assert 2 <= pages <= 3, pages
        items, _ = drain(Sandbox.list_snapshots(name=name))
        assert [s.snapshot_id for s in items] == [named.snapshot_id]
        items, _ = drain(Sandbox.list_snapshots(sandbox_id="nosuchsandbox0000000"))
        assert items == []

        # From the snapshot id and from the name: files and memory as at capture.
        for ref in (plain.snapshot_id, name):
            s = sandboxes.create(template=ref, timeout=120, metadata={"suite": "snapshots-py", "tag": tag})
            assert s.sandbox_id != src.sandbox_id
            assert s.files.read("/home/user/snap.txt") == content
            assert not exists(s, "/home/user/after.txt")
            assert ask_holder(s, pid) == (value, 2), f"from {ref}: the holder's memory"

        assert Sandbox.delete_snapshot(plain.snapshot_id) is True
        assert Sandbox.delete_snapshot(plain.snapshot_id) is False, "second delete: not found"
        items, _ = drain(Sandbox.list_snapshots(sandbox_id=src.sandbox_id))
        assert [s.snapshot_id for s in items] == [named.snapshot_id]
        with pytest.raises(SandboxException) as e:
            sandboxes.create(template=plain.snapshot_id, timeout=60)
        print(f"create from a deleted snapshot: {type(e.value).__name__} {getattr(e.value, 'status_code', None)} {e.value}")
        assert getattr(e.value, "status_code", None) == 404, e.value
        assert Sandbox.delete_snapshot(named.snapshot_id) is True
        assert Sandbox.delete_snapshot(named.snapshot_id) is False
        with pytest.raises(SandboxException):
            sandboxes.create(template=name, timeout=60)
        made_snaps.clear()
    finally:
        for sid in made_snaps:
            try:
                Sandbox.delete_snapshot(sid)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: delete snapshot {sid}: {e}")


def test_filesystem_only_snapshot_boots_fresh(sandboxes):
    src = sandboxes.create(metadata={"suite": "snapshots-py", "tag": run_tag("fs")})
    content = secrets.token_hex(16)
    src.files.write("/home/user/fs.txt", content)
    start_holder(src)
    boot = src.commands.run("cat /proc/sys/kernel/random/boot_id").stdout
    snap = src.create_snapshot(mode="filesystem")
    try:
        assert src.is_running()
        s = sandboxes.create(template=snap.snapshot_id, timeout=120)
        assert s.files.read("/home/user/fs.txt") == content
        assert s.commands.run("cat /proc/sys/kernel/random/boot_id").stdout != boot, "a fresh boot"
        procs = s.commands.list()
        assert not any("holder.py" in " ".join([p.cmd, *p.args]) for p in procs), procs
    finally:
        assert Sandbox.delete_snapshot(snap.snapshot_id) is True


def test_fork(sandboxes):
    tag = run_tag("fork")
    src = sandboxes.create(metadata={"suite": "snapshots-py", "tag": tag})
    content = secrets.token_hex(16)
    src.files.write("/home/user/source.txt", content)
    pid = start_holder(src)
    value, _ = ask_holder(src, pid)

    results = src.fork(count=2, timeout=120)
    for r in results:
        if isinstance(r, Sandbox):
            seen(r.sandbox_id)
            sandboxes.made.append(r.sandbox_id)
    assert len(results) == 2
    assert all(isinstance(r, Sandbox) for r in results), results
    assert len({src.sandbox_id, *(r.sandbox_id for r in results)}) == 3
    assert src.is_running()
    for i, f in enumerate(results):
        assert f.is_running()
        assert f.files.read("/home/user/source.txt") == content
        assert ask_holder(f, pid) == (value, 2)
        f.files.write(f"/home/user/fork-{i}.txt", str(i))
    assert ask_holder(src, pid) == (value, 2)
    assert exists(results[0], "/home/user/fork-0.txt") and not exists(results[0], "/home/user/fork-1.txt")
    assert exists(results[1], "/home/user/fork-1.txt") and not exists(results[1], "/home/user/fork-0.txt")
    assert not exists(src, "/home/user/fork-0.txt") and not exists(src, "/home/user/fork-1.txt")

    # The static variant too.
    more = Sandbox.fork(src.sandbox_id, count=1, timeout=60)
    for r in more:
        if isinstance(r, Sandbox):
            seen(r.sandbox_id)
            sandboxes.made.append(r.sandbox_id)
    assert len(more) == 1 and isinstance(more[0], Sandbox), more
    assert ask_holder(more[0], pid) == (value, 3), "forked after the source's 2nd count"
    assert not exists(more[0], "/home/user/fork-0.txt")


def test_unknown_sandbox():
    with pytest.raises(SandboxNotFoundException):
        Sandbox.fork("nosuchsandbox0000000", count=1)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.create_snapshot("nosuchsandbox0000000")
