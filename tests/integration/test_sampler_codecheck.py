"""A code object freed and replaced at the same address is noticed within a bounded time.

GIVEN a target that runs a freshly compiled function for 0.25 s, drops it, and compiles the
next one (same size, so the allocator hands the new code object an earlier one's address),
WHEN it is sampled at 100 Hz by the sampling loop, which re-reads a cached code object's
header at most every ``code_check_interval_ns`` (100 ms) instead of every instant,
THEN no sample carries an old function's name later than that bound after the switch, every
function is seen under its own name, and the reuse was really detected (``stale_codes``).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import sampler_pythons
from utils import target

from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

SOURCE = """
import time
keep = []
def make(i):
    name = "gen_%03d" % i
    ns = {"time": time}
    exec(
        "def %s(seconds):\\n"
        "    end = time.perf_counter() + seconds\\n"
        "    while time.perf_counter() < end:\\n"
        "        pass\\n" % name,
        ns,
    )
    # pop: the function then holds its globals but they do not hold it (no cycle), so the
    # code object is freed as soon as the function is dropped.
    return ns.pop(name)
print("READY", flush=True)
i = 0
while True:
    f = make(i)
    # Keep the name alive, so the next name string cannot take its address: a replaced code
    # object is told apart by its name, filename and line-table pointers.
    keep.append(f.__code__.co_name)
    print("RUN", i, id(f.__code__), time.monotonic(), flush=True)
    f(0.25)
    del f
    i += 1
"""

# Free-threaded 3.13t (mimalloc, objects freed after a grace period) never hands a new code
# object a freed one's address within the run: nothing to detect there.
PYTHONS = {k: v for k, v in sampler_pythons().items() if k != "3.13t"}
BOUND_S = 0.1  # the loop's default code_check_interval_ns
# A due check rides with the next instant's read; under load, late ticks (and rarely a code
# object loaded while the old one was being freed, which restarts its period) add more.
SLACK_S = 0.1
TICK_S = 0.02  # the target prints RUN just before the function starts


def _record(python: str, seconds: float, interval_ns: int) -> Tuple[list, Dict, List[str]]:
    with target(SOURCE, python) as t:
        proc = attach(t.pid)
        proc.reader.code_check_interval_ns = interval_ns
        collector = PythonCollector([proc], rate=100, idle=True)
        collector.start()
        time.sleep(seconds)
        collector.stop()
        batch = collector.drain()
        stats = proc.reader.stats()
        collector.close()
        t.proc.kill()
        assert t.proc.stdout is not None
        lines = t.proc.stdout.read().decode().splitlines()
    # (timestamp s, leaf gen_ index) of every sample inside a generated function
    samples = []
    for i in range(len(batch)):
        lo, hi = batch.stack_offsets[i], batch.stack_offsets[i + 1]
        names = [batch.frames[k].function for k in batch.stack_frames[lo:hi]]
        gen = [int(m.group(1)) for n in names if (m := re.fullmatch(r"gen_(\d+)", n))]
        if gen:
            samples.append((batch.timestamp_ns[i] / 1e9, gen[-1]))
    return samples, stats, lines


@pytest.mark.parametrize("name", sorted(PYTHONS))
def test_replaced_code_object_detected(name: str) -> None:
    _check(name, 100_000_000)


def test_replaced_code_object_detected_every_instant() -> None:
    # Checks every instant (interval 0) do not depend on the version: 3.11 only.
    _check("3.11-pyenv", 0)


def _check(name: str, interval_ns: int) -> None:
    samples, stats, lines = _record(PYTHONS[name], 2.2, interval_ns)
    runs = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "RUN":
            runs[int(parts[1])] = (int(parts[2]), float(parts[3]))
    # runs whose code object took the address of an earlier run's (freed) one
    reused = [i for i in runs if any(runs[j][0] == runs[i][0] for j in runs if j < i)]
    assert reused, f"the target never reused a code object's address: {runs}"
    assert stats["stale_codes"] >= 1, stats
    bound = (interval_ns / 1e9 if interval_ns else 0.0) + SLACK_S

    def tolerated(ts: float, j: int) -> bool:
        # gen_j's name is stale once run j ended; a later run whose code object took its
        # address may carry it for at most `bound` after it started.
        if j + 1 not in runs or ts < runs[j + 1][1] + TICK_S:
            return True
        return any(
            k > j and runs[k][0] == runs[j][0] and runs[k][1] - TICK_S <= ts <= runs[k][1] + bound
            for k in runs
        )

    late = [(ts, j) for ts, j in samples if not tolerated(ts, j)]
    assert not late, f"old names too long after the switch (+{bound:.2f} s): {late[:5]} {runs}"
    # Every function that ran fully inside the recording is seen under its own name.
    first = min(ts for ts, _ in samples)
    last = max(ts for ts, _ in samples)
    seen = {j for _, j in samples}
    for i in reused:
        if first < runs[i][1] and i + 1 in runs and runs[i + 1][1] < last:
            assert i in seen, (i, sorted(seen), runs)
