"""Crash safety: the agent is SIGKILLed while it writes a window into the spool.

The store is down, so every window goes to the spool. A test hook slows spool writes (a pause
after the data is written, before fsync and rename) so the kill lands mid-write for sure: the
test waits until a ``.tmp-`` file exists, then kills. On restart (store up) the agent must
discard the partial file, push every complete spooled window exactly once, and continue.
"""

from __future__ import annotations

from pathlib import Path

from daemon_harness import Agent
from daemon_harness import Store
from daemon_harness import free_port
from daemon_harness import metric
from daemon_harness import new_token
from daemon_harness import spawn_target
from daemon_harness import stop_target
from daemon_harness import wait_for

from hostprof.push.spool import Spool


def test_sigkill_while_spooling_then_restart(tmp_path: Path) -> None:
    token = new_token()
    port = free_port()
    store = Store(tmp_path / "store", port)  # not started yet: pushes fail
    targets = [spawn_target(token), spawn_target(token)]
    pids = {str(t.pid) for t in targets}
    slow = Agent(tmp_path, store.url, token, env={"HOSTPROF_TEST_SPOOL_WRITE_DELAY_S": "0.4"})
    agent = None
    try:
        # GIVEN an agent spooling because the store is down
        slow.start()
        wait_for(
            lambda: len([f for f in slow.spool_files() if not f.startswith(".")]) >= 3,
            30,
            "three spooled windows",
        )
        # WHEN it is SIGKILLed in the middle of writing the next one
        wait_for(
            lambda: any(f.startswith(".tmp-") for f in slow.spool_files()),
            10,
            "a spool write in progress",
            step=0.01,
        )
        slow.kill9()
        files = slow.spool_files()
        assert any(f.startswith(".tmp-") for f in files), files
        complete = Spool.__new__(Spool)  # read what is there without the cleanup of open
        complete.directory = str(slow.spool)
        complete_names = [f for f in files if f.endswith(".win") and not f.startswith(".tmp-")]
        spooled_ids = set()
        for name in complete_names:
            batch = Spool._read(complete, name)
            assert batch is not None
            spooled_ids |= {s.sample_id for s in batch.series}
        # THEN after a restart with the store up, the partial write is discarded and every
        # complete window arrives exactly once
        store.start()
        agent = Agent(tmp_path, store.url, token)
        agent.start()
        wait_for(lambda: agent.status()["push"]["spool_windows"] == 0, 30, "spool drained")
        assert not any(f.startswith(".tmp-") for f in agent.spool_files())
        wait_for(
            lambda: agent.status()["metrics"]["windows_pushed"] >= len(spooled_ids) + 2,
            20,
            "new windows pushed after the restart",
        )
        text = agent.metrics()
        assert agent.stop() < 5.0
        assert "partial writes discarded" in agent.log_text()
    finally:
        slow.ensure_dead()
        if agent is not None:
            agent.ensure_dead()
        for t in targets:
            stop_target(t)
        store.stop()
    seen = store.seen_ids()
    assert spooled_ids <= seen, "a complete spooled window was not pushed"
    windows = store.windows()
    assert {p for p, _ in windows} == pids
    dupes = {k: n for k, n in windows.items() if n != 1}
    assert not dupes, f"stored more than once: {dupes}"
    assert metric(text, "hostprof_agent_windows_dropped_total") == 0
    # spooled windows from before the crash are older than anything pushed live afterwards
    assert len(windows) == len(seen)
