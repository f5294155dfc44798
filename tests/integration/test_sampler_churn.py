"""Sampling a process whose stacks and threads change constantly: no crash, no garbage.

GIVEN a target that recurses to random depths, creates and ends threads, and compiles and
drops code objects (so addresses are reused) all the time,
WHEN it is sampled at 1 kHz,
THEN every frame names a function the target really has, torn reads stay rare, and the
sampler keeps going.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import sampler_pythons
from utils import target

from hostprof.collectors.python import PythonCollector
from hostprof.native.pyprocess import attach

SOURCE = "\n".join(
    [
        "import random, threading, time",
        "def dive(n):",
        "    if n:",
        "        return dive(n - 1)",
        "    return sum(range(200))",
        "def short_lived():",
        "    dive(random.randint(1, 60))",
        "def spawner():",
        "    while True:",
        "        ts = [threading.Thread(target=short_lived) for _ in range(3)]",
        "        for t in ts: t.start()",
        "        for t in ts: t.join()",
        "def compiler():",
        "    i = 0",
        "    while True:",
        "        i += 1",
        "        ns = {}",
        "        exec(f'def generated_{i % 7}(x):\\n    return x + {i}', ns)",
        "        ns[f'generated_{i % 7}'](1)",
        "def churn():",
        "    while True:",
        "        dive(random.randint(1, 150))",
        "threading.Thread(target=spawner, daemon=True).start()",
        "threading.Thread(target=compiler, daemon=True).start()",
        "threading.Thread(target=churn, daemon=True).start()",
        "print('READY', flush=True)",
        "time.sleep(100)",
    ]
)
KNOWN = {"dive", "short_lived", "spawner", "compiler", "churn", "<module>", "<gc>"}

PYTHONS = sampler_pythons()


@pytest.mark.parametrize("name", sorted(PYTHONS))
def test_churning_target(name: str) -> None:
    with target(SOURCE, PYTHONS[name]) as t:
        proc = attach(t.pid)
        collector = PythonCollector([proc], rate=1000, idle=True)
        collector.start()
        time.sleep(1.0)
        collector.stop()
        batch = collector.drain()
        stats = collector.stats()
        collector.close()
    assert len(batch) > 100
    names = {f.function.rsplit(".", 1)[-1] for f in batch.frames}
    ours = {n for n in names if n in KNOWN or n.startswith("generated_")}
    # Everything else must come from the standard library (threading, random).
    others = {
        (f.file, f.function) for f in batch.frames if f.function.rsplit(".", 1)[-1] not in ours
    }
    strange = {
        (f, fn) for f, fn in others if not (("/" in f and f.endswith(".py")) or f.startswith("<"))
    }
    assert not strange, strange
    assert {"dive", "churn"} <= ours
    assert stats["efficiency"] > 0.9, stats
