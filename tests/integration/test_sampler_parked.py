"""Parked threads' stacks are reused while the GIL stays put, and re-read once they run.

GIVEN a target whose worker thread alternates between waiting on an Event (parked, its
stack unchanged) and running one of two functions, while another thread spins,
WHEN it is sampled at 100 Hz by the sampling loop, which reuses a thread's previous stack
as long as the GIL's switch_number says no other thread has taken the GIL since,
THEN stacks were reused (GIL builds only: never on free-threaded 3.13t), and every sample
of the worker taken well inside a phase shows that phase's function: a woken thread is
never reported with its parked stack, nor a parked one with its last running stack.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import is_free_threaded
from _pythons import sampler_pythons
from utils import target

from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

SOURCE = """
import threading, time
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
def spinner():
    while True:
        spin(1.0)
def phase_a():
    spin(0.25)
def phase_b():
    spin(0.25)
def parked(ev):
    ev.wait(0.25)
def worker():
    ev = threading.Event()
    while True:
        for name, fn in (("parked", parked), ("phase_a", phase_a), ("parked", parked),
                         ("phase_b", phase_b)):
            print("PHASE", name, time.monotonic(), flush=True)
            fn(ev) if fn is parked else fn()
# READY first: the test harness reads lines up to READY, and must not buffer past it.
print("READY", flush=True)
threading.Thread(target=spinner, name="spinner", daemon=True).start()
threading.Thread(target=worker, name="worker", daemon=True).start()
threading.Event().wait()
"""

PYTHONS = sampler_pythons()
MARGIN_S = 0.05  # a sample this far inside a phase must show it


@pytest.mark.parametrize("name", sorted(PYTHONS))
def test_parked_stacks_reused_and_refreshed(name: str) -> None:
    with target(SOURCE, PYTHONS[name]) as t:
        proc = attach(t.pid)
        collector = PythonCollector([proc], rate=100, idle=True)
        time.sleep(0.2)  # the threads start
        collector.start()
        time.sleep(2.5)
        collector.stop()
        batch = collector.drain()
        stats = proc.reader.stats()
        names = proc.thread_names()
        collector.close()
        t.proc.kill()
        assert t.proc.stdout is not None
        lines = t.proc.stdout.read().decode().splitlines()
    phases = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "PHASE":
            phases.append((float(parts[2]), parts[1]))
    assert len(phases) >= 6, lines
    if is_free_threaded(name):
        assert stats["frames_reused"] == 0, stats
    else:
        assert stats["frames_reused"] > 20, stats
    worker = [tid for tid, n in names.items() if n == "worker"]
    assert worker, names
    checked = {"parked": 0, "phase_a": 0, "phase_b": 0}
    for i in range(len(batch)):
        if batch.tid[i] != worker[0]:
            continue
        ts = batch.timestamp_ns[i] / 1e9
        inside = [
            ph
            for k, (start, ph) in enumerate(phases[:-1])
            if start + MARGIN_S < ts < phases[k + 1][0] - MARGIN_S
        ]
        if not inside:
            continue
        lo, hi = batch.stack_offsets[i], batch.stack_offsets[i + 1]
        funcs = [batch.frames[k].function.rsplit(".", 1)[-1] for k in batch.stack_frames[lo:hi]]
        assert inside[0] in funcs, (ts, inside[0], funcs)
        checked[inside[0]] += 1
    assert all(n >= 5 for n in checked.values()), checked
