"""Python stacks of live CPython processes, read from outside (never pausing them).

One :class:`PythonCollector` samples one or more processes. Per process, a background thread
runs the native sampling loop (:meth:`hostprof.native._sampler.Reader.run`, GIL released), and
:meth:`PythonCollector.drain` turns what it collected into one :class:`RawBatch`:

* frames are interned per unique (code object, line) key with numpy, not per sample;
* each sample keeps its OS thread id (the host's, also for a target in a container with its
  own PID namespace) and CLOCK_MONOTONIC timestamp, so eBPF samples can be joined to Python
  stacks by (tid, nearest timestamp);
* flags say whether the thread held the GIL, was inside the cyclic GC (the stack then ends in
  a synthetic ``<gc>`` frame) or was idle (blocked: from the offcpu collector's sched_switch
  table when one runs in this process, else from /proc/PID/task/TID/wchan);
* values are ``samples:count``, ``cpu:nanoseconds`` (one period when running, 0 when idle)
  and ``wall:nanoseconds`` (one period).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence

import numpy as np

from hostprof._errors import HostprofError
from hostprof._errors import TargetError
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import FLAG_GIL
from hostprof.collectors._batch import FLAG_IDLE
from hostprof.collectors._batch import RawBatch
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import WALL_NS
from hostprof.model import Frame
from hostprof.model import SampleType
from hostprof.native import _threadstate
from hostprof.native.pyprocess import PyProcess
from hostprof.native.pyprocess import attach

_CHILD_GRACE_SECONDS = 5.0
"""How long a new child may stay unreadable before it is taken as not Python."""

SAMPLE_TYPES = (SAMPLES, CPU_NS, WALL_NS)
"""The value columns of every batch this collector produces."""


class _Target:
    """One attached process and the thread running its sampling loop."""

    def __init__(
        self, proc: PyProcess, interval_ns: int, notify: Optional[Callable[[], None]] = None
    ) -> None:
        self.proc = proc
        self.interval_ns = interval_ns
        self.notify = notify
        self.thread: Optional[threading.Thread] = None
        self.exit_code: Optional[int] = None
        self.stopped = False
        self.ended = False
        self.seen_tids: set = set()
        self.names: Dict[int, str] = {}
        self.last = {"torn_dropped": 0, "late": 0}

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name=f"hostprof-sampler-{self.proc.pid}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.proc.reader.run(self.interval_ns)
        finally:
            self.ended = True
            if self.notify is not None and not self.stopped:
                self.notify()

    @property
    def finished(self) -> bool:
        """True when the sampling loop ended on its own (the process exited or became
        unreadable), not because we stopped it."""
        return self.ended and not self.stopped

    @property
    def gone(self) -> bool:
        """True when the process no longer runs (exited, or a zombie awaiting its parent)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True

    def stop(self) -> None:
        self.stopped = True
        self.proc.reader.stop()
        if self.thread is not None:
            self.thread.join(timeout=5)


