"""The git helpers of PyPI e2b 2.63 (`sandbox.git`), as the default user, on the base
template (git is in it since base templates have versions): a repository made in the
sandbox is pushed to a bare "remote" in another directory and cloned back, across a pause;
git's refusals reach the caller as the command's failure."""
import pytest
from e2b import CommandExitException


def test_git_push_to_a_local_bare_remote_and_clone_it_back_across_a_pause(sandboxes):
    sbx = sandboxes.create()
    origin, work, copy = "/home/user/origin.git", "/home/user/work", "/home/user/copy"
    assert sbx.commands.run("git --version").stdout.startswith("git version 2.")

    sbx.git.init(origin, bare=True, initial_branch="main")
    sbx.git.init(work, initial_branch="main")
    sbx.git.configure_user("Stasis Py", "py@stasis.invalid")
    sbx.files.write(f"{work}/data.txt", "v1\n")
    status = sbx.git.status(work)
    assert status.current_branch == "main"
    assert [f.name for f in status.file_status] == ["data.txt"]
    sbx.git.add(work)
    sbx.git.commit(work, "one")
    sbx.git.remote_add(work, "origin", origin)
    sbx.git.push(work, remote="origin", branch="main")

    sbx.pause()
    sbx.connect()

    sbx.git.clone(origin, path=copy, depth=1)
    assert sbx.files.read(f"{copy}/data.txt") == "v1\n"
    sbx.files.write(f"{copy}/data.txt", "v2\n")
    sbx.git.add(copy, files=["data.txt"])
    sbx.git.commit(copy, "two", author_name="Copy", author_email="copy@stasis.invalid")
    sbx.git.push(copy)
    sbx.git.pull(work, remote="origin", branch="main")
    assert sbx.files.read(f"{work}/data.txt") == "v2\n"
    branches = sbx.git.branches(work)
    assert branches.current_branch == "main" and branches.branches == ["main"]
    assert sbx.commands.run(f"git -C {work} log -1 --format=%an").stdout.strip() == "Copy"

    with pytest.raises(CommandExitException) as e:
        sbx.git.clone("/home/user/nowhere.git", path="/home/user/x")
    assert "does not exist" in e.value.stderr or "not a git repository" in e.value.stderr
