"""The cpu collector: on-CPU samples with user and kernel stacks (perf_event CPU clock + BPF).

A software CPU-clock event per CPU (so threads created later are covered) runs
``cpu.bpf.c``, which counts samples per (pid, tid, user stack, kernel stack, time slot) in the
kernel. Each drain takes the counts out, resolves the stack ids it has not seen (see
:class:`hostprof.collectors._ebpf.StackMap`) and symbolises them
(:class:`hostprof.symbolize.Symbolizer`).
"""

from __future__ import annotations

import os
import time
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple

import numpy as np

from hostprof._errors import UsageError
from hostprof.collectors import _ebpf
from hostprof.collectors import _kernel
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import SampleType
from hostprof.native import _bpfmaps

SAMPLE_TYPES = (CPU_NS, SAMPLES)
EBPF_CPU_NS = SampleType("ebpf_cpu", "nanoseconds")
EBPF_SAMPLES = SampleType("ebpf_samples", "count")
SEPARATE_SAMPLE_TYPES = (EBPF_CPU_NS, EBPF_SAMPLES)
"""Used beside the Python sampler, whose own samples fill ``cpu``/``samples``."""


def stack_map_entries(frequency: int, cpus: int, interval_s: float) -> int:
    """Stack map size for a sampling rate: room for 16x the stacks one drain can produce.

    Buckets are hashed, so the map must stay sparse to keep collisions rare (at 1/16 load
    they are well under 1 %); power of two, between 16 Ki and 256 Ki entries.
    """
    want = 16 * 2 * frequency * cpus * max(interval_s, 0.1)
    size = 1 << max(14, int(want - 1).bit_length())
    return min(size, 1 << 18)


def count_map_entries(frequency: int, cpus: int, interval_s: float) -> int:
    """Aggregation map size: room for 4x the samples one drain can bring, each a distinct key
    at worst (new stacks, time slots); power of two, between 4 Ki and 64 Ki entries.

    Each drain's batched lookup-and-delete walks every bucket of the map, so an oversized map
    costs kernel time at every drain (64 Ki buckets: about 0.1 ms).
    """
    want = 4 * frequency * cpus * max(interval_s, 0.1)
    size = 1 << max(12, int(want - 1).bit_length())
    return min(size, 1 << 16)


