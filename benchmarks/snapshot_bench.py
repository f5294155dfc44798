"""Snapshot wall time and archive size for 20 processes x 50 threads.

Starts 20 real CPython processes, each with 50 threads (48 blocked at various stack depths,
one lightly busy, the main thread), then runs the real ``hostprof snapshot`` CLI against all
of them several times and prints medians. The baseline beside it is what a responder does
without hostprof: ``py-spy dump`` of each process in turn (stacks only, no profile, no facts).

Budget (issue 7): wall time <= --profile-seconds + 3 s; archive a few KB per process.

Usage: .venv/bin/python benchmarks/snapshot_bench.py [--procs 20] [--threads 50] [--runs 3]
       [--profile-seconds 5] [--locals]

``--locals`` also runs ``snapshot --locals`` in every run, interleaved with the plain one, and
``py-spy dump --locals`` of each process in turn beside the plain py-spy baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import List

TARGET = """
import random, sys, threading, time
N = int(sys.argv[1])
stop = threading.Event()

def nest(depth, fn):
    if depth == 0:
        return fn()
    return nest(depth - 1, fn)

def waiter(i):
    nest(5 + i % 20, lambda: stop.wait())

def worker():
    def work():
        while not stop.is_set():
            sum(x * x for x in range(2000))
            time.sleep(0.005)
    nest(8, work)

for i in range(N - 2):
    threading.Thread(target=waiter, args=(i,), name=f"waiter-{i}", daemon=True).start()
threading.Thread(target=worker, name="worker", daemon=True).start()
print("READY", flush=True)
stop.wait()
"""


def spawn(n: int, threads: int) -> List[subprocess.Popen]:
    exe = os.path.realpath(sys.executable)
    procs = [
        subprocess.Popen(
            [exe, "-c", TARGET, str(threads)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        if not p.stdout.readline().startswith(b"READY"):
            raise RuntimeError("a target failed to start")
    return procs


def snapshot(pids: List[int], seconds: float, out: str, with_locals: bool = False) -> float:
    args = [sys.executable, "-m", "hostprof", "snapshot", "-q", "--profile-seconds", str(seconds)]
    if with_locals:
        args.append("--locals")
    for pid in pids:
        args += ["--pid", str(pid)]
    t0 = time.monotonic()
    res = subprocess.run([*args, "-o", out], capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if res.returncode not in (0, 6):
        raise RuntimeError(f"snapshot failed ({res.returncode}): {res.stderr}")
    return wall


def pyspy_each(pids: List[int], with_locals: bool = False) -> float:
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    t0 = time.monotonic()
    for pid in pids:
        subprocess.run(
            [
                exe,
                "dump",
                "--nonblocking",
                "--pid",
                str(pid),
                *(["--locals"] if with_locals else []),
            ],
            capture_output=True,
            check=False,
        )
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile-seconds", type=float, default=5.0)
    ap.add_argument("--locals", action="store_true", help="also measure snapshot --locals")
    opts = ap.parse_args()
    procs = spawn(opts.procs, opts.threads)
    pids = [p.pid for p in procs]
    tmp = tempfile.mkdtemp(prefix="hostprof-bench-")
    walls, sizes, members = [], [], {}
    coverage: dict = {}
    base = []
    walls_loc: List[float] = []
    sizes_loc: List[int] = []
    base_loc: List[float] = []
    try:
        for i in range(opts.runs):
            out = os.path.join(tmp, f"s{i}.tar.gz")
            walls.append(snapshot(pids, opts.profile_seconds, out))
            sizes.append(os.path.getsize(out))
            with tarfile.open(out) as tar:
                for m in tar.getmembers():
                    members.setdefault(m.name.split("/", 1)[-1], []).append(m.size)
                    if m.name.endswith("/snapshot.json"):
                        data = json.load(tar.extractfile(m))  # type: ignore[arg-type]
                        for name, secs in data["profile"]["coverage_seconds"].items():
                            coverage.setdefault(name, []).append(secs)
                        if walls[-1] > opts.profile_seconds + 3:
                            print(f"run {i + 1}: {walls[-1]:.2f} s, phases: {data['timings']}")
            base.append(pyspy_each(pids))
            if opts.locals:
                out = os.path.join(tmp, f"l{i}.tar.gz")
                walls_loc.append(snapshot(pids, opts.profile_seconds, out, with_locals=True))
                sizes_loc.append(os.path.getsize(out))
                base_loc.append(pyspy_each(pids, with_locals=True))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    budget = opts.profile_seconds + 3
    wall = statistics.median(walls)
    size = statistics.median(sizes)
    print(
        f"\nhostprof snapshot: {opts.procs} processes x {opts.threads} threads, "
        f"--profile-seconds {opts.profile_seconds:g}, {opts.runs} runs (medians), "
        f"{os.cpu_count()} CPUs\n"
    )
    print(f"| {'measure':<50} | {'value':>12} |")
    print(f"|{'-' * 52}|{'-' * 14}|")
    rows = [
        ("snapshot wall time (s)", f"{wall:.2f}"),
        ("  runs (s)", " ".join(f"{w:.2f}" for w in walls)),
        ("budget: profile-seconds + 3 (s)", f"{budget:.2f}"),
        ("wall time / budget", f"{wall / budget:.2f}"),
        ("overhead beyond the profile window (s)", f"{wall - opts.profile_seconds:.2f}"),
        ("baseline: py-spy dump of each process in turn (s)", f"{statistics.median(base):.2f}"),
        ("archive size (KiB)", f"{size / 1024:.1f}"),
        ("archive size per process (KiB)", f"{size / 1024 / opts.procs:.2f}"),
    ]
    for name in ("python", "cpu", "syscalls", "offcpu", "gc"):
        got = coverage.get(name, [])
        rows.append(
            (
                f"{name} profile coverage (s), runs with it",
                f"{statistics.median(got):.1f} {len(got)}/{opts.runs}" if got else f"0/{opts.runs}",
            )
        )
    if walls_loc:
        wl = statistics.median(walls_loc)
        rows += [
            ("snapshot --locals wall time (s)", f"{wl:.2f}"),
            ("  runs (s)", " ".join(f"{w:.2f}" for w in walls_loc)),
            ("--locals wall time / budget", f"{wl / budget:.2f}"),
            ("--locals / plain wall time", f"{wl / wall:.2f}"),
            ("--locals archive size (KiB)", f"{statistics.median(sizes_loc) / 1024:.1f}"),
            (
                "baseline: py-spy dump --locals of each in turn (s)",
                f"{statistics.median(base_loc):.2f}",
            ),
        ]
    for name, value in rows:
        print(f"| {name:<50} | {value:>12} |")
    print("\nuncompressed members (median bytes):")
    for name, vals in sorted(members.items()):
        print(f"  {name:<28} {statistics.median(vals):>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
