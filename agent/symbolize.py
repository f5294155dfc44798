"""Addresses from eBPF stacks -> Frames: ELF symbols for user space, kallsyms for the kernel.

User addresses are resolved per process through its ``/proc/PID/maps``: the mapping gives the
file and the file offset; the file is opened the way the target sees it
(:func:`hostprof.procmaps.open_mapped_file`: maps path, ``/proc/PID/root``, ``map_files``); the
ELF's PT_LOAD segments turn the file offset into a link-time address, which is looked up with
``numpy.searchsorted`` in the object's sorted FUNC symbols (``.symtab`` or ``.dynsym``).
Symbol tables are cached by GNU build-id (falling back to device+inode+size+mtime), so the same
libc mapped by a hundred processes is read once.

Addresses that resolve to nothing become ``[unknown]`` frames carrying the object's name;
:attr:`Symbolizer.unknown_share` reports their share.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import re
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof import elf
from hostprof import procmaps
from hostprof._errors import HostprofError
from hostprof._errors import ProcessGoneError
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.native import _bpfmaps

UNKNOWN = "[unknown]"
IDLE_EPOCHS = 16
"""Drains after which the cached maps of a process not seen since are dropped."""
NOT_MAPPED = Frame("[not mapped]", "", 0, FrameKind.NATIVE)
"""Marks a user address outside every executable mapping of a live process (see
:meth:`Symbolizer.user_frames`); stack builders drop it."""


@dataclasses.dataclass
class _Object:
    """One mapped ELF object's symbols and load segments."""

    functions: elf.FunctionTable
    seg_offsets: np.ndarray  # file offsets of PT_LOAD segments, ascending
    seg_ends: np.ndarray
    seg_vaddrs: np.ndarray
    name: str
    frame_ids: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Per frame file name: the symbolizer's frame id of each symbol (-1: none yet), with one
    more slot at the end for addresses without a symbol (see Symbolizer.user_ids_multi)."""

    def file_to_vaddr(self, offsets: np.ndarray) -> np.ndarray:
        """Link-time addresses of file offsets (via the containing PT_LOAD segment)."""
        if not len(self.seg_offsets):
            return offsets
        i = np.maximum(self.seg_offsets.searchsorted(offsets, side="right") - 1, 0)
        return offsets - self.seg_offsets[i] + self.seg_vaddrs[i]


# Executable lines of /proc/PID/maps only; a regex over the whole text is far cheaper than
# splitting every line of a process with thousands of mappings.
_EXEC_LINE = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) (..x.) ([0-9a-f]+) (\S+) (\d+) *(.*)$", re.MULTILINE
)


def read_exec_maps(pid: int) -> List[procmaps.Mapping]:
    """The executable mappings of ``pid``; ProcessGoneError if it is gone."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        raise ProcessGoneError(f"process {pid} is gone", "") from None
    return [
        procmaps.Mapping(int(a, 16), int(b, 16), perms, int(off, 16), dev, int(ino), path)
        for a, b, perms, off, dev, ino, path in _EXEC_LINE.findall(text)
    ]


class _ProcessMaps:
    """The executable file mappings of one process as sorted arrays."""

    def __init__(self, pid: int, epoch: int) -> None:
        self.pid = pid
        self.epoch = epoch
        self.used = epoch
        maps = read_exec_maps(pid)
        self.maps = maps
        self.objects: Dict[int, Optional[_Object]] = {}  # mapping index -> its object
        self.starts = np.array([m.start for m in maps], dtype=np.uint64)
        self.ends = np.array([m.end for m in maps], dtype=np.uint64)

    def find(self, addrs: np.ndarray, epoch: int = 0) -> np.ndarray:
        """Index of the mapping holding each address, or -1."""
        i = self.starts.searchsorted(addrs, side="right").astype(np.int64) - 1
        ok = (i >= 0) & (addrs < self.ends[np.maximum(i, 0)] if len(self.ends) else False)
        return np.where(ok, i, -1)


