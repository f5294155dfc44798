"""The snapshot's short profile: every collector over every target, all at once.

Python stacks always come from the sampling core's ``python`` collector (one per target, so
one unreadable target does not cost the others), or from ``py-spy record --nonblocking`` (one
per target, all started together) where the core is not there. The eBPF collectors (``cpu``,
``offcpu``, ``syscalls``, ``gc``) run where their modules exist and ``probe()`` says they
apply; each that is missing or fails is recorded in :attr:`ProfileResult.unavailable` /
:attr:`ProfileResult.failed` and the rest go on.

Timing. The Python window opens at once and lasts ``seconds``. bcc compiles one program at a
time (its LLVM is not thread-safe) and a compile takes 0.3-1.5 s here, so the eBPF collectors
start one after another on a background thread while the window is already open; each then
runs for ``seconds`` or until ``EBPF_GRACE`` seconds after the Python window closed, whichever
comes first, and one that could not start in time is skipped. The snapshot thus stays within
``seconds + 3 s`` however slow the compiler is, and reports each collector's real coverage.

One drain loop drains every collector when it is due, Python first, and passes
the eBPF batches through :class:`hostprof.merge.PythonMerger`, so a syscall or a blocked
interval sits under the Python function that made it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

from hostprof.collectors._base import Collector
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import Window
from hostprof.pipeline import Aggregator
from hostprof.snapshot.readers import find_pyspy

EBPF_COLLECTORS = ("cpu", "syscalls", "offcpu", "gc")
"""eBPF collectors a snapshot tries, in start order, most useful first: native stacks, then
the busiest syscalls (a headline finding), blocked time, and GC pauses (which the sampling
core's ``<gc>`` frame also shows)."""

DRAIN_EVERY = 0.5
"""Seconds between drains of the Python samplers (their buffers grow meanwhile)."""

EBPF_DRAIN_EVERY = 2.0
"""Seconds between drains of an eBPF collector. Each drain re-reads the targets' memory maps
and symbolises, which is costly with 20 targets; the kernel maps hold 2 s at the sampling
rates used here."""

EBPF_GRACE = 1.0
"""Seconds an eBPF collector may run past the Python window, to make up for compile time."""

MERGE_MAX_THREAD_SAMPLES = 3000
"""eBPF stacks are merged with Python stacks only while (threads of all targets) x (Python
rate) stays under this many thread samples a second: the merge costs Python time per thread
sample (measured here: 3 s for 20 targets x 5 s of on-CPU samples), which would push the
snapshot past its time budget. Above it the eBPF profiles are still written, native only."""

FIRST_DUMP_WAIT = 3.0
"""Longest the Python window waits for the caller's first dump to be taken."""

MIN_COVERAGE = 0.5
"""An eBPF collector that could run for less than this is not started at all."""


@dataclasses.dataclass
class ProfileResult:
    """What the profile window produced."""

    profiles: Dict[str, Profile] = dataclasses.field(default_factory=dict)
    """One profile per collector name (``python``, ``cpu``, ``offcpu``, ``syscalls``, ``gc``)."""
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)
    """What produced each profile (``hostprof``, ``py-spy``, ``bcc``)."""
    coverage: Dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds each collector actually ran."""
    unavailable: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Collectors that do not apply here, with the reason (not an error)."""
    failed: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Collectors that should have worked but failed, with the reason (a partial result)."""
    target_errors: Dict[int, str] = dataclasses.field(default_factory=dict)
    """Targets the Python profile could not cover, with the reason."""
    stats: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    """Each collector's stats() (lost events, collisions, compile time...)."""
    start_ns: int = 0
    """Python window start, wall clock."""
    duration_ns: int = 0
    """Python window length."""


def _collector_class(name: str) -> Optional[type]:
    """The Collector subclass defined in ``hostprof.collectors.<name>``, or None."""
    try:
        module = importlib.import_module(f"hostprof.collectors.{name}")
    except ImportError:
        return None
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if (
            issubclass(obj, Collector)
            and obj is not Collector
            and obj.__module__ == module.__name__
        ) and (getattr(obj, "name", None) == name or obj.__name__.lower().startswith(name)):
            return obj
    return None


def _one_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__


