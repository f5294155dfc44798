"""The `hostprof record` subcommand: sample a process (or a launched program) into a profile."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

import numpy as np

from hostprof._errors import DependencyError
from hostprof._errors import TargetError
from hostprof._errors import UsageError
from hostprof.cli._common import Command
from hostprof.cli._common import add_pid_option
from hostprof.cli._common import check_pid
from hostprof.cli._common import positive_float
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.collectors.python import SAMPLE_TYPES
from hostprof.collectors.python import PythonCollector
from hostprof.io import write_profile
from hostprof.model import CPU_NS
from hostprof.model import Frame
from hostprof.session import END_INTERRUPTED
from hostprof.session import END_TARGET_EXITED
from hostprof.session import Progress
from hostprof.session import Session
from hostprof.session import SessionResult

CollectorFactory = Callable[[List[int], argparse.Namespace], Optional[Collector]]


def _python_factory(pids: List[int], args: argparse.Namespace) -> Optional[Collector]:
    return PythonCollector.probe(
        pids,
        rate=args.rate,
        idle=args.idle,
        gil_only=args.gil,
        subprocesses=args.subprocesses,
        blocking=getattr(args, "blocking", False),
    )


COLLECTORS: Dict[str, CollectorFactory] = {"python": _python_factory}
"""Collectors ``--collect`` can name: name -> factory(pids, args). Extend, don't replace."""

EBPF_COLLECTORS = ("cpu", "offcpu", "syscalls", "gc")
"""eBPF collectors (issue 4); bcc is imported only when one is asked for."""


def _ebpf_factory(name: str) -> CollectorFactory:
    def factory(pids: List[int], args: argparse.Namespace) -> Optional[Collector]:
        from hostprof.collectors import _ebpf

        slot = {"slot_ns": _ebpf.DEFAULT_SLOT_NS}
        if name == "cpu":
            from hostprof.collectors.cpu import CpuCollector

            return CpuCollector.probe(pids, frequency=int(args.rate) or 99, **slot)
        if name == "offcpu":
            from hostprof.collectors.offcpu import OffCpuCollector

            # 1 ms slots: the join looks for a Python sample after the slot a block began in.
            return OffCpuCollector.probe(pids, slot_ns=1 << 20)
        if name == "syscalls":
            from hostprof.collectors.syscalls import SyscallsCollector

            every = 1 if getattr(args, "syscall_timing", "sampled") == "every" else None
            extra = {"time_every": every} if every else {}
            return SyscallsCollector.probe(pids, **slot, **extra)
        from hostprof.collectors.gc import GcCollector

        return GcCollector.probe(pids, **slot)

    return factory


for _name in EBPF_COLLECTORS:
    COLLECTORS[_name] = _ebpf_factory(_name)


