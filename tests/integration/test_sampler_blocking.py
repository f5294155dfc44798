"""`record --blocking`: opt-in ptrace pauses, with signals still delivered and a clean detach."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import target

from hostprof.collectors._batch import FLAG_IDLE
from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach
from tests.conftest import require_bpf

# A CPU-bound thread plus a 2 ms interval timer whose SIGALRM handler counts deliveries.
SOURCE = "\n".join(
    [
        "import signal, sys, threading, time",
        "count = [0]",
        "def on_alarm(signum, frame):",
        "    count[0] += 1",
        "signal.signal(signal.SIGALRM, on_alarm)",
        "signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)",
        "def busy():",
        "    while True:",
        "        pass",
        "threading.Thread(target=busy, daemon=True).start()",
        "print('READY', flush=True)",
        "while True:",
        "    time.sleep(0.1)",
        "    print('COUNT', count[0], flush=True)",
    ]
)


def _tracer(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("TracerPid:")[1].split()[0])


def _last_count(t: object) -> int:
    line = ""
    stdout = t.proc.stdout  # type: ignore[attr-defined]
    os.set_blocking(stdout.fileno(), False)
    for raw in iter(stdout.readline, b""):
        line = raw.decode()
    return int(line.split()[1]) if line.startswith("COUNT") else -1


def test_blocking_pauses_then_detaches_and_keeps_signals() -> None:
    with target(SOURCE) as t:
        proc = attach(t.pid)
        collector = PythonCollector([proc], rate=200, blocking=True)
        time.sleep(0.3)
        before = _last_count(t)
        collector.start()
        ours = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            tracer = _tracer(t.pid)
            # TracerPid names the tracing thread: it must be one of ours (the sampler).
            ours += tracer != 0 and Path(f"/proc/{os.getpid()}/task/{tracer}").exists()
            time.sleep(0.02)
        collector.stop()
        batch = collector.drain()
        stats = collector.stats()
        collector.close()
        # THEN we were its tracer while sampling, and are not any more
        assert ours > 0
        assert _tracer(t.pid) == 0
        # AND it was really paused (for part of the time) and its stacks were read
        assert stats["paused_seconds"] > 0
        assert "busy" in {f.function for f in batch.frames}
        # AND it keeps running and handling its signals afterwards
        time.sleep(0.5)
        after = _last_count(t)
        assert t.proc.poll() is None
        assert after > before >= 0
        states = {
            (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for p in Path(f"/proc/{t.pid}/task").iterdir()
        }
        assert not states & {"t", "T"}


# Two threads running native code with the GIL released (running, never the GIL holder), one
# sleeping, and the main thread sleeping too.
THREADS = "\n".join(
    [
        "import hashlib, json, threading, time",
        "data = b'x' * (8 << 20)",
        "def hasher():",
        "    while True:",
        "        hashlib.sha256(data).digest()",
        "def sleeper():",
        "    while True:",
        "        time.sleep(0.05)",
        "for name, f in (('hasher1', hasher), ('hasher2', hasher), ('sleeper', sleeper)):",
        "    threading.Thread(target=f, name=name, daemon=True).start()",
        "time.sleep(0.2)",
        "print('READY', json.dumps({t.name: t.native_id for t in threading.enumerate()}))",
        "while True:",
        "    time.sleep(1)",
    ]
)


@pytest.mark.parametrize("idle_source", ["proc", "sched_switch"])
def test_blocking_reads_idle_states_from_before_the_pause(idle_source: str) -> None:
    # While paused, /proc and the sched_switch table see every thread stopped by ptrace:
    # the states must be the ones from just before the pause.
    off = None
    if idle_source == "sched_switch":
        require_bpf()
    with target(THREADS) as t:
        tids = json.loads(t.ready_line.split(" ", 1)[1])
        if idle_source == "sched_switch":
            from hostprof.collectors.offcpu import OffCpuCollector

            off = OffCpuCollector.probe([t.pid])
            off.start()
        try:
            collector = PythonCollector([attach(t.pid)], rate=100, idle=True, blocking=True)
            collector.start()
            batches = []
            for _ in range(6):
                time.sleep(0.25)
                batches.append(collector.drain())
            stats = collector.stats()
            collector.close()
        finally:
            if off is not None:
                off.stop()
    tid = np.concatenate([b.tid for b in batches])
    flags = np.concatenate([b.flags for b in batches])
    shares = {}
    for name, thread in tids.items():
        mine = tid == thread
        assert mine.sum() >= 30, (name, int(mine.sum()))
        shares[name] = float(np.mean((flags[mine] & FLAG_IDLE) != 0))
    print(shares, stats["paused_seconds"], stats["state_hits"], stats["os_reads"])
    # THEN the target was paused, the hashers were running and the sleepers idle
    assert stats["paused_seconds"] > 0
    assert shares["hasher1"] < 0.3 and shares["hasher2"] < 0.3, shares
    assert shares["sleeper"] > 0.8 and shares["MainThread"] > 0.8, shares
    if idle_source == "sched_switch":
        assert stats["state_hits"] > 100, stats