class PythonCollector(Collector):
    """Samples Python stacks of the given processes at a fixed rate."""

    name = "python"

    def __init__(
        self,
        procs: Sequence[PyProcess],
        rate: float = 100.0,
        idle: bool = False,
        gil_only: bool = False,
        subprocesses: bool = False,
        blocking: bool = False,
        thread_states: bool = True,
    ) -> None:
        self.rate = float(rate)
        # Idle state from a running offcpu collector's sched_switch table (no /proc read per
        # thread per tick); False: always /proc.
        self.use_thread_states = thread_states
        self._thread_states: Optional[_threadstate.ThreadStates] = None
        self.blocking = blocking
        self.interval_ns = int(1e9 / self.rate)
        self.idle = idle
        self.gil_only = gil_only
        self.subprocesses = subprocesses
        self.targets: Dict[int, _Target] = {}
        for p in procs:
            self._add_target(p)
        self._gone: List[int] = []
        self._first_seen: Dict[int, float] = {}
        self._started = False
        self._start_time = 0.0
        self._cpu_start = 0.0
        self._samples = 0
        self._lock = threading.Lock()
        self.on_finish: Optional[Callable[[], None]] = None
        """Called (from a sampling thread) when a target's sampling ends on its own."""

    # -------------------------------------------------------------------- lifecycle
    @classmethod
    def probe(
        cls, pids: Optional[Sequence[int]] = None, **options: object
    ) -> Optional[PythonCollector]:
        """Attaches to every pid (all must be CPython); None when no pids are given.

        Options: ``rate`` (Hz, default 100), ``idle`` (keep samples of idle threads),
        ``gil_only`` (keep only the GIL holder), ``subprocesses`` (follow Python children),
        ``blocking`` (ptrace-stop the target while reading: opt-in), ``max_depth``,
        ``thread_states`` (idle state from a running offcpu collector's sched_switch table;
        default True, False: always /proc).

        Raises:
            HostprofError: a pid cannot be profiled (gone, not Python, no permission...).
        """
        if not pids:
            return None
        max_depth = int(options.get("max_depth", 4096))  # type: ignore[call-overload]
        procs = []
        try:
            for pid in pids:
                procs.append(attach(int(pid), max_depth=max_depth))
        except HostprofError:
            for p in procs:
                p.close()
            raise
        return cls(
            procs,
            rate=float(options.get("rate", 100.0)),  # type: ignore[arg-type]
            idle=bool(options.get("idle", False)),
            gil_only=bool(options.get("gil_only", False)),
            subprocesses=bool(options.get("subprocesses", False)),
            blocking=bool(options.get("blocking", False)),
            thread_states=bool(options.get("thread_states", True)),
        )

    def start(self) -> None:
        """Starts one sampling thread per process."""
        self._started = True
        self._start_time = time.monotonic()
        self._cpu_start = _thread_cpu_total()
        self._sync_thread_states()
        for t in self.targets.values():
            t.start()

    def stop(self) -> None:
        """Stops every sampling loop. Safe to call twice."""
        for t in self.targets.values():
            t.stop()

    def close(self) -> None:
        """Stops and frees the native readers."""
        self.stop()
        for t in self.targets.values():
            t.proc.close()

    @property
    def finished(self) -> bool:
        """True when every target's sampling ended on its own (exited or unreadable)."""
        return bool(self.targets) and all(t.finished for t in self.targets.values())

    @property
    def exited(self) -> List[int]:
        """Pids whose sampling ended because the process exited."""
        return [pid for pid, t in self.targets.items() if t.finished and t.gone]

    def _add_target(self, proc: PyProcess) -> _Target:
        proc.reader.blocking = self.blocking
        # With a GIL, a parked thread's frames cannot change until it takes the GIL again.
        proc.reader.reuse_parked_stacks = not proc.free_threaded
        target = _Target(proc, self.interval_ns, self._target_ended)
        # The reader maps a containerised target's namespace tids to host tids (tidmap.h),
        # so the host-keyed table serves every target.
        if self._thread_states is not None:
            proc.reader.set_thread_states(self._thread_states)
        # Read the thread names now, while attaching: the first drain would otherwise pay
        # for it (imports and a walk of threading._active) in the middle of the recording.
        # Later drains re-read them only when a thread not known yet shows up.
        with contextlib.suppress(Exception):  # best effort: drains retry
            proc.thread_names()
        self.targets[proc.pid] = target
        return target

    def _target_ended(self) -> None:
        if self.on_finish is not None:
            self.on_finish()

    # ------------------------------------------------------------------------ drain
    def drain(self) -> RawBatch:
        """Everything sampled since the last drain, as one batch."""
        self._sync_thread_states()
        if self.subprocesses:
            self._follow_children()
        batches = [self._drain_one(t) for t in list(self.targets.values())]
        batches = [b for b in batches if b is not None]
        if not batches:
            return RawBatch.empty(self.name, SAMPLE_TYPES)
        return batches[0] if len(batches) == 1 else _concat(batches)

    def _drain_one(self, t: _Target) -> Optional[RawBatch]:
        cols = t.proc.reader.drain()
        stats = t.proc.reader.stats()
        missed = stats["torn_dropped"] - t.last["torn_dropped"]
        late = stats["late"] - t.last["late"]
        t.last = {"torn_dropped": stats["torn_dropped"], "late": stats["late"]}
        flags = cols["flags"]
        keep = np.ones(len(flags), dtype=bool)
        if not self.idle:
            keep &= (flags & FLAG_IDLE) == 0
        if self.gil_only:
            keep &= (flags & FLAG_GIL) != 0
        offsets = cols["offsets"]
        lengths = np.diff(offsets)
        keys = cols["keys"][np.repeat(keep, lengths)] if len(keep) else cols["keys"][:0]
        lengths = lengths[keep]
        new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        frames, local_ids = t.proc.frames_for(keys)
        tids = cols["tid"][keep]
        n = len(tids)
        idle = (cols["flags"][keep] & FLAG_IDLE) != 0
        values = np.empty((n, 3), dtype=np.int64)
        values[:, 0] = 1
        values[:, 1] = np.where(idle, 0, self.interval_ns)
        values[:, 2] = self.interval_ns
        self._samples += n
        # Not np.unique: its first call imports numpy.ma (~30 ms of CPU inside a recording).
        ordered = np.sort(tids)
        distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if n else ordered
        unseen = set(distinct.tolist()) - t.seen_tids
        if unseen:
            t.seen_tids |= unseen
            t.names = t.proc.thread_names(sorted(t.seen_tids))
        return RawBatch(
            collector=self.name,
            sample_types=SAMPLE_TYPES,
            frames=frames,
            stack_frames=local_ids,
            stack_offsets=new_offsets,
            values=values,
            pid=np.full(n, t.proc.pid, dtype=np.int32),
            tid=tids.astype(np.int32),
            timestamp_ns=cols["timestamp_ns"][keep],
            flags=cols["flags"][keep],
            thread_names={tid: t.names[tid] for tid in t.seen_tids if tid in t.names},
            missed=int(missed),
            late=int(late),
        )

    def _sync_thread_states(self) -> None:
        """Hands the live sched_switch thread-state table (an offcpu collector started or
        stopped in this process) to every sampling loop; they read /proc without one."""
        ts = _threadstate.current() if self.use_thread_states else None
        if ts is self._thread_states:
            return
        self._thread_states = ts
        for t in self.targets.values():
            t.proc.reader.set_thread_states(ts)

    def _follow_children(self) -> None:
        import psutil

        now = time.monotonic()
        for pid in list(self.targets):
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                if child.pid in self.targets or child.pid in self._gone:
                    continue
                try:
                    proc = attach(child.pid)
                except (HostprofError, OSError):
                    # A child caught while it starts (exec, interpreter start-up) is not
                    # readable yet: retry for a few seconds before deciding it is not Python.
                    first = self._first_seen.setdefault(child.pid, now)
                    if now - first > _CHILD_GRACE_SECONDS:
                        self._gone.append(child.pid)
                    continue
                target = self._add_target(proc)
                if self._started:
                    target.start()

    # ------------------------------------------------------------------------ stats
    def stats(self) -> Dict[str, float]:
        """samples, ticks, achieved rate (Hz), sampling efficiency, torn/late counts, CPU."""
        ticks = samples = torn = dropped = late = errors = busy = paused = 0
        os_reads = state_hits = 0
        for t in self.targets.values():
            s = t.proc.reader.stats()
            os_reads += s["os_reads"]
            state_hits += s["state_hits"]
            ticks += s["ticks"]
            samples += s["samples"]
            torn += s["torn_retries"]
            dropped += s["torn_dropped"]
            late += s["late"]
            errors += s["errors"]
            busy += s["busy_ns"]
            paused += s["paused_ns"]
        elapsed = max(time.monotonic() - self._start_time, 1e-9) if self._started else 0.0
        per_target = ticks / max(len(self.targets), 1)
        return {
            "samples": float(samples),
            "ticks": float(ticks),
            "rate": per_target / elapsed if elapsed else 0.0,
            "efficiency": samples / (samples + dropped) if samples + dropped else 1.0,
            "torn_retries": float(torn),
            "torn_dropped": float(dropped),
            "late": float(late),
            "errors": float(errors),
            "busy_seconds": busy / 1e9,
            "paused_seconds": paused / 1e9,
            "targets": float(len(self.targets)),
            "exited": float(len(self.exited)),
            "os_reads": float(os_reads),
            "state_hits": float(state_hits),
        }

    # ------------------------------------------------------------------- lookups
    def stack_now(self, pid: int, tid: int) -> Optional[List[Frame]]:
        """The current Python stack of thread ``tid`` of ``pid`` (root first), or None.

        Takes a fresh sample of that process (about 0.1-1 ms); for joining eBPF events to
        Python stacks after the fact, prefer the tid and timestamp columns of drained batches.
        """
        t = self.targets.get(pid)
        if t is None:
            raise TargetError(f"pid {pid} is not being sampled", "")
        for stack in t.proc.stacks():
            if stack.tid == tid:
                return stack.frames
        return None


