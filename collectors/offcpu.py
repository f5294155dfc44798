"""The offcpu collector: time threads spend blocked, with the stack they blocked in.

``offcpu.bpf.c`` on ``sched:sched_switch`` sums off-CPU nanoseconds per (pid, tid, user stack,
kernel stack, time slot of the block start).

It also keeps a host-wide table of every thread's scheduler state (``thread_state``: running or
runnable, or blocked and since when), written by ``sched_switch`` and ``sched_wakeup`` into a
``BPF_F_MMAPABLE`` array. While the collector runs, that table is mapped into the agent and
published (:mod:`hostprof.native._threadstate`): the Python sampling core in the same process
then takes each thread's idle state from it with one memory load, instead of reading
``/proc/PID/task/TID/wchan`` per thread per tick. :meth:`OffCpuCollector.blocked_since` reads
it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple

from hostprof._errors import UsageError
from hostprof.collectors import _ebpf
from hostprof.collectors import _kernel
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.model import OFFCPU_NS

SAMPLE_TYPES = (OFFCPU_NS,)

THREAD_STATE_MAX_ENTRIES = 1 << 18
"""Largest default thread-state table: 4 MiB, 16 bytes per slot."""


def default_thread_state_entries() -> int:
    """The thread-state table size for this host: one slot per possible tid (no collisions)
    up to :data:`THREAD_STATE_MAX_ENTRIES`; beyond that, tids that far apart share a slot.

    ``kernel.pid_max`` is 32,768 on many hosts (512 KiB), 4,194,304 where systemd raises it
    (capped: 4 MiB, and a collision then needs two live tids a multiple of 262,144 apart).
    """
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
    except (OSError, ValueError):
        pid_max = THREAD_STATE_MAX_ENTRIES
    return min(1 << max(pid_max - 1, 1).bit_length(), THREAD_STATE_MAX_ENTRIES)


class OffCpuCollector(_ebpf.BpfCollector):
    """Blocked time per thread, for the whole host or a set of processes."""

    name = "offcpu"
    source = "offcpu.bpf.c"
    sample_types = SAMPLE_TYPES

    def __init__(
        self,
        pids: Optional[Sequence[int]] = None,
        min_block_ns: int = 0,
        include_preempted: bool = False,
        slot_ns: Optional[int] = None,
        symbolizer: Optional[Any] = None,
        thread_state_entries: Optional[int] = None,
    ) -> None:
        """Args:
        pids: processes to charge blocked time to; None = the whole host.
        min_block_ns: blocks shorter than this are not counted.
        include_preempted: also count time a runnable thread waited for a CPU.
        slot_ns: time-slot width for the join with Python samples (None: no slots).
        symbolizer: shared :class:`hostprof.symbolize.Symbolizer` (one is made if None).
        thread_state_entries: size of the host-wide thread-state table, a power of two
            (threads whose tids are a multiple of it apart share a slot and fall back to
            /proc); None = :func:`default_thread_state_entries`; 0 = no table (the sampling
            core then reads /proc).
        """
        if min_block_ns < 0:
            raise UsageError(f"the off-CPU threshold must be >= 0 ns, got {min_block_ns}")
        n = (
            default_thread_state_entries()
            if thread_state_entries is None
            else int(thread_state_entries)
        )
        if n < 0 or n & (n - 1):
            raise UsageError(f"the thread-state table size must be a power of two (or 0), got {n}")
        self.thread_state_entries = n
        self._thread_states: Any = None
        super().__init__(pids, slot_ns, symbolizer)
        self.min_block_ns = int(min_block_ns)
        self.include_preempted = include_preempted

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: Any) -> Optional[Collector]:
        tracepoints = ["sched:sched_switch"]
        if options.get("thread_state_entries") != 0:
            tracepoints += ["sched:sched_wakeup", "sched:sched_wakeup_new"]
        _kernel.check_all(tracepoints=tracepoints)
        return cls(pids, **options)

    def cflags(self) -> Dict[str, object]:
        return {
            "HP_MIN_NS": self.min_block_ns,
            "HP_INCLUDE_PREEMPTED": self.include_preempted,
            "HP_TSTATE_ENTRIES": self.thread_state_entries,
        }

    def loaded(self) -> None:
        self._stacks = _ebpf.StackMap(self._bpf, "stacks", self.symbolizer)
        if self.thread_state_entries:
            from hostprof.native import _threadstate

            table = self._bpf["thread_state"]
            try:
                self._thread_states = _threadstate.ThreadStates(
                    table.map_fd, self.thread_state_entries
                )
            except OSError as exc:
                # BPF_F_MMAPABLE arrays exist since 5.5 (hostprof needs 5.6+ anyway), but a
                # security policy may refuse the mapping: the sampling core then reads /proc.
                self._stats["thread_state_error"] = float(exc.errno or 1)
            else:
                _threadstate.publish(self._thread_states)

    @property
    def thread_states(self) -> Any:
        """The mapped thread-state table (:class:`hostprof.native._threadstate.ThreadStates`)
        while the collector runs, else None."""
        return self._thread_states

    def blocked_since(self, tids: Iterable[int]) -> Dict[int, int]:
        """For each given thread that is blocked now: CLOCK_MONOTONIC ns when it blocked.

        Threads not in the result are running or runnable (or were never seen blocking).
        The mapped thread-state table answers without a syscall; threads it does not know
        (a colliding slot) are looked up in the per-thread ``offcpu_since`` map (processes
        this collector watches only).
        """
        out: Dict[int, int] = {}
        if self._bpf is None:
            return out
        tids = [int(t) for t in tids]
        if self._thread_states is not None:
            known = self._thread_states.states(tids)
            out = self._thread_states.blocked_since([t for t, c in known.items() if c != "R"])
            tids = [t for t in tids if t not in known]
        table = self._bpf["offcpu_since"]
        for tid in tids:
            try:
                v = table[ctypes.c_uint32(int(tid))]
            except KeyError:
                continue
            if v.ts:
                out[int(tid)] = int(v.ts)
        return out

    def drain(self) -> RawBatch:
        if self._bpf is None or self._stacks is None:
            return RawBatch.empty(self.name, SAMPLE_TYPES)
        t0 = time.process_time()
        if self.symbolizer is not None:
            self.symbolizer.new_epoch()
        items = _ebpf.drain_map(self._bpf["counts"])
        builder = _ebpf.BatchBuilder(self.name, SAMPLE_TYPES)
        keep: Set[int] = {int(k.ustack) for k, _ in items} | {int(k.kstack) for k, _ in items}
        blocked = [(k, v) for k, v in self._bpf["offcpu_since"].items() if v.ts]
        keep |= {int(v.ustack) for _, v in blocked} | {int(v.kstack) for _, v in blocked}
        self._stacks.sweep(keep)  # before symbolising: see StackMap.sweep
        self._stacks.prefetch(
            ((int(k.pid), int(k.ustack)) for k, _ in items), (int(k.kstack) for k, _ in items)
        )
        evicted = self._stacks.evicted
        self._charge_blocked(builder, blocked)
        for k, v in items:
            pid, tid, us, ks = int(k.pid), int(k.tid), int(k.ustack), int(k.kstack)
            stack = self._stacks.user(pid, us) + self._stacks.kernel(ks)
            ts = 0 if self.shift >= 63 else (int(k.slot) << self.shift) + (1 << (self.shift - 1))
            builder.add(stack, (int(getattr(v, "value", v)),), pid, tid, ts)
        delta = self.loss_delta()
        batch = builder.build(
            lost=delta["map_full"],
            missed=delta["collisions"] + self._stacks.evicted - evicted,
        )
        batch.thread_names = self._threads.for_batch(batch.pid, batch.tid)
        if self.symbolizer is not None:
            self.symbolizer.release()
        self._stats["drain_cpu_s"] = self._stats.get("drain_cpu_s", 0.0) + (
            time.process_time() - t0
        )
        return batch

    def _charge_blocked(self, builder: _ebpf.BatchBuilder, blocked: List[Tuple[Any, Any]]) -> None:
        """Charges threads that are blocked right now up to now, so a thread stuck in recv()
        for minutes shows up in every window, not only when it finally wakes.

        Protocol with offcpu.bpf.c, per blocked thread: write ``offcpu_charged = (ts, now)``,
        then re-read ``offcpu_since``. Still blocked with the same ``ts``: the kernel will
        start its own accounting at ``now``, so [previous charge, now) is ours. Closed
        meanwhile: if the kernel consumed our entry it started at ``now`` (ours stands);
        otherwise it accounted the whole interval and we charge nothing.
        """
        assert self._stacks is not None
        since = self._bpf["offcpu_since"]
        charged = self._bpf["offcpu_charged"]
        todo = []
        for k, v in blocked:
            tid, pid, ts = int(k.value), int(v.pid), int(v.ts)
            now = time.monotonic_ns()  # the clock bpf_ktime_get_ns() reads
            if now - ts < self.min_block_ns or now <= ts:
                continue
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                with contextlib.suppress(KeyError):
                    del since[k]
                continue
            start = ts
            with contextlib.suppress(KeyError):
                c = charged[k]
                if c.start == ts and ts < c.until < now:
                    start = int(c.until)
            charged[k] = charged.Leaf(ts, now)
            try:
                still = int(since[k].ts) == ts
            except KeyError:
                still = False
            if not still:
                try:
                    consumed = int(charged[k].start) == 0
                except KeyError:
                    consumed = False
                if not consumed:
                    continue
            todo.append((pid, tid, v, start, now))
        # Symbolise only after the protocol above, so its window stays microseconds long.
        for pid, tid, v, start, now in todo:
            stack = self._stacks.user(pid, int(v.ustack)) + self._stacks.kernel(int(v.kstack))
            slot_ts = (
                0
                if self.shift >= 63
                else ((start >> self.shift) << self.shift) + (1 << (self.shift - 1))
            )
            builder.add(stack, (now - start,), pid, tid, slot_ts)

    def stop(self) -> None:
        if self._thread_states is not None:
            from hostprof.native import _threadstate

            # Samplers fall back to /proc from their next instant; those that took the table
            # keep it mapped (stale, marked so) until they are freed.
            _threadstate.withdraw(self._thread_states)
            self._thread_states = None
        super().stop()
