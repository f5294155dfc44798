"""`hostprof top` against a target with a known 50/30/20 split of three functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import target

HOSTPROF = str(Path(sys.executable).parent / "hostprof")

MIX = "\n".join(
    [
        "import threading",
        "def work(n):",
        "    x = 0",
        "    for i in range(n):",
        "        x += i",
        "def fifty():",
        "    work(50000)",
        "def thirty():",
        "    work(30000)",
        "def twenty():",
        "    work(20000)",
        "def loop():",
        "    while True:",
        "        fifty(); thirty(); twenty()",
        "threading.Thread(target=loop, daemon=True).start()",
        "print('READY', flush=True)",
        "threading.Event().wait()",
    ]
)


def test_top_lists_own_and_total_percentages() -> None:
    with target(MIX) as t:
        proc = subprocess.run(
            [HOSTPROF, "top", "--pid", str(t.pid), "--duration", "2", "--rate", "200"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines()[3:]:
        parts = line.split()
        if len(parts) >= 5:
            rows[parts[4]] = (float(parts[0]), float(parts[1]))
    # work() runs all the time: its own share is (nearly) everything...
    assert rows["work"][0] > 90, proc.stdout
    # ...and the callers' totals split 50/30/20 (loose bounds: one noisy second of samples).
    totals = {name: rows[name][1] for name in ("fifty", "thirty", "twenty")}
    assert 35 < totals["fifty"] < 65 and 18 < totals["thirty"] < 42, totals
    assert 8 < totals["twenty"] < 32, totals
    assert rows["loop"][1] > 95
