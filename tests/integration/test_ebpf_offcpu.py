"""offcpu collector + merge: time.sleep and recv blocked time under the right functions."""

from __future__ import annotations

import json

from tests.conftest import require_bpf
from tests.integration._ebpf import concat
from tests.integration._ebpf import driven
from tests.integration._ebpf import poll
from tests.integration._ebpf import python_functions

# Two threads block for known, self-measured times: sleeper in time.sleep, receiver in recv
# (woken every 100 ms by the main thread). Each reports its tid and total blocked time.
TARGET = """
import json, socket, sys, threading, time
a, b = socket.socketpair()
blocked = {}
def sleeper():
    total = 0
    for _ in range(30):
        t = time.perf_counter_ns(); time.sleep(0.05); total += time.perf_counter_ns() - t
    blocked["sleeper"] = [threading.get_native_id(), total]
def receiver():
    total = 0
    for _ in range(15):
        t = time.perf_counter_ns(); a.recv(1); total += time.perf_counter_ns() - t
    blocked["receiver"] = [threading.get_native_id(), total]
print("READY", flush=True)
sys.stdin.readline()
ts = [threading.Thread(target=sleeper), threading.Thread(target=receiver)]
for t in ts:
    t.start()
for _ in range(15):
    time.sleep(0.1); b.send(b"x")
for t in ts:
    t.join()
print("RESULT", json.dumps(blocked), flush=True)
sys.stdin.readline()
"""


def test_blocked_time_under_blocking_functions() -> None:
    require_bpf()
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector
    from hostprof.merge import PythonMerger

    with driven(TARGET) as t:
        off = OffCpuCollector.probe([t.pid], slot_ns=1 << 20)
        py = PythonCollector.probe([t.pid], rate=200, idle=True)
        off.start()
        py.start()
        try:
            t.go()
            batches = poll([py, off], 1.6)
            truth = json.loads(t.result())
            batches["python"].append(py.drain())
            batches["offcpu"].append(off.drain())
        finally:
            off.stop()
            py.stop()
            py.close()
    merger = PythonMerger(interval_ns=5_000_000, slot_ns=1 << 20)
    for b in batches["python"]:
        merger.remember(b)
    merged = concat([merger.merge(b) for b in batches["offcpu"]])
    for func, (tid, ns) in truth.items():
        got = sum(v[0] for frames, v, _pid, rtid in merged if rtid == tid)
        under = sum(
            v[0]
            for frames, v, _pid, rtid in merged
            if rtid == tid and func in python_functions(frames)
        )
        print(
            f"{func}: blocked {got / 1e9:.3f} s (truth {ns / 1e9:.3f}), {under / got:.3f} under it"
        )
        assert abs(got - ns) <= 0.05 * ns, (func, got, ns)
        assert abs(under - ns) <= 0.05 * ns, (func, under, ns)
