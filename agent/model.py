"""The profile model: interned frames, stacks and label sets, with aggregated sample values.

Everything that collects (sampling core, eBPF collectors, decoders) produces a :class:`Profile`,
and everything that writes (encoders, push, store) consumes one. There is no I/O here.

Hot paths never loop over samples in Python:

* stacks are interned by :class:`hostprof.native._core.StackTable` (C, GIL released), a batch at
  a time;
* values are summed per (stack, label set) by a numpy sort and ``add.reduceat``.

Stacks are stored root first (outermost caller first), which is the folded format's order.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING
from typing import Callable
from typing import Dict
from typing import Iterable
from typing import Iterator
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy and the native StackTable are imported where Profile uses them, not here: Frame and
# FrameKind are needed by one-shot commands (`hostprof dump`) that must start in a few ms, and
# numpy alone takes ~100 ms to import.

LabelSet = Tuple[Tuple[str, str], ...]
"""A label set: sorted (name, value) pairs."""

LabelMapper = Callable[[LabelSet], Optional[LabelSet]]
"""Maps a label set to a new one, or to None to drop its samples."""


class FrameKind(enum.IntEnum):
    """Where a frame comes from; encoders colour and annotate by it."""

    PYTHON = 0
    """A Python function, read from the interpreter's memory."""
    NATIVE = 1
    """A user-space machine-code function (C extension, libc, the interpreter itself)."""
    KERNEL = 2
    """A kernel function, from an eBPF kernel stack."""
    SYNTHETIC = 3
    """A marker made by hostprof, such as ``<gc gen=2>``, ``<idle>`` or ``<syscall:read>``."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One stack frame. Frames are value objects: equal fields mean the same interned frame."""

    function: str
    """Function name (Python qualname where known, or the native symbol)."""
    file: str = ""
    """Source file for Python frames; the mapped object (e.g. ``libz.so.1``) for native ones."""
    line: int = 0
    """Line number for Python frames; 0 when unknown or not applicable."""
    kind: FrameKind = FrameKind.PYTHON
    """Origin of the frame."""

    @classmethod
    def synthetic(cls, name: str) -> Frame:
        """Makes a synthetic marker frame; ``name`` is written with its angle brackets."""
        return cls(name, "", 0, FrameKind.SYNTHETIC)


@dataclasses.dataclass(frozen=True)
class SampleType:
    """A named sample value with its unit, e.g. ``cpu:nanoseconds`` or ``samples:count``."""

    type: str
    """What is measured (``cpu``, ``wall``, ``samples``, ``gc_pause``, ``syscalls``, ...)."""
    unit: str
    """Its unit (``nanoseconds``, ``count``, ``bytes``)."""

    def __str__(self) -> str:
        return f"{self.type}:{self.unit}"

    @classmethod
    def parse(cls, text: str) -> SampleType:
        """Parses ``type:unit``."""
        kind, sep, unit = text.partition(":")
        if not sep or not kind or not unit:
            raise ValueError(f"sample type must look like 'cpu:nanoseconds', got {text!r}")
        return cls(kind, unit)


CPU_NS = SampleType("cpu", "nanoseconds")
WALL_NS = SampleType("wall", "nanoseconds")
SAMPLES = SampleType("samples", "count")
GC_PAUSE_NS = SampleType("gc_pause", "nanoseconds")
SYSCALLS = SampleType("syscalls", "count")
OFFCPU_NS = SampleType("offcpu", "nanoseconds")


@dataclasses.dataclass(frozen=True)
class Window:
    """A span of time the profile covers."""

    start_ns: int
    """Start, in nanoseconds since the Unix epoch."""
    duration_ns: int
    """Length in nanoseconds."""


class FrameTable:
    """Interns :class:`Frame` objects into dense ids. Frames are few (one per code location),
    so a dict is the right tool here; stacks refer to frames by id."""

    def __init__(self) -> None:
        self._frames: List[Frame] = []
        self._ids: Dict[Frame, int] = {}

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, frame_id: int) -> Frame:
        return self._frames[frame_id]

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._frames)

    def intern(self, frame: Frame) -> int:
        """Returns the id of ``frame``, adding it if new."""
        fid = self._ids.get(frame)
        if fid is None:
            fid = len(self._frames)
            self._frames.append(frame)
            self._ids[frame] = fid
        return fid

    def intern_all(self, frames: Iterable[Frame]) -> npt.NDArray[np.uint32]:
        """Interns many frames; returns their ids (the map from a local table to this one)."""
        import numpy as np

        return np.fromiter((self.intern(f) for f in frames), dtype=np.uint32)


