"""The sampling thread's scheduling policy: real-time while it mostly sleeps, never a hog.

GIVEN root (as hostprof runs on servers and in CI),
WHEN the sampling loop runs at 1 kHz, its thread is SCHED_FIFO (so ticks stay on time on a
busy host) unless ``Reader.realtime`` is off; at 100 Hz it is not (a real-time wake-up costs
more, and a 10 ms tick is rarely missed); and
WHEN it is asked for a rate it cannot keep up with (sampling takes all the time),
THEN it drops back to the normal policy within about a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import target

from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

SOURCE = """
import threading, time
def spin():
    while True:
        time.perf_counter()
threading.Thread(target=spin, daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root")


def _policy_while_sampling(rate: float, realtime: bool, wait: float) -> int:
    with target(SOURCE) as t:
        proc = attach(t.pid)
        proc.reader.realtime = realtime
        collector = PythonCollector([proc], rate=rate)
        collector.start()
        try:
            time.sleep(wait)
            thread = collector.targets[t.pid].thread
            assert thread is not None and thread.native_id is not None
            return os.sched_getscheduler(thread.native_id)
        finally:
            collector.close()


def test_sampling_thread_is_realtime_at_1khz() -> None:
    assert _policy_while_sampling(1000, True, 0.3) == os.SCHED_FIFO


def test_not_realtime_at_100hz() -> None:
    assert _policy_while_sampling(100, True, 0.3) == os.SCHED_OTHER


def test_realtime_can_be_turned_off() -> None:
    assert _policy_while_sampling(1000, False, 0.3) == os.SCHED_OTHER


def test_overloaded_loop_drops_realtime() -> None:
    # 100 kHz: every tick is late, the loop never sleeps.
    assert _policy_while_sampling(100_000, True, 1.6) == os.SCHED_OTHER
