"""Agent building blocks on real inputs: discovery of real processes, window alignment and
stable ids, RawBatch splitting by pid, and the budget's decisions."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from hostprof.budget import Budget
from hostprof.collectors._batch import RawBatch
from hostprof.config import BudgetConfig
from hostprof.config import from_toml
from hostprof.daemon import subset
from hostprof.discovery import Discovery
from hostprof.discovery import read_facts
from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import Frame
from hostprof.windows import WindowBuilder
from hostprof.windows import sample_id
from hostprof.windows import window_start


def _batch(pids, stacks) -> RawBatch:
    frames = [Frame(f"f{i}", "m.py", i) for i in range(10)]
    n = len(pids)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in stacks])
    return RawBatch(
        "python",
        (CPU_NS,),
        frames,
        np.array([f for s in stacks for f in s], dtype=np.uint32),
        offsets,
        np.full((n, 1), 10_000_000, dtype=np.int64),
        np.array(pids, np.int32),
        np.array(pids, np.int32),
        np.zeros(n, np.int64),
        np.zeros(n, np.uint8),
    )


def test_discovery_finds_a_real_python_process_and_notices_it_exit() -> None:
    token = f"disc-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token])
    shell = subprocess.Popen(["bash", "-c", "sleep 60; true", token])
    try:
        time.sleep(1.2)  # older than the 1 s a non-interpreter waits before its maps check
        rules = from_toml(
            f"[[rule]]\ncmdline = '{token}'\n[[rule]]\naction='exclude'\npython_only=false"
        ).rules
        d = Discovery(rules)
        new, gone = d.scan()
        assert [m.facts.pid for m in new] == [proc.pid]  # bash matches the regex, not Python
        facts = read_facts(proc.pid)
        assert facts.is_python and facts.start_ticks > 0
        assert not read_facts(shell.pid).is_python
        assert d.scan() == ([], [])  # nothing new the second time
        proc.kill()
        proc.wait()
        new, gone = d.scan()
        assert gone == [(proc.pid, facts.start_ticks)]
    finally:
        for p in (proc, shell):
            p.kill()
            p.wait()


def test_service_name_of_python_module_and_script() -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        assert read_facts(p.pid).default_name() == "http.server"
    finally:
        p.kill()
        p.wait()


def test_windows_are_clock_aligned_with_stable_ids() -> None:
    w = 10_000_000_000
    assert window_start(1_700_000_012_345_678_900, w) == 1_700_000_010_000_000_000
    a = sample_id("h", "1-2-3", "python", 10)
    assert a == sample_id("h", "1-2-3", "python", 10)
    assert a != sample_id("h", "1-2-4", "python", 10) != sample_id("h", "1-2-3", "python", 20)
    b = WindowBuilder("h", w)
    labels = (("__name__", "process_cpu"), ("service_name", "s"))
    b.add(("t1", "python"), labels, _batch([1, 1], [[0, 1], [0, 2]]), 100)
    b.add(("t1", "python"), labels, _batch([1], [[0, 1]]), 100)
    batch = b.finish(1_700_000_010_000_000_000)
    assert batch.start_ns == 1_700_000_010_000_000_000 and batch.duration_ns == w
    (series,) = batch.series
    assert series.sample_id == sample_id("h", "t1", "python", batch.start_ns)
    prof = pprof.decode(series.profile)
    assert prof.totals() == (30_000_000,)
    assert prof.period == 10_000_000
    assert prof.windows[0].start_ns == batch.start_ns
    assert b.finish(0) is None  # finishing empties the window


def test_subset_keeps_stacks_intact() -> None:
    stacks = [[0, 1], [2, 3, 4], [5], [6, 7]]
    batch = _batch([10, 20, 10, 30], stacks)
    part = subset(batch, np.flatnonzero(batch.pid == 10))
    assert part.pid.tolist() == [10, 10]
    got = [
        part.stack_frames[part.stack_offsets[i] : part.stack_offsets[i + 1]].tolist()
        for i in range(len(part))
    ]
    assert got == [[0, 1], [5]]


def test_budget_order_rates_then_collectors_then_targets() -> None:
    b = Budget(BudgetConfig(max_cpu_percent=1.0, interval_s=5.0))
    b._warmup = 0
    b.measured_s = 5.0
    b.cpu_percent, b.rss_bytes = 10.0, 10 << 20
    a1 = b.decide(["cpu", "offcpu"], ["t3", "t2", "t1"], rates_at_floor=False)
    assert a1.kind == "lower_rates" and b.rate_scale < 0.1
    a2 = b.decide(["cpu", "offcpu"], ["t3", "t2", "t1"], rates_at_floor=True)
    assert (a2.kind, a2.collector) == ("drop_collector", "offcpu")
    a3 = b.decide(["cpu", "offcpu"], ["t3", "t2", "t1"], rates_at_floor=True)
    assert (a3.kind, a3.collector) == ("drop_collector", "cpu")
    b.cpu_percent = 2.0
    a4 = b.decide(["cpu", "offcpu"], ["t3", "t2", "t1"], rates_at_floor=True)
    assert a4.kind == "shed_targets" and a4.targets == ("t3", "t2")
    assert [a.kind for a in b.actions] == [
        "lower_rates",
        "drop_collector",
        "drop_collector",
        "shed_targets",
    ]
    # calm for three intervals: the newest action is undone, one target at a time
    b.cpu_percent = 0.1
    undo = [b.decide([], ["t1"], True) for _ in range(3)][-1]
    assert undo.kind == "restore_target" and undo.targets == ("t2",)
    assert b.shed == ["t3"]


def test_budget_memory_over_skips_rate_cuts() -> None:
    b = Budget(BudgetConfig(max_cpu_percent=50.0, max_memory_mb=100.0, interval_s=5.0))
    b._warmup = 0
    b.measured_s = 5.0
    b.cpu_percent, b.rss_bytes = 1.0, 150 << 20
    a = b.decide(["gc"], ["t2", "t1"], rates_at_floor=False)
    assert (a.kind, a.collector) == ("drop_collector", "gc")
    a = b.decide([], ["t2", "t1"], rates_at_floor=False)
    assert a.kind == "shed_targets" and "rss 150 MiB > 100 MiB" in a.detail
    assert b.rate_scale == 1.0