class _QueriedMaps:
    """The executable mappings of one process, looked up with the PROCMAP_QUERY ioctl on
    /proc/PID/maps (Linux 6.11+), which also returns the build-id.

    A process with a thousand mappings costs a few queries of microseconds instead of a
    full maps read of milliseconds; on hosts that start many processes that is most of the
    symboliser's time. The queries run in one C loop per call
    (:func:`hostprof.native._bpfmaps.procmap_find`), one ioctl per mapping or gap between
    mappings rather than per address. Found mappings are cached, and so are the gaps the
    queries saw, so the garbage return addresses of code built without frame pointers
    (heap and stack values, small integers) are not queried drain after drain. Gaps are
    forgotten after ``GAP_EPOCHS`` drains: a library loaded into one later is then found.
    """

    GAP_EPOCHS = 4

    def __init__(self, pid: int, epoch: int) -> None:
        if not os.path.exists(f"/proc/{pid}"):
            raise ProcessGoneError(f"process {pid} is gone", "")
        self.pid = pid
        self.epoch = epoch
        self.used = epoch
        self.maps: List[procmaps.Mapping] = []
        self.build_ids: Dict[int, str] = {}  # mapping index -> build-id hex
        self.objects: Dict[int, Optional[_Object]] = {}
        self._starts: List[int] = []
        self._ends: List[int] = []
        self._sorted: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._gaps = np.empty((0, 2), dtype=np.uint64)  # disjoint [lo, hi), sorted
        self._gaps_epoch = epoch

    def _cached(self, addrs: np.ndarray) -> np.ndarray:
        if not self._starts:
            return np.full(len(addrs), -1, dtype=np.int64)
        if self._sorted is None:
            # Mappings never overlap, so a binary search over their sorted starts finds the
            # only candidate. (An address x mapping comparison matrix cost most of a drain's
            # CPU for processes with thousands of executable mappings, such as JITs.)
            starts = np.asarray(self._starts, dtype=np.uint64)
            order = np.argsort(starts)
            ends = np.asarray(self._ends, dtype=np.uint64)[order]
            self._sorted = (starts[order], ends, order.astype(np.int64))
        starts, ends, order = self._sorted
        i = starts.searchsorted(addrs, side="right").astype(np.int64) - 1
        at = np.maximum(i, 0)
        return np.where((i >= 0) & (addrs < ends[at]), order[at], -1)

    def _in_gap(self, addrs: np.ndarray) -> np.ndarray:
        gaps = self._gaps
        i = gaps[:, 0].searchsorted(addrs, side="right").astype(np.int64) - 1
        return (i >= 0) & (addrs < gaps[np.maximum(i, 0), 1])

    def _add_gaps(self, new: np.ndarray) -> None:
        both = np.concatenate([self._gaps, new])
        both = both[np.argsort(both[:, 0], kind="stable")]
        merged: List[List[int]] = []
        for lo, hi in both.tolist():
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._gaps = np.asarray(merged, dtype=np.uint64).reshape(-1, 2)

    def find(self, addrs: np.ndarray, epoch: int = 0) -> np.ndarray:
        """Index (into ``maps``) of the executable mapping holding each address, or -1."""
        idx = self._cached(addrs)
        ask = idx < 0
        if not ask.any():
            return idx
        if epoch - self._gaps_epoch >= self.GAP_EPOCHS:
            self._gaps = self._gaps[:0]
            self._gaps_epoch = epoch
        if len(self._gaps):
            ask &= ~self._in_gap(addrs)
            if not ask.any():
                return idx
        missing = np.unique(addrs[ask])  # sorted, as procmap_find wants
        try:
            fd = os.open(f"/proc/{self.pid}/maps", os.O_RDONLY)
        except OSError:
            return idx
        try:
            _which, vmas, gaps = _bpfmaps.procmap_find(fd, missing)
        except OSError:
            return idx  # exited meanwhile: what was found stays
        finally:
            os.close(fd)
        for start, end, offset, inode, flags, major, minor, name, bid in vmas:
            perms = ("r" if flags & 1 else "-") + ("w" if flags & 2 else "-") + "x"
            perms += "s" if flags & 8 else "p"
            self.maps.append(
                procmaps.Mapping(start, end, perms, offset, f"{major:02x}:{minor:02x}", inode, name)
            )
            if bid:
                self.build_ids[len(self.maps) - 1] = bid
            self._starts.append(start)
            self._ends.append(end)
        if len(gaps):
            self._add_gaps(gaps)
        if not vmas:
            return idx
        self._sorted = None
        return self._cached(addrs)


