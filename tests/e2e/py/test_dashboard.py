"""Issue 18: the web dashboard in a real browser (headless Chromium over CDP).

Log in with the API key, see a sandbox appear, pause it from the page and see its state
change, resume it, open its terminal (the envd PTY API through the proxy) and run a
command, read its events and metrics charts; snapshots and templates lists. With
E2E_SCREENSHOTS=DIR the main pages are saved there (scripts/screenshots.sh).
"""
import json
import os

import pytest
from e2b import Sandbox

from browser import Browser
from conftest import run_tag

BASE = os.environ["E2B_API_URL"]
KEY = os.environ["E2B_API_KEY"]
SHOTS = os.environ.get("E2E_SCREENSHOTS")


@pytest.fixture
def browser():
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def shot(b, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        b.screenshot(os.path.join(SHOTS, f"{name}.png"))


def row(sid, attr="data-state"):
    return f"document.querySelector('tr[data-id=\"{sid}\"]')?.getAttribute('{attr}')"


def click(b, selector):
    b.wait(f"!!document.querySelector({json.dumps(selector)}) && !document.querySelector({json.dumps(selector)}).disabled",
           what=f"{selector} to be clickable")
    b.js(f"document.querySelector({json.dumps(selector)}).click()")


def test_dashboard_login_pause_terminal_events(browser, sandboxes):
    tag = run_tag("dash")
    sbx = sandboxes.create(metadata={"suite": "dashboard", "run": tag})
    other = sandboxes.create(metadata={"suite": "dashboard-other"})
    sid = sbx.sandbox_id
    b = browser

    # Log in: a wrong key is refused, the right one shows the sandboxes.
    b.goto(f"{BASE}/dashboard/")
    b.wait("!document.getElementById('login').hidden", what="the login form")
    shot(b, "login")
    b.js("document.getElementById('api-key').value = 'e2b_wrong'; document.getElementById('login-button').click()")
    b.wait("document.getElementById('login-error').textContent.includes('not valid')", what="a refused key")
    b.js(f"document.getElementById('api-key').value = {json.dumps(KEY)}; document.getElementById('login-button').click()")

    # The sandbox appears, with its template, metadata and memory.
    assert b.wait(row(sid), what="the sandbox row") == "running"
    text = b.js(f"document.querySelector('tr[data-id=\"{sid}\"]').innerText")
    assert "base" in text and f"run={tag}" in text and "512 MiB" in text, text

    # Filter by metadata: only this run's sandbox stays.
    b.js(f"{{ const m = document.getElementById('filter-metadata'); m.value = 'run={tag}';"
         " m.dispatchEvent(new Event('input')) }")
    b.wait(f"!{row(other.sandbox_id)} && !!{row(sid)}", what="the metadata filter")
    shot(b, "sandboxes")

    # Pause from the page: the row's state changes, and the server agrees.
    click(b, f'button[data-action="pause"][data-id="{sid}"]')
    b.wait(f"{row(sid)} === 'paused'", timeout=60, what="the row to show paused")
    assert Sandbox.get_info(sid).state.value == "paused"
    b.js("{ const s = document.getElementById('filter-state'); s.value = 'paused'; s.dispatchEvent(new Event('change')) }")
    b.wait(f"{row(sid)} === 'paused'", what="the paused filter")
    b.js("{ const s = document.getElementById('filter-state'); s.value = ''; s.dispatchEvent(new Event('change')) }")
    click(b, f'button[data-action="resume"][data-id="{sid}"]')
    b.wait(f"{row(sid)} === 'running'", timeout=60, what="the row to show running again")
    click(b, f'button[data-action="snapshot"][data-id="{sid}"]')

    # Its page: terminal through the PTY API, events, metrics charts.
    b.js(f"location.hash = '#/sandbox/{sid}'")
    b.wait("!document.getElementById('sandbox').hidden && document.getElementById('sbx-id').textContent.length > 0")
    click(b, "#term-open")
    b.wait("!document.getElementById('term-in').disabled", what="the terminal to start")
    b.js("document.getElementById('term-in').value = 'echo dash-$((6*7)) && whoami';"
         " document.getElementById('term-form').requestSubmit()")
    # The two commands' lines arrive in separate PTY chunks: wait for whoami's too.
    out = b.wait("(t => /dash-42\\s+user/.test(t) && t)(document.getElementById('term-out').textContent)",
                 what="the command's output")
    assert "user" in out.split("dash-42", 1)[1], out
    events = b.wait("document.getElementById('event-rows').innerText.includes('paused (asked by the API)') &&"
                    " document.getElementById('event-rows').innerText", what="the pause in the events")
    assert "resumed (connect (API))" in events and "created from template base" in events, events
    b.wait("!!document.querySelector('#chart-mem polyline')", what="the memory chart")
    shot(b, "sandbox")

    # Snapshots and templates.
    b.js("location.hash = '#/snapshots'")
    b.wait(f"document.getElementById('snapshot-rows').innerText.includes({json.dumps(sid)})", what="the snapshot")
    shot(b, "snapshots")
    b.js("location.hash = '#/templates'")
    b.wait("document.getElementById('template-rows').innerText.includes('base')", what="the base template")
    shot(b, "templates")

    # Kill from its page.
    b.js(f"location.hash = '#/sandbox/{sid}'")
    b.js("window.confirm = () => true")
    click(b, f'#sbx-actions button[data-action="kill"][data-id="{sid}"]')
    b.wait("location.hash === '#/'", what="back to the list after the kill")
    b.wait(f"!{row(sid)}", what="the killed sandbox to leave the list")
