"""Issue 12: pause and resume never fail on a real user's sequence of operations.

A second pause after any `files.*` call as the SDK's default user (`user`) used to fail
(the agent became non-dumpable after its fsuid switch, and a restored agent's /proc files
then belong to the host's root). Here every cycle mixes file operations as `user` and
`root`, a command, a pause and a connect, and a background process must keep its pid and
the secret it holds only in memory.
"""
import secrets

from e2b import Sandbox, SandboxState

from conftest import run_tag, wait_for

# A background process that holds a secret in memory only and answers it (with its pid)
# on a loopback TCP port inside the sandbox.
KEEPER = r"""
import os, socket, sys
secret = sys.stdin.readline().strip()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7077)); s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(f"{os.getpid()} {secret}\n".encode()); c.close()
"""
ASK = "python3 -c 'import socket; s=socket.create_connection((\"127.0.0.1\", 7077)); print(s.makefile().readline().strip())'"


def start_keeper(sbx):
    """Starts the keeper as `user`; returns (pid, secret)."""
    secret = secrets.token_hex(16)
    sbx.files.write("/home/user/keeper.py", KEEPER)
    sbx.commands.run(f"echo {secret} | python3 /home/user/keeper.py", background=True, timeout=0).disconnect()
    answer = wait_for("the keeper to listen", lambda: _ask(sbx), timeout=15)
    pid, got = answer.split()
    assert got == secret
    # The secret is in its memory only: the file it was piped from does not exist.
    return int(pid), secret


def _ask(sbx):
    r = sbx.commands.run(ASK + " 2>/dev/null || true")
    return r.stdout.strip()


def check_keeper(sbx, pid, secret):
    assert _ask(sbx) == f"{pid} {secret}", "the background process kept its pid and its memory"


def files_between(sbx, i, files):
    """One cycle's file operations, as `user` (the SDK default) and as `root`."""
    path = f"/home/user/cycle-{i}.txt"
    sbx.files.write(path, f"cycle {i} as user")
    files[path] = f"cycle {i} as user"
    kind = i % 5
    if kind == 0:
        assert sbx.files.read(path) == files[path]
    elif kind == 1:
        names = {e.name for e in sbx.files.list("/home/user")}
        assert f"cycle-{i}.txt" in names
    elif kind == 2:
        assert sbx.files.exists(path)
        sbx.files.make_dir(f"/home/user/dir-{i}")
    elif kind == 3:
        root_path = f"/root/cycle-{i}.txt"
        sbx.files.write(root_path, f"cycle {i} as root", user="root")
        files[root_path] = f"cycle {i} as root"
        assert sbx.files.read(root_path, user="root") == files[root_path]
    else:
        moved = f"/home/user/moved-{i}.txt"
        sbx.files.rename(path, moved)
        files[moved] = files.pop(path)
        sbx.files.remove(moved)
        files.pop(moved)
    # And a command, as the default user.
    assert sbx.commands.run(f"echo cycle-{i}").stdout.strip() == f"cycle-{i}"


def test_twenty_cycles_with_files_and_commands_between(sandboxes):
    sbx = sandboxes.create(metadata={"tag": run_tag("seq")}, timeout=600)
    pid, secret = start_keeper(sbx)
    files = {}
    for i in range(20):
        files_between(sbx, i, files)
        assert sbx.pause() is True, f"pause {i + 1}"
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=600)
        check_keeper(sbx, pid, secret)
    for path, content in files.items():
        user = "root" if path.startswith("/root/") else "user"
        assert sbx.files.read(path, user=user) == content, path


def test_auto_pause_of_a_resumed_sandbox_five_cycles(sandboxes):
    """A timeout with on_timeout=pause pauses a sandbox that was already resumed; connect
    resumes it again, 5 times."""
    sbx = sandboxes.create(metadata={"tag": run_tag("autopause")}, timeout=600, lifecycle={"on_timeout": "pause"})
    pid, secret = start_keeper(sbx)
    files = {}
    # Resumed once before the first auto-pause.
    files_between(sbx, 100, files)
    assert sbx.pause() is True
    sbx = Sandbox.connect(sbx.sandbox_id, timeout=600)
    for i in range(5):
        files_between(sbx, i, files)
        sbx.set_timeout(2)
        wait_for(f"auto-pause {i + 1}", lambda: Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED, timeout=60)
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=600)
        check_keeper(sbx, pid, secret)
    for path, content in files.items():
        user = "root" if path.startswith("/root/") else "user"
        assert sbx.files.read(path, user=user) == content, path
