"""CPU per tick of the native sampling loop alone, this tree vs an earlier revision.

What a daemon pays per target is the sampling loop (``Reader.run``, GIL released); drains
are rare there. This runs the loop in-process against a benchmark workload (the targets of
``sampler_vs_pyspy.py``) and reads the loop thread's CPU from /proc/self/task/TID/schedstat
over the steady part. With ``--before REV`` the core of that git revision (native/pyreader.*,
native/_sampler.pyx) is built into a temporary directory and measured interleaved with this
tree's, in separate processes, so both see the same machine load. Medians of ``--runs``.

Usage::

    .venv/bin/python benchmarks/sampler_loop_cost.py [--before REV] [--rates 100,1000]
        [--workloads threads_4,...] [--runs 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
from typing import Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORE_FILES = (
    "native/pyreader.c",
    "native/pyreader.h",
    "native/pyreader.pxd",
    "native/_sampler.pyx",
    "native/threadstate.h",  # included by pyreader.h since e1e82fd; absent before
)


def build_revision(rev: str, dest: Path) -> Path:
    """Builds the sampling core of git revision ``rev`` in ``dest``; returns the .so path."""
    for name in CORE_FILES:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{name}"],
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0 and name == "native/threadstate.h":
            continue
        shown.check_returncode()
        text = shown.stdout
        (dest / "native").mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    script = (
        "from setuptools import setup, Extension\n"
        "from Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize([Extension('_sampler', ['native/_sampler.pyx', "
        "'native/pyreader.c'], include_dirs=['native'], extra_compile_args=['-O2'])], "
        "include_path=['native'], language_level=3, quiet=True), "
        "script_args=['build_ext', '--inplace', '-q'])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=dest, check=True, capture_output=True, text=True
    )
    return next(dest.glob("_sampler*.so"))


def time_loop(
    reader: object, rate: int, duration: float, counters: Sequence[str]
) -> Dict[str, float]:
    """Runs ``reader``'s sampling loop in a thread at ``rate`` Hz and returns its CPU per tick
    (``cpu_us``, from the thread's schedstat, after a 1 s warm-up) and each of ``counters``
    that the reader reports, per tick."""
    tid: List[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        reader.run(int(1e9 / rate))  # type: ignore[attr-defined]

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)

    def cpu_ns() -> int:
        with open(f"/proc/self/task/{tid[0]}/schedstat") as f:
            return int(f.read().split()[0])

    s0, c0 = reader.stats(), cpu_ns()  # type: ignore[attr-defined]
    time.sleep(duration)
    s1, c1 = reader.stats(), cpu_ns()  # type: ignore[attr-defined]
    reader.stop()  # type: ignore[attr-defined]
    thread.join()
    ticks = max(s1["ticks"] - s0["ticks"], 1)
    out = {"cpu_us": (c1 - c0) / ticks / 1000}
    for k in counters:
        if k in s1:
            out[k] = (s1[k] - s0[k]) / ticks
    return out


def measure(workload: str, rate: int, duration: float, core: Optional[str]) -> Dict[str, float]:
    """One measurement, in this process (call it in a fresh child process)."""
    if core:
        spec = importlib.util.spec_from_file_location("hostprof.native._sampler", core)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        import hostprof.native  # noqa: F401

        sys.modules["hostprof.native._sampler"] = module
    sys.path.insert(0, str(HERE))
    import sampler_vs_pyspy as bench

    from hostprof.native.pyprocess import attach

    target = bench.start_target(str(bench.WORKLOADS[workload]["source"]))
    try:
        proc = attach(target.pid)
        reader = proc.reader
        if hasattr(reader, "reuse_parked_stacks"):  # as PythonCollector sets it
            reader.reuse_parked_stacks = not proc.free_threaded
        return time_loop(
            reader, rate, duration, ("reads", "bytes_read", "os_reads", "frames_reused")
        )
    finally:
        target.kill()
        target.wait()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="git revision to compare with")
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--workloads", default="cpu_mix_50_30_20,threads_4,recursion_200")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        workload, rate, core = json.loads(args.child)
        print(json.dumps(measure(workload, rate, args.duration, core)))
        return 0
    cores: Dict[str, Optional[str]] = {"now": None}
    tmp = None
    if args.before:
        tmp = tempfile.TemporaryDirectory(prefix="hp-core-")
        cores = {"before": str(build_revision(args.before, Path(tmp.name))), "now": None}
    head = f"{'workload':18} {'Hz':>5} |" + "".join(f" {k + ' us/tick':>16}" for k in cores)
    if args.before:
        head += "  ratio | reads/tick  KiB/tick  /proc reads/tick (before -> now)"
    print(head)
    for rate in (int(r) for r in args.rates.split(",")):
        for workload in args.workloads.split(","):
            results: Dict[str, List[Dict[str, float]]] = {k: [] for k in cores}
            for _ in range(args.runs):
                for name, core in cores.items():
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--duration",
                            str(args.duration),
                            "--child",
                            json.dumps([workload, rate, core]),
                        ],
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                    )
                    if out.returncode == 0:
                        results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {
                name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for name, rs in results.items()
                if rs
            }
            line = f"{workload:18} {rate:>5} |" + "".join(
                f" {med[k]['cpu_us']:16.1f}" if k in med else f" {'-':>16}" for k in cores
            )
            if args.before and "before" in med and "now" in med:
                b, n = med["before"], med["now"]
                line += f"  {n['cpu_us'] / b['cpu_us']:5.2f} | "
                nan = float("nan")
                line += f"{b.get('reads', nan):.2f} -> {n['reads']:.2f}  "
                line += f"{b.get('bytes_read', nan) / 1024:.1f} -> {n['bytes_read'] / 1024:.1f}  "
                line += f"{b.get('os_reads', nan):.2f} -> {n['os_reads']:.2f}"
            elif "now" in med:
                n = med["now"]
                line += f" | {n['reads']:.2f} reads, {n['bytes_read'] / 1024:.1f} KiB, "
                line += f"{n['os_reads']:.2f} /proc reads per tick"
            print(line, flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
