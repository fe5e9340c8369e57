"""Issue 3 (Python side): commands and files basics with PyPI e2b 2.63 (sync API)."""
import hashlib
import secrets

import pytest
from e2b import CommandExitException, FileType
from e2b.exceptions import NotFoundException

from conftest import run_tag, wait_for


@pytest.fixture(scope="module")
def sbx():
    from conftest import Sandboxes

    s = Sandboxes()
    try:
        yield s.create(metadata={"suite": "commands_files-py", "tag": run_tag("cf")})
    finally:
        s.cleanup()


def test_run_stdout_stderr_exit_code(sbx):
    r = sbx.commands.run('echo out; echo err >&2; printf %s "$(whoami)"')
    assert (r.exit_code, r.stdout, r.stderr) == (0, "out\nuser", "err\n")
    assert sbx.commands.run("pwd; echo $X", cwd="/tmp", envs={"X": "y z"}).stdout == "/tmp\ny z\n"
    assert sbx.commands.run("id -u", user="root").stdout == "0\n"


def test_failing_command_raises_command_exit_exception(sbx):
    with pytest.raises(CommandExitException) as exc:
        sbx.commands.run("echo partial; echo bad >&2; exit 3")
    assert exc.value.exit_code == 3
    assert exc.value.stdout == "partial\n"
    assert exc.value.stderr == "bad\n"


def test_background_command_stdin_and_kill(sbx):
    out = []
    log = f"/tmp/{run_tag('bg')}.log"
    h = sbx.commands.run(
        f'while IFS= read -r l; do echo "got:$l" | tee -a {log}; done',
        background=True, stdin=True, timeout=0,
    )
    try:
        assert any(p.pid == h.pid for p in sbx.commands.list()), "the background command is listed"
        sbx.commands.send_stdin(h.pid, "hello\n")
        # The sync SDK takes the output callbacks of a background command in wait():
        # first make sure the line was printed, then kill and collect.
        wait_for("the echoed line", lambda: sbx.files.exists(log) and "got:hello" in sbx.files.read(log))
    finally:
        assert sbx.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException) as exc:
        h.wait(on_stdout=out.append)
    assert exc.value.exit_code == -1, "killed by a signal"
    assert exc.value.stdout == "got:hello\n"
    assert "".join(out) == "got:hello\n"
    assert sbx.commands.kill(h.pid) is False


def test_files_write_read_list_rename_remove_exists(sbx):
    d = f"/home/user/{run_tag('files')}"
    sbx.files.write(f"{d}/a.txt", "text content\n")
    sbx.files.write(f"{d}/sub/b.txt", b"bee")
    assert sbx.files.read(f"{d}/a.txt") == "text content\n"
    entries = sorted((e.name, e.type) for e in sbx.files.list(d))
    assert entries == [("a.txt", FileType.FILE), ("sub", FileType.DIR)]
    assert sbx.files.exists(f"{d}/a.txt") is True
    assert sbx.files.exists(f"{d}/nope") is False
    moved = sbx.files.rename(f"{d}/a.txt", f"{d}/c.txt")
    assert moved.path == f"{d}/c.txt"
    assert sbx.files.read(f"{d}/c.txt") == "text content\n"
    sbx.files.remove(f"{d}/c.txt")
    assert sbx.files.exists(f"{d}/c.txt") is False
    with pytest.raises(NotFoundException):
        sbx.files.read(f"{d}/c.txt")
    sbx.files.remove(d)
    assert sbx.files.exists(d) is False


def test_binary_content_round_trips(sbx):
    data = bytes(range(256)) * 4 + secrets.token_bytes(4096)
    path = f"/tmp/{run_tag('bin')}.bin"
    sbx.files.write(path, data)
    back = sbx.files.read(path, format="bytes")
    assert bytes(back) == data
    inside = sbx.commands.run(f"sha256sum {path} | cut -d' ' -f1").stdout.strip()
    assert inside == hashlib.sha256(data).hexdigest()
    sbx.files.remove(path)