class LabelTable:
    """Interns label sets into dense ids. Id 0 is always the empty set."""

    def __init__(self) -> None:
        self._sets: List[LabelSet] = [()]
        self._ids: Dict[LabelSet, int] = {(): 0}

    def __len__(self) -> int:
        return len(self._sets)

    def __getitem__(self, label_id: int) -> LabelSet:
        return self._sets[label_id]

    def intern(self, labels: Optional[Mapping[str, str]] | LabelSet = None) -> int:
        """Returns the id of a label set given as a mapping or as pairs."""
        if not labels:
            return 0
        items = labels.items() if isinstance(labels, Mapping) else labels
        key: LabelSet = tuple(sorted((str(k), str(v)) for k, v in items))
        lid = self._ids.get(key)
        if lid is None:
            lid = len(self._sets)
            self._sets.append(key)
            self._ids[key] = lid
        return lid


class Profile:
    """Samples aggregated per (stack, label set), for one or more sample types.

    Attributes:
        sample_types: the value columns, in order.
        period_type: what one sampling period measures (e.g. ``cpu:nanoseconds``), or None.
        period: the sampling period in ``period_type`` units (e.g. 10_000_000 for 100 Hz).
        frames: interned frames.
        stacks: interned stacks of frame ids, root first.
        labels: interned label sets.
        windows: the time spans this profile covers.
    """

    def __init__(
        self,
        sample_types: Sequence[SampleType],
        period_type: Optional[SampleType] = None,
        period: int = 0,
    ) -> None:
        if not sample_types:
            raise ValueError("a profile needs at least one sample type")
        import numpy as np

        from hostprof.native._core import StackTable

        self.sample_types: Tuple[SampleType, ...] = tuple(sample_types)
        self.period_type = period_type
        self.period = int(period)
        self.frames = FrameTable()
        self.stacks = StackTable()
        self.labels = LabelTable()
        self.windows: List[Window] = []
        self._stack_ids = np.empty(0, dtype=np.uint32)
        self._label_ids = np.empty(0, dtype=np.uint32)
        self._values = np.empty((0, len(self.sample_types)), dtype=np.int64)
        self._pending: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # ----------------------------------------------------------------------------- adding
    def add(
        self,
        stack: Sequence[Frame],
        values: Sequence[int] | int,
        labels: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Adds one sample given as frames (root first). Convenient, not for hot paths."""
        import numpy as np

        frame_ids = [self.frames.intern(f) for f in stack]
        sid = self.stacks.intern(frame_ids)
        vals = np.atleast_1d(np.asarray(values, dtype=np.int64)).reshape(1, -1)
        self._append(
            np.array([sid], dtype=np.uint32),
            np.array([self.labels.intern(labels)], dtype=np.uint32),
            vals,
        )

    def add_batch(
        self,
        frame_ids: npt.ArrayLike,
        offsets: npt.ArrayLike,
        values: npt.ArrayLike,
        label_ids: npt.ArrayLike | int = 0,
        frame_remap: Optional[npt.ArrayLike] = None,
    ) -> None:
        """Adds many samples at once: the hot path.

        Args:
            frame_ids: every sample's frame ids end to end, root first (uint32).
            offsets: ``n + 1`` offsets into ``frame_ids`` delimiting the n samples.
            values: ``(n, len(sample_types))`` values, or ``(n,)`` for one sample type.
            label_ids: one label-set id (from ``self.labels``) per sample, or one for all.
            frame_remap: when the frame ids are a batch's local ids, the map from those ids to
                ids in ``self.frames`` (see :meth:`FrameTable.intern_all`).
        """
        stack_ids = self.stacks.intern_many(frame_ids, offsets, frame_remap)
        self.add_stacks(stack_ids, values, label_ids)

    def add_stacks(
        self,
        stack_ids: npt.ArrayLike,
        values: npt.ArrayLike,
        label_ids: npt.ArrayLike | int = 0,
    ) -> None:
        """Adds samples whose stacks are already interned in ``self.stacks``."""
        import numpy as np

        sids = np.ascontiguousarray(stack_ids, dtype=np.uint32)
        vals = np.asarray(values, dtype=np.int64)
        if vals.ndim == 1:
            vals = vals.reshape(-1, 1) if len(self.sample_types) == 1 else vals.reshape(1, -1)
        if vals.shape != (len(sids), len(self.sample_types)):
            raise ValueError(
                f"values must have shape ({len(sids)}, {len(self.sample_types)}), got {vals.shape}"
            )
        if np.isscalar(label_ids):
            lids = np.full(len(sids), int(label_ids), dtype=np.uint32)  # type: ignore[arg-type]
        else:
            lids = np.ascontiguousarray(label_ids, dtype=np.uint32)
        self._append(sids, lids, vals)

    def _append(self, sids: np.ndarray, lids: np.ndarray, vals: np.ndarray) -> None:
        self._pending.append((sids, lids, vals))
        # Keep pending memory bounded without compacting on every small batch.
        if sum(len(p[0]) for p in self._pending) > 4 * max(len(self._stack_ids), 65536):
            self.compact()

    # -------------------------------------------------------------------------- reading
    def compact(self) -> None:
        """Sums pending samples into one row per (stack, label set). Idempotent."""
        import numpy as np

        if not self._pending:
            return
        sids = np.concatenate([self._stack_ids] + [p[0] for p in self._pending])
        lids = np.concatenate([self._label_ids] + [p[1] for p in self._pending])
        vals = np.concatenate([self._values] + [p[2] for p in self._pending])
        self._pending.clear()
        self._stack_ids, self._label_ids, self._values = _sum_by_key(sids, lids, vals)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns the compacted (stack_ids, label_ids, values) arrays. Do not mutate them."""
        self.compact()
        return self._stack_ids, self._label_ids, self._values

    def __len__(self) -> int:
        """Number of distinct (stack, label set) rows."""
        self.compact()
        return len(self._stack_ids)

    def stack(self, stack_id: int) -> Tuple[Frame, ...]:
        """The frames of one interned stack, root first."""
        return tuple(self.frames[f] for f in self.stacks.get(stack_id))

    def items(self) -> Iterator[Tuple[Tuple[Frame, ...], LabelSet, Tuple[int, ...]]]:
        """Yields (frames root first, labels, values) per distinct row. For encoders."""
        sids, lids, vals = self.arrays()
        cache: Dict[int, Tuple[Frame, ...]] = {}
        for sid, lid, row in zip(sids.tolist(), lids.tolist(), vals.tolist()):
            frames = cache.get(sid)
            if frames is None:
                frames = cache[sid] = self.stack(sid)
            yield frames, self.labels[lid], tuple(row)

    def totals(self) -> Tuple[int, ...]:
        """The sum of each sample type over all samples."""
        return tuple(int(v) for v in self.arrays()[2].sum(axis=0))

    def sample_type_index(self, sample_type: SampleType | str) -> int:
        """Index of a sample type given as an object or as ``type:unit`` / ``type``."""
        for i, st in enumerate(self.sample_types):
            if st == sample_type or str(st) == sample_type or st.type == sample_type:
                return i
        raise KeyError(f"no sample type {sample_type} in {[str(s) for s in self.sample_types]}")

    def to_dict(self) -> Dict[Tuple[Tuple[Frame, ...], LabelSet], Tuple[int, ...]]:
        """Canonical form: {(stack, labels): values}. For tests and small profiles."""
        return {(frames, labels): values for frames, labels, values in self.items()}

    @property
    def time_range(self) -> Tuple[int, int]:
        """(start_ns, end_ns) over all windows, or (0, 0) with none."""
        if not self.windows:
            return 0, 0
        return (
            min(w.start_ns for w in self.windows),
            max(w.start_ns + w.duration_ns for w in self.windows),
        )

    # ------------------------------------------------------------------ transformations
    def empty_like(self) -> Profile:
        """A new empty profile with the same sample types and period."""
        return Profile(self.sample_types, self.period_type, self.period)

    def merge(self, *others: Profile) -> Profile:
        """Returns a new profile holding this one's samples plus the others'.

        Sample types must match by name. Windows are concatenated.
        """
        out = self.empty_like()
        for p in (self, *others):
            out.merge_in(p)
        return out

    def merge_in(self, other: Profile) -> None:
        """Adds every sample of ``other`` into this profile, in place."""
        import numpy as np

        if [str(s) for s in other.sample_types] != [str(s) for s in self.sample_types]:
            raise ValueError(
                "cannot merge profiles with different sample types: "
                f"{[str(s) for s in self.sample_types]} vs {[str(s) for s in other.sample_types]}"
            )
        sids, lids, vals = other.arrays()
        if len(sids):
            frame_map = self.frames.intern_all(other.frames)
            frames, offsets = other.stacks.export()
            stack_map = self.stacks.intern_many(frames, offsets, frame_map)
            label_map = np.fromiter(
                (self.labels.intern(other.labels[i]) for i in range(len(other.labels))),
                dtype=np.uint32,
                count=len(other.labels),
            )
            self._append(stack_map[sids], label_map[lids], vals.copy())
        self.windows.extend(other.windows)
        if not self.period and other.period:
            self.period, self.period_type = other.period, other.period_type

    def relabel(self, fn: LabelMapper) -> Profile:
        """Returns a profile whose label sets are mapped through ``fn`` (None drops the row).

        ``fn`` runs once per distinct label set, not per sample.
        """
        import numpy as np

        sids, lids, vals = self.arrays()
        out = self.empty_like()
        out.windows = list(self.windows)
        new_ids = np.zeros(len(self.labels), dtype=np.int64)
        for i in range(len(self.labels)):
            mapped = fn(self.labels[i])
            new_ids[i] = -1 if mapped is None else out.labels.intern(mapped)
        keep = new_ids[lids] >= 0
        frames, offsets = self.stacks.export()
        # Reuse the frame and stack tables wholesale: ids stay the same.
        for f in self.frames:
            out.frames.intern(f)
        out.stacks.intern_many(frames, offsets)
        out._append(sids[keep], new_ids[lids][keep].astype(np.uint32), vals[keep])
        return out

    def filter_labels(self, **match: str) -> Profile:
        """Keeps only samples whose labels include every ``name=value`` given."""
        wanted = set(match.items())
        return self.relabel(lambda ls: ls if wanted.issubset(ls) else None)

    def drop_labels(self, *names: str) -> Profile:
        """Removes the named labels, merging samples that then coincide (e.g. threads)."""
        gone = set(names)
        return self.relabel(lambda ls: tuple(kv for kv in ls if kv[0] not in gone))

    def split_by(self, name: str) -> Dict[str, Profile]:
        """Splits into one profile per value of label ``name`` (missing: key ``""``)."""
        values = {dict(self.labels[i]).get(name, "") for i in range(len(self.labels))}
        used = {dict(self.labels[i]).get(name, "") for i in set(self.arrays()[1].tolist())}
        return {
            v: self.relabel(lambda ls, v=v: ls if dict(ls).get(name, "") == v else None)
            for v in sorted(values & used)
        }

    def scaled(self, factor: float) -> Profile:
        """A copy with every value multiplied by ``factor`` (rounded)."""
        import numpy as np

        out = self.merge()
        out.compact()
        out._values = np.rint(out._values * factor).astype(np.int64)
        return out


def _sum_by_key(
    sids: np.ndarray, lids: np.ndarray, vals: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums value rows that share (stack id, label id). Exact for int64."""
    import numpy as np

    if len(sids) == 0:
        return sids.astype(np.uint32), lids.astype(np.uint32), vals.astype(np.int64)
    keys = (sids.astype(np.uint64) << np.uint64(32)) | lids.astype(np.uint64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    summed = np.add.reduceat(vals[order], starts, axis=0)
    uniq = keys[starts]
    return (
        (uniq >> np.uint64(32)).astype(np.uint32),
        (uniq & np.uint64(0xFFFFFFFF)).astype(np.uint32),
        summed.astype(np.int64),
    )