class _StackIds:
    """The cpu map's stacks as arrays of frame ids (root first), resolved in bulk per drain.

    New stack ids are read in one C loop (:func:`hostprof.native._bpfmaps.read_stacks`) and
    symbolised in one call per drain (:meth:`hostprof.symbolize.Symbolizer.user_ids_multi`);
    garbage frames are dropped and runs of one ``[unknown]`` frame collapsed with numpy. A
    row then costs two dict lookups, and a batch's frame table is one ``numpy.unique`` over
    the ids its rows use. User stacks are cached per (pid, id), kernel stacks per id, until
    the id is swept (:meth:`hostprof.collectors._ebpf.StackMap.sweep`).
    """

    def __init__(self, fd: int, depth: int, symbolizer: Any) -> None:
        self._fd = fd
        self._depth = depth
        self._sym = symbolizer
        self._user: Dict[Tuple[int, int], np.ndarray] = {}
        self._kernel: Dict[int, np.ndarray] = {}
        self._generation = symbolizer.id_generation
        self._empty = np.empty(0, dtype=np.int64)
        self.evicted = 0

    def forget(self, swept: Set[int]) -> None:
        """Drops the stacks of swept ids (the map may reuse them for other stacks)."""
        if swept:
            for sid in swept:
                self._kernel.pop(sid, None)
            for key in [k for k in self._user if k[1] in swept]:
                del self._user[key]

    def prefetch(self, pids: List[int], ustacks: List[int], kstacks: List[int]) -> None:
        """Reads and resolves every stack of a drain that is not cached yet."""
        if self._sym.id_generation != self._generation:  # the symbolizer's ids started over
            self._user.clear()
            self._kernel.clear()
            self._generation = self._sym.id_generation
        want_u = [k for k in set(zip(pids, ustacks)) if k[1] >= 0 and k not in self._user]
        want_k = [s for s in set(kstacks) if s >= 0 and s not in self._kernel]
        ids = sorted({s for _, s in want_u} | set(want_k))
        if not ids:
            return
        addrs, lens = _bpfmaps.read_stacks(self._fd, ids, self._depth)
        ends = np.cumsum(np.maximum(lens, 0)).tolist()
        # Ids missing from the map (swept meanwhile) stay uncached: rows() counts them.
        span = {sid: (e - n, n) for sid, n, e in zip(ids, lens.tolist(), ends) if n >= 0}
        want_u = [k for k in want_u if k[1] in span]
        if want_u:
            sizes = [span[s][1] for _, s in want_u]
            flat = np.concatenate([addrs[span[s][0] : span[s][0] + span[s][1]] for _, s in want_u])
            owner = np.repeat(np.asarray([p for p, _ in want_u], dtype=np.int64), sizes)
            first = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
            callers = np.arange(len(flat)) != first  # all but each stack's leaf
            gids = self._sym.user_ids_multi(owner, flat, callers)
            stacks = _split_stacks(gids, sizes, self._sym.unknown_ids())
            self._user.update(zip(want_u, stacks))
        want_k = [s for s in want_k if s in span]
        if want_k:
            sizes = [span[s][1] for s in want_k]
            flat = np.concatenate([addrs[span[s][0] : span[s][0] + span[s][1]] for s in want_k])
            stacks = _split_stacks(self._sym.kernel_ids(flat), sizes, None)
            self._kernel.update(zip(want_k, stacks))

    def rows(
        self, pids: List[int], ustacks: List[int], kstacks: List[int]
    ) -> Tuple[List[Frame], np.ndarray, np.ndarray]:
        """(frames, stack_frames, stack_offsets) of a batch whose row i has the stacks
        ``(pids[i], ustacks[i], kstacks[i])``: Python, then kernel frames, root first."""
        user, kernel, empty = self._user, self._kernel, self._empty
        evicted = None
        pieces: List[np.ndarray] = []
        lengths: List[int] = []
        for pid, us, ks in zip(pids, ustacks, kstacks):
            u = empty if us < 0 else user.get((pid, us))
            k = empty if ks < 0 else kernel.get(ks)
            if u is None or k is None:
                # Swept between the counts drain and the stack read (see StackMap.sweep).
                if evicted is None:
                    evicted = np.array(
                        [self._sym.frame_id(Frame.synthetic("<stack evicted>"))], dtype=np.int64
                    )
                self.evicted += (u is None) + (k is None)
                u = evicted if u is None else u
                k = evicted if k is None else k
            pieces.append(u)
            pieces.append(k)
            lengths.append(len(u) + len(k))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not offsets[-1]:
            return [], np.empty(0, dtype=np.uint32), offsets
        used, local = np.unique(np.concatenate(pieces), return_inverse=True)
        return self._sym.frames_of(used.tolist()), local.astype(np.uint32), offsets


def _split_stacks(
    ids: np.ndarray, sizes: List[int], unknown: Optional[np.ndarray]
) -> List[np.ndarray]:
    """Leaf-first stacks of frame ids, back to back, -> root-first arrays, one per stack.

    With ``unknown`` (a mask over frame ids), -1 (garbage caller frames, see
    ``Symbolizer.user_ids_multi``) is dropped and runs of one ``[unknown]`` frame collapse
    into one: a frame-pointer walk through code built without frame pointers yields runs of
    garbage return addresses, which say no more than one such frame does.
    """
    n = len(sizes)
    which = np.repeat(np.arange(n), sizes)
    if unknown is not None:
        keep = ids >= 0
        ids, which = ids[keep], which[keep]
        if len(ids) > 1:
            dup = (ids[1:] == ids[:-1]) & (which[1:] == which[:-1]) & unknown[ids[1:]]
            keep = np.concatenate(([True], ~dup))
            ids, which = ids[keep], which[keep]
    # Reversed, each stack is root first and the stacks come last to first. Plain slices:
    # numpy.split costs several Python calls per piece.
    flat = ids[::-1].copy()
    ends = np.cumsum(np.bincount(which, minlength=n)[::-1]).tolist()
    parts = [flat[lo:hi] for lo, hi in zip([0, *ends[:-1]], ends)]
    return parts[::-1]


