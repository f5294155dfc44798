"""The profile model: interning, aggregation, merge, label operations."""

from __future__ import annotations

import numpy as np
import pytest

from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.native._core import StackTable

A = Frame("a", "x.py", 1)
B = Frame("b", "x.py", 2)
C = Frame("c", "y.py", 3)


def test_stack_table_interns_equal_stacks_to_one_id() -> None:
    t = StackTable()
    frames = np.array([1, 2, 3, 1, 2, 3, 1, 2, 4, 7], dtype=np.uint32)
    ids = t.intern_many(frames, [0, 3, 6, 9, 10])
    assert ids.tolist() == [0, 0, 1, 2]
    assert t.get(1) == (1, 2, 4)
    assert len(t) == 3


def test_stack_table_survives_growth_and_remap() -> None:
    # GIVEN more stacks than the initial capacity
    rng = np.random.default_rng(1)
    t = StackTable(16)
    stacks = [tuple(rng.integers(0, 50, size=rng.integers(1, 40)).tolist()) for _ in range(5000)]
    ids = [t.intern(s) for s in stacks]
    # THEN each stack maps to one id and reads back unchanged
    assert len(set(ids)) == len(set(stacks)) == len(t)
    for s, i in zip(stacks, ids):
        assert t.get(i) == s
    # AND remapping frame ids interns the mapped stack
    remap = np.arange(50, dtype=np.uint32)[::-1]
    sid = t.intern_many(np.array([0, 1], dtype=np.uint32), [0, 2], remap)[0]
    assert t.get(int(sid)) == (49, 48)


def test_stack_table_rejects_bad_offsets_and_remap() -> None:
    t = StackTable()
    with pytest.raises(ValueError):
        t.intern_many(np.array([1, 2], dtype=np.uint32), [0, 5])
    with pytest.raises(ValueError):
        t.intern_many(np.array([1, 2], dtype=np.uint32), [0, 2], remap=[0])


def test_add_aggregates_by_stack_and_labels() -> None:
    p = Profile([CPU_NS, SAMPLES])
    p.add([A, B], [10, 1], {"thread_id": "1"})
    p.add([A, B], [5, 1], {"thread_id": "1"})
    p.add([A, B], [7, 1], {"thread_id": "2"})
    assert p.to_dict() == {
        ((A, B), (("thread_id", "1"),)): (15, 2),
        ((A, B), (("thread_id", "2"),)): (7, 1),
    }
    merged = p.drop_labels("thread_id")
    assert merged.to_dict() == {((A, B), ()): (22, 3)}
    assert p.filter_labels(thread_id="2").totals() == (7, 1)
    assert set(p.split_by("thread_id")) == {"1", "2"}


def test_merge_requires_same_sample_types() -> None:
    with pytest.raises(ValueError, match="different sample types"):
        Profile([CPU_NS]).merge(Profile([SAMPLES]))


def test_sample_type_parse() -> None:
    assert SampleType.parse("cpu:nanoseconds") == CPU_NS
    with pytest.raises(ValueError):
        SampleType.parse("cpu")


def test_add_batch_with_remap_matches_add() -> None:
    p = Profile([SAMPLES])
    remap = p.frames.intern_all([C, A, B])  # local ids 0=C, 1=A, 2=B
    p.add_batch(np.array([1, 2, 1, 0], dtype=np.uint32), [0, 2, 4], [3, 4], 0, remap)
    assert p.to_dict() == {((A, B), ()): (3,), ((A, C), ()): (4,)}
