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


class _FrameTable:
    """Turns drained rows into a batch's frame table with little Python per row.

    Frames get collector-wide ids. The ids of each user and each kernel stack (frame tuples
    cached by :class:`hostprof.collectors._ebpf.StackMap`) are cached by the tuple's
    identity, so a row costs two dict lookups unless its stack is new; a kernel stack shared
    by many rows is encoded once. A batch then keeps only the frames its rows use,
    renumbered with numpy.
    """

    MAX_FRAMES = 200_000
    """Collector-wide frame ids are dropped and rebuilt past this many (bounded memory)."""

    def __init__(self) -> None:
        self._frames: List[Frame] = []
        self._ids: Dict[int, int] = {}  # id(frame) -> id; _frames/_aliases keep it alive
        self._by_value: Dict[Frame, int] = {}  # equal frames that are distinct objects
        self._aliases: List[Frame] = []
        # id(frame tuple) -> (the tuple, which keeps the id from being reused; its ids)
        self._parts: Dict[int, Tuple[Tuple[Frame, ...], List[int]]] = {}
        self._previous: Dict[int, Tuple[Tuple[Frame, ...], List[int]]] = {}

    def _encode(self, frames: Tuple[Frame, ...]) -> List[int]:
        ids, table = self._ids, self._frames
        out = []
        for f in frames:
            fid = ids.get(id(f))
            if fid is None:
                # Frame's dataclass __hash__ runs Python code: by value only for new objects.
                fid = self._by_value.get(f)
                if fid is None:
                    fid = self._by_value[f] = len(table)
                    table.append(f)
                else:
                    self._aliases.append(f)
                ids[id(f)] = fid
            out.append(fid)
        return out

    def rows(
        self, stacks: Any, pids: List[int], ustacks: List[int], kstacks: List[int]
    ) -> Tuple[List[Frame], np.ndarray, np.ndarray]:
        """(frames, stack_frames, stack_offsets) of a batch whose row i has the stacks
        ``(pids[i], ustacks[i], kstacks[i])``, root first."""
        if len(self._frames) > self.MAX_FRAMES:
            self.__init__()  # type: ignore[misc]
        parts, previous = self._parts, self._previous
        user, kernel = stacks.user, stacks.kernel
        flat: List[int] = []
        lengths: List[int] = []
        for pid, us, ks in zip(pids, ustacks, kstacks):
            n = 0
            for part in (user(pid, us), kernel(ks)):
                hit = parts.get(id(part))
                if hit is None:
                    hit = previous.get(id(part))
                    if hit is None or hit[0] is not part:
                        hit = (part, self._encode(part))
                    parts[id(part)] = hit
                flat.extend(hit[1])
                n += len(hit[1])
            lengths.append(n)
        # Entries used in this drain or the one before survive; older ones go.
        self._previous, self._parts = parts, {}
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not flat:
            return [], np.empty(0, dtype=np.uint32), offsets
        used, local = np.unique(np.asarray(flat, dtype=np.int64), return_inverse=True)
        table = self._frames
        return [table[g] for g in used.tolist()], local.astype(np.uint32), offsets


class CpuCollector(Collector):
    """On-CPU stacks (user + kernel) for the whole host or a set of processes."""

    name = "cpu"
    sample_types = SAMPLE_TYPES

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
        self.pids = None if pids is None else [int(p) for p in pids]
        self.sample_types = SEPARATE_SAMPLE_TYPES if separate_types else SAMPLE_TYPES
        self.frequency = int(frequency)
        self.shift = _ebpf.slot_shift(slot_ns)
        self.cpus = os.cpu_count() or 1
        self.stack_entries = stack_map_entries(self.frequency, self.cpus, interval_s)
        self.count_entries = count_map_entries(self.frequency, self.cpus, interval_s)
        if symbolizer is None:
            from hostprof.symbolize import Symbolizer

            symbolizer = Symbolizer()
        self.symbolizer = symbolizer
        self._bpf: Any = None
        self._stacks: Optional[_ebpf.StackMap] = None
        self._names = _ebpf.ThreadNames()
        self._frame_table = _FrameTable()
        self._reported: Dict[str, int] = {}
        self._stats: Dict[str, float] = {}

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: Any) -> Optional[Collector]:
        """Checks privileges, bcc and the CPU-clock event; returns a collector."""
        _kernel.check_all(perf_clock=True)
        return cls(pids, **options)

    def start(self) -> None:
        """Compiles, loads and attaches; a second call (already started) does nothing."""
        if self._bpf:
            return
        bcc = _kernel.import_bcc()
        self._bpf, compile_s = _ebpf.load(
            "cpu.bpf.c",
            {
                "HP_SLOT_SHIFT": self.shift,
                "HP_STACK_ENTRIES": self.stack_entries,
                "HP_COUNT_ENTRIES": self.count_entries,
            },
            self.pids,
        )
        self._stats["compile_s"] = compile_s
        self._bpf.attach_perf_event(
            ev_type=bcc.PerfType.SOFTWARE,
            ev_config=bcc.PerfSWConfig.CPU_CLOCK,
            fn_name="on_cpu_clock",
            sample_freq=self.frequency,
            cpu=-1,
        )
        self._stacks = _ebpf.StackMap(self._bpf, "stacks", self.symbolizer)
        if hasattr(self.symbolizer, "load_kernel_symbols"):
            self.symbolizer.load_kernel_symbols()  # start-up cost, not a random drain's
        self._t_last = time.monotonic_ns()

    def add_pids(self, pids: Sequence[int]) -> None:
        """Adds processes to a per-pid collector while it runs."""
        if self.pids is not None and self._bpf is not None:
            _ebpf.add_pids(self._bpf, pids)
            self.pids.extend(int(p) for p in pids)

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
        self._stacks.prefetch(zip(pids, ustacks), kstacks)
        evicted_before = self._stacks.evicted
        frames, stack_frames, stack_offsets = self._frame_table.rows(
            self._stacks, pids, ustacks, kstacks
        )
        n = len(pids)
        ns = counts.astype(np.int64)
        totals = _ebpf.read_stats(self._bpf)
        delta = {k: totals[k] - self._reported.get(k, 0) for k in totals}
        self._reported = totals
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
            missed=delta["collisions"] + (self._stacks.evicted - evicted_before),
        )
        batch.thread_names = self._names.for_batch(batch.pid, batch.tid)
        if self.symbolizer is not None:
            self.symbolizer.release()
        self._stats["drain_cpu_s"] = self._stats.get("drain_cpu_s", 0.0) + (
            time.process_time() - t0
        )
        return batch

    def stop(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def stats(self) -> Dict[str, float]:
        out = dict(self._stats)
        out.update({k: float(v) for k, v in self._reported.items()})
        out["stack_entries"] = float(self.stack_entries)
        out["count_entries"] = float(self.count_entries)
        if self._stacks is not None:
            out["evicted"] = float(self._stacks.evicted)
        out["unknown_frame_share"] = self.symbolizer.unknown_share
        return out
