"""Issue 14: SDK parity with PyPI e2b 2.63 (sync API): set_timeout(0) and --max-timeout,
relative command cwd, multi-file and gzip uploads, list filters, the metrics range.
docs/sdk-parity.md maps each method/option to the test here that proves it."""
import datetime
import json
import os
import time

import pytest
from conftest import drain, run_tag
from e2b import Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import NotFoundException, SandboxException, TimeoutException

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


def _xattrs(sbx, path, user=None):
    """The sandbox's own view of a path's `user.*` xattrs."""
    py = f"import os,json; p={path!r}; print(json.dumps({{n: os.getxattr(p, n).decode() for n in sorted(os.listxattr(p))}}))"
    return json.loads(sbx.commands.run(f"python3 -c \"{py}\"", user=user).stdout)


def test_file_metadata_round_trip(sandboxes):
    sbx = sandboxes.create()
    info = sbx.files.write("meta/a.txt", "a", metadata={"Author": "me", "purpose": "test run"})
    assert info.metadata == {"author": "me", "purpose": "test run"}, "keys lowercased"
    assert _xattrs(sbx, "/home/user/meta/a.txt") == {"user.e2b.author": "me", "user.e2b.purpose": "test run"}
    assert sbx.files.get_info("meta/a.txt").metadata == {"author": "me", "purpose": "test run"}
    assert [e.metadata for e in sbx.files.list("meta") if e.name == "a.txt"] == [{"author": "me", "purpose": "test run"}]
    assert sbx.files.rename("meta/a.txt", "meta/b.txt").metadata == {"author": "me", "purpose": "test run"}
    many = sbx.files.write_files([{"path": "meta/c.txt", "data": "c"}, {"path": "meta/d.txt", "data": "d"}], metadata={"batch": "1"})
    assert [f.metadata for f in many] == [{"batch": "1"}, {"batch": "1"}]
    assert sbx.files.write("meta/e.txt", "e" * 1000, gzip=True, metadata={"zipped": "yes"}).metadata == {"zipped": "yes"}
    assert sbx.files.write("meta/c.txt", "c2").metadata is None, "an overwrite replaces the set"
    assert sbx.files.get_info("meta/c.txt").metadata is None
    sbx.commands.run("python3 -c 'import os; os.setxattr(\"/home/user/meta/d.txt\", \"user.e2b.origin\", b\"inside\")'")
    assert sbx.files.get_info("meta/d.txt").metadata == {"batch": "1", "origin": "inside"}
    assert sbx.files.write("/root/meta.txt", "r", user="root", metadata={"owner": "root"}).metadata == {"owner": "root"}
    assert sbx.files.get_info("/root/meta.txt", user="root").metadata == {"owner": "root"}
    sbx.pause()
    back = Sandbox.connect(sbx.sandbox_id)
    assert back.files.get_info("meta/b.txt").metadata == {"author": "me", "purpose": "test run"}
    assert back.files.get_info("/root/meta.txt", user="root").metadata == {"owner": "root"}


def test_watch_events_of_an_upload_as_envd(sandboxes):
    """e2b's own test_watch.py: three events for a new file, the first a CREATE named
    relative to the watched dir, also for a nested dir of a recursive watch."""
    sbx = sandboxes.create()
    sbx.files.make_dir("w")
    handle = sbx.files.watch_dir("w")
    sbx.files.write("w/f.txt", "This file will be watched.")
    events = handle.get_new_events()
    assert [(e.type.value, e.name) for e in events] == [("create", "f.txt"), ("chmod", "f.txt"), ("write", "f.txt")]
    handle.stop()

    sbx.files.make_dir("rw/nested")
    handle = sbx.files.watch_dir("rw", recursive=True)
    sbx.files.write("rw/nested/f.txt", "This file will be watched.")
    events = handle.get_new_events()
    assert len(events) == 3
    assert (events[0].type.value, events[0].name) == ("create", "nested/f.txt")
    handle.stop()


def test_waiting_on_a_command_of_a_killed_sandbox(sandboxes):
    """The SDK's SandboxNotRunningException (a TimeoutException): "killed or reached its
    end of life", decided from how the stream ends and the health check."""
    sbx = sandboxes.create()
    bg = sbx.commands.run("sleep 600", background=True)
    time.sleep(1)
    Sandbox.kill(sbx.sandbox_id)
    with pytest.raises(TimeoutException, match="killed or reached its end of life"):
        bg.wait()


def _host_routed(url, domain_host, **kw):
    """`url` sent to Stasis's TLS listener as `https://{domain_host}` (SNI and Host), the
    certificate checked against run.sh's local CA: what a client with E2B_DOMAIN does."""
    import ssl
    import urllib.parse

    import httpx

    u = urllib.parse.urlsplit(url)
    target = f"https://127.0.0.1:{os.environ['E2E_TLS_PORT']}{u.path}?{u.query}"
    ctx = ssl.create_default_context(cafile=os.environ["E2E_CA_CERT"])
    with httpx.Client(verify=ctx) as c:
        return c.request(kw.pop("method", "GET"), target, headers={"Host": domain_host}, extensions={"sni_hostname": domain_host}, **kw)


def test_signed_file_urls(sandboxes):
    """e2b's test_secured.py, with the two ways to reach the agent without its token: the
    host (`49983-{id}.{domain}`, as with E2B_DOMAIN) or the E2b-Sandbox-Id header (with
    E2B_SANDBOX_URL, whose signed URLs name no sandbox)."""
    import httpx

    sbx = sandboxes.create(secure=True)
    host = f"49983-{sbx.sandbox_id}.{os.environ['E2E_DOMAIN']}"
    sbx.files.write("hello.txt", "hello world")
    url = sbx.download_url("hello.txt", use_signature_expiration=10_000)
    r = _host_routed(url, host)
    assert (r.status_code, r.text) == (200, "hello world")
    r = httpx.get(url, headers={"E2b-Sandbox-Id": sbx.sandbox_id})
    assert (r.status_code, r.text) == (200, "hello world")

    sbx.files.write("hello.txt", "hello root", user="root")
    r = _host_routed(sbx.download_url("hello.txt", user="root", use_signature_expiration=10_000), host)
    assert (r.status_code, r.text) == (200, "hello root")

    r = _host_routed(sbx.download_url("hello.txt", use_signature_expiration=-10_000), host)
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "signature is already expired"})
    r = _host_routed(sbx.download_url("hello.txt") + "x", host)
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "invalid signature"})

    up = sbx.upload_url("up.txt", use_signature_expiration=10_000)
    r = _host_routed(up, host, method="POST", files={"file": ("up.txt", b"file content")})
    assert (r.status_code, r.json()) == (200, [{"name": "up.txt", "path": "/home/user/up.txt", "type": "file"}])
    assert sbx.files.read("up.txt") == "file content"
    r = _host_routed(sbx.upload_url("up.txt", user="root"), host, method="POST", files={"file": ("up.txt", b"root")})
    assert (r.status_code, r.json()[0]["path"]) == (200, "/root/up.txt")
    r = _host_routed(sbx.upload_url("up.txt", use_signature_expiration=-100), host, method="POST", files={"file": ("x", b"x")})
    assert (r.status_code, r.json()["message"]) == (401, "signature is already expired")


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
