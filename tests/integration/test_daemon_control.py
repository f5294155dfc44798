"""Operating the agent: status over the Unix socket, /metrics, SIGHUP reload (good and bad),
failure isolation between targets, SIGTERM flush, and the systemd unit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from daemon_harness import HOSTPROF
from daemon_harness import Agent
from daemon_harness import metric
from daemon_harness import new_token
from daemon_harness import spawn_target
from daemon_harness import stop_target
from daemon_harness import wait_for

from hostprof.encoders import pprof


def test_status_metrics_reload_isolation_and_sigterm_flush(tmp_path: Path) -> None:
    token = new_token()
    out = tmp_path / "out"
    good = spawn_target(token)
    # A process the python collector cannot read: matched by a rule that is not Python-only.
    bad = subprocess.Popen(["bash", "-c", "sleep 120; true", token])
    agent = Agent(tmp_path, f"file://{out}", token, window_s=2.0, rule="python_only = false")
    try:
        agent.start()
        wait_for(lambda: len(agent.status()["targets"]) == 2, 15, "both processes seen")
        # Failure isolation: the bad target is marked failed with a reason, the good one runs.
        state = agent.status()
        by_pid = {t["pid"]: t for t in state["targets"]}
        assert by_pid[bad.pid]["state"] == "failed"
        assert "not a Python process" in by_pid[bad.pid]["error"], by_pid[bad.pid]
        assert by_pid[good.pid]["state"] == "running"
        wait_for(lambda: agent.status()["metrics"]["windows_pushed"] >= 2, 15, "windows pushed")
        files = list(out.glob("*.pprof"))
        assert any("daemon-test" in f.name for f in files), files
        assert pprof.decode(files[0].read_bytes()).totals()[0] > 0
        # Status as a human reads it
        text = subprocess.run(
            [*HOSTPROF, "agent", "status", "--socket", agent.socket],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert str(good.pid) in text and "running" in text and "failed" in text
        assert "last push" in text and "spool" in text
        # /metrics
        m = agent.metrics()
        for name in (
            "hostprof_agent_samples_total",
            "hostprof_agent_windows_pushed_total",
            "hostprof_agent_push_seconds_count",
            "hostprof_agent_cpu_percent",
            "hostprof_agent_rss_bytes",
            "hostprof_agent_collector_seconds_total",
            "hostprof_agent_spool_windows",
        ):
            assert name in m, name
        assert metric(m, "hostprof_agent_samples_total") > 0

        # SIGHUP with a broken file: logged, the running config kept
        good_config = agent.config.read_text()
        agent.config.write_text(good_config.replace("window_s = 2.0", "window_s = 'x'"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "config reload failed" in agent.log_path.read_text(),
            10,
            "the reload error in the log",
        )
        assert "agent.window_s" in agent.log_path.read_text()
        assert agent.status()["window_s"] == 2.0
        assert any(t["state"] == "running" for t in agent.status()["targets"])
        # SIGHUP with a good file: applied
        agent.config.write_text(
            good_config.replace('service_name = "daemon-test"', 'service_name = "renamed"')
        )
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any(t["service_name"] == "renamed" for t in agent.status()["targets"]),
            10,
            "the new service name",
        )
        assert 'result="ok"' in agent.metrics()

        # SIGTERM: the current (partial) window is flushed, exit within 5 s
        before = {f.name for f in out.glob("*.pprof")}
        time.sleep(0.5)
        took = agent.stop()
        assert took < 5.0, took
        after = {f.name for f in out.glob("*.pprof")}
        assert after - before, "the last window was not flushed on SIGTERM"
    finally:
        agent.ensure_dead()
        stop_target(good)
        bad.kill()
        bad.wait()


def test_install_writes_least_privilege_unit_and_uninstall_removes_it(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[agent]\nwindow_s = 10\n")
    units = tmp_path / "units"
    run = [
        sys.executable,
        "-m",
        "hostprof",
        "agent",
        "install",
        "--unit-dir",
        str(units),
        "--config",
        str(cfg),
    ]
    subprocess.run(run, check=True, capture_output=True)
    unit = (units / "hostprof-agent.service").read_text()
    assert f"agent run --config {cfg}" in unit
    caps = next(line for line in unit.splitlines() if line.startswith("CapabilityBoundingSet="))
    assert set(caps.split("=", 1)[1].split()) == {
        "CAP_SYS_PTRACE",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_RESOURCE",
        "CAP_DAC_READ_SEARCH",
    }
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=hostprof",
        "RuntimeDirectory=hostprof",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in unit.splitlines(), line
    # systemd itself accepts the unit (where systemd-analyze exists)
    import shutil

    if shutil.which("systemd-analyze"):
        check = subprocess.run(
            ["systemd-analyze", "verify", str(units / "hostprof-agent.service")],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        assert "hostprof-agent.service" not in check.stderr, check.stderr
    # a broken config is refused before writing a unit that would fail to start
    cfg.write_text("[agent]\nwindow_s = -1\n")
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 2 and "agent.window_s" in proc.stderr
    subprocess.run(
        [*run[:5], "--uninstall", "--unit-dir", str(units)], check=True, capture_output=True
    )
    assert not (units / "hostprof-agent.service").exists()


def test_sigterm_with_a_hanging_store_exits_in_time_and_spools(tmp_path: Path) -> None:
    # GIVEN a "store" that accepts connections but never answers (pushes hang until timeout)
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    token = new_token()
    target = spawn_target(token)
    agent = Agent(
        tmp_path,
        f"http://127.0.0.1:{hole.getsockname()[1]}",
        token,
        window_s=2.0,
        store_timeout_s=30.0,
    )
    try:
        agent.start()
        wait_for(
            lambda: agent.status()["push"]["queued"] >= 1 or agent.spool_files(),
            20,
            "a push hanging on the store",
        )
        time.sleep(1.0)
        # WHEN the agent is told to stop mid-push
        took = agent.stop(timeout=15)
        # THEN it exits within 5 s, and the windows it had are in the spool, not lost
        assert took < 5.0, took
        spooled = [f for f in agent.spool_files() if not f.startswith(".")]
        assert len(spooled) >= 2, spooled
    finally:
        agent.ensure_dead()
        stop_target(target)
        hole.close()


def test_legacy_ingest_protocol_into_the_real_store(tmp_path: Path) -> None:
    from daemon_harness import Store

    token = new_token()
    store = Store(tmp_path / "store")
    store.start()
    target = spawn_target(token)
    agent = Agent(tmp_path, store.url, token, window_s=2.0)
    agent.config.write_text(
        agent.config.read_text().replace("timeout_s =", 'protocol = "ingest"\ntimeout_s =', 1)
    )
    try:
        agent.start()
        assert agent.status()["store"]["protocol"] == "ingest"
        wait_for(
            lambda: agent.status()["metrics"]["windows_pushed"] >= 2,
            20,
            "windows pushed over /ingest",
        )
        assert agent.status()["push"]["sink"] == "ingest"
        agent.stop()
    finally:
        agent.ensure_dead()
        stop_target(target)
        store.stop()
    assert {pid for pid, _ in store.windows()} == {str(target.pid)}
