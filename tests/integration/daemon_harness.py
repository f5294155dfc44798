"""Real processes for the agent's integration tests: the embedded store, the agent, targets.

Nothing is mocked: the store is ``hostprof store serve`` on a free port with its SQLite data
in a temp folder, the agent is ``hostprof agent run`` with a TOML config, and targets are
Python processes running :mod:`hostprof.demo_workload`, tagged with a unique token in their
command line so the agent's rule matches only this test's processes.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.control import read_status

HOSTPROF = [sys.executable, "-m", "hostprof"]
TARGET_SOURCE = (
    "import sys, hostprof.demo_workload as w; sys.argv = ['demo'] + sys.argv[2:]; w.main()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], object], timeout: float, what: str, step: float = 0.1) -> object:
    """Polls ``cond`` until truthy; raises AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Store:
    """``hostprof store serve`` on a fixed port and data folder; restartable."""

    def __init__(self, data: Path, port: Optional[int] = None) -> None:
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.log = open(self.data.parent / f"store-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *HOSTPROF,
                "store",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data",
                str(self.data),
            ],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._up, 30, "the store to listen")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"store exited with {self.proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def windows(self, profile_type_prefix: str = "process_cpu:") -> Dict[Tuple[str, int], int]:
        """{(pid label, window start s): stored profiles} read from the store's SQLite.

        The store keeps one ``raw_<day>`` row per (series, upload window); counting rows per
        (series, ts) counts arrivals.
        """
        db = sqlite3.connect(f"file:{self.data}/store.db?mode=ro", uri=True)
        try:
            series = {
                sid: dict(json.loads(labels))
                for sid, ptype, labels in db.execute("SELECT id, profile_type, labels FROM series")
                if ptype.startswith(profile_type_prefix)
            }
            out: Dict[Tuple[str, int], int] = {}
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name GLOB 'raw_[0-9]*'"
                )
            ]
            for t in tables:
                for sid, ts, n in db.execute(f"SELECT series, ts, COUNT(*) FROM {t} GROUP BY 1, 2"):
                    if sid in series:
                        key = (series[sid].get("pid", ""), int(ts))
                        out[key] = out.get(key, 0) + n
            return out
        finally:
            db.close()

    def seen_ids(self) -> set:
        db = sqlite3.connect(f"file:{self.data}/store.db?mode=ro", uri=True)
        try:
            return {r[0] for r in db.execute("SELECT id FROM seen")}
        finally:
            db.close()


class Agent:
    """``hostprof agent run`` with a generated config."""

    def __init__(
        self,
        workdir: Path,
        store_url: str,
        token: str,
        window_s: float = 2.0,
        extra_agent: str = "",
        rule: str = "",
        budget: str = "",
        env: Optional[Dict[str, str]] = None,
        discovery_s: float = 0.5,
        store_timeout_s: float = 2.0,
    ) -> None:
        self.workdir = workdir
        self.token = token
        self.socket = str(workdir / "agent.sock")
        self.spool = workdir / "spool"
        self.metrics_port = free_port()
        self.config = workdir / "agent.toml"
        self.config.write_text(
            f"""
[store]
url = "{store_url}"
timeout_s = {store_timeout_s}
[agent]
host_cpu = "off"
window_s = {window_s}
discovery_interval_s = {discovery_s}
drain_interval_s = {window_s}
retry_min_s = 0.5
retry_max_s = 2.0
spool_dir = "{self.spool}"
status_socket = "{self.socket}"
metrics_addr = "127.0.0.1:{self.metrics_port}"
{extra_agent}
[budget]
{budget}
[[rule]]
name = "test"
cmdline = "{token}"
service_name = "daemon-test"
{rule}
[[rule]]
action = "exclude"
python_only = false
"""
        )
        self.env = dict(os.environ, **(env or {}))
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "agent.log"

    def start(self) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*HOSTPROF, "agent", "run", "--config", str(self.config), "--log-level", "debug"],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        wait_for(self._answers, 30, "the agent's status socket")

    def _answers(self) -> bool:
        self._alive()
        try:
            # The pid check: a just-killed agent's socket file is still there.
            return read_status(self.socket, timeout=1.0).get("pid") == self.proc.pid
        except Exception:
            return False

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log_text()}")
        return True

    def status(self) -> dict:
        self._alive()
        return read_status(self.socket)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return r.read().decode()

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns the seconds until it exited."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self.log.close()
        return time.monotonic() - t0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def fd_count(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def spool_files(self) -> List[str]:
        return sorted(
            os.path.basename(p)
            for p in glob.glob(str(self.spool / "*")) + glob.glob(str(self.spool / ".tmp-*"))
        )


def new_token() -> str:
    return f"hp-test-{uuid.uuid4().hex[:10]}"


def spawn_target(token: str, seconds: float = 0.0) -> subprocess.Popen:
    """A demo-workload Python process whose command line carries ``token``."""
    args = [sys.executable, "-c", TARGET_SOURCE, token]
    if seconds:
        args += ["--seconds", str(seconds)]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(b"READY"), line
    return proc


def stop_target(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def metric(text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
