"""A small headless-Chromium driver over the Chrome DevTools Protocol, for the UI tests.

It launches the real Debian ``chromium`` with a fresh profile directory, finds the DevTools
port through the ``DevToolsActivePort`` file (``--remote-debugging-port=0`` picks a free port),
and talks CDP over one page's websocket with ``websocket-client``. Only what the tests need:
navigate, evaluate, wait for a condition, mouse and keyboard input, screenshots, and records of
console errors, uncaught exceptions and network requests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional

import websocket

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-device-scale-factor=1",
    "--remote-debugging-port=0",
]


class BrowserError(RuntimeError):
    """Chromium did not start, or a CDP call failed."""


class Page:
    """One browser tab driven over CDP."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._next_id = 0
        self.events: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        """Uncaught exceptions and console.error messages, as text."""
        self.requests: List[str] = []
        """URLs of every request the page made."""
        self._replies: Dict[int, Dict[str, Any]] = {}
        self._dialog_answer: Optional[str] = None
        self.dialogs: List[str] = []
        """Messages of the dialogs answered by :meth:`answer_dialogs`."""
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()

    # ------------------------------------------------------------------ protocol
    def _record(self, msg: Dict[str, Any]) -> None:
        method = msg.get("method", "")
        params = msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = params.get("args", [])
            self.errors.append(
                "console.error: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            )
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Page.javascriptDialogOpening" and self._dialog_answer is not None:
            self.dialogs.append(params.get("message", ""))
            self.send("Page.handleJavaScriptDialog", accept=True, promptText=self._dialog_answer)
        self.events.append(msg)

    def send(self, method: str, **params: Any) -> Dict[str, Any]:
        """Sends one CDP command and returns its result."""
        self._next_id += 1
        my_id = self._next_id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            # A reply may have been read by a nested send() (see answer_dialogs).
            msg = self._replies.pop(my_id, None)
            if msg is None:
                msg = json.loads(self._ws.recv())
                if "id" in msg and msg["id"] != my_id:
                    self._replies[msg["id"]] = msg
                    continue
                if "id" not in msg:
                    self._record(msg)
                    continue
            if "error" in msg:
                raise BrowserError(f"{method}: {msg['error'].get('message')}")
            return msg.get("result", {})

    def answer_dialogs(self, prompt_text: Optional[str]) -> None:
        """Accepts every alert/confirm/prompt from now on, typing ``prompt_text`` into prompts
        (None: leave dialogs alone)."""
        self._dialog_answer = prompt_text

    def _pump(self, timeout: float) -> None:
        """Reads pending events for up to ``timeout`` seconds."""
        self._ws.settimeout(timeout)
        try:
            msg = json.loads(self._ws.recv())
            if "id" in msg:
                self._replies[msg["id"]] = msg
            else:
                self._record(msg)
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self._ws.settimeout(30)

    # ------------------------------------------------------------------ actions
    def set_viewport(self, width: int, height: int) -> None:
        """Sets the layout viewport size in CSS pixels (device scale 1)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Opens ``url`` and waits for its load event."""
        self.events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigate {url}: {result['errorText']}")
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading in {timeout} s")
            self._pump(0.2)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """Evaluates a JS expression in the page; returns its value (JSON-serialisable)."""
        result = self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluate failed: {text}\n  in: {expression[:200]}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, message: str = "") -> Any:
        """Polls ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {message or expression}; "
                    f"page errors: {self.errors}"
                )
            self._pump(0.1)

    def mouse(self, kind: str, x: float, y: float, button: str = "none", clicks: int = 0) -> None:
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, clickCount=clicks)

    def click(self, x: float, y: float) -> None:
        """A left click at page (viewport) coordinates."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, "left", 1)
        self.mouse("mouseReleased", x, y, "left", 1)

    def type_text(self, text: str) -> None:
        """Types into the focused element (fires input events)."""
        self.send("Input.insertText", text=text)

    def key(self, key: str, code: str, key_code: int) -> None:
        """Presses and releases one key, e.g. ``key("Escape", "Escape", 27)``."""
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=code,
                windowsVirtualKeyCode=key_code,
            )

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Saves a PNG of the page (the whole scrollable page by default)."""
        params: Dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 4000),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    """A headless Chromium process with a throwaway profile directory."""

    def __init__(self, executable: str = "chromium", width: int = 1400, height: int = 900) -> None:
        path = shutil.which(executable) or executable
        self._profile = tempfile.mkdtemp(prefix="hostprof-chromium-")
        # Chromium logs a lot on stderr: a file, not a pipe nobody drains, so it never blocks.
        self._log = open(os.path.join(self._profile, "chromium.log"), "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                path,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            self.port = self._wait_port(30.0)
        except BaseException:
            self.close()
            raise
        self.width, self.height = width, height
        self._pages: List[Page] = []

    def _wait_port(self, timeout: float) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (Path(self._profile) / "chromium.log").read_text(errors="replace")
                raise BrowserError(f"chromium exited with {self._proc.returncode}: {err[-2000:]}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                lines = marker.read_text().splitlines()
                if lines and lines[0].strip():
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout} s")

    def new_page(self) -> Page:
        """Opens a fresh tab and returns its driver."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            target = json.load(resp)
        page = Page(target["webSocketDebuggerUrl"])
        page.set_viewport(self.width, self.height)
        self._pages.append(page)
        return page

    def close(self) -> None:
        """Stops Chromium (its whole process group) and removes the profile directory."""
        for page in getattr(self, "_pages", []):
            page.close()
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)


@contextlib.contextmanager
def browser(
    executable: str = "chromium", width: int = 1400, height: int = 900
) -> Iterator[Browser]:
    """Context manager for a :class:`Browser`."""
    b = Browser(executable, width, height)
    try:
        yield b
    finally:
        b.close()


def wait_http(url: str, timeout: float = 20.0, proc: Optional[subprocess.Popen] = None) -> None:
    """Waits until ``url`` answers HTTP (any status), or raises."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrowserError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise BrowserError(f"{url} did not answer within {timeout} s ({last})")
