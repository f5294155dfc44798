"""syscalls collector against a workload whose syscall counts are known, merged with Python."""

from __future__ import annotations

import json

from tests.conftest import require_bpf
from tests.integration._ebpf import concat
from tests.integration._ebpf import driven
from tests.integration._ebpf import poll
from tests.integration._ebpf import poll_until_ready
from tests.integration._ebpf import python_functions
from tests.integration._ebpf import traced_run

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
    # WHEN the collector counts them
    truth, batch, _ = traced_run(BLOCKING, SyscallsCollector.probe)
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


def _per_thread(batches: list) -> dict:
    """{(tid, syscall name): calls} over drained batches."""
    out: dict = {}
    for frames, values, _pid, tid in concat(batches):
        key = (tid, frames[-1].function[len("<syscall:") : -1])
        out[key] = out.get(key, 0) + values[0]
    return out


# A thread alternating os.read and os.write, hopping between CPUs every 997 iterations, while
# the collector drains every few milliseconds: runs of one key end at every call, on both CPUs,
# and drains land in the middle of them.
ALTERNATING = """
import json, os, sys, threading
rfd = os.open("/dev/zero", os.O_RDONLY)
wfd = os.open("/dev/null", os.O_WRONLY)
cpus = sorted(os.sched_getaffinity(0))
done = {"read": 0, "write": 0, "hops": 0}
def work():
    for i in range(60000):
        if i % 997 == 0:
            os.sched_setaffinity(0, {cpus[(i // 997) % len(cpus)]})
            done["hops"] += 1
        os.read(rfd, 1)
        os.write(wfd, b"x")
        if i % 3 == 0:
            os.read(rfd, 1)
            done["read"] += 1
    done["read"] += 60000
    done["write"] += 60000
print("READY", flush=True)
sys.stdin.readline()
t = threading.Thread(target=work)
t.start()
t.join()
print("RESULT", json.dumps({"tid": t.native_id, **done}), flush=True)
sys.stdin.readline()
"""


def test_counts_exact_across_drains_alternation_and_migration() -> None:
    require_bpf()
    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN a thread alternating two syscalls and migrating between CPUs
    with driven(ALTERNATING) as t:
        sysc = SyscallsCollector.probe([t.pid], slot_ns=1 << 20)
        sysc.start()
        try:
            # WHEN the collector drains every 5 ms while it runs
            t.go()
            batches = poll_until_ready(t, [sysc], every=0.005)["syscalls"]
            truth = json.loads(t.result())
            batches.append(sysc.drain())
        finally:
            sysc.stop()
    calls = _per_thread(batches)

    # THEN that thread's reads and writes are counted exactly: no call lost or counted twice
    assert truth["hops"] > 1
    assert calls.get((truth["tid"], "read")) == truth["read"], (calls, truth)
    assert calls.get((truth["tid"], "write")) == truth["write"], (calls, truth)


# A thread pinned to one CPU makes its calls and then computes without any syscall, so its
# last run of calls stays pending on that CPU; the main thread waits on another CPU in a
# blocking read (no GIL hand-off wakes the worker).
PENDING = """
import os, sys, threading, time
rfd = os.open("/dev/zero", os.O_RDONLY)
cpus = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, {cpus[-1]})
def work():
    os.sched_setaffinity(0, {cpus[0]})
    os.write(1, b"RESULT %d\\n" % threading.get_native_id())
    for _ in range(25000):
        os.read(rfd, 1)
    end = time.monotonic() + 4.0
    while time.monotonic() < end:
        pass
print("READY", flush=True)
sys.stdin.readline()
threading.Thread(target=work, daemon=True).start()
sys.stdin.readline()
"""


