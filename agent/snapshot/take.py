"""Runs a whole snapshot: facts, two dumps and the profile window, overlapped in time.

Timeline (S = --profile-seconds; times for 20 targets x 50 threads on an idle machine)::

    t=0         dump round 1 of every target (4 workers, attaching on the way); eBPF programs
                start compiling, one at a time, each collector starting once loaded
    t=d~0.4 s   Python window opens (sampling core, or py-spy); facts of every target
    t=1 s       dump round 2 (one interval after round 1 began)
    t=d+S       Python window closes
    <=budget    the last eBPF collector stops: S seconds each, or by the command's deadline
    after       findings, reports, archive (about 0.5 s)

Nothing here pauses a target, and nothing a target does (exit, deny access, run an unknown
interpreter) stops the snapshot: it is recorded per target and the rest go on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import threading
import time
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence

import psutil

from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.snapshot import facts as facts_mod
from hostprof.snapshot.findings import derive
from hostprof.snapshot.profiling import EBPF_COLLECTORS
from hostprof.snapshot.profiling import EBPF_GRACE
from hostprof.snapshot.profiling import ProfileResult
from hostprof.snapshot.profiling import run_profile
from hostprof.snapshot.readers import close_readers
from hostprof.snapshot.readers import readers
from hostprof.snapshot.records import FrameRecord
from hostprof.snapshot.redact import Redactor
from hostprof.snapshot.stacks import ProcessStacks
from hostprof.snapshot.stacks import take_dumps
from hostprof.snapshot.targets import Target

SNAPSHOT_VERSION = 1
"""Version of snapshot.json's layout; bumped on incompatible changes."""

DUMP_INTERVAL = 1.0
"""Seconds between the two dumps."""

DUMP_WORKERS = 4
"""Threads that dump and gather facts in parallel."""


@dataclasses.dataclass
class Options:
    """What to snapshot and how."""

    profile_seconds: float = 5.0
    """Length of the profile window."""
    with_locals: bool = False
    """Also dump local variables (reprs capped at 200 characters)."""
    rate: int = 100
    """Python sampling rate per target (Hz); lowered for many targets."""
    collectors: Sequence[str] = ("python", *EBPF_COLLECTORS)
    """Collectors to try."""
    ebpf_grace: float = EBPF_GRACE
    """Seconds the eBPF collectors may run past the Python window, to make up for the time
    their programs take to compile."""
    deadline: Optional[float] = None
    """CLOCK_MONOTONIC time the eBPF collectors must stop by (the command's time budget minus
    the time writing the archive takes); None: one second after the Python window."""