class CpuCollector(_ebpf.BpfCollector):
    """On-CPU stacks (user + kernel) for the whole host or a set of processes."""

    name = "cpu"
    sample_types = SAMPLE_TYPES
    source = "cpu.bpf.c"

    def __init__(
        self,
        pids: Optional[Sequence[int]] = None,
        frequency: int = 99,
        slot_ns: Optional[int] = None,
        interval_s: float = 1.0,
        symbolizer: Optional[Any] = None,
        separate_types: bool = False,
    ) -> None:
        if not 1 <= frequency <= 10_000:
            raise UsageError(f"cpu frequency must be 1..10000 Hz, got {frequency}")
        super().__init__(pids, slot_ns, symbolizer)
        self.sample_types = SEPARATE_SAMPLE_TYPES if separate_types else SAMPLE_TYPES
        self.frequency = int(frequency)
        self.cpus = os.cpu_count() or 1
        self.stack_entries = stack_map_entries(self.frequency, self.cpus, interval_s)
        self.count_entries = count_map_entries(self.frequency, self.cpus, interval_s)
        self._ids: Optional[_StackIds] = None

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: Any) -> Optional[Collector]:
        """Checks privileges, bcc and the CPU-clock event; returns a collector."""
        _kernel.check_all(perf_clock=True)
        return cls(pids, **options)

    def cflags(self) -> Dict[str, object]:
        return {"HP_STACK_ENTRIES": self.stack_entries, "HP_COUNT_ENTRIES": self.count_entries}

    def loaded(self) -> None:
        bcc = _kernel.import_bcc()
        self._bpf.attach_perf_event(
            ev_type=bcc.PerfType.SOFTWARE,
            ev_config=bcc.PerfSWConfig.CPU_CLOCK,
            fn_name="on_cpu_clock",
            sample_freq=self.frequency,
            cpu=-1,
        )
        self._stacks = _ebpf.StackMap(self._bpf, "stacks", self.symbolizer)
        table = self._bpf["stacks"]
        self._ids = _StackIds(table.map_fd, len(table.Leaf().ip), self.symbolizer)
        if hasattr(self.symbolizer, "load_kernel_symbols"):
            self.symbolizer.load_kernel_symbols()  # start-up cost, not a random drain's
        self._t_last = time.monotonic_ns()

    def drain(self) -> RawBatch:
        if self._bpf is None or self._stacks is None:
            return RawBatch.empty(self.name, self.sample_types)
        t0 = time.process_time()
        if self.symbolizer is not None:
            self.symbolizer.new_epoch()
        keys, counts = _ebpf.drain_arrays(self._bpf["counts"])
        period_ns = 1_000_000_000 // self.frequency
        pids = keys["pid"].tolist()
        ustacks = keys["ustack"].tolist()
        kstacks = keys["kstack"].tolist()
        self._stacks.sweep(set(ustacks) | set(kstacks))  # before symbolising: see sweep
        self._ids.forget(self._stacks.swept)
        self._ids.prefetch(pids, ustacks, kstacks)
        evicted_before = self._ids.evicted
        frames, stack_frames, stack_offsets = self._ids.rows(pids, ustacks, kstacks)
        n = len(pids)
        ns = counts.astype(np.int64)
        delta = self.loss_delta()
        batch = RawBatch(
            collector=self.name,
            sample_types=self.sample_types,
            frames=frames,
            stack_frames=stack_frames,
            stack_offsets=stack_offsets,
            values=np.stack([ns * period_ns, ns], axis=1).reshape(n, 2),
            pid=keys["pid"].astype(np.int32),
            tid=keys["tid"].astype(np.int32),
            timestamp_ns=_ebpf.slot_times(keys["slot"], self.shift),
            flags=np.zeros(n, dtype=np.uint8),
            lost=delta["map_full"],
            missed=delta["collisions"] + (self._ids.evicted - evicted_before),
        )
        batch.thread_names = self._threads.for_batch(batch.pid, batch.tid)
        if self.symbolizer is not None:
            self.symbolizer.release()
        self._stats["drain_cpu_s"] = self._stats.get("drain_cpu_s", 0.0) + (
            time.process_time() - t0
        )
        return batch

    def stats(self) -> Dict[str, float]:
        out = super().stats()
        out["stack_entries"] = float(self.stack_entries)
        out["count_entries"] = float(self.count_entries)
        if self._ids is not None:
            out["evicted"] = float(self._ids.evicted)
        out["unknown_frame_share"] = self.symbolizer.unknown_share
        return out
