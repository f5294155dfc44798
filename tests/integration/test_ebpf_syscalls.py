"""syscalls collector against a workload whose syscall counts are known, merged with Python."""

from __future__ import annotations

import json

from tests.conftest import require_bpf
from tests.integration._ebpf import concat
from tests.integration._ebpf import driven
from tests.integration._ebpf import poll
from tests.integration._ebpf import python_functions

# Three phases of 100 ms each, repeated: os.read in do_reads, os.write in do_writes, os.stat in
# do_stats. The target counts its own calls: that is the truth.
TARGET = """
import json, os, sys, threading, time
rfd = os.open("/dev/zero", os.O_RDONLY)
wfd = os.open("/dev/null", os.O_WRONLY)
counts = {"read": 0, "write": 0, "stat": 0}
def do_reads(until):
    n = 0
    while time.monotonic() < until:
        os.read(rfd, 1); n += 1
    counts["read"] += n
def do_writes(until):
    n = 0
    while time.monotonic() < until:
        os.write(wfd, b"x"); n += 1
    counts["write"] += n
def do_stats(until):
    n = 0
    while time.monotonic() < until:
        os.stat("/"); n += 1
    counts["stat"] += n
def work():
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        t = time.monotonic()
        do_reads(t + 0.1); do_writes(t + 0.2); do_stats(t + 0.3)
print("READY", threading.get_native_id(), flush=True)
sys.stdin.readline()
work()
print("RESULT", json.dumps(counts), flush=True)
sys.stdin.readline()
"""

PHASE = {"read": "do_reads", "write": "do_writes", "newfstatat": "do_stats"}


def test_syscall_counts_and_python_functions() -> None:
    require_bpf()
    from hostprof.collectors.python import PythonCollector
    from hostprof.collectors.syscalls import SyscallsCollector
    from hostprof.merge import PythonMerger

    # GIVEN a target doing a known number of reads, writes and stats per second
    with driven(TARGET) as t:
        sysc = SyscallsCollector.probe([t.pid], slot_ns=1 << 20)
        py = PythonCollector.probe([t.pid], rate=500, idle=True)
        merger = PythonMerger(interval_ns=2_000_000, slot_ns=1 << 20)
        sysc.start()
        py.start()
        try:
            # WHEN both collectors run alongside it
            t.go()
            batches = poll([py, sysc], 1.8)
            truth = json.loads(t.result())
            batches["python"].append(py.drain())
            batches["syscalls"].append(sysc.drain())
        finally:
            sysc.stop()
            py.stop()
            py.close()
    for b in batches["python"]:
        merger.remember(b)
    merged = concat([merger.merge(b) for b in batches["syscalls"]])

    # THEN counts match the truth within 2 %
    got = {"read": 0, "write": 0, "newfstatat": 0}
    right = dict.fromkeys(got, 0)
    joined = dict.fromkeys(got, 0)
    for frames, values, pid, _tid in merged:
        name = frames[-1].function[len("<syscall:") : -1]
        if pid != t.pid or name not in got:
            continue
        got[name] += values[0]
        if python_functions(frames):
            joined[name] += values[0]
        if PHASE[name] in python_functions(frames):
            right[name] += values[0]
    truth["newfstatat"] = truth.pop("stat")
    for name, n in truth.items():
        # +2: the RESULT print is a write, a readline may be in flight
        assert abs(got[name] - n) <= 0.02 * n + 2, (name, got[name], n)
    # AND each syscall sits under the Python function that made it. The join error is the
    # share of joined calls charged elsewhere: 0.3-3 % measured here at 500 Hz with 1 ms slots
    # and 100 ms phases. Calls left without a Python stack (the sampler starved for longer
    # than the gap, seen at load averages of 10-28 on this 2-core machine) are counted apart;
    # see docs/ebpf.md.
    for name in got:
        share = right[name] / joined[name]
        print(f"{name}: {got[name]} calls, {joined[name]} joined, {share:.4f} under {PHASE[name]}")
        assert joined[name] >= 0.5 * got[name], (name, joined[name], got[name])
        assert share >= 0.93, (name, share)
    assert sysc.histogram["read"].sum() >= truth["read"]


# Two threads that block inside syscalls: one sleeps (clock_nanosleep), one waits on a pipe
# that the main thread fills later (read). Each measures the time it spent in the call.
BLOCKING = """
import json, os, sys, threading, time
r, w = os.pipe()
spent = {"sleep": 0.0, "read": 0.0}
def sleeper():
    for _ in range(40):
        t = time.monotonic(); time.sleep(0.01); spent["sleep"] += time.monotonic() - t
def reader():
    for _ in range(20):
        t = time.monotonic(); os.read(r, 1); spent["read"] += time.monotonic() - t
print("READY", flush=True)
sys.stdin.readline()
ts = [threading.Thread(target=sleeper), threading.Thread(target=reader)]
for t in ts:
    t.start()
for _ in range(20):
    time.sleep(0.02); os.write(w, b"x")
for t in ts:
    t.join()
print("RESULT", json.dumps({"spent": spent, "tids": [t.native_id for t in ts]}), flush=True)
sys.stdin.readline()
"""


def test_blocking_syscalls_are_timed_across_context_switches() -> None:
    require_bpf()
    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN threads that block in clock_nanosleep and in a pipe read, so each call leaves its
    # CPU mid-syscall (the entry time moves from the per-CPU slot to the parked table)
    with driven(BLOCKING) as t:
        sysc = SyscallsCollector.probe([t.pid])
        sysc.start()
        try:
            # WHEN the collector counts them
            t.go()
            truth = json.loads(t.result())
            batch = sysc.drain()
        finally:
            sysc.stop()
    sleeper, reader = truth["tids"]
    calls: dict = {}
    for frames, values, _pid, tid in concat([batch]):
        name = frames[-1].function
        c = calls.setdefault((tid, name), [0, 0])
        c[0] += values[0]
        c[1] += values[1]

    # THEN every blocking call is counted once, and its time matches the thread's own
    # measurement within 5 % (the Python-side measurement includes the call's overhead)
    n, ns = calls[(sleeper, "<syscall:clock_nanosleep>")]
    assert n == 40, calls
    assert abs(ns / 1e9 - truth["spent"]["sleep"]) <= 0.05 * truth["spent"]["sleep"], (ns, truth)
    n, ns = calls[(reader, "<syscall:read>")]
    assert n == 20, calls
    assert abs(ns / 1e9 - truth["spent"]["read"]) <= 0.05 * truth["spent"]["read"], (ns, truth)
