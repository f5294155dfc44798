"""Two all-thread dumps of every target, one interval apart, and what did not move between them.

A thread whose Python stack is identical in both dumps is *stuck*. The OS state tells why:
blocked in ``futex`` with no CPU used is waiting on a lock, or, when its innermost Python frame
is in ``threading``/``queue`` (``Event.wait``, ``Condition.wait``, ``Queue.get``,
``Thread.join``), waiting for an event, which is what idle workers do. Two or more threads of
one process waiting on locks taken directly by application code is a likely deadlock. CPU ticks
rising means it spins in the same place; a sleep or I/O syscall means it waits on time or on
the outside world.

Dumps of all processes run in parallel (a thread pool), so 20 processes take about as long as
the slowest one, and the second round starts ``interval`` seconds after the first began.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

from hostprof._errors import HostprofError
from hostprof._errors import ProcessGoneError
from hostprof.snapshot.osstate import IO_SYSCALLS
from hostprof.snapshot.osstate import LOCK_SYSCALLS
from hostprof.snapshot.osstate import SLEEP_SYSCALLS
from hostprof.snapshot.readers import DumpFn
from hostprof.snapshot.readers import read_dump
from hostprof.snapshot.records import FrameRecord
from hostprof.snapshot.records import ProcessDump
from hostprof.snapshot.records import ThreadRecord

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Kernel clock ticks per second (the unit of /proc CPU times)."""

LOCK_WAIT = "waiting on a lock"
BUSY = "busy in the same place"
SLEEPING = "sleeping"
IO_WAIT = "waiting for I/O"
EVENT_WAIT = "waiting for an event"
REPEATING = "running at the same line in both dumps, little CPU between"
BLOCKED = "blocked"

REASON_ORDER = {
    LOCK_WAIT: 0,
    BUSY: 1,
    BLOCKED: 2,
    IO_WAIT: 3,
    REPEATING: 4,
    EVENT_WAIT: 5,
    SLEEPING: 6,
}
"""How alarming each kind of stuck thread is, most first (the summary's order)."""

IDLE_REASONS = frozenset({EVENT_WAIT, SLEEPING})
"""Reasons that are what idle threads normally do: summarised, not listed one by one."""

# Modules whose blocking calls are waits for an event, not a lock taken by the application.
_EVENT_MODULES = ("/threading.py", "/queue.py", "/concurrent/futures/", "/multiprocessing/")


def _is_stdlib(file: str) -> bool:
    """Whether a source file is the interpreter's own library (not the application's)."""
    if file.startswith("<frozen"):
        return True
    if "/site-packages/" in file or "/dist-packages/" in file:
        return False
    return "/lib/python3" in file or "/lib64/python3" in file


def user_frame(frames: Sequence[FrameRecord]) -> Optional[FrameRecord]:
    """The innermost Python frame of the application (outside the standard library)."""
    for f in reversed(frames):
        if f.kind == "python" and not _is_stdlib(f.file):
            return f
    return None


@dataclasses.dataclass
class StuckThread:
    """A thread whose Python stack did not change between the two dumps."""

    pid: int
    """Process id."""
    tid: int
    """OS thread id."""
    name: str
    """Thread name."""
    reason: str
    """One of LOCK_WAIT, BUSY, IO_WAIT, SLEEPING, BLOCKED."""
    frames: List[FrameRecord]
    """The unchanged stack, root first."""
    syscall: Optional[str]
    """The syscall it sat in during the second dump."""
    cpu_seconds: Optional[float]
    """CPU time it used between the dumps."""
    holds_gil: Optional[bool]
    """GIL held in both dumps."""

    @property
    def leaf(self) -> Optional[FrameRecord]:
        """The innermost Python frame: the function that blocks (e.g. acquires the lock)."""
        py = [f for f in self.frames if f.kind == "python"]
        return py[-1] if py else (self.frames[-1] if self.frames else None)

    def to_json(self) -> Dict[str, Any]:
        """Plain dict for snapshot.json (the full stack is in the process's dumps)."""
        leaf = self.leaf
        app = user_frame(self.frames)
        return {
            "pid": self.pid,
            "tid": self.tid,
            "name": self.name,
            "reason": self.reason,
            "function": leaf.function if leaf else "",
            "file": leaf.file if leaf else "",
            "line": leaf.line if leaf else 0,
            "app_function": app.function if app else "",
            "app_file": app.file if app else "",
            "app_line": app.line if app else 0,
            "syscall": self.syscall,
            "cpu_seconds": self.cpu_seconds,
            "holds_gil": self.holds_gil,
        }


