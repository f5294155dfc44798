"""``hostprof snapshot --push``: the profile part reaches a real store (hostprof store serve)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.utils import target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="reading other processes needs root")

HOSTPROF = [sys.executable, "-m", "hostprof"]

HOT = """
import time
def crunch_for_push():
    total = 0
    while True:
        for i in range(10000):
            total += i * i
print("READY", flush=True)
crunch_for_push()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """A real embedded store on a free loopback port; yields its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            *HOSTPROF,
            "store",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data",
            str(tmp_path / "store"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/services", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"store did not start: {err[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_push_sends_the_profiles_to_a_store(store: str, tmp_path: Path) -> None:
    # GIVEN a running store and a busy process
    out = tmp_path / "snap.tar.gz"
    with target(HOT) as t:
        # WHEN a snapshot is pushed
        res = subprocess.run(
            [
                *HOSTPROF,
                "snapshot",
                "--pid",
                str(t.pid),
                "--profile-seconds",
                "1",
                "-o",
                str(out),
                "--push",
                store,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert res.returncode == 0, res.stderr
    assert "pushed" in res.stderr
    with tarfile.open(out) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/snapshot.json"))
        data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    # THEN the store renders the Python profile of that process, labelled with the snapshot
    selector = f'{{collector="python",pid="{t.pid}",snapshot="{data["id"]}"}}'
    query = urllib.parse.urlencode(
        {"query": f"process_cpu:samples:count:cpu:nanoseconds{selector}", "from": "now-1h"}
    )
    with urllib.request.urlopen(f"{store}/pyroscope/render?{query}", timeout=10) as resp:
        flame = json.load(resp)["flamebearer"]
    assert "crunch_for_push" in flame["names"]
    assert flame["numTicks"] > 0


def test_push_to_an_unreachable_store_keeps_the_archive(tmp_path: Path) -> None:
    out = tmp_path / "snap.tar.gz"
    with target(HOT) as t:
        res = subprocess.run(
            [
                *HOSTPROF,
                "snapshot",
                "--pid",
                str(t.pid),
                "--profile-seconds",
                "1",
                "-o",
                str(out),
                "--push",
                f"http://127.0.0.1:{_free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # The archive is written first; the failed push is one line with a hint, exit 7 (I/O).
    assert out.exists()
    assert res.returncode == 7, res.stderr
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("hostprof: error:")]
    assert len(err) == 1 and "push" in err[0]
    assert "Traceback" not in res.stderr