def procmap_query_works() -> bool:
    """Whether this kernel answers PROCMAP_QUERY (checked once, on this process)."""
    global _PROCMAP_QUERY_OK
    if _PROCMAP_QUERY_OK is None:
        try:
            probe = _QueriedMaps(os.getpid(), 0)
            fn = ctypes.cast(ctypes.CDLL(None).ioctl, ctypes.c_void_p).value or 0
            _PROCMAP_QUERY_OK = bool((probe.find(np.array([fn], dtype=np.uint64)) >= 0).all())
        except Exception:  # any failure means: use the full maps read
            _PROCMAP_QUERY_OK = False
    return _PROCMAP_QUERY_OK


_PROCMAP_QUERY_OK: Optional[bool] = None


def _malloc_trim() -> None:
    """Returns free heap memory to the OS (glibc); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class KernelSymbols:
    """``/proc/kallsyms`` as sorted arrays (text symbols only), loaded on first use.

    Names are kept as one bytes blob with numpy offsets (a few MB, instead of about 20 MB as
    Python strings); a name is decoded when a lookup returns it.
    """

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        # Parsed with numpy over the raw bytes: every line is "<16 hex digits> <type> <name>"
        # then "\n" or "\t[module]\n", so no Python object is made per symbol.
        with open(path, "rb") as f:
            raw = f.read()
        data = np.frombuffer(raw, dtype=np.uint8)
        ends = np.flatnonzero(data == 10)
        starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, np.int64)
        ok = (ends - starts) > 19
        starts, ends = starts[ok], ends[ok]
        kind = data[starts + 17]
        text = np.isin(kind, np.frombuffer(b"tTwW", dtype=np.uint8))
        starts, ends = starts[text], ends[text]
        # 16 hex digits per line -> 8 big-endian bytes via bytes.fromhex (2 MB of temporaries
        # for 120k symbols, where a numpy nibble matrix would take 30 MB).
        digits = data[starts[:, None] + np.arange(16)].tobytes()
        addrs = np.frombuffer(bytes.fromhex(digits.decode("ascii")), dtype=">u8").astype(np.uint64)
        del digits
        tabs = np.flatnonzero(data == 9)
        name_start = starts + 19
        # A name ends at the line end, or at a tab before the line end (module symbols).
        nxt = np.searchsorted(tabs, name_start)
        tab_at = np.where(nxt < len(tabs), tabs[np.minimum(nxt, max(len(tabs) - 1, 0))], -1)
        name_end = np.where((tab_at > 0) & (tab_at < ends), tab_at, ends)
        keep = addrs != 0  # kptr_restrict shows zeros to non-root
        order = np.argsort(addrs, kind="stable")
        order = order[keep[order]]
        self.addresses = addrs[order].astype(np.uint64)
        # Keep only the text symbols' names, back to back, with uint32 offsets: about half
        # of the file's bytes (data symbols, addresses, types and module names go), and
        # 4-byte offsets instead of two 8-byte ones per symbol.
        first = name_start[order].astype(np.int64)
        lengths = name_end[order].astype(np.int64) - first
        self._offsets = np.zeros(len(lengths) + 1, dtype=np.uint32)
        self._offsets[1:] = np.cumsum(lengths)
        parts = []
        for lo in range(0, len(first), 16384):  # gathered in chunks: small index temporaries
            hi = min(lo + 16384, len(first))
            ln = lengths[lo:hi]
            shift = first[lo:hi] - (self._offsets[lo:hi].astype(np.int64) - int(self._offsets[lo]))
            idx = np.repeat(shift, ln) + np.arange(int(ln.sum()), dtype=np.int64)
            parts.append(data[idx].tobytes())
        self._blob = b"".join(parts)
        del raw, data, parts
        self._cache: Dict[int, str] = {}
        self.restricted = not len(self.addresses)

    def name(self, i: int) -> str:
        n = self._cache.get(i)
        if n is None:
            a, b = int(self._offsets[i]), int(self._offsets[i + 1])
            n = self._blob[a:b].decode("ascii", "replace")
            self._cache[i] = n
        return n

    def index_many(self, addrs: np.ndarray) -> np.ndarray:
        """Index of the symbol holding each address (-1: below the first, or restricted)."""
        if not len(self.addresses):
            return np.full(len(addrs), -1, dtype=np.int64)
        return self.addresses.searchsorted(addrs, side="right").astype(np.int64) - 1

    def lookup_many(self, addrs: np.ndarray) -> List[str]:
        if not len(self.addresses):
            return [UNKNOWN] * len(addrs)
        i = self.addresses.searchsorted(addrs, side="right").astype(np.int64) - 1
        return [self.name(j) if j >= 0 else UNKNOWN for j in i.tolist()]


class Symbolizer:
    """Resolves user and kernel addresses to Frames, with caches that live as long as it does.

    Attributes:
        frames: frames resolved so far.
        unknown: how many of them were ``[unknown]``.
    """

    def __init__(self) -> None:
        self._kernel: Optional[KernelSymbols] = None
        self._kernel_frames: Dict[str, Frame] = {}
        self._native_frames: Dict[Tuple[str, str], Frame] = {}
        # Frame ids: every frame the symbolizer hands out has one, so a drain can resolve and
        # assemble stacks as integer arrays (numpy) and build Frame lists only per batch.
        self._reset_ids()
        self._procs: Dict[int, _ProcessMaps] = {}
        self._objects: Dict[str, Optional[_Object]] = {}  # by build-id or file identity
        self._identity: Dict[Tuple[int, int, int, int], str] = {}  # stat -> object key
        self._epoch = 0
        self._gone: Dict[int, int] = {}  # pid -> epoch it was found gone
        self.frames = 0
        self.unknown = 0
        self.not_mapped = 0
        self._loaded = False

    # ------------------------------------------------------------------------- kernel
    def load_kernel_symbols(self) -> None:
        """Reads /proc/kallsyms now (about 0.07 s of CPU) instead of at the first kernel
        stack, which may come minutes later and make that drain a slow one."""
        if self._kernel is None:
            self._kernel = KernelSymbols()
            self._loaded = True

    def kernel_frames(self, addrs: Sequence[int]) -> List[Frame]:
        """Kernel frames for addresses, in the given order."""
        table = self._id_frames
        return [table[g] for g in self.kernel_ids(addrs).tolist()]

    def kernel_ids(self, addrs: Sequence[int]) -> np.ndarray:
        """Frame ids (see :meth:`frames`) of kernel addresses, in the given order."""
        if self._kernel is None:
            self._kernel = KernelSymbols()
            self._loaded = True
        ks = self._kernel
        idx = ks.index_many(np.asarray(addrs, dtype=np.uint64))
        if self._kernel_ids is None:
            self._kernel_ids = np.full(len(ks.addresses) + 1, -1, dtype=np.int32)
        table = self._kernel_ids
        idx[idx < 0] = len(table) - 1  # the last slot: [unknown]
        ids = table[idx]
        new = np.unique(idx[ids < 0]).tolist()
        if new:
            last = len(table) - 1
            for i in new:
                # One Frame object per kernel function: stacks share them.
                name = UNKNOWN if i == last else ks.name(i)
                f = self._kernel_frames.get(name)
                if f is None:
                    f = self._kernel_frames[name] = Frame(name, "[kernel]", 0, FrameKind.KERNEL)
                table[i] = self._frame_id(f)
            ids = table[idx]
        self.frames += len(ids)
        self.unknown += int(self._unknown_mask()[ids].sum())
        return ids.astype(np.int64)

    # ------------------------------------------------------------------------ frame ids
    ID_LIMIT = 500_000
    """Frame ids handed out before the id tables start over (bounded memory)."""

    def _reset_ids(self) -> None:
        self._id_frames: List[Frame] = []
        self._id_of: Dict[int, int] = {}  # id(frame) -> frame id (_id_frames keeps it alive)
        self._id_unknown = bytearray()
        self._kernel_ids: Optional[np.ndarray] = None
        for obj in self._objects.values() if hasattr(self, "_objects") else ():
            if obj is not None:
                obj.frame_ids.clear()
        self._unknown_ids: Dict[str, int] = {}  # object name -> its [unknown] frame id
        # (object, frame file name) groups of mappings; see user_ids_multi
        self._groups: List[Tuple[Optional[_Object], str]] = []
        self._group_ids: Dict[Tuple[int, str], int] = {}
        self.id_generation = getattr(self, "id_generation", -1) + 1

    def frame_id(self, frame: Frame) -> int:
        """The frame id of any frame (for example a synthetic one a collector adds)."""
        return self._frame_id(frame)

    def _frame_id(self, frame: Frame) -> int:
        fid = self._id_of.get(id(frame))
        if fid is None:
            fid = self._id_of[id(frame)] = len(self._id_frames)
            self._id_frames.append(frame)
            self._id_unknown.append(frame.function == UNKNOWN)
        return fid

    def _unknown_mask(self) -> np.ndarray:
        return np.frombuffer(bytes(self._id_unknown), dtype=np.bool_)

    def frames_of(self, ids: Sequence[int]) -> List[Frame]:
        """The frames of frame ids (from :meth:`user_ids_multi` and :meth:`kernel_ids`).

        Ids stay valid while :attr:`id_generation` does not change; it changes when the id
        tables start over (past ``ID_LIMIT`` ids, checked by :meth:`new_epoch`).
        """
        table = self._id_frames
        return [table[g] for g in ids]

    def unknown_ids(self) -> np.ndarray:
        """Boolean mask over frame ids: True for ``[unknown]`` frames."""
        return self._unknown_mask()

    # --------------------------------------------------------------------------- user
    def new_epoch(self) -> None:
        """Marks a new drain: maps may be re-read once per process per epoch.

        After a drain that loaded symbol tables, the freed temporary memory (file reads,
        parsing) is handed back to the OS, so RSS tracks what the caches hold.
        """
        self._epoch += 1
        if len(self._id_frames) > self.ID_LIMIT:
            self._reset_ids()
        if self._epoch % IDLE_EPOCHS == 0:
            # Forget processes not symbolised lately (most have exited): bounded memory on
            # hosts that start and stop processes all day.
            for pid in [p for p, pm in self._procs.items() if pm.used < self._epoch - IDLE_EPOCHS]:
                del self._procs[pid]
            self._gone = {p: e for p, e in self._gone.items() if e >= self._epoch - IDLE_EPOCHS}
        self.release()

    def release(self) -> None:
        """Hands freed heap memory back to the OS if this drain loaded symbol tables."""
        if self._loaded:
            self._loaded = False
            _malloc_trim()

    def forget(self, pid: int) -> None:
        """Drops the cached maps of a process (it exited or re-mapped)."""
        self._procs.pop(pid, None)

    def _maps(self, pid: int, refresh: bool = False) -> Optional[Any]:
        pm = self._procs.get(pid)
        if pm is not None:
            pm.used = self._epoch
        if pm is not None and refresh and pm.epoch == self._epoch:
            return pm  # already re-read during this drain
        if pm is None or refresh:
            if pid in self._gone:
                return None
            try:
                if procmap_query_works():
                    pm = _QueriedMaps(pid, self._epoch)  # type: ignore[assignment]
                else:
                    pm = _ProcessMaps(pid, self._epoch)
            except HostprofError:
                self._gone[pid] = self._epoch
                self._procs.pop(pid, None)
                return None
            self._procs[pid] = pm
        return pm

    def _object(self, pid: int, mapping: procmaps.Mapping) -> Optional[_Object]:
        try:
            f = procmaps.open_mapped_file(pid, mapping)
        except (OSError, HostprofError):
            return None
        with f:
            st = os.fstat(f.fileno())
            ident = (st.st_dev, st.st_ino, st.st_size, int(st.st_mtime))
            key = self._identity.get(ident)
            if key is not None:
                return self._objects.get(key)
            try:
                ef = elf.ElfFile.from_file(f, mapping.path)
            except (elf.ElfError, OSError, ValueError):
                self._identity[ident] = key = f"ident:{ident}"
                self._objects[key] = None
                return None
            try:
                key = ef.build_id() or f"ident:{ident}"
                self._identity[ident] = key
                if key not in self._objects:
                    self._loaded = True
                    segs = sorted(ef.segments, key=lambda s: s.offset)
                    self._objects[key] = _Object(
                        functions=ef.function_table_lazy(),
                        seg_offsets=np.array([s.offset for s in segs], dtype=np.uint64),
                        seg_ends=np.array([s.offset + s.filesz for s in segs], dtype=np.uint64),
                        seg_vaddrs=np.array([s.vaddr for s in segs], dtype=np.uint64),
                        name=mapping.basename,
                    )
            finally:
                ef.close()
            return self._objects[key]

    def user_frames(
        self, pid: int, addrs: Sequence[int], callers: Optional[Sequence[bool]] = None
    ) -> List[Frame]:
        """User frames for addresses of process ``pid``, in the given order.

        ``callers`` marks return addresses (every frame but a stack's leaf); by default all
        but the first address are. Several stacks can be resolved in one call this way.
        """
        a = np.asarray(addrs, dtype=np.uint64)
        is_caller = np.arange(len(a)) > 0 if callers is None else np.asarray(callers, dtype=bool)
        return self.user_frames_multi(np.full(len(a), pid, dtype=np.int64), a, is_caller)

    def _mapping_object(self, pm: Any, mi: int) -> Optional[_Object]:
        """The object behind mapping ``mi`` of a process (cached on the process)."""
        if mi in pm.objects:
            return pm.objects[mi]
        if not pm.maps[mi].is_file:
            pm.objects[mi] = None  # [vdso], anonymous JIT code: no file to read symbols from
            return None
        bid = getattr(pm, "build_ids", {}).get(mi)
        if bid and bid in self._objects:
            obj = self._objects[bid]  # known by build-id: no need to open it
        else:
            obj = self._object(pm.pid, pm.maps[mi])
        pm.objects[mi] = obj
        return obj

    def user_frames_multi(
        self, pids: np.ndarray, addrs: np.ndarray, callers: np.ndarray
    ) -> List[Frame]:
        """Like :meth:`user_ids_multi`, as frames (``NOT_MAPPED`` where the id is -1)."""
        table = self._id_frames
        return [
            table[g] if g >= 0 else NOT_MAPPED
            for g in self.user_ids_multi(pids, addrs, callers).tolist()
        ]

    def user_ids_multi(
        self, pids: np.ndarray, addrs: np.ndarray, callers: np.ndarray
    ) -> np.ndarray:
        """Frame ids (see :meth:`frames_of`) for addresses of several processes
        (``pids[i]`` owns ``addrs[i]``); -1 marks an address outside every executable mapping
        of a live process (``NOT_MAPPED``).

        A drain resolves all its new stacks in one call, with no Python per address: the
        mappings are found per process (one binary search, PROCMAP_QUERY for new ones), then
        one ``searchsorted`` per object covers its addresses in every process, and each
        object keeps the frame id of every symbol it has handed out. ``callers`` marks return
        addresses, looked up at ``addr-1`` so a call that is the last instruction of a function
        is not charged to the next.
        """
        a = np.asarray(addrs, dtype=np.uint64)
        p = np.asarray(pids, dtype=np.int64)
        n = len(a)
        # Outside every executable mapping of a live process, an address cannot be a real
        # return address: it is a garbage caller frame from a frame-pointer walk through code
        # built without frame pointers. Such frames get -1 for callers to drop.
        out = np.full(n, -1, dtype=np.int64)
        if not n:
            return out
        adj = a - np.asarray(callers, dtype=bool).astype(np.uint64)
        # Per address: the (object, frame file name) group it belongs to and its file offset.
        group = np.full(n, -1, dtype=np.int64)
        offs = np.zeros(n, dtype=np.uint64)
        order = np.argsort(p, kind="stable")
        sp = p[order]
        cuts = np.flatnonzero(sp[1:] != sp[:-1]) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), n]):
            sel = order[lo:hi]
            pid = int(sp[lo])
            pm = self._maps(pid)
            if pm is None:
                out[sel] = self._unknown_id("")  # exited: its maps are gone
                continue
            pa = adj[sel]
            idx = pm.find(pa, self._epoch)
            if isinstance(pm, _ProcessMaps) and (idx < 0).any():
                # A library loaded after we read the maps: re-read once.
                pm = self._maps(pid, refresh=True)
                if pm is None:
                    continue
                idx = pm.find(pa)
            hit = idx >= 0
            if not hit.any():
                continue
            groups, bases = self._mapping_groups(pm)
            mi = idx[hit]
            if (groups[mi] < 0).any():
                for k in np.unique(mi[groups[mi] < 0]).tolist():
                    groups[k], bases[k] = self._group_of(pm, k)
            where = sel[hit]
            group[where] = groups[mi]
            offs[where] = adj[where] + bases[mi]
        # One symbol lookup per object over the addresses of every process.
        known = np.flatnonzero(group >= 0)
        by_group = known[np.argsort(group[known], kind="stable")]
        gs = group[by_group]
        cuts = (np.flatnonzero(gs[1:] != gs[:-1]) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, len(gs)]):
            if lo == hi:
                continue
            at = by_group[lo:hi]
            obj, name = self._groups[int(gs[lo])]
            if obj is None:
                out[at] = self._unknown_id(name)
                continue
            funcs = obj.functions
            hits = funcs.lookup_many(obj.file_to_vaddr(offs[at]))
            table = obj.frame_ids.get(name)
            if table is None:
                table = obj.frame_ids[name] = np.full(len(funcs) + 1, -1, dtype=np.int32)
            hits[hits < 0] = len(funcs)  # the last slot: [unknown] in this object
            ids = table[hits]
            if (ids < 0).any():
                for h in np.unique(hits[ids < 0]).tolist():
                    fn = funcs.names[h] if h < len(funcs) else UNKNOWN
                    table[h] = self._frame_id(self._native_frame(fn, name))
                ids = table[hits]
            out[at] = ids
        mapped = out >= 0
        self.not_mapped += n - int(mapped.sum())
        self.frames += int(mapped.sum())
        self.unknown += int(self._unknown_mask()[out[mapped]].sum())
        return out

    def _mapping_groups(self, pm: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Per mapping of a process: its (object, frame file name) group (-1: not looked at
        yet) and its file offset minus start (uint64, wrapping), as arrays grown to
        ``len(pm.maps)``. Cached on the process until the frame ids start over."""
        cached = getattr(pm, "groups", None)
        if cached is None or cached[0] != self.id_generation or len(cached[1]) < len(pm.maps):
            old = cached[1:] if cached is not None and cached[0] == self.id_generation else None
            groups = np.full(len(pm.maps), -1, dtype=np.int64)
            bases = np.zeros(len(pm.maps), dtype=np.uint64)
            if old is not None:
                groups[: len(old[0])] = old[0]
                bases[: len(old[1])] = old[1]
            cached = pm.groups = (self.id_generation, groups, bases)
        return cached[1], cached[2]

    def _group_of(self, pm: Any, mi: int) -> Tuple[int, int]:
        """(group, file offset minus start) of mapping ``mi`` of a process."""
        m = pm.maps[mi]
        obj = self._mapping_object(pm, mi)
        key = (id(obj), m.basename)
        g = self._group_ids.get(key)
        if g is None:
            g = self._group_ids[key] = len(self._groups)
            self._groups.append((obj, m.basename))  # keeps obj alive, so id(obj) stays unique
        return g, (m.offset - m.start) & 0xFFFF_FFFF_FFFF_FFFF

    def _unknown_id(self, obj: str) -> int:
        """Frame id of ``[unknown]`` in an object (``""``: the process is gone)."""
        fid = self._unknown_ids.get(obj)
        if fid is None:
            fid = self._unknown_ids[obj] = self._frame_id(self._native_frame(UNKNOWN, obj))
        return fid

    def _native_frame(self, function: str, obj: str) -> Frame:
        """One shared Frame per (function, object), like the kernel's."""
        key = (function, obj)
        f = self._native_frames.get(key)
        if f is None:
            if len(self._native_frames) > 200_000:
                self._native_frames.clear()  # bounded on hosts that run everything once
            f = self._native_frames[key] = Frame(function, obj, 0, FrameKind.NATIVE)
        return f

    @property
    def unknown_share(self) -> float:
        """Share of resolved frames that came out ``[unknown]`` (0.0 before any)."""
        return self.unknown / self.frames if self.frames else 0.0
