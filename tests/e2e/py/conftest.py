"""Shared fixtures of the Python end-to-end tests (PyPI e2b 2.63, sync API).

The server and the SDK environment (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY) come
from tests/e2e/run.sh; the tests only talk to 127.0.0.1.
"""
import os
import re
import secrets
import time

import pytest
from e2b import Sandbox

for _v in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY"):
    if not os.environ.get(_v):
        raise RuntimeError(f"{_v} is not set: run these tests through tests/e2e/run.sh")
for _v in ("E2B_API_URL", "E2B_SANDBOX_URL"):
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+", os.environ[_v]):
        raise RuntimeError(f"{_v}={os.environ[_v]}: the e2e tests only talk to 127.0.0.1")
if os.environ.get("E2B_DEBUG"):
    raise RuntimeError("E2B_DEBUG must not be set (it skips the control API)")


def run_tag(prefix="py"):
    """A metadata value unique to one test, so list filters see only its sandboxes."""
    return f"{prefix}-{secrets.token_hex(6)}"


def seen(sandbox_id):
    """Remembers a sandbox id for run.sh's leak check (cgroups named after it)."""
    path = os.environ.get("E2E_SEEN_IDS")
    if path:
        with open(path, "a") as f:
            f.write(sandbox_id + "\n")


def wait_for(what, f, timeout=15.0, every=0.1):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = f()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def drain(paginator):
    """All items of a paginator; returns (items, pages)."""
    items, pages = [], 0
    while paginator.has_next:
        items.extend(paginator.next_items())
        pages += 1
        assert pages < 1000, "paginator does not end"
    return items, pages


class Sandboxes:
    """Creates sandboxes (of `cls`: the e2b SDK's, or a subclass such as the code
    interpreter's) and kills every one of them at teardown."""

    def __init__(self, cls=Sandbox):
        self.cls = cls
        self.made = []

    def keep(self, sbx):
        seen(sbx.sandbox_id)
        self.made.append(sbx.sandbox_id)
        return sbx

    def create(self, **kw):
        kw.setdefault("timeout", 300)
        return self.keep(self.cls.create(**kw))

    def cleanup(self):
        for sid in self.made:
            try:
                self.cls.kill(sid)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: kill {sid}: {e}")


@pytest.fixture
def sandboxes():
    s = Sandboxes()
    try:
        yield s
    finally:
        s.cleanup()
