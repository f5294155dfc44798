"""The status socket: ``hostprof agent status`` connects to a Unix socket and reads JSON.

The agent writes its state as one JSON document per connection and closes. The socket is
mode 0600 (the state names processes and command lines), and a stale socket file left by a
killed agent is replaced at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional

from hostprof._errors import StorageError
from hostprof._errors import UsageError

log = logging.getLogger("hostprof.agent")


class StatusServer:
    """Serves ``state()`` as JSON on a Unix socket from a daemon thread."""

    def __init__(self, path: str, state: Callable[[], Dict[str, Any]]) -> None:
        self.path = path
        self.state = state
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.exists(path):
            if _alive(path):
                raise StorageError(
                    f"another agent is running (status socket {path} answers)",
                    "stop it first, or set agent.status_socket to another path",
                )
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Starts serving."""
        self._thread = threading.Thread(target=self._serve, name="hostprof-status", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                try:
                    conn.settimeout(2.0)
                    conn.sendall(json.dumps(self.state(), default=str).encode() + b"\n")
                except Exception as exc:  # a status reader must never hurt the agent
                    log.debug("status request failed: %s", exc)

    def stop(self) -> None:
        """Stops serving and removes the socket file."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def read_status(path: str, timeout: float = 5.0) -> Dict[str, Any]:
    """Reads a running agent's state.

    Raises:
        HostprofError: no agent is listening on ``path``.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except FileNotFoundError:
        raise UsageError(
            f"no agent status socket at {path}",
            "is the agent running? (systemctl status hostprof-agent, or pass --socket / --config)",
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read agent status from {path}: {exc.strerror or exc}",
            "is the agent running? status needs the same user as the agent",
        ) from None
    finally:
        s.close()
    return json.loads(b"".join(chunks) or b"{}")
