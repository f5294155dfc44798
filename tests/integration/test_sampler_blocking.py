"""`record --blocking`: opt-in ptrace pauses, with signals still delivered and a clean detach."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import target

from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

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