def test_pending_run_of_a_running_thread_is_drained() -> None:
    require_bpf()
    import time

    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN a thread whose last 25,000 reads are summed in its CPU's pending run, and which
    # then keeps that CPU without making another syscall
    with driven(PENDING) as t:
        sysc = SyscallsCollector.probe([t.pid])
        sysc.start()
        try:
            t.go()
            tid = int(t.result())
            # WHEN the collector drains while the thread still computes
            batches = []
            reads = 0
            deadline = time.monotonic() + 3.0
            while reads < 25000 and time.monotonic() < deadline:
                time.sleep(0.05)
                batches.append(sysc.drain())
                reads = _per_thread(batches).get((tid, "read"), 0)
        finally:
            sysc.stop()

    # THEN the drain has every CPU flush its run: all reads, counted once, before the thread
    # makes any other call
    assert reads == 25000, _per_thread(batches)
    assert _per_thread(batches).get((tid, "write")) == 1


# A hot loop of one syscall: after its first calls, only every 16th call's latency is measured.
# Enough calls that the 1-in-16 sample's mean is steady under a loaded CI machine's preemptions
# (at 40,000 one CI run was 11 % off the exact collector).
HOT_CALLS = 200_000
HOT = """
CALLS = %d
import json, os, sys, threading
rfd = os.open("/dev/zero", os.O_RDONLY)
def work():
    for _ in range(CALLS):
        os.read(rfd, 65536)
print("READY", flush=True)
sys.stdin.readline()
t = threading.Thread(target=work)
t.start()
t.join()
print("RESULT", json.dumps({"tid": t.native_id}), flush=True)
sys.stdin.readline()
"""


def test_hot_run_latency_estimate_matches_timing_every_call() -> None:
    require_bpf()
    import select

    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN a thread in a loop of 200,000 reads of 64 KiB (a few microseconds each), traced at
    # once by a collector that times every call and one that times every 16th in hot runs
    with driven(HOT % HOT_CALLS) as t:
        exact = SyscallsCollector.probe([t.pid], time_every=1)
        sampled = SyscallsCollector.probe([t.pid], time_every=16)
        exact.start()
        sampled.start()
        try:
            # WHEN both drain while it runs
            t.go()
            batches: dict = {"exact": [], "sampled": []}
            while not select.select([t.proc.stdout], [], [], 0.1)[0]:
                batches["exact"].append(exact.drain())
                batches["sampled"].append(sampled.drain())
            tid = json.loads(t.result())["tid"]
            batches["exact"].append(exact.drain())
            batches["sampled"].append(sampled.drain())
        finally:
            exact.stop()
            sampled.stop()
    stats = {"exact": exact.stats(), "sampled": sampled.stats()}
    totals = {}
    for name in ("exact", "sampled"):
        n = ns = 0
        for frames, values, _pid, row_tid in concat(batches[name]):
            if row_tid == tid and frames[-1].function == "<syscall:read>":
                n += values[0]
                ns += values[1]
        totals[name] = (n, ns)

    print(totals, stats["sampled"]["timed_calls"], stats["sampled"]["calls"])
    # THEN both count every call, the sampled one measured about 1 in 16 of them, and its
    # total latency (measured plus estimated) is within 15 % of the one timing every call
    assert totals["exact"][0] == totals["sampled"][0] == HOT_CALLS, totals
    assert stats["exact"]["timed_calls"] == stats["exact"]["calls"]
    assert stats["sampled"]["timed_calls"] < 0.2 * stats["sampled"]["calls"], stats
    # Tracing the same calls twice biases the comparison: each collector's interval contains
    # some of the other's programs, and the exact one's cost more (two clock reads per call);
    # the sampled total came out 4-6 % higher here at 200,000 calls. 15 % still fails an
    # estimator that charges untimed calls nothing (-94 %) or only a run's cold first calls.
    assert abs(totals["sampled"][1] - totals["exact"][1]) <= 0.15 * totals["exact"][1], totals
    assert sampled.histogram["read"].sum() >= HOT_CALLS