@dataclasses.dataclass
class Snapshot:
    """Everything one snapshot collected, before it is written out."""

    options: Options
    targets: List[Target]
    started_ns: int
    redactor: Redactor
    host: Dict[str, Any] = dataclasses.field(default_factory=dict)
    processes: Dict[int, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    stacks: Dict[int, ProcessStacks] = dataclasses.field(default_factory=dict)
    profile: ProfileResult = dataclasses.field(default_factory=ProfileResult)
    findings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    statuses: Dict[int, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    readers_used: List[str] = dataclasses.field(default_factory=list)
    unavailable: Dict[str, str] = dataclasses.field(default_factory=dict)
    elapsed_s: float = 0.0
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds from the start of :func:`take_snapshot` to each phase's end (diagnostics)."""

    def mark(self, phase: str, t0: float) -> None:
        """Records that ``phase`` ended now."""
        self.timings[phase] = round(time.monotonic() - t0, 3)

    @property
    def id(self) -> str:
        """A short stable id: host + start time (labels pushed series, names the archive)."""
        raw = f"{self.host.get('hostname')}:{self.started_ns}".encode()
        return hashlib.sha1(raw).hexdigest()[:16]

    @property
    def partial(self) -> bool:
        """Whether anything that should have been collected was not."""
        bad = any(s["status"] in ("partial", "failed") for s in self.statuses.values())
        return bad or bool(self.profile.failed)

    def partial_reasons(self) -> List[str]:
        """One line per thing that is missing, for the exit message."""
        out = []
        for pid, s in sorted(self.statuses.items()):
            if s["status"] in ("partial", "failed"):
                out.append(f"pid {pid}: {s['status']}: {'; '.join(s['reasons'])}")
        for name, why in sorted(self.profile.failed.items()):
            out.append(f"{name} collector failed: {why}")
        return out


def _redact_locals(stacks: Dict[int, ProcessStacks], redactor: Redactor) -> None:
    """Redacts secret-named locals and URL credentials in every dumped frame, in place, before
    anything (findings included) reads them."""
    for ps in stacks.values():
        for dump in ps.dumps:
            if dump is None:
                continue
            for t in dump.threads:
                for f in t.frames:
                    if f.locals:
                        f.locals = redactor.redact_locals(f.locals)


def _rate_for(n_targets: int, requested: int) -> int:
    """Keeps the total Python sampling load bounded when there are many targets: about
    500 process samples a second in all (20 targets: 25 Hz each), never under 10 Hz. Each
    sample's drain costs Python time, which the dumps running meanwhile also need."""
    return max(10, min(requested, 500 // max(1, n_targets)))


def _attach_native(snap: Snapshot, cpu: Optional[Profile]) -> None:
    """Gives each dumped thread the heaviest native/kernel stack eBPF saw for it."""
    if cpu is None or len(cpu) == 0:
        return
    best: Dict[tuple, tuple] = {}
    for frames, labels, values in cpu.items():
        lab = dict(labels)
        key = (lab.get("pid"), lab.get("thread_id"))
        if key[0] is None or key[1] is None:
            continue
        if key not in best or values[0] > best[key][0]:
            best[key] = (values[0], frames)
    for pid, ps in snap.stacks.items():
        dump = ps.latest()
        if dump is None:
            continue
        for t in dump.threads:
            hit = best.get((str(pid), str(t.tid)))
            if hit:
                t.native = [
                    FrameRecord(f.function, f.file, f.line, FrameKind(f.kind).name.lower())
                    for f in hit[1]
                    if f.kind in (FrameKind.NATIVE, FrameKind.KERNEL)
                ]


def _still_running(t: Target) -> bool:
    """Whether the target still runs at the end of the snapshot (same process, not a zombie)."""
    try:
        proc = psutil.Process(t.pid)
        if t.create_time and abs(proc.create_time() - t.create_time) > 0.01:
            return False  # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (permission): do not claim it exited


def _status(snap: Snapshot, t: Target) -> Dict[str, Any]:
    reasons: List[str] = []
    ps = snap.stacks.get(t.pid)
    if not t.is_python:
        return {"status": "not-python", "reasons": ["not a Python process: facts only"]}
    ok_dumps = sum(1 for d in (ps.dumps if ps else []) if d is not None)
    if ps:
        reasons.extend(ps.errors)
    perr = snap.profile.target_errors.get(t.pid)
    if perr:
        reasons.append(f"profile: {perr}")
    exited = (
        bool(ps and ps.exited)
        or not snap.processes.get(t.pid, {}).get("alive", True)
        or not _still_running(t)
    )
    if exited and not any("exited" in r for r in reasons):
        reasons.append("process exited during the snapshot")
    if ok_dumps == 0:
        status = "failed"
    elif reasons:
        status = "partial"
    else:
        status = "ok"
    return {"status": status, "reasons": reasons, "exited": exited}


def take_snapshot(
    targets: Sequence[Target],
    options: Options,
    progress: Optional[Any] = None,
) -> Snapshot:
    """Takes a snapshot of ``targets``. Never raises for a target's own failure.

    Args:
        targets: processes from :func:`hostprof.snapshot.targets.select_targets`.
        options: what to collect.
        progress: optional callable(str) for one-line progress messages.
    """
    t0 = time.monotonic()
    say = progress or (lambda _msg: None)
    snap = Snapshot(options, list(targets), time.time_ns(), Redactor())
    py_pids = [t.pid for t in targets if t.is_python]
    chain = readers()
    snap.readers_used = [name for name, _ in chain]
    for _name, fn in chain:
        if hasattr(fn, "locals_deadline"):
            # Locals are read in dump 2, inside the window: never past the command's budget.
            fn.locals_deadline = options.deadline  # type: ignore[attr-defined]
    if chain and chain[0][0] != "hostprof":
        from hostprof.snapshot.readers import core_dump_fn

        snap.unavailable["hostprof stack reader"] = core_dump_fn()[1]
    # Few workers on purpose: dumps and facts are mostly Python and /proc reads, so more threads
    # only fight over the GIL (with 32, one round of 20 dumps took 4 s instead of 0.3 s here).
    with concurrent.futures.ThreadPoolExecutor(DUMP_WORKERS, thread_name_prefix="snapshot") as pool:
        cpu = facts_mod.CpuSampler()
        cpu.start()
        fact_futs: Dict[int, concurrent.futures.Future] = {}
        facts_lock = threading.Lock()
        host_fut = pool.submit(facts_mod.host_facts)

        def submit_facts() -> None:
            # Facts go after the first dump, in the gap before the second: the first dump is
            # the one a hang is judged against, so it must be taken as early as possible.
            with facts_lock:
                if not fact_futs:
                    for t in targets:
                        fact_futs[t.pid] = pool.submit(
                            facts_mod.process_facts, t.pid, snap.redactor
                        )

        first_dump = threading.Event()

        def on_round(n: int) -> None:
            snap.mark(f"dump {n}", t0)
            say(f"dump {n} of 2 taken")
            if n == 1:
                first_dump.set()
                submit_facts()

        dumps_box: Dict[str, Any] = {}

        def work() -> None:
            try:
                dumps_box["stacks"] = take_dumps(
                    py_pids,
                    options.with_locals,
                    chain,
                    pool,
                    DUMP_INTERVAL,
                    on_round=on_round,
                )
            except Exception as exc:  # never lose the rest of the snapshot
                dumps_box["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                first_dump.set()

        # The dumps start first; the Python window opens once the first is taken (see
        # run_profile), and the second dump falls inside it.
        dump_thread = threading.Thread(target=work, name="snapshot-dumps", daemon=True)
        dump_thread.start()
        say(f"profiling {len(py_pids)} Python process(es) for {options.profile_seconds:g} s")
        if py_pids:
            snap.profile = run_profile(
                py_pids,
                options.profile_seconds,
                _rate_for(len(py_pids), options.rate),
                options.collectors,
                attached=getattr(chain[0][1], "process", None) if chain else None,
                deadline=options.deadline,
                first_dump_done=first_dump,
                grace=options.ebpf_grace,
            )
        snap.mark("profile", t0)
        dump_thread.join()
        snap.mark("dumps joined", t0)
        submit_facts()  # no Python targets, or the dumps failed before round 1
        snap.stacks = dumps_box.get("stacks", {})
        if options.with_locals:
            _redact_locals(snap.stacks, snap.redactor)
        if "error" in dumps_box:
            for pid in py_pids:
                snap.stacks.setdefault(pid, ProcessStacks(pid)).errors.append(dumps_box["error"])
        for pid, fut in fact_futs.items():
            snap.processes[pid] = fut.result()
        snap.mark("process facts", t0)
        snap.host = host_fut.result()
        snap.host["top"] = cpu.top(snap.redactor)
        snap.mark("host facts", t0)
    close_readers(chain)
    for pid in py_pids:
        snap.stacks.setdefault(pid, ProcessStacks(pid))
    _attach_native(snap, snap.profile.profiles.get("cpu"))
    for name, why in snap.profile.unavailable.items():
        snap.unavailable[
            "Python frames in eBPF stacks" if name == "merge" else f"{name} profile"
        ] = why
    snap.findings = derive(snap.stacks, snap.profile.profiles, snap.profile.duration_ns)
    for t in targets:
        snap.statuses[t.pid] = _status(snap, t)
    snap.mark("findings", t0)
    snap.elapsed_s = time.monotonic() - t0
    return snap
