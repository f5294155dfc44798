"""Zero loss: the store goes down while the agent profiles two Python targets, then comes back.

Every window of every target must arrive in the real embedded store exactly once, counted by
(window start, target). The issue asks for a 60 s outage; to keep CI short this test uses
2 s windows and a 20 s outage (10 windows per target spooled and replayed), which exercises
the same path: push fails, spool, exponential backoff, oldest-first replay.
Set HOSTPROF_OUTAGE_S=60 to run the full-length version.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon_harness import Agent
from daemon_harness import Store
from daemon_harness import metric
from daemon_harness import new_token
from daemon_harness import spawn_target
from daemon_harness import stop_target
from daemon_harness import wait_for

WINDOW_S = 2
OUTAGE_S = float(os.environ.get("HOSTPROF_OUTAGE_S", "20"))


def test_store_outage_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    token = new_token()
    store = Store(tmp_path / "store")
    store.start()
    targets = [spawn_target(token), spawn_target(token)]
    pids = {str(t.pid) for t in targets}
    agent = Agent(tmp_path, store.url, token, window_s=WINDOW_S)
    try:
        # GIVEN the agent pushing windows of two targets
        agent.start()
        wait_for(
            lambda: sum(t["state"] == "running" for t in agent.status()["targets"]) == 2,
            15,
            "both targets attached",
        )
        wait_for(
            lambda: agent.status()["metrics"]["windows_pushed"] >= 4,
            20,
            "windows pushed before the outage",
        )
        # WHEN the store is down for OUTAGE_S
        outage_start = time.time()
        store.stop()
        time.sleep(OUTAGE_S)
        during = agent.status()
        assert during["push"]["spool_windows"] >= OUTAGE_S / WINDOW_S - 3, during["push"]
        assert during["push"]["last_error"]
        # ... and comes back
        store.start()
        outage_end = time.time()
        wait_for(lambda: agent.status()["push"]["spool_windows"] == 0, 60, "the spool to drain")
        pushed_after = agent.status()["metrics"]["windows_pushed"]
        wait_for(
            lambda: agent.status()["metrics"]["windows_pushed"] >= pushed_after + 4,
            20,
            "windows pushed after the outage",
        )
        for t in targets:
            stop_target(t)
        wait_for(lambda: not agent.status()["targets"], 10, "targets finalised")
        # A finalised target's last window can reach the store a moment before the agent's
        # counter moves: read the metrics once every stored arrival is counted.
        wait_for(
            lambda: agent.status()["metrics"]["windows_pushed"] >= sum(store.windows().values()),
            10,
            "the last pushes counted",
        )
        text = agent.metrics()
        took = agent.stop()
        assert took < 5.0
    finally:
        agent.ensure_dead()
        for t in targets:
            stop_target(t)
        store.stop()
    # THEN every window of each target is in the store exactly once, with no gap
    windows = store.windows()
    assert {pid for pid, _ in windows} == pids
    for pid in pids:
        starts = sorted(ts for p, ts in windows if p == pid)
        assert starts == list(range(starts[0], starts[-1] + WINDOW_S, WINDOW_S)), (
            f"pid {pid}: gap in windows {starts}"
        )
        # ... and those windows span the whole outage: every window cut while the store was
        # down was spooled and replayed (windows are aligned to the clock, in epoch seconds).
        assert starts[0] <= outage_start - WINDOW_S, (pid, starts[0], outage_start)
        assert starts[-1] + WINDOW_S > outage_end, (pid, starts[-1], outage_end)
        dupes = {ts: n for (p, ts), n in windows.items() if p == pid and n != 1}
        assert not dupes, f"pid {pid}: windows stored more than once: {dupes}"
    # ... the agent pushed each series-window once (no duplicate pushes), nothing dropped
    assert metric(text, "hostprof_agent_windows_pushed_total") == len(windows)
    assert metric(text, "hostprof_agent_windows_spooled_total") >= OUTAGE_S / WINDOW_S * 2 - 6
    assert metric(text, "hostprof_agent_windows_dropped_total") == 0
    assert len(store.seen_ids()) == len(windows)
