"""RawBatch: what one collector hands to the core per drain.

One object per drain, never per sample."""

from __future__ import annotations

import dataclasses
from typing import Dict
from typing import List
from typing import Tuple

import numpy as np

from hostprof.model import Frame
from hostprof.model import SampleType

FLAG_GIL = 1
"""The thread held the GIL when sampled."""
FLAG_GC = 2
"""The interpreter was inside a cyclic-GC collection."""
FLAG_IDLE = 4
"""The thread was not running (sleeping or blocked) when sampled."""


@dataclasses.dataclass
class RawBatch:
    """Samples drained from one collector, in columnar form.

    Frame ids in ``stack_frames`` index into ``frames`` (this batch's own table), so a collector
    never needs to know a profile's ids. Stacks are root first.
    """

    collector: str
    """Name of the collector that produced the batch (``python``, ``cpu``, ...)."""
    sample_types: Tuple[SampleType, ...]
    """The value columns."""
    frames: List[Frame]
    """Local frame table: ``stack_frames`` values index into it."""
    stack_frames: np.ndarray
    """uint32 local frame ids of every sample, end to end, root first."""
    stack_offsets: np.ndarray
    """int64, ``n + 1`` offsets into ``stack_frames``."""
    values: np.ndarray
    """int64 ``(n, len(sample_types))``."""
    pid: np.ndarray
    """int32 process id per sample."""
    tid: np.ndarray
    """int32 OS thread id per sample."""
    timestamp_ns: np.ndarray
    """int64 CLOCK_MONOTONIC time per sample (0 when the collector aggregated in-kernel)."""
    flags: np.ndarray
    """uint8 FLAG_* bits per sample."""
    thread_names: Dict[int, str] = dataclasses.field(default_factory=dict)
    """Thread names by tid, where known."""
    lost: int = 0
    """Events the kernel or reader dropped (e.g. perf buffer overflow)."""
    missed: int = 0
    """Samples without a usable stack (stack-map collisions, torn reads that were dropped)."""
    late: int = 0
    """Ticks the sampler could not serve on time."""

    def __len__(self) -> int:
        return len(self.pid)

    @classmethod
    def empty(cls, collector: str, sample_types: Tuple[SampleType, ...]) -> RawBatch:
        """A batch with no samples."""
        return cls(
            collector=collector,
            sample_types=sample_types,
            frames=[],
            stack_frames=np.empty(0, dtype=np.uint32),
            stack_offsets=np.zeros(1, dtype=np.int64),
            values=np.empty((0, len(sample_types)), dtype=np.int64),
            pid=np.empty(0, dtype=np.int32),
            tid=np.empty(0, dtype=np.int32),
            timestamp_ns=np.empty(0, dtype=np.int64),
            flags=np.empty(0, dtype=np.uint8),
        )
