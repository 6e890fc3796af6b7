"""Drive the demo in a real browser: a Streamlit server and headless Chromium over the DevTools protocol.

Streamlit's own `--screenshot` often captures the page before it renders, so this waits for the page's own text
instead: it starts `streamlit run apps/demo.py` on a free 127.0.0.1 port, starts Chromium with remote debugging,
talks to the page over its DevTools websocket (the `websockets` package, which Streamlit installs) and polls the
DOM with Runtime.evaluate. Used by tests/apps/test_browser.py and apps/screenshots.py.

    with StreamlitServer(models_dir) as server, Chromium() as browser:
        browser.open(server.url)
        browser.wait_for_text("Generate")
        browser.screenshot("page.png")

Both processes bind to 127.0.0.1 only and are stopped (their whole process group) when the `with` ends,
whether or not it ended with an error.
"""

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

APPS = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = "/usr/bin/chromium"


def free_port():
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process, timeout=10):
    """Stop a process we started in its own session, and everything it started (its process group)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class StreamlitServer:
    """`streamlit run apps/demo.py` on 127.0.0.1:<free port>, reading models from `models_dir`."""

    def __init__(self, models_dir=None, app=os.path.join(APPS, "demo.py"), log_path=None, start_timeout=120):
        self.models_dir, self.app, self.start_timeout = models_dir, app, start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"keras-tx-demo-{self.port}.log")
        self.process = None

    def __enter__(self):
        env = dict(os.environ)
        if self.models_dir:
            env["KERAS_TX_MODELS"] = os.path.abspath(self.models_dir)
        command = [
            sys.executable, "-m", "streamlit", "run", self.app,
            "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",
        ]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            deadline = time.monotonic() + self.start_timeout
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {self.process.returncode}: {self.log()[-2000:]}")
                with contextlib.suppress(OSError):
                    if _get(f"{self.url}/_stcore/health").strip() == "ok":
                        return self
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer on {self.url} in {self.start_timeout} s")
                time.sleep(0.3)
        except BaseException:
            self.__exit__()
            raise

    def log(self):
        with open(self.log_path) as file:
            return file.read()

    def __exit__(self, *exc):
        _stop(self.process)
        self._log.close()


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol.

    Args:
        width, height: of the viewport (what a screenshot shows).
        executable: the browser.
    """

    def __init__(self, width=1400, height=1000, executable=CHROMIUM, start_timeout=60):
        self.width, self.height, self.executable, self.start_timeout = width, height, executable, start_timeout
        self.process, self.profile, self.socket = None, None, None
        self._ids = itertools.count(1)

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="keras-tx-chromium-")
        command = [
            self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            port = self._debugging_port()
            pages = [t for t in json.loads(_get(f"http://127.0.0.1:{port}/json/list")) if t["type"] == "page"]
            self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
            return self
        except BaseException:
            self.__exit__()
            raise

    def _debugging_port(self):
        """Chromium picks a free port (--remote-debugging-port=0) and writes it to DevToolsActivePort."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.executable} exited with {self.process.returncode}")
            with contextlib.suppress(OSError, ValueError):
                with open(path) as file:
                    port = int(file.readline())
                _get(f"http://127.0.0.1:{port}/json/version")
                return port
            time.sleep(0.2)
        raise TimeoutError(f"{self.executable} did not open its debugging port in {self.start_timeout} s")

    def __exit__(self, *exc):
        if self.socket is not None:
            with contextlib.suppress(Exception):
                self.socket.close()
        _stop(self.process)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol ---------------------------------------------------------------------------------------

    def call(self, method, timeout=60, **params):
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_until(self, expression, timeout=120, what=None):
        """Poll a JavaScript expression until it is truthy; return its value (TimeoutError with the page text)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                page = self.text()[-1500:]
                raise TimeoutError(f"waited {timeout} s for {what or expression}; the page says: {page!r}")
            time.sleep(0.25)

    # --- the page -------------------------------------------------------------------------------------------

    def open(self, url):
        self.call("Page.navigate", url=url)

    def text(self):
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, text, timeout=120):
        """Wait until `text` is on the page and Streamlit has finished running the script."""
        return self.wait_until(
            f"document.body && document.body.innerText.includes({json.dumps(text)})"
            " && !document.querySelector('[data-testid=\"stStatusWidget\"] button')"
            " && !document.querySelector('[data-testid=\"stSkeleton\"]')",
            timeout, what=repr(text),
        )

    def idle(self, timeout=120):
        """Wait until no script run is in progress (Streamlit shows "Running..." in its status widget)."""
        self.wait_until("!document.body.innerText.includes('Running...')", timeout, what="the script to finish")
        time.sleep(0.5)

    def click(self, text, selector="button, label"):
        """Click the first element matching `selector` whose text is `text`."""
        found = self.evaluate(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.innerText.trim() === {json.dumps(text)}); if (el) el.click(); return !!el; }})()"
        )
        if not found:
            raise LookupError(f"no {selector} with text {text!r} on the page")

    def type(self, selector, text):
        """Replace the text of an input or textarea as a user would (focus, select all, type, leave it)."""
        self.wait_until(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        self.evaluate(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); "
                      "el.focus(); el.select(); return true; })()")
        self.call("Input.insertText", text=text)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).blur()")  # Streamlit commits on blur

    def upload(self, paths, selector="input[type=file]"):
        """Choose files in a file input, as the file dialog would."""
        self.wait_until(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        root = self.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[os.path.abspath(p) for p in paths])

    def screenshot(self, path):
        """Save the viewport as a PNG."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))
        return path
