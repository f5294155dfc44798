"""The syscalls collector: per-thread syscall counts and latency (raw_syscalls tracepoints).

``syscalls.bpf.c`` aggregates in the kernel per (pid, tid, syscall, time slot) plus a log2
latency histogram per syscall, so the traced program pays no per-event output. Each drained row
becomes a sample whose leaf is a synthetic ``<syscall:NAME>`` frame; :mod:`hostprof.merge` puts
the thread's Python stack above it.

Consecutive calls with the same key are summed in a per-CPU pending run and reach the
aggregate maps only when the key changes, so a drain first has every CPU flush its run (a
never-attached program run on that CPU with ``BPF_PROG_TEST_RUN``) and then takes the
aggregate map that the kernel no longer writes to. The protocol is described at the top of
``syscalls.bpf.c``.

Counts are exact. Latency is measured for every call except inside hot runs (16 calls in a row
of one thread and syscall within a jiffy), where every ``time_every``-th call is measured and
the others are charged the measured mean; calls that block are always measured.
``time_every=1`` measures every call, for about 50-80 ns more per syscall on the benchmark
machine (docs/ebpf.md).
"""

from __future__ import annotations

import ctypes
import os
import re
import time
from pathlib import Path
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
from hostprof.model import SYSCALLS
from hostprof.model import SampleType

SYSCALL_NS = SampleType("syscall_time", "nanoseconds")
SAMPLE_TYPES = (SYSCALLS, SYSCALL_NS)
UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
_NR = re.compile(r"^#define __NR_(\w+)\s+(\d+)\s*$", re.M)
HIST_ROWS = 512
"""Histogram rows in ``syscalls.bpf.c`` (``HP_HIST_ROWS``); the last row is shared."""
TIME_EVERY = 16
"""Default ``time_every``: a hot run's latency is measured on every 16th call."""
FLUSH_ATTEMPTS = 10_000
"""Times a drain retries a CPU whose run a program was changing (each retry is one IPI)."""

_BPF_SYSCALL = 321  # x86-64 __NR_bpf
_BPF_PROG_TEST_RUN = 10
_BPF_F_TEST_RUN_ON_CPU = 1


class _TestRunAttr(ctypes.Structure):
    """The ``test`` member of ``union bpf_attr`` (uapi/linux/bpf.h) for BPF_PROG_TEST_RUN."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class _CpuRunner:
    """Runs a loaded raw-tracepoint program once on a given CPU (BPF_PROG_TEST_RUN with
    BPF_F_TEST_RUN_ON_CPU, Linux 5.10+); on another CPU than the caller's, the kernel runs it
    from an IPI."""

    def __init__(self, prog_fd: int) -> None:
        self.prog_fd = prog_fd
        self._libc = ctypes.CDLL(None, use_errno=True)

    def run(self, cpu: int) -> int:
        """The program's return value; raises OSError (ENXIO: the CPU is offline)."""
        attr = _TestRunAttr(prog_fd=self.prog_fd, flags=_BPF_F_TEST_RUN_ON_CPU, cpu=cpu)
        rc = self._libc.syscall(
            _BPF_SYSCALL, _BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)
        )
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN on CPU {cpu}: {os.strerror(err)}")
        return int(attr.retval)


