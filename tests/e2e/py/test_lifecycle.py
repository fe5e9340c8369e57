"""Issue 4: the lifecycle flow with PyPI e2b 2.63 (sync API), and its error cases."""
import time

import pytest
from e2b import Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import NotFoundException, SandboxNotFoundException

from conftest import drain, run_tag


def listed(sandbox_id, tag):
    """The sandbox as `Sandbox.list` shows it (state, metadata), or None."""
    items, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag})))
    found = [i for i in items if i.sandbox_id == sandbox_id]
    assert len(found) <= 1, items
    return found[0] if found else None


def _is_sleep(p):
    return "sleep 3600" in " ".join([p.cmd, *p.args])


def test_create_pause_connect_keeps_processes_and_envs(sandboxes):
    tag = run_tag("life")
    sbx = sandboxes.create(metadata={"suite": "lifecycle-py", "tag": tag}, envs={"STASIS_E2E_VAR": "value with spaces & ="})
    assert sbx.is_running()
    info = listed(sbx.sandbox_id, tag)
    assert info.state == SandboxState.RUNNING
    assert info.metadata == {"suite": "lifecycle-py", "tag": tag}
    assert sbx.commands.run('printf %s "$STASIS_E2E_VAR"').stdout == "value with spaces & ="

    bg = sbx.commands.run("sleep 3600", background=True, timeout=0)
    assert any(p.pid == bg.pid and _is_sleep(p) for p in sbx.commands.list())
    bg.disconnect()

    assert sbx.pause() is True
    assert sbx.is_running() is False, "is_running() is False while paused"
    assert listed(sbx.sandbox_id, tag).state == SandboxState.PAUSED

    again = Sandbox.connect(sbx.sandbox_id, timeout=300)
    assert again.sandbox_id == sbx.sandbox_id
    assert again.is_running()
    procs = again.commands.list()
    assert any(p.pid == bg.pid and _is_sleep(p) for p in procs), f"sleep 3600 listed after connect: {procs}"
    assert again.commands.run('printf %s "$STASIS_E2E_VAR"').stdout == "value with spaces & =", "env vars survive resume"
    after = listed(sbx.sandbox_id, tag)
    assert after.state == SandboxState.RUNNING
    assert after.metadata == {"suite": "lifecycle-py", "tag": tag}, "metadata survives pause/resume"

    # Connect to a running sandbox: same sandbox, still running, nothing restarted.
    third = Sandbox.connect(sbx.sandbox_id)
    assert third.is_running()
    assert any(p.pid == bg.pid for p in third.commands.list())


def test_get_info_running_and_paused(sandboxes):
    """GET /sandboxes/{id} must parse in the SDK (pauseMode is "full" or "filesystem")."""
    tag = run_tag("info")
    sbx = sandboxes.create(metadata={"tag": tag})
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.state == SandboxState.RUNNING
    assert info.metadata == {"tag": tag}
    assert sbx.pause() is True
    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.state == SandboxState.PAUSED
    assert info.metadata == {"tag": tag}


def test_list_limit_1_running_and_paused_each_once_newest_first(sandboxes):
    tag = run_tag("page")
    older = sandboxes.create(metadata={"tag": tag})
    time.sleep(1.1)  # distinct startedAt even at one-second resolution
    newer = sandboxes.create(metadata={"tag": tag})
    assert older.pause() is True

    items, pages = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag}), limit=1))
    assert [i.sandbox_id for i in items] == [newer.sandbox_id, older.sandbox_id], items
    assert [i.state for i in items] == [SandboxState.RUNNING, SandboxState.PAUSED]
    assert 2 <= pages <= 3
    assert items[0].started_at >= items[1].started_at
    for i in items:
        assert i.metadata == {"tag": tag}

    paused, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag}, state=[SandboxState.PAUSED]), limit=1))
    assert [i.sandbox_id for i in paused] == [older.sandbox_id]
    running, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag}, state=[SandboxState.RUNNING]), limit=1))
    assert [i.sandbox_id for i in running] == [newer.sandbox_id]
    both, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag}, state=[SandboxState.RUNNING, SandboxState.PAUSED]), limit=1))
    assert [i.sandbox_id for i in both] == [newer.sandbox_id, older.sandbox_id]


def test_metadata_filters_with_spaces_ampersands_and_equals(sandboxes):
    tag = run_tag("meta")
    odd = {"key with space": "value with space", "a&b": "c=d", "x=y": "p&q", "both & =": "v & w = z"}
    target = sandboxes.create(metadata={"tag": tag, **odd})
    decoy = sandboxes.create(metadata={"tag": tag, "key with space": "value", "a&b": "c", "x": "y=p&q", "both & =": "v & w"})
    assert listed(target.sandbox_id, tag).metadata == {"tag": tag, **odd}, "metadata round-trips"

    def ids(metadata):
        items, _ = drain(Sandbox.list(query=SandboxQuery(metadata=metadata)))
        return sorted(i.sandbox_id for i in items)

    for k, v in odd.items():
        assert ids({"tag": tag, k: v}) == [target.sandbox_id], f"filter {k!r}={v!r}"
    assert ids({"tag": tag, **odd}) == [target.sandbox_id]
    assert ids({"tag": tag}) == sorted([target.sandbox_id, decoy.sandbox_id])
    assert ids({"tag": tag, "a&b": "c"}) == [decoy.sandbox_id]
    assert ids({"tag": tag, "x": "y=p&q"}) == [decoy.sandbox_id]
    assert ids({"tag": tag, "a&b": "nope"}) == []


def test_kill_paused_then_connect_raises_not_found(sandboxes):
    tag = run_tag("kill")
    sbx = sandboxes.create(metadata={"tag": tag})
    assert sbx.pause() is True
    assert Sandbox.kill(sbx.sandbox_id) is True
    with pytest.raises(NotFoundException) as exc:
        Sandbox.connect(sbx.sandbox_id)
    assert isinstance(exc.value, SandboxNotFoundException), type(exc.value)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sbx.sandbox_id)  # 404 before any body parsing
    assert Sandbox.kill(sbx.sandbox_id) is False
    items, _ = drain(Sandbox.list(query=SandboxQuery(metadata={"tag": tag})))
    assert items == []


def test_pause_of_paused_returns_false(sandboxes):
    tag = run_tag("pp")
    sbx = sandboxes.create(metadata={"tag": tag})
    assert sbx.pause() is True
    # The SDK documents: True if paused, False if it was already paused (HTTP 409).
    assert sbx.pause() is False
    assert Sandbox.pause(sbx.sandbox_id) is False
    assert listed(sbx.sandbox_id, tag).state == SandboxState.PAUSED
    with pytest.raises(SandboxNotFoundException):
        Sandbox.pause("doesnotexist0000000000")
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.commands.run("echo ok").stdout == "ok\n"
