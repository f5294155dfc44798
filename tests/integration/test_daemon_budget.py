"""Budget: 20 busy Python targets at a requested 1 kHz; the agent must stay within its CPU
budget (measured from /proc, not from its own report) and say what it gave up.

The default budget (1 % of one core) is used as is, with 2 s windows and 2 s budget
intervals to keep the test short. The agent is given 30 s to settle (warm-up, rate cuts,
shedding); its CPU is then measured over 15 s from /proc/PID/stat.
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

N_TARGETS = 20
MAX_CPU = 1.0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_twenty_busy_targets_at_1khz_stay_within_budget(tmp_path: Path) -> None:
    token = new_token()
    store = Store(tmp_path / "store")
    store.start()
    targets = [spawn_target(token) for _ in range(N_TARGETS)]
    agent = Agent(
        tmp_path,
        store.url,
        token,
        window_s=2.0,
        discovery_s=2.0,
        rule="[rule.collectors]\npython = { rate_hz = 1000 }",
        budget=f"max_cpu_percent = {MAX_CPU}\ninterval_s = 2.0",
    )
    try:
        agent.start()
        wait_for(lambda: len(agent.status()["targets"]) == N_TARGETS, 20, "all targets attached")
        # GIVEN the agent has had time to react (warm-up + a few budget steps)
        time.sleep(30)
        # WHEN its CPU is measured from /proc over 15 s
        pid = agent.proc.pid
        c0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(15)
        c1, t1 = _cpu_seconds(pid), time.monotonic()
        used = 100.0 * (c1 - c0) / (t1 - t0)
        state = agent.status()
        text = agent.metrics()
        print(f"agent CPU {used:.2f}% of one core; budget {state['budget']}")
        # THEN it is within the budget
        assert used <= MAX_CPU, f"agent used {used:.2f}% > {MAX_CPU}%"
        # ... it says what it gave up, in status, /metrics and the log
        actions = state["budget"]["actions"]
        assert any(a["kind"] == "lower_rates" for a in actions), actions
        assert metric(text, "hostprof_agent_budget_actions_total") >= 1
        rates = [
            c["rate_hz"]
            for t in state["targets"]
            for c in t["collectors"]
            if c["state"] == "running"
        ]
        assert all(r < 1000 for r in rates), rates
        shed = [t for t in state["targets"] if t["state"] == "shed"]
        if shed:
            assert any(a["kind"] == "shed_targets" for a in actions)
            assert all(t["error"] == "shed by the budget" for t in shed)
        assert "over budget" in agent.log_path.read_text()
        # ... and still profiles something
        assert any(t["state"] == "running" for t in state["targets"])
        running_before = state["metrics"]["samples"]
        wait_for(
            lambda: agent.status()["metrics"]["samples"] > running_before,
            10,
            "samples still flowing",
        )
        assert agent.stop() < 5.0
    finally:
        agent.ensure_dead()
        for t in targets:
            stop_target(t)
        store.stop()
