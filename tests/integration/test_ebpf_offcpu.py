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
    # Kernel functions each blocking call waits in (the kernel stack at block time).
    waits = {"sleeper": "do_nanosleep", "receiver": "unix_stream_read_generic"}
    for func, (tid, ns) in truth.items():
        mine = [(frames, v) for frames, v, _pid, rtid in merged if rtid == tid]
        total = sum(v[0] for _, v in mine)
        in_call = sum(
            v[0]
            for frames, v in mine
            if func in python_functions(frames) and any(f.function == waits[func] for f in frames)
        )
        print(
            f"{func}: blocked {total / 1e9:.3f} s in all, {in_call / 1e9:.3f} s in the call "
            f"under {func} (truth {ns / 1e9:.3f})"
        )
        # THEN the time blocked in the call, under the calling function, is within 5 %
        assert abs(in_call - ns) <= 0.05 * ns, (func, in_call, ns)
        # AND the thread's total off-CPU time (which adds GIL and start-up waits) is not less
        assert total >= 0.95 * ns, (func, total, ns)