class _Run:
    """One started collector: drained by the loop until its deadline, then stopped."""

    def __init__(
        self, name: str, collector: Collector, deadline: float, pid: int = 0, owns: bool = True
    ) -> None:
        self.name = name
        self.collector = collector
        self.pid = pid
        self.owns = owns  # False: the attached process belongs to the dump reader
        self.started = time.monotonic()
        self.deadline = deadline
        self.stopped_at: Optional[float] = None
        self.error: Optional[str] = None
        self.batches: List[Any] = []
        self.next_drain = self.started + (DRAIN_EVERY if name == "python" else EBPF_DRAIN_EVERY)
        self.exited: set = set()
        """Pids the collector saw exit (read before stopping: a stopped collector forgets)."""

    def _note_exits(self) -> None:
        with contextlib.suppress(Exception):
            self.exited.update(getattr(self.collector, "exited", None) or ())

    def drain(self) -> List[Any]:
        """Drains when due (or past the deadline, then stops the collector). Never raises."""
        if self.stopped_at is not None:
            return []
        now = time.monotonic()
        if now < self.next_drain and now < self.deadline:
            return []
        self.next_drain = now + (DRAIN_EVERY if self.name == "python" else EBPF_DRAIN_EVERY)
        out = []
        try:
            out.append(self.collector.drain())
        except Exception as exc:
            self.error = _one_line(exc)
        self._note_exits()
        if self.error is not None or time.monotonic() >= self.deadline:
            self.stop()
        return out

    def stop(self) -> None:
        """Stops the collector and takes its last samples. Safe to call twice.

        A Python collector stops sampling first and is drained after (its samples stay
        buffered), so its window ends on time even when draining is slow; an eBPF collector is
        drained first, because stopping it frees its kernel maps.
        """
        if self.stopped_at is not None:
            return
        if self.name == "python":
            self._note_exits()
            with contextlib.suppress(Exception):
                self.collector.stop()
            self.stopped_at = time.monotonic()
        with contextlib.suppress(Exception):
            self.batches.append(self.collector.drain())
        if self.name != "python":
            self._note_exits()
            with contextlib.suppress(Exception):
                self.collector.stop()
            self.stopped_at = time.monotonic()
        close = getattr(self.collector, "close", None) if self.owns else None
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def stats(self) -> Dict[str, float]:
        try:
            return dict(self.collector.stats())
        except Exception:
            return {}


_PYSPY_ROOT = re.compile(r"^thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?$")
_PYSPY_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def parse_pyspy_raw(pid: int, text: str, profile: Profile) -> int:
    """Adds ``py-spy record -f raw --threads`` output to ``profile``; returns samples added."""
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        labels = {"pid": str(pid)}
        m = _PYSPY_ROOT.match(parts[0]) if parts else None
        if m:
            labels["thread_id"] = m.group("tid")
            if m.group("name"):
                labels["thread_name"] = m.group("name")
            parts = parts[1:]
        frames = []
        for p in parts:
            fm = _PYSPY_FRAME.match(p)
            if fm:
                frames.append(Frame(fm.group("func"), fm.group("file"), int(fm.group("line"))))
            else:
                frames.append(Frame(p))
        profile.add(frames, int(count), labels)
        total += int(count)
    return total


