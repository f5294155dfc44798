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
import errno
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
from hostprof.collectors._base import Collector
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.native import _bpfmaps

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
    global _last_compile
    _last_compile = time.monotonic()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


COMPILER_IDLE_S = 1.0
"""Seconds without a compile after which the compiler's code pages are given back."""
_last_compile: Optional[float] = None
_COMPILER_LIBS = re.compile(r"/lib(LLVM|clang-cpp)[-.][^/]*$")
MADV_PAGEOUT = 21  # <asm-generic/mman-common.h>, Linux 5.4+


def release_idle_compiler() -> int:
    """Pages out the compiler's code once no compile has run for ``COMPILER_IDLE_S``.

    libbcc runs clang and LLVM in-process. Each compile touches about 80 MiB of their
    read-only, file-backed pages (code and constant data), which then stay resident although
    nothing runs them until the next compile. ``MADV_PAGEOUT`` asks the kernel to reclaim
    them now rather than under memory pressure; a later compile faults them back in. Writable
    (anonymous, copy-on-write) mappings are left alone. Called from every drain; returns the
    bytes advised (0 when there was nothing to do).
    """
    global _last_compile
    if _last_compile is None or time.monotonic() - _last_compile < COMPILER_IDLE_S:
        return 0
    _last_compile = None
    advised = 0
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        with open("/proc/self/maps") as f:
            lines = [line for line in f if _COMPILER_LIBS.search(line.rstrip())]
    except OSError:
        return 0
    for line in lines:
        addr, perms = line.split(None, 2)[:2]
        if "w" in perms:
            continue
        lo, hi = (int(x, 16) for x in addr.split("-"))
        if libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), MADV_PAGEOUT) == 0:
            advised += hi - lo
    return advised


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
    # One C loop of lookups: bcc's table[] builds ctypes key and leaf objects per entry.
    values = _bpfmaps.read_u64_array(bpf["hp_stats"].map_fd, len(STAT_NAMES)).tolist()
    return dict(zip(STAT_NAMES, values))


DRAIN_CHUNK = 1024
"""Entries per batched lookup-and-delete call; a larger drain takes several calls."""


def drain_map(table: Any) -> List[Tuple[Any, Any]]:
    """Atomically takes every entry out of a hash map (one syscall per batch of keys).

    bcc's own ``items_lookup_and_delete_batch`` allocates (and zeroes) key and value arrays
    of the map's full size on every call, which made up most of a drain's map cost, and it
    passes one variable as both the resume token and the count, so a drain that needs a
    second call resumes at a wrong bucket. This calls libbcc's batch wrapper directly with
    arrays of ``DRAIN_CHUNK`` entries, allocating another chunk only when one fills.
    """
    release_idle_compiler()
    try:
        return [kv for keys, values, n in _drain_chunks(table) for kv in zip(keys[:n], values[:n])]
    except OSError:
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


def numpy_dtype(ctype: Any) -> np.dtype:
    """The numpy dtype of a ctypes type bcc generated for a map key or value (structs with
    their offsets and padding, arrays, scalars)."""
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
        names = [f[0] for f in ctype._fields_]
        return np.dtype(
            {
                "names": names,
                "formats": [numpy_dtype(f[1]) for f in ctype._fields_],
                "offsets": [getattr(ctype, n).offset for n in names],
                "itemsize": ctypes.sizeof(ctype),
            }
        )
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        return np.dtype((numpy_dtype(ctype._type_), (ctype._length_,)))
    return np.dtype(ctype)


_DTYPES: Dict[Tuple[Any, Any], Tuple[np.dtype, np.dtype]] = {}


def _table_dtypes(table: Any) -> Tuple[np.dtype, np.dtype]:
    """numpy dtypes of a table's key and value types, built once per type pair."""
    types = (table.Key, table.Leaf)
    dts = _DTYPES.get(types)
    if dts is None:
        dts = _DTYPES[types] = (numpy_dtype(table.Key), numpy_dtype(table.Leaf))
    return dts


