#!/usr/bin/env python3
"""Opens the dashboard in headless Chromium (Debian's package) and checks it as a user would:

1. a finished run's page shows its stages;
2. a coordination session is listed with its missing member, and its page shows members and notifications;
3. a live fan-out run's progress moves between two screenshots;
4. pressing Cancel in the page (with a pasted token) cancels the run.

It starts `sluice ui` on a throwaway state folder and drives Chromium over the DevTools protocol
(pip package websocket-client). Screenshots go to the folder given (default: a temporary one).

Usage: scripts/dashboard-check.py [SCREENSHOT_DIR]     (needs a built sluice: swift build)
Environment: SLUICE (the binary, default .build/debug/sluice), PORT (default 18081).
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # pip install websocket-client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE", os.path.join(ROOT, ".build/debug/sluice"))
PORT = int(os.environ.get("PORT", "18081"))
BASE = f"http://127.0.0.1:{PORT}"


def wait(condition, what, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"FAILED: {what} (waited {seconds} s)")


def get(path):
    with urllib.request.urlopen(BASE + path) as r:
        return json.load(r)


class Browser:
    def __init__(self, profile):
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1100,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        wait(lambda: os.path.exists(port_file) and open(port_file).read().strip(), "Chromium started")
        port = open(port_file).read().split()[0]
        pages = wait(lambda: self._pages(port), "a Chromium page")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next = 0

    @staticmethod
    def _pages(port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
                return [p for p in json.load(r) if p.get("type") == "page"]
        except OSError:
            return None

    def call(self, method, **params):
        self.next += 1
        self.ws.send(json.dumps({"id": self.next, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next:
                if "error" in message:
                    raise SystemExit(f"FAILED: {method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url):
        self.call("Page.navigate", url=url)
        wait(lambda: self.evaluate("document.readyState") == "complete", f"{url} loaded")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot {path}")

    def close(self):
        self.ws.close()
        self.process.terminate()
        self.process.wait()


def main():
    shots = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sluice-shots-")
    os.makedirs(shots, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sluice-dashboard-")
    state = ["--state-dir", os.path.join(work, ".sluice")]
    with open(os.path.join(work, "fan.yml"), "w") as f:
        f.write("""name: fanout
params:
  n: "4"
  pause: "0"
stages:
  discover:
    run: [sh, -c, "seq 1 $0 | sed 's/.*/{\\\"i\\\": &}/'", "{{params.n}}"]
  work:
    for_each: discover
    concurrency: 4
    run: [sh, -c, "echo item $SLUICE_ITEM; sleep $0; echo '::count:: rows 2'", "{{params.pause}}"]
""")
    with open(os.path.join(work, "si.yml"), "w") as f:
        f.write("""name: si
session: { name: daily, title: Daily report, members: [si, viajeros], timeout: 1h,
           on_complete: [{ file: { dir: reports } }] }
notify: { on_finish: [{ file: { dir: reports } }] }
stages:
  load: { run: [sh, -c, "echo '::count:: policies 3'"] }
""")
    run = lambda *args: subprocess.run([SLUICE, *args, *state], cwd=work, capture_output=True, text=True)
    run("run", "si.yml", "--no-tty")
    run("run", "fan.yml", "--no-tty")
    token = run("token", "create", "dashboard-check").stdout.strip()
    ui = subprocess.Popen([SLUICE, "ui", "--http", f"127.0.0.1:{PORT}", *state], cwd=work,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = None
    browser = None
    try:
        wait(lambda: _up(), "sluice ui answers")
        finished = get("/api/runs")["runs"][0]["run_id"]
        browser = Browser(os.path.join(work, "profile"))

        # 1. A finished run.
        browser.open(f"{BASE}/#/runs/{finished}")
        wait(lambda: browser.evaluate("document.body.innerText.includes('discover') && document.body.innerText.includes('success')"),
             "the finished run's stages are shown")
        browser.screenshot(os.path.join(shots, "finished-run.png"))

        # 2. A coordination session with a member missing, and its page.
        browser.open(f"{BASE}/#/sessions")
        wait(lambda: browser.evaluate("document.body.innerText.includes('Daily report') && document.body.innerText.includes('missing')"),
             "the sessions page lists the open session and its missing member")
        browser.screenshot(os.path.join(shots, "sessions.png"))
        session_id = get("/api/sessions")["items"][0]["session_id"]
        browser.evaluate(f"document.querySelector('a[href=\"#/sessions/{session_id}\"]').click(); true")
        wait(lambda: browser.evaluate("document.body.innerText.includes('Missing: viajeros') && document.body.innerText.includes('Notifications')"),
             "the session's page shows what is missing")
        browser.screenshot(os.path.join(shots, "session.png"))
        print(f"session {session_id} shown with viajeros missing")

        # 3. A live fan-out run: its progress moves between two screenshots.
        live = subprocess.Popen([SLUICE, "run", "fan.yml", "-p", "n=400", "-p", "pause=0.2", "--no-tty", *state], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        live_id = wait(lambda: next((r["run_id"] for r in get("/api/runs?status=running")["runs"]), None), "the live run started")
        browser.open(f"{BASE}/#/runs/{live_id}")
        progress = "(() => { const m = document.body.innerText.match(/(\\d+)\\/400/); return m ? Number(m[1]) : null })()"
        first = wait(lambda: browser.evaluate(progress), "progress shown")
        browser.screenshot(os.path.join(shots, "live-1.png"))
        second = wait(lambda: (lambda v: v if v and v > first else None)(browser.evaluate(progress)), "progress moved", 60)
        browser.screenshot(os.path.join(shots, "live-2.png"))
        print(f"progress moved in the page: {first}/400 then {second}/400")

        # 4. Cancel pressed in the page, with the token pasted in the box.
        browser.evaluate(f"document.getElementById('token').value = {json.dumps(token)}; document.getElementById('save').click(); true")
        browser.evaluate("window.confirm = () => true; true")
        wait(lambda: browser.evaluate("!!document.getElementById('cancel') && !document.getElementById('cancel').disabled"),
             "the Cancel button is enabled")
        browser.evaluate("document.getElementById('cancel').click(); true")
        wait(lambda: get(f"/api/runs/{live_id}")["status"] == "cancelled", "the run is cancelled", 60)
        wait(lambda: browser.evaluate("document.body.innerText.includes('cancelled')"), "the page shows it cancelled")
        browser.screenshot(os.path.join(shots, "cancelled.png"))
        print(f"cancel pressed in the page cancelled run {live_id}")
        print("OK")
    finally:
        if browser:
            browser.close()
        if live:
            live.wait(timeout=60)
        ui.terminate()
        ui.wait()


def _up():
    try:
        return get("/api/health")["status"] == "ok"
    except OSError:
        return False


if __name__ == "__main__":
    main()