def syscall_names(path: Path = UNISTD_64) -> Dict[int, str]:
    """x86-64 syscall numbers -> names, from the UAPI ``unistd_64.h`` (linux-libc-dev)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {int(nr): name for name, nr in _NR.findall(text)}


class SyscallsCollector(_ebpf.BpfCollector):
    """Counts and times every syscall of the host or of a set of processes."""

    name = "syscalls"
    sample_types = SAMPLE_TYPES
    source = "syscalls.bpf.c"

    def __init__(
        self,
        pids: Optional[Sequence[int]] = None,
        slot_ns: Optional[int] = None,
        user_stacks: bool = False,
        symbolizer: Optional[Any] = None,
        time_every: int = TIME_EVERY,
    ) -> None:
        """Args:
        pids: processes to trace (threads started later included); None: the whole host.
        slot_ns: time-slot width of the aggregates (for the merge with Python samples).
        user_stacks: also key each call by its user stack at entry.
        symbolizer: resolves user stacks (one is made when needed).
        time_every: inside a hot run of one syscall, measure the latency of every Nth call
            and charge the others the measured mean; 1 measures every call.
        """
        if int(time_every) < 1:
            raise UsageError(
                f"syscalls: time_every must be at least 1, not {time_every}",
                "use 1 to time every call, or N to time every Nth call of a hot run",
            )
        super().__init__(pids, slot_ns, symbolizer, make_symbolizer=user_stacks)
        self.time_every = int(time_every)
        self.user_stacks = user_stacks
        self.names = syscall_names()
        self._frames: Dict[int, Any] = {}
        self._flusher: Optional[_CpuRunner] = None
        self._active = 0  # which aggregate map the kernel adds runs to: 0 = counts_a
        self._cpus: List[int] = []
        self._pids_gen = 0
        self.histogram: Dict[str, np.ndarray] = {}
        """Cumulative log2 latency histogram per syscall name: counts of [2^i, 2^(i+1)) ns."""

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: Any) -> Optional[Collector]:
        _kernel.check_all(tracepoints=["raw_syscalls:sys_enter", "raw_syscalls:sys_exit"])
        return cls(pids, **options)

    def cflags(self) -> Dict[str, object]:
        return {"HP_USER_STACKS": self.user_stacks, "HP_TIME_EVERY": self.time_every}

    def loaded(self) -> None:
        bcc = _kernel.import_bcc()
        self._flusher = _CpuRunner(self._bpf.load_func("hp_flush", bcc.BPF.RAW_TRACEPOINT).fd)
        self._cpus = bcc.utils.get_online_cpus()
        self._active = 0
        if self.user_stacks:
            self._stacks = _ebpf.StackMap(self._bpf, "stacks", self.symbolizer)

    def add_pids(self, pids: Sequence[int]) -> None:
        if self.pids is not None and self._bpf is not None:
            super().add_pids(pids)
            # After the inserts: CPUs drop their cached filter answers (syscalls.bpf.c).
            self._pids_gen += 1
            self._bpf["pids_gen"][ctypes.c_int(0)] = ctypes.c_uint32(self._pids_gen)

    def name_of(self, nr: int) -> str:
        return self.names.get(nr, f"sys_{nr}")

    def _frame(self, nr: int) -> Any:
        f = self._frames.get(nr)
        if f is None:
            f = self._frames[nr] = _ebpf.syscall_frame(self.name_of(nr))
        return f

    def drain(self) -> RawBatch:
        if self._bpf is None:
            return RawBatch.empty(self.name, SAMPLE_TYPES)
        t0 = time.process_time()
        if self.symbolizer is not None:
            self.symbolizer.new_epoch()
        items = self._take_counts()
        builder = _ebpf.BatchBuilder(self.name, SAMPLE_TYPES)
        keep: Set[int] = {int(k.ustack) for k, _ in items}
        if self._stacks is not None:
            self._stacks.sweep(keep)  # before symbolising: see StackMap.sweep
            self._stacks.prefetch(((int(k.pid), int(k.ustack)) for k, _ in items), ())
        calls = timed = 0
        for k, v in items:
            pid, tid, nr = int(k.pid), int(k.tid), int(k.nr)
            stack: Tuple[Any, ...] = (self._frame(nr),)
            if self._stacks is not None:
                stack = self._stacks.user(pid, int(k.ustack)) + stack
            ts = 0 if self.shift >= 63 else (int(k.slot) << self.shift) + (1 << (self.shift - 1))
            builder.add(stack, (int(v.count), int(v.total_ns)), pid, tid, ts)
            calls += int(v.count)
            timed += int(v.timed)
        self._stats["calls"] = self._stats.get("calls", 0) + calls
        self._stats["timed_calls"] = self._stats.get("timed_calls", 0) + timed
        self._read_histogram({int(k.nr) for k, _ in items})
        delta = self.loss_delta()
        batch = builder.build(lost=delta["map_full"], missed=delta["collisions"])
        batch.thread_names = self._threads.for_batch(batch.pid, batch.tid)
        if self.symbolizer is not None:
            self.symbolizer.release()
        self._stats["drain_cpu_s"] = self._stats.get("drain_cpu_s", 0.0) + (
            time.process_time() - t0
        )
        return batch

    def _take_counts(self) -> List[Tuple[Any, Any]]:
        """Every call counted so far, each exactly once (protocol: syscalls.bpf.c).

        Pending runs are flushed into the active map, the kernel is switched to the other
        map, and after a second flush on every CPU (which succeeds only once no program there
        is still adding to the old map) the old map is taken out whole.
        """
        self._flush_cpus()
        old = self._active
        self._active = 1 - old
        self._bpf["active"][ctypes.c_int(0)] = ctypes.c_uint32(self._active)
        self._flush_cpus()
        return _ebpf.drain_map(self._bpf["counts_b" if old else "counts_a"])

    def _flush_cpus(self) -> None:
        """Runs hp_flush on every online CPU until it reports that it was not interrupting a
        change of that CPU's run."""
        assert self._flusher is not None
        for cpu in self._cpus:
            for _ in range(FLUSH_ATTEMPTS):
                try:
                    busy = self._flusher.run(cpu)
                except OSError:
                    # Offline since start: its run stays pending until it is back online.
                    self._stats["flush_offline"] = self._stats.get("flush_offline", 0) + 1
                    break
                if not busy:
                    break
                self._stats["flush_retries"] = self._stats.get("flush_retries", 0) + 1
            else:
                self._stats["flush_busy"] = self._stats.get("flush_busy", 0) + 1

    def _read_histogram(self, nrs: Set[int]) -> None:
        """Refreshes the histogram rows of the syscalls this drain saw.

        The kernel's rows are cumulative per-CPU arrays (no delete, no atomics in the hot
        path), and only a syscall that was counted can have a changed row, so reading those
        rows is enough.
        """
        table = self._bpf["hist"]
        for row in sorted({min(nr, HIST_ROWS - 1) for nr in nrs}):
            try:
                value = table[ctypes.c_int(row)]
            except KeyError:
                continue
            per_cpu = np.frombuffer(value, dtype=np.uint64).reshape(-1, 64)
            name = self.name_of(row) if row < HIST_ROWS - 1 else "other"
            self.histogram[name] = per_cpu.sum(axis=0).astype(np.int64)

    def stop(self) -> None:
        super().stop()
        self._flusher = None
