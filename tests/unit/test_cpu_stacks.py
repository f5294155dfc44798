"""The cpu collector's stack splitting: leaf-first frame ids -> root-first stacks."""

from __future__ import annotations

import numpy as np

from hostprof.collectors.cpu import _split_stacks


def test_garbage_frames_drop_and_unknown_runs_collapse_per_stack() -> None:
    # GIVEN four leaf-first stacks back to back: a garbage frame (-1) and a run of one
    # [unknown] frame (id 2) in the first, an empty one, and a run that spans no boundary
    unknown = np.array([False, False, True, False])
    ids = np.array([0, -1, 2, 2, 1, 3, 2, 2, 2, 2], dtype=np.int64)
    # WHEN they are split with the unknown mask
    out = _split_stacks(ids, [5, 2, 0, 3], unknown)
    # THEN each is root first, without the garbage frame, each run of [unknown] is one frame,
    # and a run does not merge across two stacks
    assert [o.tolist() for o in out] == [[1, 2, 0], [2, 3], [], [2]]


def test_kernel_stacks_split_unchanged() -> None:
    # GIVEN kernel stacks (no mask): nothing is dropped or collapsed
    ids = np.array([5, 5, 6, 7], dtype=np.int64)
    out = _split_stacks(ids, [3, 1], None)
    assert [o.tolist() for o in out] == [[6, 5, 5], [7]]
