"""The agent with its eBPF collectors (real bcc): host-wide CPU, off-CPU and GC next to the
Python sampler, split per target and pushed as their own profile types to the real store.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from daemon_harness import Agent
from daemon_harness import Store
from daemon_harness import metric
from daemon_harness import new_token
from daemon_harness import spawn_target
from daemon_harness import stop_target
from daemon_harness import wait_for

from tests.conftest import require_bpf


def test_ebpf_collectors_per_target_and_host(tmp_path: Path) -> None:
    require_bpf()
    token = new_token()
    store = Store(tmp_path / "store")
    store.start()
    target = spawn_target(token)
    agent = Agent(
        tmp_path,
        store.url,
        token,
        window_s=2.0,
        extra_agent='host_cpu = "on"\nhost_cpu_rate_hz = 49.0',
        rule="[rule.collectors]\npython = { rate_hz = 100 }\ncpu = { rate_hz = 99 }\n"
        "offcpu = true\ngc = true",
        budget="max_cpu_percent = 90\nmax_memory_mb = 1024",
    )
    # the harness writes host_cpu = "off" first; the later key must win, so drop that line
    agent.config.write_text(agent.config.read_text().replace('host_cpu = "off"\n', "", 1))
    try:
        agent.start()
        wait_for(
            lambda: any(
                c["state"] == "running"
                for c in agent.status()["shared_collectors"]
                if c["name"] == "cpu"
            ),
            60,
            "the host-wide cpu collector",
        )
        state = agent.status()
        shared = {c["name"]: c for c in state["shared_collectors"]}
        assert shared["cpu"]["state"] == "running", shared
        assert shared["offcpu"]["state"] == "running", shared
        t = state["targets"][0]
        assert {c["name"]: c["state"] for c in t["collectors"]}["python"] == "running"
        wait_for(lambda: agent.status()["metrics"]["windows_pushed"] >= 6, 30, "windows pushed")
        # the Python sampler takes idle states from the shared offcpu collector's table
        # (the agent publishes collector metrics with each budget tick, every 5 s)
        table = 'hostprof_agent_idle_state_reads{source="sched_switch"}'
        wait_for(lambda: metric(agent.metrics(), table) > 0, 30, "idle states from the table")
        text = agent.metrics()
        from_proc = metric(text, 'hostprof_agent_idle_state_reads{source="proc"}')
        assert metric(text, table) > 10 * max(from_proc, 1), text
        assert agent.stop() < 5.0
    finally:
        agent.ensure_dead()
        stop_target(target)
        store.stop()
    db = sqlite3.connect(f"file:{tmp_path}/store/store.db?mode=ro", uri=True)
    series = [
        (ptype, dict(json.loads(labels)))
        for ptype, labels in db.execute("SELECT profile_type, labels FROM series")
    ]
    db.close()
    names = {
        (ptype.split(":")[0], labels.get("service_name"), labels.get("pid"))
        for ptype, labels in series
    }
    pid = str(target.pid)
    assert ("process_cpu", "daemon-test", pid) in names, names
    assert ("ebpf_cpu", "daemon-test", pid) in names, names
    assert ("ebpf_cpu", "host", None) in names, names
