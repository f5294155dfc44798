"""Collectors -> core -> Profile: folds RawBatches into a Profile, one call per batch.

Per-sample labels come from the batch's columns: ``pid``, ``thread_id`` and ``thread_name``
(when ``per_thread``), computed once per distinct (pid, tid) with numpy, not per sample.
"""

from __future__ import annotations

from typing import Dict
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof.collectors._batch import RawBatch
from hostprof.model import Profile
from hostprof.model import SampleType


class Aggregator:
    """Accumulates RawBatches of one set of sample types into a :class:`Profile`."""

    def __init__(
        self,
        sample_types: Sequence[SampleType],
        period_type: Optional[SampleType] = None,
        period: int = 0,
        per_thread: bool = True,
        per_pid: bool = True,
        static_labels: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.profile = Profile(sample_types, period_type, period)
        self.per_thread = per_thread
        self.per_pid = per_pid
        self.static_labels = dict(static_labels or {})
        self.thread_names: Dict[Tuple[int, int], str] = {}
        self.lost = self.missed = self.late = 0
        self.samples = 0

    def add(self, batch: RawBatch) -> None:
        """Adds one batch. Sample types are matched by name; missing columns count as 0."""
        self.lost += batch.lost
        self.missed += batch.missed
        self.late += batch.late
        n = len(batch)
        if n == 0:
            return
        self.samples += n
        values = self._align_values(batch)
        remap = self.profile.frames.intern_all(batch.frames)
        label_ids = self._label_ids(batch)
        self.profile.add_batch(batch.stack_frames, batch.stack_offsets, values, label_ids, remap)

    def _align_values(self, batch: RawBatch) -> np.ndarray:
        names = [str(s) for s in batch.sample_types]
        out = np.zeros((len(batch), len(self.profile.sample_types)), dtype=np.int64)
        for j, st in enumerate(self.profile.sample_types):
            if str(st) in names:
                out[:, j] = batch.values[:, names.index(str(st))]
        return out

    def _label_ids(self, batch: RawBatch) -> np.ndarray:
        for tid, name in batch.thread_names.items():
            pids = batch.pid[batch.tid == tid]
            if len(pids):
                self.thread_names[(int(pids[0]), int(tid))] = name
        if not (self.per_thread or self.per_pid):
            return np.full(len(batch), self.profile.labels.intern(self.static_labels), np.uint32)
        keys = (batch.pid.astype(np.int64) << 32) | (
            batch.tid.astype(np.int64) if self.per_thread else 0
        )
        uniq, inverse = np.unique(keys, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.uint32)
        for i, key in enumerate(uniq.tolist()):
            pid, tid = key >> 32, key & 0xFFFFFFFF
            labels = dict(self.static_labels)
            if self.per_pid:
                labels["pid"] = str(pid)
            if self.per_thread:
                labels["thread_id"] = str(tid)
                name = self.thread_names.get((pid, tid))
                if name:
                    labels["thread_name"] = name
            ids[i] = self.profile.labels.intern(labels)
        return ids[inverse.reshape(-1)]
