"""Thread names are Python's own, in full, on every interpreter.

Python 3.14+ copies ``Thread.name`` into the OS thread name, but the kernel keeps 15 bytes of
it and it is set once, at start; 3.13t and older versions leave the OS name as the program's.
hostprof reads ``threading._active`` from the target's memory instead, so a dump shows names
longer than 15 characters, non-ASCII names and names changed after the thread started.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict
from typing import Iterator
from typing import Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import sampler_pythons
from utils import Target
from utils import spawn

from hostprof.native.pyprocess import attach

HOSTPROF = str(Path(sys.executable).parent / "hostprof")

TARGET = """
import _thread, threading, time
def park():
    time.sleep(1000)
raw = []
def raw_park():  # a thread threading does not know
    raw.append(threading.get_native_id())
    time.sleep(1000)
_thread.start_new_thread(raw_park, ())
names = ["worker-with-a-very-long-name-1", "ünïcode-thread-näme-éé", "before-rename"]
threads = [threading.Thread(target=park, name=n, daemon=True) for n in names]
for t in threads:
    t.start()
threads[2].name = "renamed-after-start-to-something-long"
time.sleep(0.1)
while not raw:
    time.sleep(0.01)
print("READY", *(t.native_id for t in threads), raw[0], flush=True)
time.sleep(1000)
"""
EXPECTED = [
    "worker-with-a-very-long-name-1",
    "ünïcode-thread-näme-éé",
    "renamed-after-start-to-something-long",
]

PYTHONS = sampler_pythons()


@pytest.fixture(scope="module", params=sorted(PYTHONS))
def target(request: pytest.FixtureRequest) -> Iterator[Tuple[str, Target, Dict[int, str]]]:
    t = spawn(TARGET, PYTHONS[request.param], timeout=60)
    tids = [int(x) for x in t.ready_line.split()[1:]]
    try:
        yield request.param, t, dict(zip(tids, [*EXPECTED, ""]))
    finally:
        t.kill()


def test_dump_reads_full_python_thread_names(target: Tuple[str, Target, Dict[int, str]]) -> None:
    version, t, expected = target
    # WHEN every thread's stack is read
    proc = attach(t.pid)
    try:
        names = {s.tid: s.name for s in proc.stacks()}
    finally:
        proc.close()
    # THEN each worker has its full Python name (longer than the kernel's 15 bytes, non-ASCII,
    # or set after the thread started) and the main thread is MainThread
    assert names[t.pid] == "MainThread"
    *named, (raw_tid, _) = expected.items()
    for tid, name in named:
        assert len(name) > 15
        assert names[tid] == name, (version, names)
    # AND it is not the OS name, which is cut or stale (3.14+) or the program's (older)
    for tid, name in named:
        comm = Path(f"/proc/{t.pid}/task/{tid}/comm").read_text().strip()
        assert comm != name
    # AND a thread threading does not know is named by the OS
    assert names[raw_tid] == Path(f"/proc/{t.pid}/task/{raw_tid}/comm").read_text().strip()
    assert names[raw_tid]


def test_dump_command_prints_full_names(target: Tuple[str, Target, Dict[int, str]]) -> None:
    version, t, expected = target
    out = subprocess.run(
        [HOSTPROF, "dump", "--pid", str(t.pid), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    threads = {th["tid"]: th["name"] for th in json.loads(out.stdout)["threads"]}
    for tid, name in list(expected.items())[:-1]:
        assert threads[tid] == name, (version, threads)
