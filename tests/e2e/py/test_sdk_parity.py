"""Issue 14: SDK parity with PyPI e2b 2.63 (sync API): set_timeout(0) and --max-timeout,
relative command cwd, multi-file and gzip uploads, list filters, the metrics range.
docs/sdk-parity.md maps each method/option to the test here that proves it."""
import datetime
import time

import pytest
from conftest import drain, run_tag
from e2b import Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import NotFoundException, SandboxException

DAY = 86_400


def test_set_timeout_zero_with_pause_pauses_in_place(sandboxes):
    sbx = sandboxes.create(lifecycle={"on_timeout": "pause"})
    boot = sbx.commands.run("cat /proc/sys/kernel/random/boot_id").stdout
    bg = sbx.commands.run("sleep 3600", background=True, timeout=0)
    bg.disconnect()
    sbx.set_timeout(0)
    assert Sandbox.get_info(sbx.sandbox_id).state.value == "paused", "paused when set_timeout(0) returns"
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.sandbox_id == sbx.sandbox_id
    assert again.commands.run("cat /proc/sys/kernel/random/boot_id").stdout == boot
    alive = again.commands.run(f"kill -0 {bg.pid} && echo alive")
    assert alive.stdout.strip() == "alive", "resumed, not re-created"


def test_set_timeout_zero_with_kill_kills(sandboxes):
    sbx = sandboxes.create()
    sbx.set_timeout(0)
    with pytest.raises((NotFoundException, SandboxException)):
        Sandbox.get_info(sbx.sandbox_id)


def test_timeouts_up_to_max_timeout(sandboxes):
    sbx = sandboxes.create(timeout=25 * 3600)  # past the former 24 h cap
    sbx.set_timeout(30 * DAY)
    Sandbox.connect(sbx.sandbox_id, timeout=30 * DAY)
    limit = r"limit of 2592000 s \(30 days\).*--max-timeout"
    with pytest.raises(SandboxException, match=limit):
        sbx.set_timeout(31 * DAY)
    with pytest.raises(SandboxException, match=limit):
        Sandbox.connect(sbx.sandbox_id, timeout=31 * DAY)
    with pytest.raises(SandboxException, match=limit):
        sandboxes.create(timeout=31 * DAY)


def test_commands_run_relative_cwd_is_under_home(sandboxes):
    sbx = sandboxes.create()
    sbx.files.make_dir("work/sub")
    assert sbx.commands.run("pwd", cwd="work/sub").stdout.strip() == "/home/user/work/sub"
    assert sbx.commands.run("pwd", cwd="~/work").stdout.strip() == "/home/user/work"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout.strip() == "/tmp"


def test_write_files_several_entries_in_one_request(sandboxes):
    """As e2b's own test: even files under a new /N directory, odd ones in the home."""
    sbx = sandboxes.create()
    files = [
        {"path": f"/{i}/multi_test_file{i}.txt" if i % 2 == 0 else f"/home/user/multi_test_file{i}.txt", "data": f"This is a test file {i}."}
        for i in range(6)
    ]
    files.append({"path": "rel/multi_rel.txt", "data": b"relative"})
    infos = sbx.files.write_files(files)
    assert [i.path for i in infos] == [f["path"] for f in files[:6]] + ["/home/user/rel/multi_rel.txt"]
    for i, f in enumerate(files[:6]):
        assert sbx.files.read(f["path"]) == f"This is a test file {i}."
    assert sbx.files.read("rel/multi_rel.txt") == "relative"
    owners = sbx.commands.run("stat -c %U /0 /0/multi_test_file0.txt").stdout.split()
    assert owners == ["user", "user"]


def test_gzip_uploads_are_stored_decompressed(sandboxes):
    import io

    sbx = sandboxes.create()
    big = "stasis " * 200_000
    sbx.files.write("gz/one.txt", big, gzip=True)
    assert sbx.files.read("gz/one.txt") == big
    sbx.files.write_files([{"path": "gz/a.txt", "data": "a" * 1000}, {"path": "gz/b.bin", "data": bytes([0, 1, 2, 255])}], gzip=True)
    assert sbx.files.read("gz/a.txt") == "a" * 1000
    assert bytes(sbx.files.read("gz/b.bin", format="bytes")) == bytes([0, 1, 2, 255])
    sbx.files.write("gz/file_like.txt", io.BytesIO(b"from a file object"), gzip=True)
    assert sbx.files.read("gz/file_like.txt") == "from a file object"
    sbx.files.write("gz/iter.txt", iter([b"first ", b"second ", b"third"]), gzip=True)
    assert sbx.files.read("gz/iter.txt") == "first second third"


def test_list_query_filters(sandboxes):
    tag = run_tag("filt")
    a = sandboxes.create(metadata={"tag": tag})
    time.sleep(1.1)
    b = sandboxes.create(metadata={"tag": tag})
    ai, bi = a.get_info(), b.get_info()

    def ids(order=None, **query):
        items, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag}, **query), order=order, limit=1))
        return [s.sandbox_id for s in items]

    A, B = a.sandbox_id, b.sandbox_id
    assert ids(started_after=bi.started_at) == [B], "at or after b's own start"
    assert ids(started_after=ai.started_at) == [B, A]
    assert ids(order="asc", started_after=ai.started_at) == [A, B]
    assert ids(started_after=bi.started_at + datetime.timedelta(milliseconds=1)) == []
    assert ids(template=ai.template_id) == [B, A]
    assert ids(template="no-such-template") == []
    a.pause()
    assert ids(state=[SandboxState.PAUSED]) == [A]
    assert ids(state=[SandboxState.RUNNING, SandboxState.PAUSED], started_after=bi.started_at) == [B]


def test_get_metrics_range(sandboxes):
    sbx = sandboxes.create()
    now = datetime.datetime.now(datetime.timezone.utc)
    minutes = lambda n: datetime.timedelta(minutes=n)  # noqa: E731
    assert len(sbx.get_metrics()) >= 1
    around = sbx.get_metrics(start=now - minutes(1), end=now + minutes(1))
    assert len(around) >= 1
    for p in around:
        assert abs((p.timestamp - now).total_seconds()) <= 61
    assert sbx.get_metrics(start=now - minutes(60), end=now - minutes(30)) == []
    assert sbx.get_metrics(start=now + minutes(10)) == []


def test_get_metrics_series_and_range(sandboxes):
    sbx = sandboxes.create()
    t0 = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(12)
    every = sbx.get_metrics()
    assert len(every) >= 3, every
    assert [p.timestamp for p in every] == sorted(p.timestamp for p in every)
    start, end = t0 + datetime.timedelta(seconds=2), t0 + datetime.timedelta(seconds=9)
    some = sbx.get_metrics(start=start, end=end)
    assert 1 <= len(some) < len(every), (some, every)
    for p in some:
        assert int(start.timestamp()) <= int(p.timestamp.timestamp()) <= int(end.timestamp()), p
