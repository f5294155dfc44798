"""The join rule of hostprof.merge on hand-made batches (no kernel needed)."""

from __future__ import annotations

from typing import List
from typing import Sequence

import numpy as np

from hostprof.collectors._batch import RawBatch
from hostprof.merge import PythonMerger
from hostprof.model import CPU_NS
from hostprof.model import SYSCALLS
from hostprof.model import Frame
from hostprof.model import FrameKind

MS = 1_000_000
READ = Frame("<syscall:read>", "", 0, FrameKind.SYNTHETIC)


def batch(
    collector: str, stacks: Sequence[Sequence[Frame]], tids: List[int], ts: List[int]
) -> RawBatch:
    frames: List[Frame] = []
    ids: List[int] = []
    offsets = [0]
    for st in stacks:
        for f in st:
            if f not in frames:
                frames.append(f)
            ids.append(frames.index(f))
        offsets.append(len(ids))
    n = len(stacks)
    return RawBatch(
        collector,
        (SYSCALLS if collector != "python" else CPU_NS,),
        frames,
        np.array(ids, np.uint32),
        np.array(offsets, np.int64),
        np.ones((n, 1), np.int64),
        np.full(n, 1, np.int32),
        np.array(tids, np.int32),
        np.array(ts, np.int64),
        np.zeros(n, np.uint8),
    )


def py(name: str) -> Frame:
    return Frame(name, "t.py", 1, FrameKind.PYTHON)


def leaf_python(b: RawBatch, row: int) -> str:
    fr = [b.frames[i] for i in b.stack_frames[b.stack_offsets[row] : b.stack_offsets[row + 1]]]
    names = [f.function for f in fr if f.kind == FrameKind.PYTHON]
    return names[-1] if names else ""


def test_nearest_sample_of_the_same_thread_within_the_gap() -> None:
    # GIVEN Python samples of two threads: thread 7 in a() then b(), thread 8 in c()
    m = PythonMerger(interval_ns=10 * MS, slot_ns=1 * MS)
    m.remember(
        batch(
            "python", [[py("a")], [py("b")], [py("c")]], [7, 7, 8], [100 * MS, 110 * MS, 104 * MS]
        )
    )
    # WHEN syscall rows of thread 7 arrive at 103 ms and 108 ms, and one far away
    out = m.merge(batch("syscalls", [[READ]] * 3, [7, 7, 7], [103 * MS, 108 * MS, 900 * MS]))
    # THEN each takes thread 7's nearest stack; the far one stays unjoined
    assert [leaf_python(out, i) for i in range(3)] == ["a", "b", ""]
    assert m.stats()["unmatched"] == 1


def test_offcpu_rows_take_the_first_sample_after_their_slot() -> None:
    m = PythonMerger(interval_ns=10 * MS, slot_ns=1 * MS)
    # reader() sampled just before the block began, sleeper() just after
    m.remember(batch("python", [[py("reader")], [py("sleeper")]], [7, 7], [99 * MS, 103 * MS]))
    out = m.merge(
        batch(
            "offcpu", [[Frame("do_nanosleep", "", 0, FrameKind.KERNEL)]], [7], [100 * MS + MS // 2]
        )
    )
    assert leaf_python(out, 0) == "sleeper"


def test_bracketing_samples_that_agree_cover_a_starved_sampler() -> None:
    m = PythonMerger(interval_ns=10 * MS, slot_ns=1 * MS)
    m.remember(batch("python", [[py("loop")], [py("loop")]], [7, 7], [100 * MS, 400 * MS]))
    out = m.merge(batch("syscalls", [[READ]], [7], [250 * MS]))
    assert leaf_python(out, 0) == "loop"
    m.remember(batch("python", [[py("other")]], [7], [700 * MS]))
    out = m.merge(batch("syscalls", [[READ]], [7], [550 * MS]))
    assert leaf_python(out, 0) == ""  # loop before, other after: no guess


def test_rows_newer_than_the_last_python_sample_wait_for_the_next_drain() -> None:
    m = PythonMerger(interval_ns=10 * MS, slot_ns=1 * MS)
    first = m(
        [
            batch("python", [[py("a")]], [7], [100 * MS]),
            batch("syscalls", [[READ], [READ]], [7, 7], [100 * MS, 130 * MS]),
        ]
    )
    merged = next(b for b in first if b.collector == "syscalls")
    assert len(merged) == 1 and leaf_python(merged, 0) == "a"
    second = m([batch("python", [[py("b")]], [7], [131 * MS])])
    held = next(b for b in second if b.collector == "syscalls")
    assert len(held) == 1 and leaf_python(held, 0) == "b"
    assert m.flush() == []
