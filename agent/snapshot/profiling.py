"""The snapshot's short profile: every collector over every target, all at once.

Python stacks always come from the sampling core's ``python`` collector, or from
``py-spy record --nonblocking`` (one per target, all started together) where the core is not
there. The eBPF collectors (``cpu``, ``offcpu``, ``syscalls``, ``gc``) run where their modules
exist and ``probe()`` says they apply; each one that is missing or fails is recorded in
:attr:`ProfileResult.unavailable` / :attr:`ProfileResult.failed` and the rest go on.

All collectors start before the window opens and stop after it closes, each on its own
thread, so the window costs ``seconds`` once, not once per target or per collector.
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

from hostprof.collectors._base import Collector
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import Window
from hostprof.pipeline import Aggregator
from hostprof.snapshot.readers import find_pyspy

EBPF_COLLECTORS = ("cpu", "offcpu", "syscalls", "gc")
"""eBPF collectors a snapshot tries, by module name under ``hostprof.collectors``."""

DRAIN_EVERY = 1.0
"""Seconds between drains, so kernel maps and buffers never fill during the window."""

_BPF_LOAD_LOCK = threading.Lock()
"""bcc's compiler (LLVM inside libbcc) is not thread-safe: two BPF() loads at once crash the
process (seen here: SIGSEGV in bcc/__init__.py). eBPF collectors start one at a time."""


@dataclasses.dataclass
class ProfileResult:
    """What the profile window produced."""

    profiles: Dict[str, Profile] = dataclasses.field(default_factory=dict)
    """One profile per collector name (``python``, ``cpu``, ``offcpu``, ``syscalls``)."""
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)
    """What produced each profile (``hostprof``, ``py-spy``, ``bcc``)."""
    unavailable: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Collectors that do not apply here, with the reason (not an error)."""
    failed: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Collectors that should have worked but failed, with the reason (a partial result)."""
    target_errors: Dict[int, str] = dataclasses.field(default_factory=dict)
    """Targets the Python profile could not cover, with the reason."""
    stats: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    """Each collector's stats() (lost events, collisions...)."""
    start_ns: int = 0
    """Window start, wall clock."""
    duration_ns: int = 0
    """Window length."""


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


class _CollectorRun:
    """One collector over the window, on its own thread: probe, start, drain, stop."""

    def __init__(self, name: str, cls: type, pids: Sequence[int], options: Dict[str, Any]) -> None:
        self.name = name
        self.cls = cls
        self.pids = list(pids)
        self.options = options
        self.aggregator: Optional[Aggregator] = None
        self.error: Optional[str] = None
        self.not_applicable: Optional[str] = None
        self.stats: Dict[str, float] = {}
        self.collector: Optional[Collector] = None
        self.ready = threading.Event()

    def prepare(self) -> None:
        """Probes and starts the collector (compiling BPF may take a second)."""
        lock = _BPF_LOAD_LOCK if self.name in EBPF_COLLECTORS else contextlib.nullcontext()
        try:
            with lock:
                coll = self.cls.probe(pids=self.pids, **self.options)
                if coll is None:
                    self.not_applicable = "does not apply on this host or to these targets"
                    return
                coll.start()
            self.collector = coll
        except Exception as exc:
            self.error = _one_line(exc)
        finally:
            self.ready.set()

    def _add(self, batch: Any) -> None:
        if self.aggregator is None:
            self.aggregator = Aggregator(batch.sample_types, per_thread=True, per_pid=True)
        self.aggregator.add(batch)

    def run_until(self, deadline: float) -> None:
        """Drains every DRAIN_EVERY seconds until ``deadline``, then stops."""
        coll = self.collector
        if coll is None:
            return
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(DRAIN_EVERY, left))
                self._add(coll.drain())
            self._add(coll.drain())
        except Exception as exc:
            self.error = _one_line(exc)
        finally:
            with contextlib.suppress(Exception):
                coll.stop()
            with contextlib.suppress(Exception):
                self.stats = dict(coll.stats())


def _one_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__


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
                self.errors[pid] = (
                    "process exited" if gone else (msg[-1] if msg else "py-spy failed")
                )
        with contextlib.suppress(OSError):
            os.rmdir(self.tmp)


def run_profile(
    pids: Sequence[int],
    seconds: float,
    rate: int = 100,
    collectors: Sequence[str] = ("python", *EBPF_COLLECTORS),
    on_window_open: Optional[Callable[[], None]] = None,
) -> ProfileResult:
    """Profiles ``pids`` for ``seconds`` with every available collector at once.

    Args:
        pids: target processes.
        seconds: window length.
        rate: Python sampling rate per target, in Hz.
        collectors: which collectors to try.
        on_window_open: called once every collector has started (the caller starts its
            dumps then, so they overlap the window instead of adding to it).
    """
    result = ProfileResult()
    runs: List[_CollectorRun] = []
    pyspy: Optional[_PySpyRun] = None
    for name in collectors:
        cls = _collector_class(name)
        if cls is None:
            if name == "python":
                exe = find_pyspy()
                if exe:
                    pyspy = _PySpyRun(exe, pids, rate)
                    result.sources["python"] = "py-spy"
                else:
                    result.failed["python"] = "neither the sampling core nor py-spy is installed"
            else:
                result.unavailable[name] = "collector not built into this hostprof"
            continue
        options: Dict[str, Any] = {"rate_hz": rate} if name == "python" else {}
        runs.append(_CollectorRun(name, cls, pids, options))
        result.sources[name] = "hostprof" if name == "python" else "bcc"
    threads = [
        threading.Thread(target=r.prepare, name=f"probe-{r.name}", daemon=True) for r in runs
    ]
    for t in threads:
        t.start()
    if pyspy is not None:
        pyspy.start()
    for t in threads:
        t.join()
    start = time.monotonic()
    result.start_ns = time.time_ns()
    deadline = start + seconds
    if on_window_open is not None:
        on_window_open()
    loops = [threading.Thread(target=r.run_until, args=(deadline,), daemon=True) for r in runs]
    for t in loops:
        t.start()
    time.sleep(max(0.0, deadline - time.monotonic()))
    if pyspy is not None:
        pyspy.finish()
        pyspy.profile.windows.append(Window(result.start_ns, int(seconds * 1e9)))
        result.profiles["python"] = pyspy.profile
        result.target_errors.update(pyspy.errors)
    for t in loops:
        t.join()
    result.duration_ns = int((time.monotonic() - start) * 1e9)
    for r in runs:
        if r.not_applicable:
            result.unavailable[r.name] = r.not_applicable
            result.sources.pop(r.name, None)
        elif r.error:
            result.failed[r.name] = r.error
        if r.aggregator is not None:
            prof = r.aggregator.profile
            prof.windows.append(Window(result.start_ns, result.duration_ns))
            result.profiles[r.name] = prof
        result.stats[r.name] = r.stats
    return result