class _PySpyRun:
    """``py-spy record`` for each target, all in parallel; SIGINT ends them at the deadline."""

    def __init__(self, exe: str, pids: Sequence[int], rate: int) -> None:
        self.exe = exe
        self.pids = list(pids)
        self.rate = rate
        self.tmp = tempfile.mkdtemp(prefix="hostprof-snapshot-")
        self.procs: Dict[int, subprocess.Popen] = {}
        self.errors: Dict[int, str] = {}
        self.profile = Profile([SAMPLES], SAMPLES, 1)
        self.done = False

    def start(self) -> None:
        """Starts one py-spy per target."""
        for pid in self.pids:
            out = os.path.join(self.tmp, f"{pid}.txt")
            cmd = [
                self.exe,
                "record",
                "--nonblocking",
                "--threads",
                "--full-filenames",
                "-f",
                "raw",
                "-r",
                str(self.rate),
                "-p",
                str(pid),
                "-o",
                out,
            ]
            try:
                self.procs[pid] = subprocess.Popen(
                    cmd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                self.errors[pid] = f"cannot start py-spy: {exc.strerror}"

    def finish(self) -> None:
        """Stops every py-spy (they write their output on SIGINT) and reads the results."""
        self.done = True
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        for pid, proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = os.path.join(self.tmp, f"{pid}.txt")
            text = ""
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                os.unlink(path)
            n = parse_pyspy_raw(pid, text, self.profile)
            if n == 0 and proc.returncode not in (0, None):
                msg = (err or b"").decode(errors="replace").strip().splitlines()
                gone = not os.path.exists(f"/proc/{pid}")
                last = msg[-1] if msg else "py-spy failed"
                if "permission" in last.lower():
                    last = "no permission to read the process (run as root)"
                self.errors[pid] = "process exited" if gone else last
        with contextlib.suppress(OSError):
            os.rmdir(self.tmp)


def _accepted(cls: type, options: Dict[str, Any]) -> Dict[str, Any]:
    """The options ``cls``'s constructor takes (probe() passes them on to it)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def _thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 1


def _widen(profile: Profile, like: Profile) -> Profile:
    """``profile``'s samples with ``like``'s sample types (missing columns are 0)."""
    out = like.empty_like()
    out.windows = list(profile.windows)
    names = [str(t) for t in profile.sample_types]
    for frames, labels, values in profile.items():
        row = [values[names.index(str(t))] if str(t) in names else 0 for t in like.sample_types]
        out.add(list(frames), row, dict(labels))
    return out


class _Starter:
    """Compiles and starts the eBPF collectors one at a time, on its own thread.

    bcc's compiler is not thread-safe (two BPF() loads at once crash the process, seen here as
    SIGSEGV), so the loads are serial. A compile cannot be interrupted: when the window's hard
    end passes while one is running, the drain loop stops waiting, :meth:`close` is called, and
    the collector that finishes compiling too late is stopped at once and reported skipped.
    """

    def __init__(
        self,
        names: Sequence[str],
        pids: Sequence[int],
        seconds: float,
        hard_end: float,
        runs: List[_Run],
        lock: threading.Lock,
        result: ProfileResult,
        options: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.options = dict(options or {})
        self.names = list(names)
        self.pids = list(pids)
        self.seconds = seconds
        self.hard_end = hard_end
        self.runs = runs
        self.lock = lock
        self.result = result
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="snapshot-ebpf-start", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def busy(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        """No collector is started or reported after this."""
        with self.lock:
            self.closed = True
            for name in self.names:
                if (
                    name not in self.result.sources
                    and name not in self.result.unavailable
                    and name not in self.result.failed
                ):
                    self.result.unavailable[name] = (
                        "skipped: its program did not compile within the snapshot's time budget"
                    )

    def _note(self, table: Dict[str, str], name: str, why: str) -> None:
        with self.lock:
            if not self.closed:
                table[name] = why

    def _run(self) -> None:
        for name in self.names:
            cls = _collector_class(name)
            if cls is None:
                self._note(self.result.unavailable, name, "collector not built into this hostprof")
                continue
            if self.closed or self.hard_end - time.monotonic() < MIN_COVERAGE + 0.3:
                self._note(
                    self.result.unavailable,
                    name,
                    "skipped: no time left in the snapshot's budget after compiling the others",
                )
                continue
            try:
                coll = cls.probe(pids=self.pids, **_accepted(cls, self.options))
                if coll is None:
                    self._note(
                        self.result.unavailable,
                        name,
                        "does not apply on this host or to these targets",
                    )
                    continue
                coll.start()
            except Exception as exc:
                why = _one_line(exc)
                # No root, no bcc, no tracefs: the capability is missing, not a failure.
                missing = ("permission", "root", "bcc", "not supported")
                table = (
                    self.result.unavailable
                    if any(w in why.lower() for w in missing)
                    else self.result.failed
                )
                self._note(table, name, why)
                continue
            now = time.monotonic()
            with self.lock:
                late = self.closed or now > self.hard_end - MIN_COVERAGE
                if not late:
                    self.runs.append(_Run(name, coll, min(now + self.seconds, self.hard_end)))
                    self.result.sources[name] = "bcc"
            if late:
                with contextlib.suppress(Exception):
                    coll.stop()


def run_profile(
    pids: Sequence[int],
    seconds: float,
    rate: int = 100,
    collectors: Sequence[str] = ("python", *EBPF_COLLECTORS),
    on_window_open: Optional[Callable[[], None]] = None,
    attached: Optional[Callable[[int], Any]] = None,
    deadline: Optional[float] = None,
    first_dump_done: Optional[threading.Event] = None,
    grace: float = EBPF_GRACE,
) -> ProfileResult:
    """Profiles ``pids`` for ``seconds`` with every available collector at once.

    Args:
        pids: target processes.
        seconds: Python window length.
        rate: Python sampling rate per target, in Hz.
        collectors: which collectors to try.
        on_window_open: called when the Python window opens.
        attached: pid -> already attached PyProcess (the dump reader's), shared by the
            Python collector so a target is attached and its thread names read only once.
        deadline: CLOCK_MONOTONIC time by which every eBPF collector must have stopped (the
            caller's whole-command budget); never earlier than the Python window's end.
        first_dump_done: set by the caller when its first dump is taken; the Python window
            opens after it (at most ``FIRST_DUMP_WAIT`` s later), while the eBPF programs
            compile.
        grace: seconds the eBPF collectors may run past the Python window (compile time).
    """
    result = ProfileResult()
    runs: List[_Run] = []
    lock = threading.Lock()
    pyspy: Optional[_PySpyRun] = None
    merger = None
    cls = _collector_class("python") if "python" in collectors else None
    # Idle threads' samples are kept when eBPF rows will be merged: a blocked thread then still
    # has its Python stack, so its off-CPU time and syscalls are charged to it (their
    # cpu:nanoseconds is 0, so on-CPU views are unchanged). With many threads both the merge
    # and aggregating every idle sample cost too much Python time: on-CPU only then.
    load = rate * sum(_thread_count(pid) for pid in pids)
    merge_on = cls is not None and load <= MERGE_MAX_THREAD_SAMPLES
    if merge_on:
        with contextlib.suppress(ImportError):
            from hostprof.merge import PythonMerger

            merger = PythonMerger(interval_ns=int(1e9 / rate))
    elif cls is not None:
        result.unavailable["merge"] = (
            f"Python frames not merged into eBPF stacks: {load:,} thread samples/s "
            f"is over the {MERGE_MAX_THREAD_SAMPLES:,} the time budget allows"
        )

    # 1. eBPF programs start compiling at once, on their own thread: they are the long pole.
    #    Until the Python window opens, their end is provisional.
    # (Not capped by the deadline: when the first dump is slow, the window, and with it the
    # final end, move later than the deadline; the real end is set when the window opens.)
    provisional_end = time.monotonic() + FIRST_DUMP_WAIT + seconds + grace
    ebpf = [c for c in collectors if c in EBPF_COLLECTORS]
    ebpf_options: Dict[str, Any] = {}
    # One symbolizer for every eBPF collector: /proc/kallsyms and each target's ELF files are
    # then parsed once, not once per collector (measured: 1.4 s per kallsyms parse under load).
    with contextlib.suppress(ImportError):
        from hostprof.symbolize import Symbolizer

        ebpf_options["symbolizer"] = Symbolizer()
    if merger is not None:
        # Time slots give each eBPF row a timestamp the merger can join on; without a merger
        # they only cost map entries, so rows stay aggregated over the window.
        with contextlib.suppress(ImportError):
            from hostprof.collectors import _ebpf

            ebpf_options["slot_ns"] = _ebpf.DEFAULT_SLOT_NS
    starter = _Starter(ebpf, pids, seconds, provisional_end, runs, lock, result, ebpf_options)
    starter.start()

    # 2. The caller's first dump goes before the Python samplers: 20 sampling loops take the
    #    CPU a dump needs (seen here under load: a round of 20 dumps took 4 s next to them,
    #    0.35 s alone), and the first dump is the one a hang is judged against.
    if first_dump_done is not None:
        first_dump_done.wait(FIRST_DUMP_WAIT)

    # 3. The Python window.
    t0 = time.monotonic()
    py_end = t0 + seconds
    hard_end = py_end + grace
    if deadline is not None:
        hard_end = max(py_end, min(hard_end, deadline))
    with lock:
        starter.hard_end = hard_end
        for r in runs:
            r.deadline = min(r.deadline, hard_end)
    if cls is not None:
        result.sources["python"] = "hostprof"
        for pid in pids:
            try:
                coll = None
                shared = False
                if attached is not None:
                    proc = attached(pid)
                    try:
                        coll = cls([proc], rate=rate, idle=merge_on)
                        shared = True
                    except TypeError:  # a collector that cannot take attached processes
                        coll = None
                if coll is None:
                    coll = cls.probe(pids=[pid], rate=rate, idle=merge_on)
                if coll is None:
                    result.target_errors[pid] = "python collector does not apply"
                    continue
                coll.start()
                with lock:
                    runs.append(_Run("python", coll, py_end, pid, owns=not shared))
            except Exception as exc:
                result.target_errors[pid] = _one_line(exc)
        # A target the core cannot read (an interpreter it does not support) is still
        # profiled, by py-spy, if that is installed.
        fallback = [pid for pid in pids if pid in result.target_errors]
        exe = find_pyspy() if fallback else None
        if exe and fallback:
            pyspy = _PySpyRun(exe, fallback, rate)
            pyspy.start()
            for pid in fallback:
                result.target_errors.pop(pid)
    elif "python" in collectors:
        exe = find_pyspy()
        if exe:
            pyspy = _PySpyRun(exe, pids, rate)
            pyspy.start()
            result.sources["python"] = "py-spy"
        else:
            result.failed["python"] = "neither the sampling core nor py-spy is installed"
    result.start_ns = time.time_ns()
    if on_window_open is not None:
        on_window_open()
    # The drain loop: Python first, so the merger has the stacks the eBPF rows need.
    aggs: Dict[str, Aggregator] = {}

    def drain_all(final: bool) -> None:
        with lock:
            current = list(runs)
        batches: List[Tuple[_Run, Any]] = []
        now = time.monotonic()
        for r in current:
            # Python samplers past the window stop now, before any (possibly slow) draining.
            if r.name == "python" and r.stopped_at is None and (final or now >= r.deadline):
                r.stop()
        for r in sorted(current, key=lambda r: r.name != "python"):
            if final:
                r.stop()
            else:
                batches.extend((r, b) for b in r.drain())
            while r.batches:
                batches.append((r, r.batches.pop(0)))
        for r, b in batches:
            if merger is not None and r.name == "python":
                merger.remember(b)
        for r, b in batches:
            if merger is not None and r.name != "python":
                b = merger.merge(b)
            agg = aggs.get(r.name)
            if agg is None:
                # The Python profile is sampled at a known period: say so, as record does,
                # so stores derive the right profile type (process_cpu:...:cpu:nanoseconds).
                period = (CPU_NS, int(1e9 / rate)) if r.name == "python" else (None, 0)
                agg = aggs[r.name] = Aggregator(
                    b.sample_types, period[0], period[1], per_thread=True, per_pid=True
                )
            agg.add(b)

    while True:
        now = time.monotonic()
        with lock:
            active = [r for r in runs if r.stopped_at is None]
        if not active and now >= py_end and (not starter.busy() or now >= hard_end):
            break
        soon = [r.deadline for r in active] + ([py_end] if now < py_end else [])
        time.sleep(max(0.01, min([DRAIN_EVERY] + [d - now for d in soon])))
        if pyspy is not None and time.monotonic() >= py_end and pyspy.procs and not pyspy.done:
            pyspy.finish()
        drain_all(final=False)
    starter.close()
    drain_all(final=True)  # a collector the starter added just before closing
    if pyspy is not None:
        if not pyspy.done:
            pyspy.finish()
        pyspy.profile.windows.append(Window(result.start_ns, int(seconds * 1e9)))
        result.target_errors.update(pyspy.errors)
        result.coverage["python"] = seconds
        if "python" in aggs:  # some targets by the core, the rest by py-spy: one profile
            aggs["python"].profile.merge_in(_widen(pyspy.profile, aggs["python"].profile))
            result.sources["python"] = "hostprof + py-spy"
        else:
            result.profiles["python"] = pyspy.profile
            result.sources["python"] = "py-spy"
    result.duration_ns = int(seconds * 1e9)
    for r in runs:
        if r.error:
            if r.name == "python":
                result.target_errors[r.pid] = r.error
            else:
                result.failed[r.name] = r.error
        if r.name == "python" and r.pid in r.exited:
            result.target_errors.setdefault(r.pid, "process exited during the profile")
        covered = (r.stopped_at or time.monotonic()) - r.started
        result.coverage[r.name] = round(max(result.coverage.get(r.name, 0.0), covered), 2)
        st = r.stats()
        if r.name == "python":
            prev = result.stats.setdefault("python", {})
            for k, v in st.items():
                if isinstance(v, (int, float)) and k not in ("rate", "efficiency"):
                    prev[k] = prev.get(k, 0.0) + float(v)
        else:
            result.stats[r.name] = st
    if merger is not None:
        result.stats["merge"] = merger.stats()
    for name, agg in aggs.items():
        prof = agg.profile
        start_off = min(r.started for r in runs if r.name == name) - t0
        prof.windows.append(
            Window(result.start_ns + int(start_off * 1e9), int(result.coverage[name] * 1e9))
        )
        result.profiles[name] = prof
    return result
