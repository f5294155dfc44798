"""hostprof's sampling core vs py-spy, side by side on workloads with a known time split.

For each workload and rate, each profiler records the same kind of target process for
``--duration`` seconds, ``--runs`` times (median reported), and we measure:

* profiler CPU: core-seconds per second of the profiler process (all its threads, from
  /proc/PID/task/*/schedstat), over the steady part of the recording (after its start-up,
  before its output is written);
* achieved rate: samples of the workload's running threads per second of actual recording
  (from the profiler's start message to its exit: py-spy keeps sampling past --duration until
  it has duration x rate samples), as % of the requested rate;
* attribution error: the sum over the workload's functions of |measured share - true share|;
* target stopped: % of time the target was seen stopped (ptrace) while recording, polled
  from /proc/TARGET/stat;
* GC share (hostprof only): samples inside the cyclic GC vs the target's own measurement;
* dump latency: ``hostprof dump`` vs ``py-spy dump`` on the 4-thread workload, both as a
  command (wall time, includes interpreter start-up for hostprof) and, for hostprof, the
  attach + read in-process (what a daemon or ``record`` pays).

Usage::

    .venv/bin/python benchmarks/sampler_vs_pyspy.py [--duration 8] [--runs 3] [--rates 100,1000]

py-spy runs in its default (blocking) mode, as users run it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
HOSTPROF = str(VENV_BIN / "hostprof")
PYSPY = str(VENV_BIN / "py-spy") if (VENV_BIN / "py-spy").exists() else shutil.which("py-spy")
TARGET_PYTHON = os.path.realpath(sys.executable)

# ---------------------------------------------------------------------------- workloads
# Each workload: source, its threads' shared root function, and the true split over the
# functions named in `truth` (shares of the workload's samples whose stack contains them).
SPIN = """
import time
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
"""

WORKLOADS: Dict[str, Dict[str, object]] = {
    "cpu_mix_50_30_20": {
        "source": SPIN
        + """
import threading
spent = {"fifty": 0.0, "thirty": 0.0, "twenty": 0.0}
def timed(name, seconds):
    a = time.perf_counter()
    spin(seconds)
    spent[name] += time.perf_counter() - a
def fifty():
    timed("fifty", 0.005)
def thirty():
    timed("thirty", 0.003)
def twenty():
    timed("twenty", 0.002)
def mix():
    t0 = time.perf_counter()
    while True:
        fifty(); thirty(); twenty()
        if time.perf_counter() - t0 > 0.5:
            t0 = time.perf_counter()
            print("SPLIT", *(f"{k}={v}" for k, v in spent.items()), flush=True)
