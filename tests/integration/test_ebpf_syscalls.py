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
