"""gc collector: collections per generation and pause totals against gc.callbacks."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import require_bpf
from tests.integration._ebpf import DEBIAN_PYTHON
from tests.integration._ebpf import PYENV_PYTHON
from tests.integration._ebpf import driven

TARGET = """
import gc, json, sys, time
counts = [0, 0, 0]; pause = [0, 0, 0]; t = [0]
def cb(phase, info):
    if phase == "start":
        t[0] = time.perf_counter_ns()
    else:
        g = info["generation"]; counts[g] += 1; pause[g] += time.perf_counter_ns() - t[0]
def churn():
    keep = []
    end = time.time() + 1.0
    while time.time() < end:
        cyc = [[i] for i in range(2000)]
        for x in cyc:
            x.append(x)
        keep.append(cyc)
        if len(keep) > 50:
            keep = keep[25:]
    gc.collect()
print("READY", flush=True)
sys.stdin.readline()
gc.callbacks.append(cb)
churn()
gc.callbacks.remove(cb)
print("RESULT", json.dumps([counts, pause]), flush=True)
sys.stdin.readline()
"""


CHROOT = os.path.join(os.environ.get("HOSTPROF_PYTHONS", "/var/cache/hostprof/pythons"), "bin")
CASES = [
    pytest.param(PYENV_PYTHON, "uprobe", id="3.11-pyenv"),
    pytest.param(DEBIAN_PYTHON, "usdt", id="3.11-debian"),
    # Debian's chroot interpreters (tools/make-pythons.sh): USDT; 3.13t is built from source,
    # unstripped and without dtrace, so it gets the gc_collect_main uprobe.
    *(
        pytest.param(os.path.join(CHROOT, f"python{v}"), kind, id=v)
        for v, kind in (
            ("3.9", "usdt"),
            ("3.13", "usdt"),
            ("3.14", "usdt"),
            ("3.15", "usdt"),
            ("3.13t", "uprobe"),
        )
    ),
]


@pytest.mark.parametrize(("python", "kind"), CASES)
def test_gc_counts_and_pauses_match_callbacks(python: str, kind: str) -> None:
    require_bpf()
    if not os.path.exists(python):
        pytest.skip(f"{python} is not installed")
    from hostprof.collectors.gc import GcCollector

    # GIVEN a target that creates cyclic garbage and records gc.callbacks as ground truth
    with driven(TARGET, python) as t:
        c = GcCollector.probe([t.pid])
        assert c is not None
        assert [p.kind for p in c.probes] == [kind]
        c.start()
        try:
            # WHEN the collector runs while it churns
            t.go()
            counts, pauses = json.loads(t.result())
            batch = c.drain()
        finally:
            c.stop()
    # THEN every collection is seen, per generation
    assert {g: c.collections.get(g, 0) for g in range(3)} == dict(enumerate(counts))
    assert counts[0] > 10 and counts[2] >= 1
    # AND the total pause is within 10 % (the callbacks' own timing adds a little)
    total_bpf, total_truth = sum(c.pause_ns.values()), sum(pauses)
    assert abs(total_bpf - total_truth) <= 0.10 * total_truth, (c.pause_ns, pauses)
    # AND the profile has <gc gen=N> leaves with pause time, per thread
    leaves = {
        batch.frames[int(batch.stack_frames[int(o) - 1])].function for o in batch.stack_offsets[1:]
    }
    assert {"<gc gen=0>", "<gc gen=2>"} <= leaves
    assert int(batch.values[:, 0].sum()) == total_bpf
    assert set(batch.tid.tolist()) == {t.pid}  # the main thread collects
    assert sum(int(h.sum()) for h in c.histogram.values()) == sum(counts)
