"""Charges eBPF events to the Python stack their thread was running at that moment.

The eBPF collectors see native frames, kernel frames, syscalls, blocked time and GC pauses,
but not Python functions (pyenv's CPython has no frame pointers, so its BPF user stacks are
1-2 C frames deep). The sampling core (:class:`hostprof.collectors.python.PythonCollector`)
sees Python stacks per thread with CLOCK_MONOTONIC timestamps. This module joins the two.

Join rule (documented in docs/ebpf.md): the eBPF collectors aggregate in the kernel per
(thread, time slot) (``slot_ns``, 8.4 ms by default) and report each slot's midpoint.
Off-CPU rows (their slot holds the block's start) take the first Python sample of the same
tid after the slot's end, within ``max_gap_ns``. Other rows (and off-CPU rows without such a
sample) take the Python stack of the *same tid* whose sample time is *nearest* to that
midpoint, if it is within ``max_gap_ns`` (default: two sampling intervals plus one slot);
failing that, the samples just before and after the midpoint if both show the same stack
(the thread stayed in that function; common for blocked threads and a starved sampler);
its frames then sit above the eBPF frames (Python root ... Python leaf, native, kernel, then
``<syscall:NAME>``, ``<gc gen=N>`` leaves). Rows without a Python sample close enough keep their
eBPF stack unchanged and are counted in :attr:`PythonMerger.unmatched`.

Use it as a session batch hook: ``session.batch_hooks.append(PythonMerger())``; Python
batches pass through (and are remembered), eBPF batches come out merged.
"""

from __future__ import annotations

from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof.collectors._batch import RawBatch
from hostprof.model import Frame

PY_COLLECTOR = "python"
MERGED_COLLECTORS = ("cpu", "offcpu", "syscalls", "gc")
FORWARD_COLLECTORS = ("offcpu",)
"""Rows that stand for a blocked interval starting in their slot: the thread stays in the
function that blocked for the whole interval, so the first Python sample after the slot's
end (surely after the block began) is the right one; a sample just before the block may
belong to the function that ran before."""


class _History:
    """Recent Python samples of one thread: sorted timestamps and stack ids."""

    __slots__ = ("stacks", "ts")

    def __init__(self) -> None:
        self.ts = np.empty(0, dtype=np.int64)
        self.stacks = np.empty(0, dtype=np.int64)

    def extend(self, ts: np.ndarray, stacks: np.ndarray, keep_after: int) -> None:
        t = np.concatenate((self.ts, ts))
        s = np.concatenate((self.stacks, stacks))
        order = np.argsort(t, kind="stable")
        t, s = t[order], s[order]
        live = t >= keep_after
        self.ts, self.stacks = t[live], s[live]