def test_pid_set_beyond_the_first_and_added_later() -> None:
    require_bpf()
    import contextlib

    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN four targets in the same loop: two traced from the start, one added after the
    # collector started, one never traced
    with contextlib.ExitStack() as stack:
        first, second, added, other = (stack.enter_context(driven(HOT % 40000)) for _ in range(4))
        sysc = SyscallsCollector.probe([first.pid, second.pid])
        sysc.start()
        try:
            sysc.add_pids([added.pid])
            # WHEN they all run at once
            for t in (first, second, added, other):
                t.go()
            tids = {t.pid: json.loads(t.result())["tid"] for t in (first, second, added, other)}
            batch = sysc.drain()
        finally:
            sysc.stop()
    reads: dict = {}
    for frames, values, pid, tid in concat([batch]):
        if frames[-1].function == "<syscall:read>" and tid == tids.get(pid):
            reads[pid] = reads.get(pid, 0) + values[0]

    # THEN each traced process's reads are counted exactly, and the other's not at all
    assert reads == {first.pid: 40000, second.pid: 40000, added.pid: 40000}, (reads, tids)
    assert other.pid not in {int(p) for p in batch.pid.tolist()}


# A reader taking one byte at a time from a pipe that the main thread fills with 100 bytes
# every 5 ms: 99 fast reads, then one that blocks until the next burst, in one run of the same
# key. The blocking read usually falls between two timed samples of the hot run.
BURSTS = """
import json, os, sys, threading, time
r, w = os.pipe()
spent = [0.0, 0]
def reader():
    for _ in range(60 * 100):
        t = time.monotonic(); os.read(r, 1); spent[0] += time.monotonic() - t
        spent[1] += 1
print("READY", flush=True)
sys.stdin.readline()
t = threading.Thread(target=reader)
t.start()
for _ in range(60):
    os.write(w, b"x" * 100)
    time.sleep(0.005)
t.join()
print("RESULT", json.dumps({"tid": t.native_id, "spent": spent[0], "reads": spent[1]}), flush=True)
sys.stdin.readline()
"""


def test_untimed_calls_that_block_are_timed_from_the_switch() -> None:
    require_bpf()
    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN a hot run of fast reads in which every 100th read blocks for about 5 ms
    # WHEN the collector times every 16th call of the run
    truth, batch, sysc = traced_run(BURSTS, SyscallsCollector.probe)
    n = ns = 0
    for frames, values, _pid, tid in concat([batch]):
        if tid == truth["tid"] and frames[-1].function == "<syscall:read>":
            n += values[0]
            ns += values[1]

    # THEN every read is counted, and the time in them matches the thread's own measurement
    # within 5 %: a blocking read that was not timed at entry is timed from the switch, not
    # charged the fast reads' mean (that would lose most of the 0.3 s)
    print(n, ns / 1e9, truth, sysc.stats())
    assert n == truth["reads"] == 6000
    assert abs(ns / 1e9 - truth["spent"]) <= 0.05 * truth["spent"], (ns, truth)
    assert sysc.stats()["timed_calls"] < 0.5 * sysc.stats()["calls"]


# A process whose last returning syscalls are 20,000 reads: exit_group never returns, so its
# reads are still the pending run of its CPU when it is gone.
EXITS = """
import os, sys
fd = os.open("/dev/zero", os.O_RDONLY)
print("READY", flush=True)
sys.stdin.readline()
for _ in range(20000):
    os.read(fd, 1)
os._exit(0)
"""


def test_pending_run_of_an_exited_process_is_drained() -> None:
    require_bpf()
    import subprocess
    import sys

    from hostprof.collectors.syscalls import SyscallsCollector

    # GIVEN a process that exits right after a run of 20,000 reads
    proc = subprocess.Popen(
        [sys.executable, "-c", EXITS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("READY")
        sysc = SyscallsCollector.probe([proc.pid])
        sysc.start()
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            # WHEN the collector drains after it is gone
            assert proc.wait(timeout=60) == 0
            batch = sysc.drain()
        finally:
            sysc.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reads = sum(
        values[0]
        for frames, values, pid, _tid in concat([batch])
        if pid == proc.pid and frames[-1].function == "<syscall:read>"
    )

    # THEN every read is there exactly once
    assert reads == 20000
