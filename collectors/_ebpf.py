"""Plumbing shared by the eBPF collectors: compile and load, drain maps, resolve stack ids.

Each collector keeps its BPF C in ``<name>.bpf.c`` beside its module; options are ``-D``
cflags, shared structs live in ``hostprof.bpf.h``. Aggregation maps are drained with the
kernel's batched lookup-and-delete, so each drain returns only what happened since the last.

Stack maps are not double-buffered (bcc 0.26 cannot pass a map to a helper by pointer, so the
code would have to be duplicated per buffer). Instead, each drain deletes the stack ids that
no drained key referenced. A sample that lands between the drain and that sweep and uses a
swept id finds its stack gone at the next drain; it is counted in ``missed`` (``evicted``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import time
from pathlib import Path
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple

import numpy as np

from hostprof._errors import DependencyError
from hostprof.collectors import _kernel
from hostprof.collectors import _kheaders
from hostprof.model import Frame
from hostprof.model import FrameKind

HERE = Path(__file__).resolve().parent
STAT_NAMES = ("collisions", "no_stack", "map_full", "events", "orphans", "short")

DEFAULT_SLOT_NS = 1 << 23  # 8.4 ms: under the sampling core's default 10 ms interval


def slot_shift(slot_ns: Optional[int]) -> int:
    """The ``HP_SLOT_SHIFT`` for a slot width (rounded down to a power of two); 63 = none."""
    if not slot_ns:
        return 63
    return max(10, int(slot_ns).bit_length() - 1)


def slot_times(slots: np.ndarray, shift: int) -> np.ndarray:
    """CLOCK_MONOTONIC midpoints of time slots; 0 (aggregated) when slots are off."""
    if shift >= 63:
        return np.zeros(len(slots), dtype=np.int64)
    return (slots.astype(np.int64) << shift) + (1 << (shift - 1))


def load(
    source: str,
    defines: Mapping[str, object],
    pids: Optional[Sequence[int]] = None,
    usdt_contexts: Sequence[Any] = (),
) -> Tuple[Any, float]:
    """Compiles and loads ``collectors/<source>`` with ``-D`` options; returns (BPF, seconds).

    With ``pids``, the program is built with ``HP_FILTER_PIDS`` and the pid table is filled.
    """
    bcc = _kernel.import_bcc()
    _kheaders.ensure()
    cflags = [f"-I{HERE}", f"-DHP_SELF_PID={os.getpid()}", "-Wno-macro-redefined"]
    if pids is not None:
        cflags.append("-DHP_FILTER_PIDS=1")
        if len(pids):
            cflags.append(f"-DHP_FIRST_PID={int(pids[0])}")
    for name, value in defines.items():
        if value is True:
            cflags.append(f"-D{name}=1")
        elif value is not False and value is not None:
            cflags.append(f"-D{name}={value}")
    t0 = time.perf_counter()
    text = inline_includes(HERE / source)
    try:
        bpf = bcc.BPF(text=text, cflags=cflags, usdt_contexts=list(usdt_contexts))
    except Exception as exc:
        raise DependencyError(
            f"bcc could not compile {source} ({exc})",
            "check the kernel header tree: python -m hostprof.collectors._kheaders",
        ) from None
    elapsed = time.perf_counter() - t0
    _release_compiler_memory()
    if pids is not None:
        table = bpf["hp_pids"]
        for pid in pids:
            table[ctypes.c_uint32(int(pid))] = ctypes.c_uint8(1)
    return bpf, elapsed


def _release_compiler_memory() -> None:
    """Returns the heap clang/LLVM freed after a compile to the OS (about 30 MB of RSS)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_INCLUDE_RE = re.compile(r'^#include "([A-Za-z0-9_.]+\.bpf\.h)"\s*$', re.M)


