"""pprof validity, checked by the real consumer: ``go tool pprof`` (Debian golang-go)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import Window
from tests.conftest import require_tool


def _go_pprof(*args: str) -> str:
    go = require_tool("go")
    out = subprocess.run(
        [go, "tool", "pprof", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "HOME": "/tmp",
            "PATH": "/usr/bin:/bin",
            "PPROF_TMPDIR": "/tmp",
            "GOCACHE": "/tmp/gocache",
        },
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _profile() -> Profile:
    p = Profile([SAMPLES, CPU_NS], CPU_NS, 10_000_000)
    main = Frame("main", "/srv/app.py", 3)
    work = Frame("work", "/srv/app.py", 10)
    deflate = Frame("deflate", "/usr/lib/x86_64-linux-gnu/libz.so.1", 0, FrameKind.NATIVE)
    read = Frame("ksys_read", "", 0, FrameKind.KERNEL)
    gc = Frame.synthetic("<gc gen=2>")
    p.add([main, work, deflate], [7, 70_000_000], {"thread_name": "MainThread", "thread_id": "11"})
    p.add([main, work, read], [4, 40_000_000], {"thread_name": "worker", "thread_id": "12"})
    p.add([main, gc], [2, 20_000_000], {"thread_id": "11", "thread_name": "MainThread"})
    p.add([main], [1, 10_000_000])
    p.windows.append(Window(1_700_000_000_000_000_000, 10_000_000_000))
    return p


def test_go_pprof_top_matches_names_and_totals(tmp_path: Path) -> None:
    # GIVEN a profile with python, native, kernel and synthetic frames and two sample types
    p = _profile()
    path = tmp_path / "p.pprof"
    pprof.write(p, path.open("wb"))
    # WHEN go tool pprof reads it
    for index, col in (("samples", 0), ("cpu", 1)):
        top = _go_pprof("-top", "-nodecount=100", f"-sample_index={index}", str(path))
        # THEN the total and every function's flat value match ours
        total = int(p.totals()[col])
        m = re.search(r"of ([\d.]+)(\w*) total", top)
        assert m, top
        flat = {}
        for line in top.splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[1].endswith("%") and parts[4].endswith("%"):
                flat[" ".join(parts[5:])] = parts[0]
        assert set(flat) >= {"main", "work", "deflate", "ksys_read", "<gc gen=2>"}
        if index == "samples":
            assert int(m.group(1)) == total
            assert flat["deflate"] == "7" and flat["ksys_read"] == "4"
            assert flat["<gc gen=2>"] == "2" and flat["main"] == "1" and flat["work"] == "0"
        else:
            assert float(m.group(1)) * {"s": 1e9, "ms": 1e6}[m.group(2)] == total


def test_go_pprof_raw_shows_stacks_files_lines_and_labels(tmp_path: Path) -> None:
    p = _profile()
    path = tmp_path / "p.pprof"
    path.write_bytes(pprof.encode(p))
    raw = _go_pprof("-raw", str(path))
    assert "PeriodType: cpu nanoseconds" in raw and "Period: 10000000" in raw
    assert "work /srv/app.py:10" in raw and "main /srv/app.py:3" in raw
    assert "/usr/lib/x86_64-linux-gnu/libz.so.1" in raw and "[kernel.kallsyms]" in raw
    assert re.search(r"thread_name:\[MainThread\]", raw)
    # Samples section: values then leaf-first location ids; the sums match ours.
    sample_block = raw.split("Samples:")[1].split("Locations")[0]
    rows = [
        list(map(int, re.findall(r"\d+", line.split(":")[0])))
        for line in sample_block.splitlines()
        if re.match(r"^\s+\d+\s+\d+:", line)
    ]
    assert np.array(rows).sum(axis=0).tolist() == list(p.totals())


def test_go_pprof_reads_a_large_profile(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p = Profile([SAMPLES])
    local = [Frame(f"f{i}", f"m{i % 7}.py", i) for i in range(500)]
    remap = p.frames.intern_all(local)
    flat = rng.integers(0, 500, size=20_000 * 12, dtype=np.uint32)
    p.add_batch(flat, np.arange(20_001) * 12, np.ones(20_000, dtype=np.int64), 0, remap)
    path = tmp_path / "big.pprof"
    path.write_bytes(pprof.encode(p))
    top = _go_pprof("-top", "-nodecount=3", str(path))
    assert "of 20000 total" in top
