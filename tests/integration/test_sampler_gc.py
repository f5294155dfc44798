"""The GC flag: a target stuck in long gc.collect() calls on a big cyclic heap.

GIVEN a process that spends nearly all its time in gc.collect() over 400k cyclic objects,
WHEN we sample it,
THEN most samples of its main thread carry the GC flag, end in a synthetic ``<gc>`` frame
under the Python caller of gc.collect(), and (with a GIL) the collecting thread holds it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import is_free_threaded
from _pythons import sampler_pythons
from utils import target

from hostprof.collectors._batch import FLAG_GC
from hostprof.collectors._batch import FLAG_GIL
from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

GC_TARGET = "\n".join(
    [
        "import gc",  # 1
        "class Node:",  # 2
        "    pass",  # 3
        "def build(n):",  # 4
        "    out = []",  # 5
        "    for _ in range(n):",  # 6
        "        a = Node(); b = Node(); a.o = b; b.o = a; out.append(a)",  # 7
        "    return out",  # 8
        "heap = build(200000)",  # 9
        "gc.disable()",  # 10
        "def collect_forever():",  # 11
        "    while True:",  # 12
        "        gc.collect()",  # 13
        "print('READY', flush=True)",  # 14
        "collect_forever()",  # 15
    ]
)

PYTHONS = sampler_pythons()


@pytest.mark.parametrize("name", sorted(PYTHONS))
def test_gc_flag_and_frame(name: str) -> None:
    with target(GC_TARGET, PYTHONS[name], timeout=90) as t:
        proc = attach(t.pid)
        try:
            # WHEN we take snapshots
            in_gc = 0
            rounds = 40
            for _ in range(rounds):
                main = next(s for s in proc.stacks() if s.tid == t.pid)
                if main.in_gc:
                    in_gc += 1
                    # THEN the stack ends in <gc> under gc.collect()'s Python caller
                    assert main.frames[-1].function == "<gc>"
                    caller = main.frames[-2]
                    assert (caller.function, caller.line) == ("collect_forever", 13)
                    assert main.holds_gil or is_free_threaded(name)
                time.sleep(0.003)
            assert in_gc >= rounds * 0.5, f"{in_gc}/{rounds} snapshots inside GC"
            # AND the sampling collector flags the same samples
            collector = PythonCollector([proc], rate=200)
            collector.start()
            time.sleep(0.4)
            collector.stop()
            batch = collector.drain()
            gc_rows = (batch.flags & FLAG_GC) != 0
            assert gc_rows.mean() >= 0.5
            if not is_free_threaded(name):
                assert np.all(batch.flags[gc_rows] & FLAG_GIL)
            gc_frame = [i for i, f in enumerate(batch.frames) if f.function == "<gc>"]
            lasts = batch.stack_frames[batch.stack_offsets[1:] - 1]
            assert np.array_equal(np.isin(lasts, gc_frame), gc_rows)
        finally:
            proc.close()
