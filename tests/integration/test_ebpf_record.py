"""`hostprof record --collect python,cpu,offcpu,syscalls,gc`: the CLI end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_bpf
from tests.integration._ebpf import driven

TARGET = """
import gc, os, sys, time
fd = os.open("/dev/zero", os.O_RDONLY)
def reader():
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        os.read(fd, 1)
def sleeper():
    time.sleep(0.2)
def churner():
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        gc.collect(0)
print("READY", flush=True)
while True:
    reader(); sleeper(); churner()
"""


def test_record_merges_every_collector_under_python(tmp_path: Path) -> None:
    require_bpf()
    from hostprof.io import read_profile

    out = tmp_path / "all.pprof"
    hostprof = os.path.join(os.path.dirname(sys.executable), "hostprof")
    with driven(TARGET) as t:
        res = subprocess.run(
            [
                hostprof,
                "record",
                "--pid",
                str(t.pid),
                "--duration",
                "4",
                "--collect",
                "python,cpu,offcpu,syscalls,gc",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode == 0, res.stderr
    profile = read_profile(out.read_bytes())
    types = [str(s) for s in profile.sample_types]
    for st in (
        "samples:count",
        "offcpu:nanoseconds",
        "syscalls:count",
        "gc_collections:count",
    ):
        assert st in types

    def under(sample_type: str, leaf_prefix: str) -> dict:
        i = profile.sample_type_index(sample_type)
        found: dict = {}
        for frames, _labels, values in profile.items():
            if values[i] and frames[-1].function.startswith(leaf_prefix):
                py = [f.function for f in frames if f.kind == 0]
                key = py[-1] if py else ""
                found[key] = found.get(key, 0) + values[i]
        return found

    # CPU samples come from the eBPF cpu collector: native and kernel frames under Python
    i = profile.sample_type_index("samples:count")
    native_under_reader = sum(
        values[i]
        for frames, _labels, values in profile.items()
        if values[i]
        and "reader" in [f.function for f in frames if f.kind == 0]
        and any(f.kind in (1, 2) for f in frames)
    )
    assert native_under_reader > 0
    reads = under("syscalls:count", "<syscall:read>")
    assert max(reads, key=reads.get) == "reader", reads
    gcs = under("gc_collections:count", "<gc gen=")
    # Python 3.11 runs explicit collections from gc.collect's C code: the Python leaf is churner
    assert max(gcs, key=gcs.get) == "churner", gcs
    i = profile.sample_type_index("offcpu:nanoseconds")
    blocked: dict = {}
    for frames, _labels, values in profile.items():
        if values[i]:
            py = [f.function for f in frames if f.kind == 0]
            blocked[py[-1] if py else ""] = blocked.get(py[-1] if py else "", 0) + values[i]
    assert max(blocked, key=blocked.get) == "sleeper", blocked