class RecordCommand(Command):
    """Record a profile of a running Python process, or of a program it launches.

    Samples every thread's Python stack from outside the process (process_vm_readv; the target
    is never paused) at --rate Hz, until --duration passes, Ctrl-C, or the target exits. Then
    writes the profile in the format named by the output file's extension: .html (interactive
    flamegraph), .pprof, .folded, .speedscope.json.

    examples:
      hostprof record --pid 1234 -o profile.pprof              until Ctrl-C or exit
      hostprof record --pid 1234 --duration 10 -o out.folded   10 s, folded stacks
      hostprof record --pid 1234 --rate 1000 --idle --threads  1 kHz, idle threads, per thread
      hostprof record -o out.html -- python app.py --port 80   launch and profile a program
      hostprof record --pid 1234 --gil -o gil.folded           only the thread holding the GIL
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_pid_option(parser)
        parser.add_argument(
            "-r",
            "--rate",
            type=positive_float,
            default=100.0,
            help="samples per second per process (default 100)",
        )
        parser.add_argument(
            "-d",
            "--duration",
            type=positive_float,
            default=None,
            help="seconds to record (default: until Ctrl-C or the target exits)",
        )
        parser.add_argument(
            "-o",
            "--output",
            default=None,
            help="output file; the extension picks the format "
            "(default hostprof-PID.folded); '-' for stdout (folded)",
        )
        parser.add_argument(
            "-f",
            "--format",
            default=None,
            choices=["folded", "pprof", "speedscope", "html"],
            help="output format, overriding the extension",
        )
        parser.add_argument(
            "--threads",
            action="store_true",
            help="split the flamegraph by thread (a root frame per thread)",
        )
        parser.add_argument(
            "--idle", action="store_true", help="keep samples of idle threads (sleeping, blocked)"
        )
        parser.add_argument(
            "--gil", action="store_true", help="keep only samples of the thread holding the GIL"
        )
        parser.add_argument(
            "--subprocesses", action="store_true", help="also profile Python child processes"
        )
        parser.add_argument(
            "--blocking",
            action="store_true",
            help="pause the target (ptrace) while reading each sample: consistent stacks at "
            "the cost of slowing it down (default: never pause; torn reads are retried)",
        )
        parser.add_argument(
            "--native",
            action="store_true",
            help="add native and kernel stacks (eBPF 'cpu' collector)",
        )
        parser.add_argument(
            "--collect", default="python", help="comma-separated collectors (default: python)"
        )
        parser.add_argument(
            "--syscall-timing",
            choices=["sampled", "every"],
            default="sampled",
            help="syscalls collector: 'sampled' (default) times every 16th call of a hot run of "
            "one syscall and charges the rest its mean (counts stay exact; blocking calls are "
            "always timed); 'every' times each call, at about 0.2-0.3x more slowdown",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="whole host, eBPF collectors only (e.g. --all --collect cpu,offcpu)",
        )
        parser.add_argument(
            "command", nargs=argparse.REMAINDER, help="program to launch and profile, after '--'"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        command = list(args.command or [])
        if command and command[0] == "--":
            command = command[1:]
        if command and args.pid:
            raise UsageError("give either --pid or a command after '--', not both", "")
        if command and args.blocking:
            # hostprof waits for its launched child, which would steal the ptrace stops.
            raise UsageError(
                "--blocking works with --pid only", "start the program, then record --pid"
            )
        names = [n.strip() for n in args.collect.split(",") if n.strip()]
        if args.native and "cpu" not in names:
            names.append("cpu")
        if getattr(args, "all", False):
            return _record_host(names, command, args)
        unknown = [n for n in names if n not in COLLECTORS]
        if unknown:
            hint = f"available: {', '.join(sorted(COLLECTORS))}"
            if "cpu" in unknown:
                raise DependencyError(
                    "native stacks need the eBPF 'cpu' collector, which is not in this build",
                    hint,
                )
            raise UsageError(f"unknown collector(s): {', '.join(unknown)}", hint)
        if set(names) & set(EBPF_COLLECTORS) and "python" in names:
            # eBPF events are charged to Python stacks, blocked threads included.
            args.idle = True
        child: Optional[subprocess.Popen] = None
        if command:
            child = _launch(command)
            pid = child.pid
        else:
            pid = check_pid(args.pid)
        output = args.output or f"hostprof-{pid}.{_default_ext(args.format)}"
        try:
            collectors = _probe_all(names, pid, args, child)
            result = _record(collectors, pid, args)
        finally:
            if child is not None and child.poll() is None and args.duration is not None:
                child.terminate()
        fmt = write_profile(result.profile, output, args.format)
        _report(result, pid, output, fmt)
        if child is not None:
            code = child.wait()
            if code:
                print(f"hostprof: the program exited with code {code}", file=sys.stderr)
        return 0


def _record_host(names: List[str], command: List[str], args: argparse.Namespace) -> int:
    """``record --all``: eBPF collectors for the whole host, no Python stacks."""
    if args.pid or command:
        raise UsageError("--all records the whole host: drop --pid and the command", "")
    if names == ["python"]:
        names = ["cpu"]
    bad = [n for n in names if n not in EBPF_COLLECTORS]
    if bad:
        raise UsageError(
            f"--all works with the eBPF collectors only, not {', '.join(bad)}",
            f"use --collect with some of: {', '.join(EBPF_COLLECTORS)}",
        )
    collectors = [c for c in (COLLECTORS[n](None, args) for n in names) if c is not None]  # type: ignore[arg-type]
    sample_types: List = []
    for c in collectors:
        sample_types += [t for t in getattr(c, "sample_types", ()) if t not in sample_types]
    session = Session(
        collectors,
        sample_types,
        period_type=CPU_NS,
        period=int(1e9 / args.rate),
        drain_interval=1.0,
    )
    session.batch_hooks.append(_thread_roots(args.threads))
    session.batch_hooks.append(_process_roots())
    print(
        f"hostprof: recording the whole host ({', '.join(names)}); Ctrl-C to stop", file=sys.stderr
    )
    result = session.run(args.duration)
    output = args.output or f"hostprof-host.{_default_ext(args.format)}"
    fmt = write_profile(result.profile, output, args.format)
    print(
        f"hostprof: wrote {'stdout' if output == '-' else output} ({fmt}): "
        f"{result.samples} rows in {result.elapsed:.1f} s, {result.lost} lost, "
        f"{result.missed} missed",
        file=sys.stderr,
    )
    return 0


def _cpu_from_ebpf(batches: List[RawBatch]) -> List[RawBatch]:
    """With the eBPF cpu collector beside the Python sampler, CPU time comes from eBPF.

    Its rows carry the Python stack (merged) plus native and kernel frames, sampled on-CPU by
    the kernel; the Python sampler's rows keep their wall time (and idle threads) but give up
    their cpu and samples columns, so the two samplers' CPU is never added up and every
    format's default column shows the native frames.
    """
    for b in batches:
        if b.collector != "python" or not len(b):
            continue
        names = [str(t) for t in b.sample_types]
        values = b.values.copy()
        for st in (str(CPU_NS), "samples:count"):
            if st in names:
                values[:, names.index(st)] = 0
        b.values = values
    return batches


def _process_roots() -> Callable[[List[RawBatch]], List[RawBatch]]:
    """A batch hook that adds a root frame ``<process NAME (PID)>`` (host-wide profiles)."""
    names: Dict[int, str] = {}

    def name(pid: int) -> str:
        if pid not in names:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    names[pid] = f.read().strip()
            except OSError:
                names[pid] = "?"
        return names[pid]

    def add_root(b: RawBatch) -> RawBatch:
        n = len(b)
        if n == 0:
            return b
        uniq, inverse = np.unique(b.pid, return_inverse=True)
        base = len(b.frames)
        frames = list(b.frames) + [
            Frame.synthetic(f"<process {name(int(p))} ({int(p)})>") for p in uniq.tolist()
        ]
        lengths = np.diff(b.stack_offsets)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=offsets[1:])
        out = np.empty(int(offsets[-1]), dtype=np.uint32)
        out[offsets[:-1]] = (base + inverse.reshape(-1)).astype(np.uint32)
        mask = np.ones(len(out), dtype=bool)
        mask[offsets[:-1]] = False
        out[mask] = b.stack_frames
        b.frames, b.stack_frames, b.stack_offsets = frames, out, offsets
        return b

    def hook(batches: List[RawBatch]) -> List[RawBatch]:
        return [add_root(b) for b in batches]

    return hook


def _default_ext(fmt: Optional[str]) -> str:
    return {"pprof": "pprof", "speedscope": "speedscope.json", "html": "html"}.get(
        fmt or "", "folded"
    )


def _launch(command: List[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(command)
    except FileNotFoundError:
        raise UsageError(
            f"cannot run {command[0]!r}: no such program", "check the command"
        ) from None
    except PermissionError:
        raise UsageError(f"cannot run {command[0]!r}: permission denied", "") from None


def _probe_all(
    names: List[str], pid: int, args: argparse.Namespace, child: Optional[subprocess.Popen]
) -> List[Collector]:
    """Probes every collector; a launched program gets a few seconds to start its interpreter."""
    deadline = time.monotonic() + (5.0 if child is not None else 0.0)
    while True:
        try:
            collectors = []
            for name in names:
                c = COLLECTORS[name]([pid], args)
                if c is not None:
                    collectors.append(c)
            return collectors
        except TargetError:
            if child is None or time.monotonic() >= deadline:
                raise
            if child.poll() is not None:
                raise TargetError(
                    f"the program exited (code {child.returncode}) before it could be profiled",
                    "check that it is a Python program and runs on its own",
                ) from None
            time.sleep(0.02)


def _thread_roots(threads: bool) -> Callable[[List[RawBatch]], List[RawBatch]]:
    """A batch hook that adds a root frame ``<thread NAME (TID)>`` per sample."""

    def hook(batches: List[RawBatch]) -> List[RawBatch]:
        if not threads:
            return batches
        return [_add_thread_root(b) for b in batches]

    return hook


def _add_thread_root(b: RawBatch) -> RawBatch:
    n = len(b)
    if n == 0:
        return b
    uniq, inverse = np.unique(b.tid, return_inverse=True)
    base = len(b.frames)
    frames = list(b.frames) + [
        Frame.synthetic(f"<thread {b.thread_names.get(int(t), '')} ({int(t)})>".replace("  ", " "))
        for t in uniq.tolist()
    ]
    lengths = np.diff(b.stack_offsets)
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=new_offsets[1:])
    out = np.empty(int(new_offsets[-1]), dtype=np.uint32)
    starts = new_offsets[:-1]
    out[starts] = (base + inverse.reshape(-1)).astype(np.uint32)
    mask = np.ones(len(out), dtype=bool)
    mask[starts] = False
    out[mask] = b.stack_frames
    b.frames = frames
    b.stack_frames = out
    b.stack_offsets = new_offsets
    return b


def _record(collectors: List[Collector], pid: int, args: argparse.Namespace) -> SessionResult:
    period = int(1e9 / args.rate)
    # eBPF programs take 0.3-1 s each to compile: do it before the clock starts, so
    # --duration means seconds of data; what they caught meanwhile is discarded. (The
    # session's own start() calls are then no-ops.)
    for c in collectors:
        if c.name in EBPF_COLLECTORS:
            c.start()
    for c in collectors:
        if c.name in EBPF_COLLECTORS:
            c.drain()
    sample_types = list(SAMPLE_TYPES)
    for c in collectors:
        sample_types += [t for t in getattr(c, "sample_types", ()) if t not in sample_types]
    # Each drain costs the main thread ~0.5-1 ms, mostly fixed (a tenth of the whole
    # profiler's CPU at 100 Hz if done twice a second). The native loop buffers samples
    # between drains, so Python-only recordings drain every 5 s (1 s on a terminal, for the
    # progress line; 2 s with --subprocesses, which looks for new children at each drain);
    # eBPF collectors' kernel buffers need draining twice a second.
    live = sys.stderr.isatty()
    ebpf = any(c.name in EBPF_COLLECTORS for c in collectors)
    quiet = 2.0 if args.subprocesses else 5.0
    session = Session(
        collectors,
        sample_types,
        period_type=CPU_NS,
        period=period,
        static_labels=None,
        drain_interval=0.5 if ebpf else 1.0 if live else quiet,
    )
    merger = None
    if any(c.name in EBPF_COLLECTORS for c in collectors) and any(
        c.name == "python" for c in collectors
    ):
        from hostprof.merge import PythonMerger

        merger = PythonMerger(interval_ns=period, collector_slots={"offcpu": 1 << 20})
        session.batch_hooks.append(merger)
        if any(c.name == "cpu" for c in collectors):
            session.batch_hooks.append(_cpu_from_ebpf)
    session.batch_hooks.append(_thread_roots(args.threads))
    version = ""
    for c in collectors:
        if isinstance(c, PythonCollector) and pid in c.targets:
            version = f" (Python {c.targets[pid].proc.version})"
    what = f"pid {pid}{version}"
    if live:
        result = _record_live(session, what, args)
    else:
        print(f"hostprof: recording {what} at {args.rate:g} Hz; Ctrl-C to stop", file=sys.stderr)
        result = session.run(args.duration)
    if merger is not None:
        # Rows the merger held for a later Python sample: no later drain is coming.
        for b in merger.flush():
            session.aggregator.add(b)
    return result


def _record_live(session: Session, what: str, args: argparse.Namespace) -> SessionResult:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(stderr=True)
    text = Text(f"recording {what} at {args.rate:g} Hz... (Ctrl-C to stop)")
    # Redrawn on each drain only: rich's auto-refresh thread would wake 4 times a second.
    with Live(text, console=console, auto_refresh=False, transient=True) as live:

        def progress(p: Progress) -> None:
            live.update(Text(_progress_line(what, p.elapsed, p.samples, p.stats)), refresh=True)

        return session.run(args.duration, on_progress=progress)


def _progress_line(
    what: str, elapsed: float, samples: int, stats: Dict[str, Dict[str, float]]
) -> str:
    py = stats.get("python", {})
    return (
        f"recording {what}: {elapsed:5.1f} s, {samples} samples, "
        f"{py.get('rate', 0.0):.1f} Hz achieved, "
        f"{100 * py.get('efficiency', 1.0):.1f}% sampling efficiency, "
        f"{int(py.get('errors', 0) + py.get('torn_dropped', 0))} errors (Ctrl-C to stop)"
    )


def _report(result: SessionResult, pid: int, output: str, fmt: str) -> None:
    py = result.stats.get("python", {})
    where = "stdout" if output == "-" else output
    if result.reason == END_TARGET_EXITED:
        print(
            f"hostprof: process {pid} exited after {result.elapsed:.1f} s; "
            "wrote what was collected",
            file=sys.stderr,
        )
    elif result.reason == END_INTERRUPTED:
        print(
            f"hostprof: interrupted after {result.elapsed:.1f} s; wrote what was collected",
            file=sys.stderr,
        )
    print(
        f"hostprof: wrote {where} ({fmt}): {result.samples} samples in {result.elapsed:.1f} s, "
        f"{py.get('rate', 0.0):.1f} Hz achieved, "
        f"{100 * py.get('efficiency', 1.0):.1f}% sampling efficiency, "
        f"{int(py.get('late', 0))} late ticks",
        file=sys.stderr,
    )
    if py.get("state_hits"):
        print(
            f"hostprof: idle states from sched_switch (offcpu): {int(py['state_hits'])} "
            f"look-ups, {int(py.get('os_reads', 0))} /proc reads",
            file=sys.stderr,
        )
    if py.get("paused_seconds"):
        share = 100 * py["paused_seconds"] / max(result.elapsed, 1e-9)
        print(f"hostprof: --blocking paused the target {share:.1f}% of the time", file=sys.stderr)
    if result.samples == 0:
        print(
            "hostprof: no samples: every thread was idle (add --idle to include idle threads)",
            file=sys.stderr,
        )