def _concat(batches: List[RawBatch]) -> RawBatch:
    """Joins batches of the same collector into one (frame tables are concatenated)."""
    frames: List[Frame] = []
    stack_frames = []
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for b in batches:
        stack_frames.append(b.stack_frames + np.uint32(len(frames)))
        frames.extend(b.frames)
        offsets.append(b.stack_offsets[1:] + base)
        base += int(b.stack_offsets[-1])
    names: Dict[int, str] = {}
    for b in batches:
        names.update(b.thread_names)
    return RawBatch(
        collector=batches[0].collector,
        sample_types=batches[0].sample_types,
        frames=frames,
        stack_frames=np.concatenate(stack_frames).astype(np.uint32),
        stack_offsets=np.concatenate(offsets),
        values=np.concatenate([b.values for b in batches]),
        pid=np.concatenate([b.pid for b in batches]),
        tid=np.concatenate([b.tid for b in batches]),
        timestamp_ns=np.concatenate([b.timestamp_ns for b in batches]),
        flags=np.concatenate([b.flags for b in batches]),
        thread_names=names,
        missed=sum(b.missed for b in batches),
        late=sum(b.late for b in batches),
    )


def _thread_cpu_total() -> float:
    """CPU seconds this process has used (user + system)."""
    t = os.times()
    return t.user + t.system


def sample_types() -> List[SampleType]:
    """The sample types of this collector's batches, in column order."""
    return list(SAMPLE_TYPES)
