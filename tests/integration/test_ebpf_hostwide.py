"""Host-wide mode (no pid filter): the collectors see a target among everything else."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import require_bpf
from tests.integration._ebpf import concat
from tests.integration._ebpf import driven
from tests.integration._ebpf import poll_until_ready

TARGET = """
import gc, json, os, sys, time
fd = os.open("/dev/zero", os.O_RDONLY)
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(1))
print("READY", flush=True)
sys.stdin.readline()
reads = 0
end = time.thread_time() + 0.6
while time.thread_time() < end:
    os.read(fd, 1); reads += 1
    if reads % 1000 == 0:
        [[] for _ in range(1000)]
        gc.collect(0)
print("RESULT", json.dumps({"reads": reads, "gcs": len(collections)}), flush=True)
sys.stdin.readline()
"""


def test_host_wide_collectors_see_the_target() -> None:
    require_bpf()
    from hostprof.collectors.cpu import CpuCollector
    from hostprof.collectors.gc import GcCollector
    from hostprof.collectors.syscalls import SyscallsCollector

    # Another busy process, not named to any collector: on a quiet machine the target might
    # otherwise be the only thing on a CPU while the collectors run.
    other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    with driven(TARGET) as t:
        # GIVEN the collectors probed for the whole host (pids=None)
        cs = [CpuCollector.probe(None), SyscallsCollector.probe(None), GcCollector.probe(None)]
        for c in cs:
            c.start()
        try:
            # WHEN the target reads and collects
            t.go()
            batches = poll_until_ready(t, cs)
            truth = json.loads(t.result())
            for c in cs:
                batches[c.name].append(c.drain())
        finally:
            for c in cs:
                c.stop()
            other.kill()
            other.wait()
    # THEN each collector saw the target among the other processes
    cpu = concat(batches["cpu"])
    assert sum(v[1] for _f, v, pid, _t in cpu if pid == t.pid) >= 30  # ~0.6 s CPU at 99 Hz
    assert sum(v[1] for _f, v, pid, _t in cpu if pid == other.pid) > 0
    reads = sum(
        v[0]
        for f, v, pid, _t in concat(batches["syscalls"])
        if pid == t.pid and f[-1].function == "<syscall:read>"
    )
    assert abs(reads - truth["reads"]) <= 0.02 * truth["reads"] + 2
    gcs = sum(v[1] for _f, v, pid, _t in concat(batches["gc"]) if pid == t.pid)
    assert gcs == truth["gcs"]