def inline_includes(path: Path) -> str:
    """The program text with ``#include "*.bpf.h"`` lines replaced by the header's text.

    bcc rewrites map method calls (``m.lookup()``) only in the main file; in an included
    header they stay calls through a function pointer, which the verifier rejects. So shared
    helpers that touch maps are pasted in, the way the preprocessor would.
    """
    seen: Set[str] = set()

    def expand(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _INCLUDE_RE.sub(expand, (HERE / name).read_text())

    return _INCLUDE_RE.sub(expand, path.read_text())


def add_pids(bpf: Any, pids: Iterable[int]) -> None:
    """Adds processes to a running program's pid filter."""
    table = bpf["hp_pids"]
    for pid in pids:
        table[ctypes.c_uint32(int(pid))] = ctypes.c_uint8(1)


def read_stats(bpf: Any) -> Dict[str, int]:
    """The hp_stats counters of a program (totals since load)."""
    table = bpf["hp_stats"]
    return {name: int(table[ctypes.c_int(i)].value) for i, name in enumerate(STAT_NAMES)}


def drain_map(table: Any) -> List[Tuple[Any, Any]]:
    """Atomically takes every entry out of a hash map (one syscall per batch of keys)."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:
        # Kernels before 5.6 lack batch ops: fall back to per-key pops.
        out = []
        for k in list(table.keys()):
            try:
                v = table[k]
                del table[k]
            except KeyError:
                continue
            out.append((k, v))
        return out


def percpu_sum(value: Any) -> int:
    """Sum of a per-CPU map value (a ctypes array, or a list from batch ops)."""
    if isinstance(value, int):
        return value
    try:
        return int(sum(int(getattr(x, "value", x)) for x in value))
    except TypeError:
        return int(getattr(value, "value", value))


def keys_to_array(items: Sequence[Tuple[Any, Any]], fields: Sequence[str]) -> Dict[str, np.ndarray]:
    """Columns of ctypes key structs as numpy arrays (one pass, done per drain)."""
    cols: Dict[str, List[int]] = {f: [] for f in fields}
    for k, _ in items:
        for f in fields:
            cols[f].append(getattr(k, f))
    return {f: np.asarray(v, dtype=np.int64) for f, v in cols.items()}


def _collapse_unknown(frames: Tuple[Frame, ...]) -> Tuple[Frame, ...]:
    """Merges runs of identical ``[unknown]`` frames: a frame-pointer walk through code built
    without frame pointers yields runs of garbage return addresses, which say nothing more
    than one such frame does."""
    out: List[Frame] = []
    for f in frames:
        if f.function == "[not mapped]" and not f.file:
            continue  # symbolize.NOT_MAPPED: a garbage caller frame
        if out and f.function == "[unknown]" and out[-1] == f:
            continue
        out.append(f)
    return tuple(out)


FULL_SWEEP_EVERY = 32
"""Every this many drains the stack sweep walks the whole map instead of the known ids."""


class StackMap:
    """Reads a BPF stack map by id, caches the frames per id, and sweeps unused ids.

    Kernel stacks are cached by id; user stacks by (pid, id), because the same addresses mean
    different functions in different processes. A cached entry stays valid until its id is
    swept, since an occupied stack-map bucket is never overwritten without BPF_F_REUSE_STACKID.
    """

    def __init__(self, bpf: Any, name: str, symbolizer: Any) -> None:
        self._table = bpf[name]
        self._sym = symbolizer
        self._kernel: Dict[int, Tuple[Frame, ...]] = {}
        self._user: Dict[Tuple[int, int], Tuple[Frame, ...]] = {}
        self._previous: Set[int] = set()
        self._known: Set[int] = set()  # ids seen in drained keys and not deleted yet
        self._sweeps = 0
        self.evicted = 0

    def _addresses(self, stack_id: int) -> Optional[List[int]]:
        try:
            trace = self._table[ctypes.c_int(stack_id)]
        except KeyError:
            return None
        ips = np.frombuffer(trace.ip, dtype=np.uint64)
        end = np.flatnonzero(ips == 0)
        return ips[: int(end[0]) if len(end) else len(ips)].tolist()

    def prefetch(self, user: Iterable[Tuple[int, int]], kernel: Iterable[int]) -> None:
        """Resolves every not-yet-cached stack in one symbolizer call per process (numpy
        overhead is per call, so batching matters when a drain brings many new stacks)."""
        by_pid: Dict[int, List[Tuple[int, List[int]]]] = {}
        for pid, sid in set(user):
            if sid < 0 or (pid, sid) in self._user:
                continue
            addrs = self._addresses(sid)
            if addrs is not None:
                by_pid.setdefault(pid, []).append((sid, addrs))
        for pid, stacks in by_pid.items():
            flat = [a for _, addrs in stacks for a in addrs]
            callers = [i > 0 for _, addrs in stacks for i in range(len(addrs))]
            frames = self._sym.user_frames(pid, flat, callers)
            pos = 0
            for sid, addrs in stacks:
                self._user[(pid, sid)] = _collapse_unknown(
                    tuple(reversed(frames[pos : pos + len(addrs)]))
                )
                pos += len(addrs)
        kstacks = []
        for sid in set(kernel):
            if sid >= 0 and sid not in self._kernel:
                addrs = self._addresses(sid)
                if addrs is not None:
                    kstacks.append((sid, addrs))
        if kstacks:
            frames = self._sym.kernel_frames([a for _, addrs in kstacks for a in addrs])
            pos = 0
            for sid, addrs in kstacks:
                self._kernel[sid] = tuple(reversed(frames[pos : pos + len(addrs)]))
                pos += len(addrs)

    def kernel(self, stack_id: int) -> Tuple[Frame, ...]:
        """Kernel frames of a stack id, root first (empty for a negative id)."""
        if stack_id < 0:
            return ()
        frames = self._kernel.get(stack_id)
        if frames is None:
            addrs = self._addresses(stack_id)
            if addrs is None:
                self.evicted += 1
                return (Frame.synthetic("<stack evicted>"),)
            frames = tuple(reversed(self._sym.kernel_frames(addrs)))
            self._kernel[stack_id] = frames
        return frames

    def user(self, pid: int, stack_id: int) -> Tuple[Frame, ...]:
        """User frames of a stack id in a process, root first (empty for a negative id)."""
        if stack_id < 0:
            return ()
        frames = self._user.get((pid, stack_id))
        if frames is None:
            addrs = self._addresses(stack_id)
            if addrs is None:
                self.evicted += 1
                return (Frame.synthetic("<stack evicted>"),)
            frames = _collapse_unknown(tuple(reversed(self._sym.user_frames(pid, addrs))))
            self._user[(pid, stack_id)] = frames
        return frames

    def sweep(self, keep: Set[int]) -> int:
        """Deletes stack ids referenced neither by ``keep`` (this drain) nor by the previous
        drain, from the map and the caches; returns how many.

        Call it right after draining the counts, before symbolising, so the window in which a
        new sample can pick up an id that is then deleted stays a few milliseconds long; ids
        of the previous drain are kept because hot stacks recur in that window.
        """
        keep = {sid for sid in keep if sid >= 0}
        protect = keep | self._previous
        self._previous = set(keep)
        self._sweeps += 1
        if self._sweeps % FULL_SWEEP_EVERY == 0:
            # Ids whose counts never reached us (an aggregation map was full) are in the map
            # but not in _known: walk the whole map now and then (one syscall per key).
            present = {int(k.value) for k in self._table}
        else:
            present = self._known
        gone = [sid for sid in present if sid not in protect]
        self._known = (self._known | keep) - set(gone)
        for sid in gone:
            with contextlib.suppress(KeyError):
                del self._table[ctypes.c_int(sid)]
        if gone:
            dead = set(gone)
            for sid in dead:
                self._kernel.pop(sid, None)
            for key in [k for k in self._user if k[1] in dead]:
                del self._user[key]
        return len(gone)


class ThreadNames:
    """Thread names by tid, read once from /proc (threads that already exited stay unnamed)."""

    def __init__(self) -> None:
        self._names: Dict[Tuple[int, int], str] = {}

    def get(self, pid: int, tid: int) -> str:
        key = (pid, tid)
        name = self._names.get(key)
        if name is None:
            if len(self._names) > 65536:
                self._names.clear()  # bounded: most entries belong to exited threads
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                name = ""
            self._names[key] = name
        return name

    def for_batch(self, pids: np.ndarray, tids: np.ndarray) -> Dict[int, str]:
        out: Dict[int, str] = {}
        for pid, tid in set(zip(pids.tolist(), tids.tolist())):
            name = self.get(pid, tid)
            if name:
                out[tid] = name
        return out


def syscall_frame(name: str) -> Frame:
    """The synthetic leaf frame of a syscall."""
    return Frame(f"<syscall:{name}>", "", 0, FrameKind.SYNTHETIC)


class BatchBuilder:
    """Accumulates rows of (stack, values, pid, tid, timestamp) into one RawBatch."""

    def __init__(self, collector: str, sample_types: Tuple[Any, ...]) -> None:
        self.collector = collector
        self.sample_types = sample_types
        self._frames: List[Frame] = []
        self._ids: Dict[Frame, int] = {}
        self._stack_frames: List[int] = []
        self._offsets: List[int] = [0]
        self._values: List[Sequence[int]] = []
        self._pid: List[int] = []
        self._tid: List[int] = []
        self._ts: List[int] = []

    def add(
        self, stack: Iterable[Frame], values: Sequence[int], pid: int, tid: int, ts: int = 0
    ) -> None:
        ids = self._ids
        for f in stack:
            fid = ids.get(f)
            if fid is None:
                fid = ids[f] = len(self._frames)
                self._frames.append(f)
            self._stack_frames.append(fid)
        self._offsets.append(len(self._stack_frames))
        self._values.append(values)
        self._pid.append(pid)
        self._tid.append(tid)
        self._ts.append(ts)

    def build(self, **extra: Any) -> Any:
        from hostprof.collectors._batch import RawBatch

        n = len(self._pid)
        return RawBatch(
            collector=self.collector,
            sample_types=self.sample_types,
            frames=self._frames,
            stack_frames=np.asarray(self._stack_frames, dtype=np.uint32),
            stack_offsets=np.asarray(self._offsets, dtype=np.int64),
            values=np.asarray(self._values, dtype=np.int64).reshape(n, len(self.sample_types)),
            pid=np.asarray(self._pid, dtype=np.int32),
            tid=np.asarray(self._tid, dtype=np.int32),
            timestamp_ns=np.asarray(self._ts, dtype=np.int64),
            flags=np.zeros(n, dtype=np.uint8),
            **extra,
        )
