"""Windows: clock-aligned time slices, one aggregated profile per (target, collector) each.

Collectors are drained every second or so into per-series :class:`Aggregator`s; at each window
boundary (a multiple of the window length on the wall clock) every series is encoded once as
pprof, given a stable sample id, and handed on as a :class:`PushBatch`.

Payload size: sample labels are off by default (pid, service and host are series labels), so a
window's pprof holds only stacks, frames and values, gzipped once per request.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.collectors._batch import RawBatch
from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import Window
from hostprof.pipeline import Aggregator
from hostprof.push import LabelPairs
from hostprof.push import PushBatch
from hostprof.push import Series

PROFILE_NAMES = {
    "python": "process_cpu",
    "cpu": "ebpf_cpu",
    "offcpu": "offcpu",
    "syscalls": "syscalls",
    "gc": "gc",
}
"""``__name__`` label per collector: ``process_cpu`` is what Pyroscope's SDKs send."""

KEEP_TYPES = {"python": (CPU_NS,)}
"""Value columns pushed per collector (others: all of the batch's). ``process_cpu`` carries
``cpu:nanoseconds`` only, like the SDK: the python collector's ``samples`` and ``wall`` columns
would double the payload for information the period already gives."""

SeriesKey = Tuple[str, str]
"""(target id, collector name)."""


def window_start(now_ns: int, window_ns: int) -> int:
    """The start of the clock-aligned window containing ``now_ns``."""
    return now_ns - now_ns % window_ns


def sample_id(hostname: str, target_id: str, collector: str, start_ns: int) -> str:
    """A stable id for one series-window: the same inputs always give the same id."""
    digest = hashlib.sha256(f"{hostname}|{target_id}|{collector}|{start_ns}".encode()).hexdigest()
    return digest[:32]


@dataclasses.dataclass
class _Open:
    labels: LabelPairs
    aggregator: Aggregator


class WindowBuilder:
    """Accumulates drained batches per series for the current window."""

    def __init__(self, hostname: str, window_ns: int, thread_labels: bool = False) -> None:
        self.hostname = hostname
        self.window_ns = window_ns
        self.thread_labels = thread_labels
        self._open: Dict[SeriesKey, _Open] = {}
        self._periods: Dict[SeriesKey, int] = {}

    def add(self, key: SeriesKey, labels: LabelPairs, batch: RawBatch, rate_hz: float) -> None:
        """Adds a drained batch to series ``key`` (created on first use with ``labels``)."""
        if len(batch) == 0 and not (batch.lost or batch.missed):
            return
        entry = self._open.get(key)
        wanted = list(KEEP_TYPES.get(key[1], batch.sample_types))
        have = [str(s) for s in entry.aggregator.profile.sample_types] if entry else []
        if entry is None or not all(str(t) in have for t in wanted):
            if entry is not None:
                # A collector changed its columns mid-window: keep both by merging columns.
                types = list(entry.aggregator.profile.sample_types)
                types += [t for t in wanted if str(t) not in have]
            else:
                types = wanted
            period = int(1e9 / rate_hz) if rate_hz > 0 else 0
            agg = Aggregator(
                types,
                CPU_NS if period else None,
                period,
                per_thread=self.thread_labels,
                per_pid=False,
            )
            if entry is not None:
                agg.profile.merge_in(_retyped(entry.aggregator, types))
            entry = self._open[key] = _Open(labels, agg)
        entry.aggregator.add(batch)

    def series_keys(self) -> List[SeriesKey]:
        """Keys with data in the current window."""
        return list(self._open)

    def samples(self, key: SeriesKey) -> int:
        """Samples aggregated so far for ``key``."""
        entry = self._open.get(key)
        return entry.aggregator.samples if entry else 0

    def finish(
        self, start_ns: int, keys: Optional[List[SeriesKey]] = None, end_ns: Optional[int] = None
    ) -> Optional[PushBatch]:
        """Encodes and removes the given series (all by default) as one batch, or None.

        Args:
            start_ns: the window's aligned start.
            keys: which series to finish (e.g. one exited target's); all when None.
            end_ns: the end of data for a partial window (target exit, shutdown).
        """
        keys = list(self._open) if keys is None else [k for k in keys if k in self._open]
        duration = (end_ns - start_ns) if end_ns else self.window_ns
        duration = max(1, min(duration, self.window_ns))
        series = []
        for key in keys:
            entry = self._open.pop(key)
            profile = entry.aggregator.profile
            if len(profile) == 0:
                continue
            profile.windows = [Window(start_ns, duration)]
            raw = compact_pprof(profile)
            series.append(
                Series(entry.labels, raw, sample_id(self.hostname, key[0], key[1], start_ns))
            )
        if not series:
            return None
        batch_id = hashlib.sha256(
            "|".join([self.hostname, str(start_ns)] + [s.sample_id for s in series]).encode()
        ).hexdigest()[:24]
        return PushBatch(batch_id, start_ns, duration, tuple(series))


def compact_pprof(profile) -> bytes:
    """pprof bytes without what a Python-only profile does not need.

    Drops ``system_name`` where it equals ``name`` and, when every frame is a Python frame, the
    single ``[python]`` mapping (readers treat mapping-less frames with a ``.py`` file or a line
    number as Python). That is what keeps a window no larger than the Pyroscope SDK's.
    """
    msg = pprof.to_message(profile)
    for fn in msg.function:
        if fn.system_name == fn.name:
            fn.ClearField("system_name")
    if len(msg.mapping) == 1 and msg.string_table[msg.mapping[0].filename] == pprof.PYTHON_MAPPING:
        del msg.mapping[:]
        for loc in msg.location:
            loc.ClearField("mapping_id")
    return msg.SerializeToString()


def _retyped(agg: Aggregator, types) -> object:
    """The aggregator's profile with columns widened to ``types`` (missing ones zero)."""
    import numpy as np

    from hostprof.model import Profile

    old = agg.profile
    out = Profile(types, old.period_type, old.period)
    sids, lids, vals = old.arrays()
    if len(sids):
        widened = np.zeros((len(sids), len(types)), dtype=np.int64)
        names = [str(t) for t in types]
        for j, t in enumerate(old.sample_types):
            widened[:, names.index(str(t))] = vals[:, j]
        frames, offsets = old.stacks.export()
        remap = out.frames.intern_all(old.frames)
        stack_map = out.stacks.intern_many(frames, offsets, remap)
        label_map = np.fromiter(
            (out.labels.intern(old.labels[i]) for i in range(len(old.labels))),
            dtype=np.uint32,
            count=len(old.labels),
        )
        out.add_stacks(stack_map[sids], widened, label_map[lids])
    return out
