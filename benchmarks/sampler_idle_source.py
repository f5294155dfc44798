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

``--kernel`` measures the other side: what keeping the table costs the kernel. It loads the
offcpu collector host-wide (as the daemon does) with and without the table, runs a
context-switch-heavy ping-pong between two processes, and reads each BPF program's run time
and run count (``/proc/self/fdinfo``, with ``kernel.bpf_stats_enabled`` turned on for the
measurement and restored after).

Usage (root: the table needs the offcpu collector)::

    .venv/bin/python benchmarks/sampler_idle_source.py [--rates 100,1000]
        [--workloads threads_4,native_4,pool_32] [--runs 3] [--duration 3] [--python PATH]
    .venv/bin/python benchmarks/sampler_idle_source.py --kernel [--runs 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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


def measure(
    workload: str, rate: int, duration: float, mode: str, python: str = ""
) -> Dict[str, float]:
    """One measurement, in this process (call it in a fresh child process)."""
    sys.path.insert(0, str(HERE))
    import sampler_vs_pyspy as bench

    if python:
        bench.TARGET_PYTHON = python

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
        import sampler_loop_cost

        return sampler_loop_cost.time_loop(
            reader, rate, duration, ("os_reads", "state_hits", "samples")
        )
    finally:
        if off is not None:
            off.stop()
        target.kill()
        target.wait()


PING_PONG = """
import os, sys
a_r, a_w = os.pipe()
b_r, b_w = os.pipe()
if os.fork() == 0:
    os.close(a_w); os.close(b_r)
    while os.read(a_r, 1):  # b"" once the parent is gone
        os.write(b_w, b"x")
    os._exit(0)
os.close(a_r); os.close(b_w)
print("READY", flush=True)
while True:
    os.write(a_w, b"x"); os.read(b_r, 1)
"""

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def _prog_stats(bpf: object) -> Dict[str, List[int]]:
    """{program: [run_time_ns, run_cnt]} of a loaded bcc object, from fdinfo."""
    out = {}
    for name, fn in bpf.funcs.items():  # type: ignore[attr-defined]
        fields = {}
        with open(f"/proc/self/fdinfo/{fn.fd}") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key.rsplit("__", 1)[-1]] = [int(fields["run_time_ns"]), int(fields["run_cnt"])]
    return out


def measure_kernel(entries: int, duration: float) -> Dict[str, float]:
    """BPF run time per event of the offcpu programs, host-wide, under a ping-pong load."""
    sys.path.insert(0, str(HERE))
    import sampler_vs_pyspy as bench

    from hostprof.collectors.offcpu import OffCpuCollector

    off = OffCpuCollector(None, thread_state_entries=entries)
    off.start()
    target = bench.start_target(PING_PONG)
    with open(STATS_SYSCTL) as f:
        saved = f.read().strip()
    try:
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        time.sleep(0.5)
        s0, t0 = _prog_stats(off._bpf), time.monotonic()
        time.sleep(duration)
        s1, t1 = _prog_stats(off._bpf), time.monotonic()
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(saved)
        target.kill()  # its forked partner exits at end of file
        target.wait()
        off.stop()
    out: Dict[str, float] = {}
    for prog, (ns, cnt) in s1.items():
        d_ns, d_cnt = ns - s0[prog][0], max(cnt - s0[prog][1], 1)
        out[f"{prog}_ns"] = d_ns / d_cnt
        out[f"{prog}_per_s"] = d_cnt / (t1 - t0)
        out[f"{prog}_cpu"] = d_ns / (t1 - t0) / 1e9
    return out


def kernel_table(runs: int, duration: float) -> None:
    results: Dict[int, List[Dict[str, float]]] = {0: [], 1 << 16: []}
    for _ in range(runs):
        for entries in results:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--duration",
                    str(duration),
                    "--child",
                    json.dumps(["kernel", entries, ""]),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            results[entries].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {
        e: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in rs[0]}
        for e, rs in results.items()
        if rs
    }
    if len(med) < 2:
        print("kernel: failed")
        return
    off, on = med[0], med[1 << 16]
    print(f"{'offcpu program':22} | {'ns/run, no table':>16} {'ns/run, table':>14} | {'runs/s':>9}")
    print(
        f"{'sched_switch':22} | {off['sched_switch_ns']:16.0f} {on['sched_switch_ns']:14.0f} | "
        f"{on['sched_switch_per_s']:9.0f}"
    )
    for prog in ("sched_wakeup", "sched_wakeup_new"):
        print(f"{prog:22} | {'-':>16} {on[prog + '_ns']:14.0f} | {on[prog + '_per_s']:9.0f}")
    added = (
        (on["sched_switch_ns"] - off["sched_switch_ns"]) * on["sched_switch_per_s"]
        + on["sched_wakeup_ns"] * on["sched_wakeup_per_s"]
        + on["sched_wakeup_new_ns"] * on["sched_wakeup_new_per_s"]
    ) / 1e9
    total_on = sum(on[f"{p}_cpu"] for p in ("sched_switch", "sched_wakeup", "sched_wakeup_new"))
    print(
        f"kernel CPU the table adds at this switch rate: {100 * added:.2f} % of one core "
        f"(whole offcpu collector: {100 * off['sched_switch_cpu']:.2f} % without the table, "
        f"{100 * total_on:.2f} % with it)"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--workloads", default="threads_4,native_4,pool_32")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--kernel", action="store_true", help="BPF-side cost of the table")
    parser.add_argument(
        "--python", default="", help="target interpreter (default: this one), e.g. a 3.13t"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        workload, rate, mode = json.loads(args.child)
        if workload == "kernel":
            print(json.dumps(measure_kernel(rate, args.duration)))
        else:
            print(json.dumps(measure(workload, rate, args.duration, mode, args.python)))
        return 0
    if args.kernel:
        with open("/proc/loadavg") as f:
            print(f"load average before: {' '.join(f.read().split()[:3])}")
        kernel_table(args.runs, args.duration)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        return 0
    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}")
    print(f"target interpreter: {args.python or os.path.realpath(sys.executable)}")
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
                            "--python",
                            args.python,
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
