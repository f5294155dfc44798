"""The gc collector: every CPython cyclic-GC collection, its generation and its pause.

For each interpreter binary in use (the executable, or the ``libpython`` it maps) it picks:

* the USDT probes ``gc__start``/``gc__done`` when the binary has them (Debian's builds), or
* an entry+return uprobe on ``gc_collect_main`` when that symbol is in ``.symtab`` (pyenv's
  unstripped ``libpython3.11.so``; its 2nd argument is the generation).

Probes attach by file, so every process running that binary is covered; the in-kernel pid
filter keeps only the wanted ones. Output rows are ``<gc gen=N>`` leaves with the pause time
(``gc_pause:nanoseconds``) and the number of collections; :mod:`hostprof.merge` puts the
Python stack that triggered the collection above them.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import struct
import time
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
from hostprof._errors import TargetError
from hostprof.collectors import _ebpf
from hostprof.collectors import _kernel
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.model import GC_PAUSE_NS
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import SampleType

GC_COUNT = SampleType("gc_collections", "count")
SAMPLE_TYPES = (GC_PAUSE_NS, GC_COUNT)
UPROBE_SYMBOL = "gc_collect_main"


@dataclasses.dataclass(frozen=True)
class GcProbe:
    """Where to attach for one interpreter binary."""

    path: str
    """A path to the binary that opens from the host (maps path or /proc/PID/root/...)."""
    kind: str
    """``usdt`` or ``uprobe``."""


# struct pt_regs field order on x86-64 (the uprobe program's context; UAPI-stable layout).
_PT_REGS_TEXT = "r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss"
_PT_REGS = _PT_REGS_TEXT.split(" ")
_REG_ALIASES = {
    **{f"{p}{r}x": r + "x" for r in "abcd" for p in ("r", "e")},
    **{f"{r}x": r + "x" for r in "abcd"},
    **{f"{r}l": r + "x" for r in "abcd"},
    **{f"{p}{r}": r for r in ("si", "di", "bp", "sp") for p in ("r", "e", "")},
    "sil": "si",
    "dil": "di",
    "rip": "ip",
    **{f"r{n}{s}": f"r{n}" for n in range(8, 16) for s in ("", "d", "w", "b")},
}
_ARG_RE = re.compile(r"^(-?\d+)@(?:(-?\d+)?\(%(\w+)\)|%(\w+))$")


@dataclasses.dataclass(frozen=True)
class UsdtSite:
    """One USDT probe site from ``.note.stapsdt``."""

    name: str
    """Probe name, e.g. ``gc__start``."""
    offset: int
    """File offset of the probe instruction (what a uprobe attaches to)."""
    semaphore_offset: int
    """File offset of the is-enabled counter (0: none), given to the kernel as ref_ctr_offset."""
    args: str
    """The argument spec, e.g. ``-4@112(%rsp) -8@%r12``."""


def _vaddr_to_offset(ef: elf.ElfFile, vaddr: int) -> int:
    for seg in ef.segments:
        if seg.vaddr <= vaddr < seg.vaddr + max(seg.memsz, seg.filesz):
            return vaddr - seg.vaddr + seg.offset
    raise TargetError(f"{ef.path}: address {vaddr:#x} is in no loadable segment")


def usdt_sites(ef: elf.ElfFile, provider: str = "python") -> List[UsdtSite]:
    """The USDT sites of ``provider`` in an ELF file (empty when it has none)."""
    sec = ef.section(".note.stapsdt")
    if sec is None:
        return []
    base_sec = ef.section(".stapsdt.base")
    data = ef.read(sec.offset, sec.size)
    out = []
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        desc = data[desc_at : desc_at + descsz]
        pos = desc_at + ((descsz + 3) & ~3)
        if ntype != 3 or data[name_at : name_at + namesz].rstrip(b"\0") != b"stapsdt":
            continue
        pc, base, sem = struct.unpack_from("<QQQ", desc, 0)
        prov, name, args = desc[24:].split(b"\0")[:3]
        if prov.decode() != provider:
            continue
        if base_sec is not None and base:
            # Prelinked or relocated files: the note's base differs from the section's address.
            pc += base_sec.addr - base
            if sem:
                sem += base_sec.addr - base
        out.append(
            UsdtSite(
                name.decode(),
                _vaddr_to_offset(ef, pc),
                _vaddr_to_offset(ef, sem) if sem else 0,
                args.decode(),
            )
        )
    return out


def arg_defines(spec: str, index: int = 0) -> Dict[str, object]:
    """``-D`` options that make gc.bpf.c read USDT argument ``index`` (0-based) of ``spec``."""
    parts = spec.split()
    if index >= len(parts):
        raise TargetError(f"USDT argument {index + 1} missing in {spec!r}")
    m = _ARG_RE.match(parts[index])
    if not m:
        raise TargetError(f"unsupported USDT argument spec {parts[index]!r}")
    size = abs(int(m.group(1)))
    reg_name = m.group(3) or m.group(4)
    reg = _REG_ALIASES.get(reg_name, reg_name)
    if reg not in _PT_REGS:
        raise TargetError(f"unsupported register %{reg_name} in USDT spec {spec!r}")
    return {
        "HP_ARG_REG": 8 * _PT_REGS.index(reg),
        "HP_ARG_DEREF": 1 if m.group(3) else 0,
        "HP_ARG_DISP": int(m.group(2) or 0),
        "HP_ARG_SIZE": size,
    }


def _has_usdt_gc(ef: elf.ElfFile) -> bool:
    names = {s.name for s in usdt_sites(ef)}
    return {"gc__start", "gc__done"} <= names


def find_probe(pid: int) -> Optional[GcProbe]:
    """The GC probe for a process's interpreter, or None when it is not (a known) CPython."""
    maps = procmaps.read_maps(pid)
    seen = set()
    candidates: List[procmaps.Mapping] = []
    for m in maps:
        if not m.is_file or m.path in seen:
            continue
        base = m.basename
        if base.startswith("libpython") or base.startswith("python"):
            seen.add(m.path)
            candidates.append(m)
    # libpython first: with a shared libpython the executable is a stub.
    candidates.sort(key=lambda m: 0 if m.basename.startswith("libpython") else 1)
    for m in candidates:
        try:
            f = procmaps.open_mapped_file(pid, m)
        except (OSError, HostprofError):
            continue
        with f:
            path = f.name if isinstance(f.name, str) else m.path
            if "/map_files/" in path:
                path = m.path  # uprobes need a real path; chroot paths are host paths
            try:
                ef = elf.ElfFile.from_file(f, path)
            except (elf.ElfError, OSError, ValueError):
                continue
            try:
                if _has_usdt_gc(ef):
                    return GcProbe(path, "usdt")
                if ef.symbol_address(UPROBE_SYMBOL) is not None:
                    return GcProbe(path, "uprobe")
            finally:
                ef.close()
    return None


