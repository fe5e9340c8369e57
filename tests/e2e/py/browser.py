"""Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol.

A small CDP client on websocket-client: start the browser on a private profile, open a
page, evaluate JavaScript in it, wait for a condition, take screenshots. Loopback only:
the browser is started with networking to anything but 127.0.0.1 refused.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium: tests/e2e/run.sh installs Debian's chromium package")


class Browser:
    def __init__(self, width=1280, height=860):
        self.profile = tempfile.mkdtemp(prefix="stasis-chromium-")
        self.proc = subprocess.Popen(
            [
                chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-default-apps", "--disable-component-update", "--no-default-browser-check",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--window-size={width},{height}", "--remote-debugging-port=0",
                "--remote-allow-origins=*", f"--user-data-dir={self.profile}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = self._devtools_port()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _devtools_port(self):
        path = os.path.join(self.profile, "DevToolsActivePort")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            if os.path.exists(path):
                lines = open(path).read().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Page.javascriptDialogOpening":
                # An alert() blocks the page, and with it every later evaluate: dismiss it
                # and fail with what it said (the page's alerts report failed actions).
                text = msg["params"].get("message", "")
                kind = msg["params"].get("type", "dialog")
                self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}}))
                raise AssertionError(f"the page opened a {kind}: {text!r}")
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression):
        """The value of `expression` in the page (awaited if it is a promise)."""
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", what=f"{url} to load")

    def wait(self, expression, timeout=30.0, what=None):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = self.js(expression)
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or expression} (last: {last!r})")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