@dataclasses.dataclass
class ProcessStacks:
    """Both dumps of one process, and the findings from comparing them."""

    pid: int
    """Process id."""
    dumps: List[Optional[ProcessDump]] = dataclasses.field(default_factory=lambda: [None, None])
    """First and second dump (None where it failed)."""
    errors: List[str] = dataclasses.field(default_factory=list)
    """Why a dump failed (one line each)."""
    exited: bool = False
    """The process exited during the snapshot."""
    stuck: List[StuckThread] = dataclasses.field(default_factory=list)
    """Threads unchanged in both dumps, most alarming first."""

    @property
    def partial(self) -> bool:
        """Whether either dump is missing."""
        return any(d is None for d in self.dumps)

    @property
    def deadlock_suspects(self) -> List[StuckThread]:
        """Threads waiting on a lock in both dumps, when two or more do (a likely deadlock)."""
        waiting = [s for s in self.stuck if s.reason == LOCK_WAIT]
        return waiting if len(waiting) >= 2 else []

    def latest(self) -> Optional[ProcessDump]:
        """The second dump, else the first."""
        return self.dumps[1] or self.dumps[0]

    def to_json(self) -> Dict[str, Any]:
        """Plain dict for snapshot.json.

        Frames are stored once per process in ``frames`` (objects with function, file, line,
        kind) and each thread's ``stack`` lists indexes into it, root first: 50 threads with
        the same 30-frame stack cost 50 short lists, not 1,500 frame objects.
        """
        table: List[Dict[str, Any]] = []
        ids: Dict[Tuple[str, str, int, str], int] = {}

        def fid(f: FrameRecord) -> int:
            key = f.key()
            i = ids.get(key)
            if i is None:
                i = ids[key] = len(table)
                table.append(
                    {"function": f.function, "file": f.file, "line": f.line, "kind": f.kind}
                )
            return i

        dumps: List[Optional[Dict[str, Any]]] = []
        for d in self.dumps:
            if d is None:
                dumps.append(None)
                continue
            threads = []
            for t in d.threads:
                row: Dict[str, Any] = {
                    "tid": t.tid,
                    "name": t.name,
                    "holds_gil": t.holds_gil,
                    "in_gc": t.in_gc,
                    "os_state": t.os_state,
                    "syscall": t.syscall,
                    "wchan": t.wchan,
                    "cpu_ticks": t.cpu_ticks,
                    "stack": [fid(f) for f in t.frames],
                }
                locs = {str(i): f.locals for i, f in enumerate(t.frames) if f.locals}
                if locs:
                    row["locals"] = locs  # by position in "stack"
                if t.native:
                    row["native"] = [fid(f) for f in t.native]
                threads.append(row)
            dumps.append(
                {
                    "taken_ns": d.taken_ns,
                    "source": d.source,
                    "python_version": d.python_version,
                    "gc_collecting": d.gc_collecting,
                    "notes": d.notes,
                    "locals_source": d.locals_source,
                    "threads": threads,
                }
            )
        return {
            "pid": self.pid,
            "errors": self.errors,
            "exited": self.exited,
            "frames": table,
            "dumps": dumps,
            "stuck": [s.to_json() for s in self.stuck],
            "deadlock_suspects": [s.tid for s in self.deadlock_suspects],
        }