threading.Thread(target=mix, name="mix", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
        "root": "mix",
        "threads": 1,
        # 50/30/20 on an idle machine; the target measures the real split (a loaded machine
        # preempts it, stretching whichever function it was in).
        "truth": {"fifty": 0.5, "thirty": 0.3, "twenty": 0.2},
        "measured_truth": True,
    },
    "threads_4": {
        "source": SPIN
        + """
import socket, threading
def cpu_one():
    while True:
        spin(0.01)
def cpu_two():
    while True:
        spin(0.01)
def sleeper():
    while True:
        time.sleep(1)
a, b = socket.socketpair()
def blocked():
    a.recv(1)
for fn in (cpu_one, cpu_two, sleeper, blocked):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
        "root": "Thread.run",
        "threads": 1,  # with the GIL, one CPU thread runs at a time
        "truth": {"cpu_one": 0.5, "cpu_two": 0.5},
    },
    "recursion_200": {
        "source": SPIN
        + """
import threading
def rec(n):
    if n == 0:
        while True:
            spin(0.01)
    rec(n - 1)
def deep():
    rec(199)
threading.Thread(target=deep, name="deep", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
        "root": "deep",
        "threads": 1,
        "truth": {"rec": 1.0},
    },
    "gc_heavy": {
        "source": """
import gc, threading, time
class Node:
    pass
keep = []
for _ in range(100000):
    a = Node(); b = Node(); a.o = b; b.o = a; keep.append(a)
gc.disable()
in_gc = [0.0]
started = [0.0]
def cb(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        in_gc[0] += time.perf_counter() - started[0]
gc.callbacks.append(cb)
def churn():
    t0 = time.perf_counter()
    while True:
        junk = []
        for _ in range(20000):
            a = Node(); b = Node(); a.o = b; b.o = a; junk.append(a)
        del junk
        gc.collect()
        if time.perf_counter() - t0 > 0.5:
            print("GCSHARE", in_gc[0] / (time.perf_counter() - t0), flush=True)
threading.Thread(target=churn, name="churn", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
        "root": "churn",
        "threads": 1,
        "truth": {},
    },
    "zlib_native": {
        "source": SPIN
        + """
import threading, zlib, os
data = os.urandom(1 << 14)
spent = [0.0, 0.0]
def compress_work():
    end = time.perf_counter() + 0.005
    while time.perf_counter() < end:
        zlib.compress(data, 6)
def python_work():
    spin(0.005)
def loop():
    t0 = time.perf_counter()
    while True:
        a = time.perf_counter()
        compress_work()
        b = time.perf_counter()
        python_work()
        c = time.perf_counter()
        spent[0] += b - a
        spent[1] += c - b
        if c - t0 > 0.5:
            t0 = c
            print("SPLIT", f"compress_work={spent[0]}", f"python_work={spent[1]}", flush=True)
threading.Thread(target=loop, name="zlib", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
        "root": "loop",
        "threads": 1,
        # Measured by the target itself (compress calls overshoot the 5 ms budget).
        "truth": {"compress_work": 0.5, "python_work": 0.5},
        "measured_truth": True,
    },
}


# ------------------------------------------------------------------------------ helpers
def cpu_seconds(pid: int) -> Optional[float]:
    """CPU time of all of a process's threads, in seconds, from /proc/PID/task/*/schedstat
    (nanosecond precision; /proc/PID/stat counts 10 ms ticks), or None once it is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue
    return total / 1e9


def start_target(source: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [TARGET_PYTHON, "-u", "-c", source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"target failed: {proc.stderr.read() if proc.stderr else ''}")
    return proc


class StopWatcher(threading.Thread):
    """Polls the target's threads' states; counts how often any is ptrace-stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.polls = 0
        self.stopped = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                tasks = os.listdir(f"/proc/{self.pid}/task")
            except OSError:
                return
            seen = False
            for t in tasks:
                try:
                    with open(f"/proc/{self.pid}/task/{t}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                seen |= state in ("t", "T")
            self.polls += 1
            self.stopped += seen
            time.sleep(0.0005)

    def fraction(self) -> float:
        return self.stopped / self.polls if self.polls else 0.0


def parse_folded(text: str) -> List[Tuple[List[str], int]]:
    """(function names root first, count) per line of folded / py-spy raw output."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        funcs = []
        for frame in stack.split(";"):
            # hostprof: "func (file:line)"; py-spy raw: "func (file:line)" as well.
            funcs.append(
                re.sub(r" \(.*\)$", "", frame).rsplit(".", 1)[-1]
                if not frame.startswith("<")
                else frame
            )
        out.append((funcs, int(count)))
    return out


# ------------------------------------------------------------------------------- runs
def record_once(
    tool: str, workload: Dict[str, object], rate: int, duration: float
) -> Dict[str, float]:
    target = start_target(str(workload["source"]))
    gc_truth: List[float] = []
    # (time read, cumulative seconds per function) reports of self-measuring targets
    split_truth: List[Tuple[float, Dict[str, float]]] = []
    reader = None
    if target.stdout is not None:

        def read_gc() -> None:
            for line in target.stdout:  # type: ignore[union-attr]
                parts = line.split()
                if len(parts) == 2 and parts[0] == "GCSHARE":
                    gc_truth.append(float(parts[1]))
                elif len(parts) > 1 and parts[0] == "SPLIT" and all("=" in p for p in parts[1:]):
                    spent = {k: float(v) for k, v in (p.split("=") for p in parts[1:])}
                    split_truth.append((time.monotonic(), spent))

        reader = threading.Thread(target=read_gc, daemon=True)
        reader.start()
    out = Path(tempfile.mkdtemp(prefix="hpbench-")) / "out.txt"
    if tool == "hostprof":
        cmd = [
            HOSTPROF,
            "record",
            "--pid",
            str(target.pid),
            "-r",
            str(rate),
            "-d",
            str(duration),
            "-o",
            str(out),
            "-f",
            "folded",
        ]
        start_marker = "recording"
    else:
        cmd = [
            PYSPY,
            "record",
            "--pid",
            str(target.pid),
            "-r",
            str(rate),
            "-d",
            str(round(duration)),
            "-o",
            str(out),
            "--format",
            "raw",
        ]
        start_marker = "Sampling process"
    watcher = StopWatcher(target.pid)
    prof = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: Dict[str, float] = {}
    stderr_lines: List[str] = []

    def read_stderr() -> None:
        assert prof.stdout is not None
        for line in prof.stdout:
            stderr_lines.append(line)
            if start_marker in line and "start" not in marks:
                marks["start"] = time.monotonic()

    t = threading.Thread(target=read_stderr, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while "start" not in marks and time.monotonic() < deadline and prof.poll() is None:
        time.sleep(0.005)
    watcher.start()
    # Steady state: from 0.3 s after the profiler says it started to 0.3 s before the end.
    begin = marks.get("start", time.monotonic()) + 0.3
    while time.monotonic() < begin:
        time.sleep(0.005)
    c0, w0 = cpu_seconds(prof.pid), time.monotonic()
    end = marks.get("start", time.monotonic()) + duration - 0.3
    c1, w1 = c0, w0
    # The last reading taken while the profiler still ran (it may end before `end`).
    while time.monotonic() < end and prof.poll() is None:
        time.sleep(0.05)
        c, w = cpu_seconds(prof.pid), time.monotonic()
        if c is not None and prof.poll() is None:
            c1, w1 = c, w
    c, w = cpu_seconds(prof.pid), time.monotonic()
    if c is not None and prof.poll() is None:
        c1, w1 = c, w
    prof.wait(timeout=120)
    recorded = time.monotonic() - marks.get("start", time.monotonic() - duration)
    t.join(timeout=5)
    watcher.done.set()
    watcher.join(timeout=5)
    target.kill()
    target.wait()
    samples = parse_folded(out.read_text()) if out.exists() else []
    root = str(workload["root"]).rsplit(".", 1)[-1]
    relevant = [(f, n) for f, n in samples if root in f]
    total = sum(n for _, n in relevant)
    truth: Dict[str, float] = dict(workload["truth"])  # type: ignore[call-overload]
    if workload.get("measured_truth"):
        # The target's own split over the recording: the difference of its cumulative
        # reports from the start of recording to its end.
        t_start = marks.get("start", 0.0)
        inside = [(t, d) for t, d in split_truth if t_start <= t <= t_start + recorded]
        if len(inside) >= 2:
            first, last = inside[0][1], inside[-1][1]
            delta = {k: last[k] - first[k] for k in last}
            whole = sum(delta.values())
            truth = {k: v / whole for k, v in delta.items()}
    error = 0.0
    for func, share in truth.items():
        got = sum(n for f, n in relevant if func in f) / total if total else 0.0
        error += abs(got - share)
    gc_share = sum(n for f, n in relevant if f and f[-1] == "<gc>") / total if total else 0.0
    return {
        "cpu": (c1 - c0) / (w1 - w0)
        if c0 is not None and c1 is not None and w1 > w0
        else float("nan"),
        "rate": total / recorded / int(workload["threads"]) / rate,  # type: ignore[call-overload]
        "error": error,
        "stopped": watcher.fraction(),
        "gc_share": gc_share,
        "gc_truth": statistics.median(gc_truth) if gc_truth else float("nan"),
    }


def dump_latency(runs: int) -> Dict[str, float]:
    """Median wall times of dump commands and of hostprof's in-process attach + read."""
    from hostprof.native.pyprocess import attach

    target = start_target(str(WORKLOADS["threads_4"]["source"]))
    try:
        times: Dict[str, List[float]] = {"hostprof": [], "py-spy": [], "hostprof-lib": []}
        # As installed, Python caches bytecode; this environment may forbid it, which would
        # recompile every hostprof module on every run. One unmeasured run writes the caches.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([HOSTPROF, "dump", "--pid", str(target.pid)], capture_output=True, env=env)
        for _ in range(runs):
            for tool, cmd in (
                ("hostprof", [HOSTPROF, "dump", "--pid", str(target.pid)]),
                ("py-spy", [PYSPY, "dump", "--pid", str(target.pid)]),
            ):
                t0 = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True, timeout=60, env=env)
                times[tool].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            proc = attach(target.pid)
            stacks = proc.stacks()
            times["hostprof-lib"].append(time.perf_counter() - t0)
            proc.close()
            assert len(stacks) == 5, stacks
        return {k: statistics.median(v) * 1000 for k, v in times.items()}
    finally:
        target.kill()
        target.wait()


def _medians(results: Dict[str, List[Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """Per tool, the median of each metric over the runs."""

    def median(values: List[float]) -> float:
        ok = [v for v in values if v == v]  # a run whose profiler ended early has no CPU
        return statistics.median(ok) if ok else float("nan")

    return {
        tool: {m: median([r[m] for r in runs]) for m in runs[0]} for tool, runs in results.items()
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args(argv)
    if not PYSPY:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    load_before = os.getloadavg()
    rows = []
    for name in args.workloads.split(","):
        for rate in rates:
            results: Dict[str, List[Dict[str, float]]] = {"hostprof": [], "py-spy": []}
            for _ in range(args.runs):
                for tool in ("hostprof", "py-spy"):  # interleaved: same load for both
                    results[tool].append(record_once(tool, WORKLOADS[name], rate, args.duration))
            rows.append((name, rate, _medians(results)))
            print(f"... {name} @ {rate} Hz done", file=sys.stderr, flush=True)
    dump = dump_latency(args.runs)
    header = (
        f"{'workload':<18} {'Hz':>5} | {'CPU hp':>7} {'CPU spy':>8} {'ratio':>6} | "
        f"{'rate hp':>7} {'rate spy':>8} | {'err hp':>6} {'err spy':>7} | "
        f"{'stop hp':>7} {'stop spy':>8} | {'GC hp':>6} {'GC true':>7}"
    )
    load_after = os.getloadavg()
    print(
        f"\nhostprof vs py-spy: medians of {args.runs} runs, {args.duration:g} s each, "
        f"target {TARGET_PYTHON}; load average {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end (1 min), {os.cpu_count()} CPUs"
    )
    print(header)
    print("-" * len(header))
    for name, rate, r in rows:
        hp, spy = r["hostprof"], r["py-spy"]
        ratio = hp["cpu"] / spy["cpu"] if spy["cpu"] else float("nan")
        gc = (
            f"{hp['gc_share']:6.3f} {hp['gc_truth']:7.3f}"
            if name == "gc_heavy"
            else f"{'':6} {'':7}"
        )
        print(
            f"{name:<18} {rate:>5} | {hp['cpu']:7.4f} {spy['cpu']:8.4f} {ratio:6.2f} | "
            f"{100 * hp['rate']:6.1f}% {100 * spy['rate']:7.1f}% | "
            f"{hp['error']:6.3f} {spy['error']:7.3f} | "
            f"{100 * hp['stopped']:6.1f}% {100 * spy['stopped']:7.1f}% | {gc}"
        )
    print(
        f"\ndump of a 4-thread process (median wall ms): hostprof command "
        f"{dump['hostprof']:.1f} (includes Python start-up), py-spy {dump['py-spy']:.1f}, "
        f"ratio {dump['hostprof'] / dump['py-spy']:.2f}; hostprof attach+read in-process "
        f"{dump['hostprof-lib']:.2f} (ratio {dump['hostprof-lib'] / dump['py-spy']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