class PythonMerger:
    """A session batch hook joining eBPF rows with Python stacks by tid and nearest time.

    Attributes:
        merged: eBPF rows that got a Python stack.
        unmatched: eBPF rows with a timestamp but no Python sample of their tid close enough.
        abs_gap_ns: sum of |eBPF slot midpoint - chosen Python sample time| over merged rows.
    """

    def __init__(
        self,
        interval_ns: int = 10_000_000,
        slot_ns: int = 1 << 23,
        max_gap_ns: Optional[int] = None,
        keep_ns: int = 5_000_000_000,
        bracket_ns: int = 1_000_000_000,
        collector_slots: Optional[Dict[str, int]] = None,
    ) -> None:
        self.max_gap_ns = max_gap_ns if max_gap_ns is not None else 2 * interval_ns + slot_ns
        self.slot_ns = slot_ns
        self.collector_slots = dict(collector_slots or {})
        """Slot widths of collectors whose slots differ from ``slot_ns``."""
        self.bracket_ns = bracket_ns
        self.keep_ns = keep_ns
        self._stacks: List[Tuple[Frame, ...]] = []
        self._stack_ids: Dict[Tuple[Frame, ...], int] = {}
        self._threads: Dict[int, _History] = {}
        self._latest = 0
        self._held: List[RawBatch] = []
        self.merged = 0
        self.unmatched = 0
        self.abs_gap_ns = 0

    # ----------------------------------------------------------------------- python side
    def remember(self, batch: RawBatch) -> None:
        """Adds a Python batch's samples to the per-thread history."""
        n = len(batch)
        if n == 0:
            return
        frames = batch.frames
        offs = batch.stack_offsets.tolist()
        sf = batch.stack_frames.tolist()
        ids = np.empty(n, dtype=np.int64)
        for i in range(n):
            key = tuple(frames[j] for j in sf[offs[i] : offs[i + 1]])
            sid = self._stack_ids.get(key)
            if sid is None:
                sid = self._stack_ids[key] = len(self._stacks)
                self._stacks.append(key)
            ids[i] = sid
        ts = batch.timestamp_ns.astype(np.int64)
        self._latest = max(self._latest, int(ts.max()))
        keep_after = self._latest - self.keep_ns
        tids = batch.tid
        for tid in np.unique(tids).tolist():
            sel = tids == tid
            self._threads.setdefault(tid, _History()).extend(ts[sel], ids[sel], keep_after)

    def python_stack(self, tid: int, ts: int) -> Optional[Tuple[Frame, ...]]:
        """The Python stack of ``tid`` nearest to ``ts`` within the gap, or None."""
        hit = self._lookup(tid, ts)
        return None if hit is None else self._stacks[hit[0]]

    def _lookup(self, tid: int, ts: int) -> Optional[Tuple[int, int]]:
        """(stack id, |gap| ns) of the Python sample of ``tid`` to charge at ``ts``, or None.

        The nearest sample within ``max_gap_ns``; failing that (the sampler was starved, or
        the thread was blocked between samples), the samples just before and just after,
        if they agree on the stack and are at most ``bracket_ns`` apart.
        """
        h = self._threads.get(tid)
        if h is None or not len(h.ts):
            return None
        i = int(np.searchsorted(h.ts, ts))
        best, gap = -1, self.max_gap_ns + 1
        for j in (i - 1, i):
            if 0 <= j < len(h.ts):
                d = abs(int(h.ts[j]) - ts)
                if d < gap:
                    best, gap = j, d
        if best >= 0:
            return int(h.stacks[best]), gap
        if (
            0 < i < len(h.ts)
            and h.stacks[i - 1] == h.stacks[i]
            and int(h.ts[i]) - int(h.ts[i - 1]) <= self.bracket_ns
        ):
            return int(h.stacks[i]), min(ts - int(h.ts[i - 1]), int(h.ts[i]) - ts)
        return None

    def _lookup_forward(self, tid: int, ts: int, slot_ns: int) -> Optional[Tuple[int, int]]:
        """The first Python sample of ``tid`` at or after the end of ``ts``'s slot, if it is
        within ``max_gap_ns`` of that end; (stack id, gap) or None."""
        h = self._threads.get(tid)
        if h is None or not len(h.ts):
            return None
        start = ts + slot_ns // 2
        i = int(np.searchsorted(h.ts, start, side="left"))
        if i < len(h.ts) and int(h.ts[i]) - start <= self.max_gap_ns:
            return int(h.stacks[i]), int(h.ts[i]) - start
        return None

    # ------------------------------------------------------------------------- ebpf side
    def merge(self, batch: RawBatch) -> RawBatch:
        """Returns ``batch`` with each row's Python stack put above its eBPF frames."""
        n = len(batch)
        if n == 0 or not self._threads:
            return batch
        out_frames: List[Frame] = list(batch.frames)
        frame_ids: Dict[Frame, int] = {f: i for i, f in enumerate(out_frames)}
        stack_frames: List[int] = []
        offsets = [0]
        sf = batch.stack_frames.tolist()
        offs = batch.stack_offsets.tolist()
        tids = batch.tid.tolist()
        ts = batch.timestamp_ns.tolist()
        forward = batch.collector in FORWARD_COLLECTORS
        slot = self.collector_slots.get(batch.collector, self.slot_ns)
        for i in range(n):
            native = sf[offs[i] : offs[i + 1]]
            py: Optional[Tuple[Frame, ...]] = None
            if ts[i]:
                py = self._nearest(tids[i], ts[i], forward, slot)
            if py:
                for f in py:
                    fid = frame_ids.get(f)
                    if fid is None:
                        fid = frame_ids[f] = len(out_frames)
                        out_frames.append(f)
                    stack_frames.append(fid)
            stack_frames.extend(native)
            offsets.append(len(stack_frames))
        return RawBatch(
            collector=batch.collector,
            sample_types=batch.sample_types,
            frames=out_frames,
            stack_frames=np.asarray(stack_frames, dtype=np.uint32),
            stack_offsets=np.asarray(offsets, dtype=np.int64),
            values=batch.values,
            pid=batch.pid,
            tid=batch.tid,
            timestamp_ns=batch.timestamp_ns,
            flags=batch.flags,
            thread_names=batch.thread_names,
            lost=batch.lost,
            missed=batch.missed,
            late=batch.late,
        )

    def _nearest(
        self, tid: int, ts: int, forward: bool = False, slot_ns: int = 0
    ) -> Optional[Tuple[Frame, ...]]:
        hit = self._lookup_forward(tid, ts, slot_ns or self.slot_ns) if forward else None
        if hit is None:
            hit = self._lookup(tid, ts)
        if hit is None:
            self.unmatched += 1
            return None
        self.merged += 1
        self.abs_gap_ns += hit[1]
        return self._stacks[hit[0]]

    def __call__(self, batches: Sequence[RawBatch]) -> List[RawBatch]:
        """Session hook: remembers Python batches first, then merges eBPF ones.

        Rows newer than their thread's latest Python sample (plus the gap) cannot be judged
        yet: the sample after them has not been drained. They are held until the next call
        (or :meth:`flush`), so the rule does not depend on where drains fall.
        """
        for b in batches:
            if b.collector == PY_COLLECTOR:
                self.remember(b)
        out: List[RawBatch] = []
        held, self._held = self._held, []
        for b in held:
            out.append(self.merge(b))
        for b in batches:
            if b.collector not in MERGED_COLLECTORS:
                out.append(b)
                continue
            late = self._too_new(b)
            if late.any():
                self._held.append(_take(b, np.flatnonzero(late)))
                now = _take(b, np.flatnonzero(~late))
                now.lost, now.missed, now.late = b.lost, b.missed, b.late
                b = now
            out.append(self.merge(b))
        return out

    def flush(self) -> List[RawBatch]:
        """Merges and returns the rows still held (call once after the last drain)."""
        held, self._held = self._held, []
        return [self.merge(b) for b in held]

    def _too_new(self, batch: RawBatch) -> np.ndarray:
        """Rows whose thread has Python samples, none of them later than the row."""
        late = np.zeros(len(batch), dtype=bool)
        for tid in np.unique(batch.tid).tolist():
            h = self._threads.get(tid)
            if h is None or not len(h.ts):
                continue  # not a sampled Python thread: waiting would not help
            sel = batch.tid == tid
            late[sel] = (batch.timestamp_ns[sel] != 0) & (batch.timestamp_ns[sel] > h.ts[-1])
        return late

    def stats(self) -> Dict[str, float]:
        """Join counters: merged and unmatched rows, mean |time gap| in ns."""
        return {
            "merged": float(self.merged),
            "unmatched": float(self.unmatched),
            "mean_gap_ns": self.abs_gap_ns / self.merged if self.merged else 0.0,
        }


def _take(batch: RawBatch, rows: np.ndarray) -> RawBatch:
    """The given rows of a batch, as a batch sharing its frame table."""
    offs = batch.stack_offsets
    lengths = (offs[1:] - offs[:-1])[rows]
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    frames = (
        np.concatenate([batch.stack_frames[offs[r] : offs[r + 1]] for r in rows.tolist()])
        if len(rows)
        else np.empty(0, dtype=np.uint32)
    )
    return RawBatch(
        collector=batch.collector,
        sample_types=batch.sample_types,
        frames=batch.frames,
        stack_frames=frames.astype(np.uint32),
        stack_offsets=new_offsets,
        values=batch.values[rows],
        pid=batch.pid[rows],
        tid=batch.tid[rows],
        timestamp_ns=batch.timestamp_ns[rows],
        flags=batch.flags[rows],
        thread_names=batch.thread_names,
        # Loss counters stay with the part that is passed on now.
        lost=0,
        missed=0,
        late=0,
    )