def python_pids() -> List[int]:
    """Processes whose executable looks like a Python interpreter (for host-wide mode)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            continue
        if "python" in os.path.basename(exe):
            out.append(int(d))
    return out


def _attach_usdt_site(bpf: Any, fn_name: str, path: str, site: UsdtSite) -> int:
    """Attaches a uprobe at a USDT site with the kernel managing its semaphore.

    bcc 0.26's Python binding of ``bpf_attach_uprobe`` drops the ``ref_ctr_offset`` argument,
    and its USDT class then refuses semaphore-guarded probes without a pid. Passing the
    semaphore's file offset to the kernel (4.20+) enables the probe in every process that maps
    the file, now and later, without writing into their memory.
    """
    bcc = _kernel.import_bcc()
    lib = bcc.libbcc.lib
    fn = bpf.load_func(fn_name, bcc.BPF.KPROBE)
    # A private prototype: bcc's own (6-argument) declaration on its shared handle must stay
    # as it is, or bcc's attach_uprobe breaks in this process.
    attach = ctypes.CDLL(lib._name).bpf_attach_uprobe
    attach.restype = ctypes.c_int
    attach.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_uint64,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    ev_name = f"p_hostprof_{os.getpid()}_{site.offset:x}".encode()
    fd = attach(fn.fd, 0, ev_name, path.encode(), site.offset, -1, site.semaphore_offset)
    if fd < 0:
        raise TargetError(
            f"cannot attach to USDT {site.name} in {path} (error {-fd})",
            "the kernel needs uprobes with ref_ctr_offset (Linux 4.20+)",
        )
    return fd


def gen_frame(gen: int) -> Frame:
    """The synthetic leaf of a collection of one generation."""
    return Frame(f"<gc gen={gen}>", "", 0, FrameKind.SYNTHETIC)


class GcCollector(Collector):
    """GC collections and pauses of the given Python processes (None: all found at start)."""

    name = "gc"
    sample_types = SAMPLE_TYPES

    def __init__(self, pids: Optional[Sequence[int]] = None, slot_ns: Optional[int] = None) -> None:
        self.pids = None if pids is None else [int(p) for p in pids]
        self.shift = _ebpf.slot_shift(slot_ns)
        self.probes: Dict[GcProbe, List[int]] = {}
        self._programs: List[Tuple[GcProbe, Any]] = []
        self._perf_fds: List[int] = []
        self._reported: Dict[int, Dict[str, int]] = {}
        self._stats: Dict[str, float] = {}
        self._threads = _ebpf.ThreadNames()
        self.histogram: Dict[int, np.ndarray] = {}
        """Cumulative log2 pause histogram per generation: counts of [2^i, 2^(i+1)) ns."""
        self.collections: Dict[int, int] = {}
        """Cumulative collections per generation."""
        self.pause_ns: Dict[int, int] = {}
        """Cumulative pause time per generation."""

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: Any) -> Optional[Collector]:
        """A collector for the pids' interpreters; None when none of them has a GC probe."""
        _kernel.check_all()
        c = cls(pids, **options)
        targets = c.pids if c.pids is not None else python_pids()
        for pid in targets:
            try:
                p = find_probe(pid)
            except TargetError:
                continue
            if p is not None:
                c.probes.setdefault(p, []).append(pid)
        if not c.probes and pids is not None:
            return None
        return c

    def start(self) -> None:
        """Compiles, loads and attaches; a second call (already started) does nothing."""
        if self._programs:
            return
        compile_s = 0.0
        for probe in self.probes:
            defines: Dict[str, object] = {"HP_SLOT_SHIFT": self.shift}
            sites: List[UsdtSite] = []
            if probe.kind == "usdt":
                with elf.ElfFile.open(probe.path) as ef:
                    sites = [s for s in usdt_sites(ef) if s.name in ("gc__start", "gc__done")]
                starts = [s for s in sites if s.name == "gc__start"]
                specs = {s.args.split()[0] if s.args else "" for s in starts}
                if len(specs) != 1:
                    raise TargetError(
                        f"{probe.path}: gc__start sites disagree on their argument ({specs})"
                    )
                defines["HP_USDT"] = True
                defines.update(arg_defines(starts[0].args))
            bpf, secs = _ebpf.load("gc.bpf.c", defines, self.pids)
            compile_s += secs
            if probe.kind == "uprobe":
                bpf.attach_uprobe(name=probe.path, sym=UPROBE_SYMBOL, fn_name="uprobe_gc_entry")
                bpf.attach_uretprobe(name=probe.path, sym=UPROBE_SYMBOL, fn_name="uprobe_gc_return")
            else:
                for site in sites:
                    fn = "usdt_gc_start" if site.name == "gc__start" else "usdt_gc_done"
                    self._perf_fds.append(_attach_usdt_site(bpf, fn, probe.path, site))
            self._programs.append((probe, bpf))
        self._stats["compile_s"] = compile_s

    def add_pids(self, pids: Sequence[int]) -> None:
        if self.pids is None:
            return
        for _, bpf in self._programs:
            _ebpf.add_pids(bpf, pids)
        self.pids.extend(int(p) for p in pids)

    def drain(self) -> RawBatch:
        builder = _ebpf.BatchBuilder(self.name, SAMPLE_TYPES)
        lost = 0
        t0 = time.process_time()
        for i, (_, bpf) in enumerate(self._programs):
            for k, v in _ebpf.drain_map(bpf["gc_counts"]):
                gen = int(k.gen)
                n, total = int(v.count), int(v.total_ns)
                ts = (
                    0 if self.shift >= 63 else (int(k.slot) << self.shift) + (1 << (self.shift - 1))
                )
                builder.add((gen_frame(gen),), (total, n), int(k.pid), int(k.tid), ts)
                self.collections[gen] = self.collections.get(gen, 0) + n
                self.pause_ns[gen] = self.pause_ns.get(gen, 0) + total
            for k, v in _ebpf.drain_map(bpf["gc_hist"]):
                h = self.histogram.setdefault(int(k.gen), np.zeros(64, np.int64))
                h[min(int(k.bucket), 63)] += int(getattr(v, "value", v))
            totals = _ebpf.read_stats(bpf)
            prev = self._reported.get(i, {})
            lost += totals["map_full"] - prev.get("map_full", 0)
            self._reported[i] = totals
        batch = builder.build(lost=lost)
        batch.thread_names = self._threads.for_batch(batch.pid, batch.tid)
        self._stats["drain_cpu_s"] = self._stats.get("drain_cpu_s", 0.0) + (
            time.process_time() - t0
        )
        return batch

    def stop(self) -> None:
        if self._perf_fds:
            lib = _kernel.import_bcc().libbcc.lib
            for fd in self._perf_fds:
                lib.bpf_close_perf_event_fd(fd)
            self._perf_fds = []
        for _, bpf in self._programs:
            bpf.cleanup()
        self._programs = []

    def stats(self) -> Dict[str, float]:
        out = dict(self._stats)
        for totals in self._reported.values():
            for k, v in totals.items():
                out[k] = out.get(k, 0.0) + float(v)
        out["probes"] = float(len(self.probes))
        return out
