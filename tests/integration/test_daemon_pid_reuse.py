"""PID reuse: a target exits and a new Python process gets the same pid. The agent must see a
new process (by start time), finalise the old one, and attach the new one within a discovery
period. The pid is reused on purpose through /proc/sys/kernel/ns_last_pid (root only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import TARGET_SOURCE
from daemon_harness import Agent
from daemon_harness import new_token
from daemon_harness import spawn_target
from daemon_harness import stop_target
from daemon_harness import wait_for

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def _spawn_with_pid(pid: int, token: str) -> subprocess.Popen:
    """Starts a target whose pid is ``pid`` (retries: other processes fork too)."""
    for _ in range(50):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        proc = subprocess.Popen(
            [sys.executable, "-c", TARGET_SOURCE, token],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        if proc.pid == pid:
            assert proc.stdout.readline().startswith(b"READY")
            return proc
        proc.kill()
        proc.wait()
        proc.stdout.close()
    pytest.skip("could not get the same pid again (busy machine)")


def test_reused_pid_is_a_new_target(tmp_path: Path) -> None:
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("needs root to choose the next pid")
    token = new_token()
    first = spawn_target(token)
    agent = Agent(tmp_path, f"file://{tmp_path}/out", token, window_s=2.0, discovery_s=1.0)
    second = None
    try:
        agent.start()
        wait_for(
            lambda: [t["pid"] for t in agent.status()["targets"]] == [first.pid],
            15,
            "the first process attached",
        )
        old_id = agent.status()["targets"][0]["id"]
        # WHEN it exits and another Python process takes its pid
        pid = first.pid
        stop_target(first)
        second = _spawn_with_pid(pid, token)
        # THEN the agent finalises the old process and attaches the new one, same pid
        wait_for(
            lambda: [
                t["id"] for t in agent.status()["targets"] if t["pid"] == pid and t["id"] != old_id
            ],
            10,
            "the new process attached",
        )
        state = agent.status()
        assert [e["pid"] for e in state["exited"]] == [pid]
        (target,) = state["targets"]
        assert target["state"] == "running"
        assert target["id"].split("-")[1] != old_id.split("-")[1]  # another start time
        assert agent.stop() < 5.0
    finally:
        agent.ensure_dead()
        stop_target(first)
        if second is not None:
            stop_target(second)