def drain_arrays(table: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Like :func:`drain_map`, as numpy arrays (keys, values) of the map's key and value
    types: a drain of thousands of rows then needs no Python object per field."""
    kt, vt = _table_dtypes(table)
    release_idle_compiler()
    try:
        chunks = _drain_chunks(table)
    except OSError:
        items = drain_map(table)  # no batch ops: per-key pops
        keys = np.frombuffer(b"".join(bytes(k) for k, _ in items), dtype=kt)
        return keys, np.frombuffer(b"".join(bytes(v) for _, v in items), dtype=vt)
    if not chunks:
        return np.empty(0, kt), np.empty(0, vt)
    keys = np.concatenate([np.frombuffer(k, dtype=kt, count=n) for k, _, n in chunks])
    values = np.concatenate([np.frombuffer(v, dtype=vt, count=n) for _, v, n in chunks])
    return keys, values


def _drain_chunks(table: Any) -> List[Tuple[Any, Any, int]]:
    """The batched lookup-and-delete loop of :func:`drain_map`: (keys, values, count) per
    call, as ctypes arrays. Raises OSError if the kernel has no batch operations."""
    from bcc.libbcc import lib

    out: List[Tuple[Any, Any, int]] = []
    token = ctypes.c_uint32(0)  # the kernel reads in_batch before it writes out_batch
    count = ctypes.c_uint32(0)
    first = True
    chunk = DRAIN_CHUNK
    while True:
        keys = (table.Key * chunk)()
        values = (table.Leaf * chunk)()
        count.value = chunk
        res = lib.bpf_lookup_and_delete_batch(
            table.map_fd,
            None if first else ctypes.byref(token),
            ctypes.byref(token),
            ctypes.byref(keys),
            ctypes.byref(values),
            ctypes.byref(count),
        )
        err = ctypes.get_errno() if res != 0 else 0
        first = False
        n = count.value
        if n:
            out.append((keys, values, n))
        if res == 0:
            continue  # more buckets to walk
        if err == errno.ENOENT:
            return out  # walked the whole map
        if err == errno.ENOSPC and n == 0:
            chunk *= 2  # one bucket holds more than a chunk
            continue
        if not out and err in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, "batched map operations unsupported")
        raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH failed: {os.strerror(err)}")


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
        from bcc.libbcc import lib

        self._table = bpf[name]
        self._sym = symbolizer
        self._fd = self._table.map_fd
        self._lookup = lib.bpf_lookup_elem
        self._delete = lib.bpf_delete_elem
        self._key = ctypes.c_int(0)
        self._leaf = self._table.Leaf()
        self._leaf_p = ctypes.byref(self._leaf)
        # A view of the reused leaf: the addresses, zero after the last frame.
        self._ips = np.frombuffer(self._leaf, dtype=np.uint64)
        self._kernel: Dict[int, Tuple[Frame, ...]] = {}
        self._user: Dict[Tuple[int, int], Tuple[Frame, ...]] = {}
        self._previous: Set[int] = set()
        self._known: Set[int] = set()  # ids seen in drained keys and not deleted yet
        self._sweeps = 0
        self.evicted = 0
        self.swept: Set[int] = set()  # the ids the last sweep deleted

    def _addresses(self, stack_id: int) -> Optional[List[int]]:
        # libbcc's lookup into one reused buffer: bcc's table[] builds key and leaf objects
        # per call, which cost more than the syscall itself.
        self._key.value = stack_id
        if self._lookup(self._fd, ctypes.byref(self._key), self._leaf_p) != 0:
            return None
        ips = self._ips
        n = int(np.argmin(ips)) if ips[-1] == 0 else len(ips)
        return ips[:n].tolist()

    def prefetch(self, user: Iterable[Tuple[int, int]], kernel: Iterable[int]) -> None:
        """Resolves every not-yet-cached stack: the stacks are read in one C loop, and the
        user ones symbolised in one call for all processes when the symbolizer can
        (``user_frames_multi``); numpy overhead is per call, so batching matters when a
        drain brings many new stacks."""
        if hasattr(self._sym, "user_frames_multi"):
            self._prefetch_bulk(user, kernel)
            return
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

    def _prefetch_bulk(self, user: Iterable[Tuple[int, int]], kernel: Iterable[int]) -> None:
        want_u = [(p, s) for p, s in set(user) if s >= 0 and (p, s) not in self._user]
        want_k = [s for s in set(kernel) if s >= 0 and s not in self._kernel]
        ids = sorted({s for _, s in want_u} | set(want_k))
        if not ids:
            return
        addrs, lens = _bpfmaps.read_stacks(self._fd, ids, len(self._ips))
        ends = np.cumsum(np.maximum(lens, 0)).tolist()
        span = {sid: (e - n, e) for sid, n, e in zip(ids, lens.tolist(), ends) if n >= 0}
        # Missing ids (swept meanwhile) stay uncached: user()/kernel() count them evicted.
        want_u = [(p, s) for p, s in want_u if s in span]
        if want_u:
            pieces = [span[s] for _, s in want_u]
            sizes = [hi - lo for lo, hi in pieces]
            flat = np.concatenate([addrs[lo:hi] for lo, hi in pieces])
            owner = np.repeat(np.asarray([p for p, _ in want_u], dtype=np.int64), sizes)
            first = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
            callers = np.arange(len(flat)) != first  # all but each stack's leaf
            frames = self._sym.user_frames_multi(owner, flat, callers)
            pos = 0
            for key, size in zip(want_u, sizes):
                self._user[key] = _collapse_unknown(tuple(reversed(frames[pos : pos + size])))
                pos += size
        want_k = [s for s in want_k if s in span]
        if want_k:
            frames = self._sym.kernel_frames(
                np.concatenate([addrs[span[s][0] : span[s][1]] for s in want_k])
            )
            pos = 0
            for sid in want_k:
                size = span[sid][1] - span[sid][0]
                self._kernel[sid] = tuple(reversed(frames[pos : pos + size]))
                pos += size

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
        self.swept = set(gone)
        self._known = (self._known | keep) - self.swept
        if gone:
            _bpfmaps.delete_ids(self._fd, gone)  # ENOENT: already gone, fine
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


class BpfCollector(Collector):
    """What the single-program bcc collectors share: the pid set, time slots, the symbolizer,
    compiling and loading their ``.bpf.c`` file, and the kernel's loss counters turned into
    per-drain deltas. Subclasses set :attr:`source`, add their ``-D`` options in
    :meth:`cflags` and attach or set up readers in :meth:`loaded`."""

    source = ""
    """The BPF C file next to the collector's module."""

    def __init__(
        self,
        pids: Optional[Sequence[int]],
        slot_ns: Optional[int],
        symbolizer: Optional[Any],
        make_symbolizer: bool = True,
    ) -> None:
        self.pids = None if pids is None else [int(p) for p in pids]
        self.shift = slot_shift(slot_ns)
        if symbolizer is None and make_symbolizer:
            from hostprof.symbolize import Symbolizer

            symbolizer = Symbolizer()
        self.symbolizer = symbolizer
        self._bpf: Any = None
        self._stacks: Optional[StackMap] = None
        self._threads = ThreadNames()
        self._reported: Dict[str, int] = {}
        self._stats: Dict[str, float] = {}

    def cflags(self) -> Dict[str, object]:
        """This collector's ``-D`` options (``HP_SLOT_SHIFT`` is always added)."""
        return {}

    def loaded(self) -> None:
        """Called once the program is loaded: attach events, set up map readers."""

    def start(self) -> None:
        """Compiles, loads and attaches; a second call (already started) does nothing."""
        if self._bpf:
            return
        self._bpf, compile_s = load(
            self.source, {"HP_SLOT_SHIFT": self.shift, **self.cflags()}, self.pids
        )
        self._stats["compile_s"] = compile_s
        self.loaded()

    def add_pids(self, pids: Sequence[int]) -> None:
        """Adds processes to a per-pid collector while it runs."""
        if self.pids is not None and self._bpf is not None:
            add_pids(self._bpf, pids)
            self.pids.extend(int(p) for p in pids)

    def loss_delta(self) -> Dict[str, int]:
        """The kernel-side counters (map full, collisions, ...) since the previous call."""
        totals = read_stats(self._bpf)
        delta = {k: totals[k] - self._reported.get(k, 0) for k in totals}
        self._reported = totals
        return delta

    def stop(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def stats(self) -> Dict[str, float]:
        out = dict(self._stats)
        out.update({k: float(v) for k, v in self._reported.items()})
        if self._stacks is not None:
            out["evicted"] = float(self._stacks.evicted)
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
        self._by_obj: Dict[int, int] = {}  # id(frame) -> frame id
        self._frames_seen: List[Frame] = []
        self._stack_frames: List[int] = []
        self._offsets: List[int] = [0]
        self._values: List[Sequence[int]] = []
        self._pid: List[int] = []
        self._tid: List[int] = []
        self._ts: List[int] = []

    def add(
        self, stack: Iterable[Frame], values: Sequence[int], pid: int, tid: int, ts: int = 0
    ) -> None:
        # Frames come from the stack caches, so the same frame is usually the same object:
        # look it up by identity first (Frame's dataclass __hash__ runs Python code per call).
        # An object stays in self._frames while the builder lives, so its id is not reused.
        by_obj, ids = self._by_obj, self._ids
        out = self._stack_frames
        for f in stack:
            fid = by_obj.get(id(f))
            if fid is None:
                fid = ids.get(f)
                if fid is None:
                    fid = ids[f] = len(self._frames)
                    self._frames.append(f)
                else:
                    self._frames_seen.append(f)  # keeps id(f) from being reused
                by_obj[id(f)] = fid
            out.append(fid)
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