def classify(
    first: ThreadRecord, second: ThreadRecord, interval: float
) -> Tuple[str, Optional[float]]:
    """Why a thread with the same stack in both dumps did not move: (reason, CPU seconds)."""
    cpu = None
    if first.cpu_ticks is not None and second.cpu_ticks is not None:
        cpu = max(0, second.cpu_ticks - first.cpu_ticks) / CLOCK_TICKS
    if cpu is not None and cpu >= 0.3 * interval:
        return BUSY, cpu
    if second.os_state == "running" and first.os_state == "running":
        # Running at both instants but (where known) using little CPU in between: a loop
        # that mostly waits and was caught at the same line twice.
        return (BUSY if cpu is None else REPEATING), cpu
    # A thread caught between two syscalls in one dump still tells what it waits on in the other.
    sc = second.syscall or first.syscall
    if sc in LOCK_SYSCALLS:
        py = [f for f in second.frames if f.kind == "python"]
        if py and any(m in py[-1].file for m in _EVENT_MODULES):
            return EVENT_WAIT, cpu
        return LOCK_WAIT, cpu
    if sc in SLEEP_SYSCALLS:
        return SLEEPING, cpu
    if sc in IO_SYSCALLS or second.os_state == "disk-wait":
        return IO_WAIT, cpu
    return BLOCKED, cpu


def compare(first: ProcessDump, second: ProcessDump, interval: float) -> List[StuckThread]:
    """Threads whose Python stack is the same, non-empty, in both dumps."""
    out = []
    for t2 in second.threads:
        t1 = first.thread(t2.tid)
        if t1 is None or not t2.frames or t1.stack_key() != t2.stack_key():
            continue
        reason, cpu = classify(t1, t2, interval)
        gil = bool(t1.holds_gil and t2.holds_gil) if t2.holds_gil is not None else None
        out.append(
            StuckThread(
                pid=second.pid,
                tid=t2.tid,
                name=t2.name,
                reason=reason,
                frames=t2.frames,
                syscall=t2.syscall,
                cpu_seconds=cpu,
                holds_gil=gil,
            )
        )
    out.sort(key=lambda s: (REASON_ORDER.get(s.reason, 9), s.tid))
    return out


def _one(
    pid: int, with_locals: bool, chain: List[Tuple[str, DumpFn]]
) -> Tuple[Optional[ProcessDump], str, bool]:
    try:
        return read_dump(pid, with_locals, chain), "", False
    except ProcessGoneError as exc:
        return None, exc.message, True
    except HostprofError as exc:
        gone = not os.path.exists(f"/proc/{pid}")
        return None, ("process exited" if gone else exc.message), gone
    except Exception as exc:  # a reader bug must not cost the other targets
        return None, f"internal error reading stacks: {type(exc).__name__}: {exc}", False


def take_dumps(
    pids: Sequence[int],
    with_locals: bool,
    chain: List[Tuple[str, DumpFn]],
    pool: concurrent.futures.Executor,
    interval: float = 1.0,
    on_round: Optional[Callable[[int], None]] = None,
) -> Dict[int, ProcessStacks]:
    """Dumps every pid twice, ``interval`` seconds apart, in parallel; compares the dumps.

    With ``with_locals``, the second dump also reads every frame's locals.
    ``on_round(n)`` is called after round ``n`` (1 or 2) has finished.
    """
    results = {pid: ProcessStacks(pid) for pid in pids}
    for round_no in (0, 1):
        started = time.monotonic()
        todo = [pid for pid in pids if not results[pid].exited]
        # Locals only in the second dump: reading them costs ~40 ms per 50-thread process, and
        # the first dump must be quick (it opens the profile window and is the one a hang is
        # judged against); the second falls inside the window, where that time is free.
        loc = with_locals and round_no == 1
        futures = {pool.submit(_one, pid, loc, chain): pid for pid in todo}
        for fut in concurrent.futures.as_completed(futures):
            pid = futures[fut]
            dump, error, gone = fut.result()
            res = results[pid]
            res.dumps[round_no] = dump
            if error:
                res.errors.append(f"dump {round_no + 1}: {error}")
            res.exited = res.exited or gone
        if on_round is not None:
            on_round(round_no + 1)
        if round_no == 0:
            # The second round starts one interval after the first one started.
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    for res in results.values():
        if (
            len(res.errors) == 2
            and res.errors[0][len("dump 1: ") :] == res.errors[1][len("dump 2: ") :]
        ):
            res.errors = [f"dumps 1 and 2: {res.errors[0][len('dump 1: ') :]}"]
        first, second = res.dumps
        if first is not None and second is not None:
            gap = (second.taken_ns - first.taken_ns) / 1e9 or interval
            res.stuck = compare(first, second, gap)
    return results
