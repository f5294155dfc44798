"""Per-tick cost of the sampling loop's idle detection: /proc vs the sched_switch table.

The sampling loop decides per thread per tick whether the thread is idle. Without eBPF it
preads /proc/PID/task/TID/wchan (kept-open fds; an idle thread with an unchanged Python stack
reuses its last answer for up to 7 ticks). With the offcpu collector running, it loads the
thread's state from the collector's mmapped ``thread_state`` BPF array instead. This runs
the loop in-process (``Reader.run``, GIL released) against real targets, once per mode, in
separate child processes, interleaved, and reads the loop thread's CPU from
/proc/self/task/TID/schedstat over the steady part. Medians of ``--runs``.

Workloads:
  threads_4   two pure-Python CPU threads, one in time.sleep, one blocked in recv
              (sampler_vs_pyspy.py's);
  native_4    four threads hashing with the GIL released (running, never the GIL holder:
              /proc is read for each, every tick) and the main thread waiting;
  pool_32     one CPU thread, 32 workers parked in queue.get, one thread sleeping 5 ms
              at a time.

Usage (root: the table needs the offcpu collector)::

    .venv/bin/python benchmarks/sampler_idle_source.py [--rates 100,1000]
        [--workloads threads_4,native_4,pool_32] [--runs 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODES = ("proc", "table")

EXTRA_WORKLOADS = {
    "native_4": """
import hashlib, threading
data = b"x" * (8 << 20)
def hasher():
    while True:
        hashlib.sha256(data).digest()
for i in range(4):
    threading.Thread(target=hasher, name=f"hasher{i}", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
    "pool_32": """
import queue, threading, time
q = queue.Queue()
def spin():
    x = 0
    while True:
        x += 1
def worker():
    while True:
        q.get()
def ticker():
    while True:
        time.sleep(0.005)
threading.Thread(target=spin, daemon=True).start()
threading.Thread(target=ticker, daemon=True).start()
for i in range(32):
    threading.Thread(target=worker, name=f"worker{i}", daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
""",
}


def _source(workload: str) -> str:
    if workload in EXTRA_WORKLOADS:
        return EXTRA_WORKLOADS[workload]
    sys.path.insert(0, str(HERE))
    import sampler_vs_pyspy as bench

    return str(bench.WORKLOADS[workload]["source"])


def measure(workload: str, rate: int, duration: float, mode: str) -> Dict[str, float]:
    """One measurement, in this process (call it in a fresh child process)."""
    sys.path.insert(0, str(HERE))
    import sampler_vs_pyspy as bench

    from hostprof.native.pyprocess import attach

    target = bench.start_target(_source(workload))
    off = None
    try:
        reader = attach(target.pid).reader
        if mode == "table":
            from hostprof.collectors.offcpu import OffCpuCollector

            off = OffCpuCollector.probe([target.pid])
            off.start()
            reader.set_thread_states(off.thread_states)
        tid: List[int] = []

        def run() -> None:
            tid.append(threading.get_native_id())
            reader.run(int(1e9 / rate))

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)

        def cpu_ns() -> int:
            with open(f"/proc/self/task/{tid[0]}/schedstat") as f:
                return int(f.read().split()[0])

        s0, c0 = reader.stats(), cpu_ns()
        time.sleep(duration)
        s1, c1 = reader.stats(), cpu_ns()
        reader.stop()
        thread.join()
        ticks = max(s1["ticks"] - s0["ticks"], 1)
        out = {"cpu_us": (c1 - c0) / ticks / 1000}
        for k in ("os_reads", "state_hits", "samples"):
            out[k] = (s1[k] - s0[k]) / ticks
        return out
    finally:
        if off is not None:
            off.stop()
        target.kill()
        target.wait()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--workloads", default="threads_4,native_4,pool_32")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        workload, rate, mode = json.loads(args.child)
        print(json.dumps(measure(workload, rate, args.duration, mode)))
        return 0
    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}")
    print(
        f"{'workload':10} {'Hz':>5} | {'/proc us/tick':>13} {'table us/tick':>13}  ratio | "
        f"threads/tick | /proc reads/tick (proc -> table) | table hits/tick"
    )
    for rate in (int(r) for r in args.rates.split(",")):
        for workload in args.workloads.split(","):
            results: Dict[str, List[Dict[str, float]]] = {m: [] for m in MODES}
            for _ in range(args.runs):
                for mode in MODES:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--duration",
                            str(args.duration),
                            "--child",
                            json.dumps([workload, rate, mode]),
                        ],
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                    )
                    if out.returncode == 0:
                        results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    else:
                        print(out.stderr[-2000:], file=sys.stderr)
            if not all(results.values()):
                print(f"{workload:10} {rate:>5} | failed")
                continue
            med = {
                m: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for m, rs in results.items()
            }
            p, t = med["proc"], med["table"]
            print(
                f"{workload:10} {rate:>5} | {p['cpu_us']:13.1f} {t['cpu_us']:13.1f}  "
                f"{t['cpu_us'] / p['cpu_us']:5.2f} | {p['samples']:12.1f} | "
                f"{p['os_reads']:14.2f} -> {t['os_reads']:.2f}{'':11} | {t['state_hits']:.2f}",
                flush=True,
            )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
