"""The README's main command: scripts/demo.sh starts the store, the demo workload and the agent;
a flamegraph of the workload must be served within 20 s, and Ctrl-C must stop everything.
Run twice to check it is idempotent.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from daemon_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def _run_demo(port: int, state: Path) -> None:
    env = dict(os.environ, HOSTPROF_DEMO_PORT=str(port), HOSTPROF_DEMO_DIR=str(state))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    out = b""
    try:
        # WHEN the demo starts, THEN it announces a flamegraph within 20 s
        while b"flamegraph ready" not in out:
            assert time.monotonic() - t0 < 20, out.decode()
            r, _, _ = select.select([proc.stdout], [], [], 0.5)
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"demo.sh exited: {out.decode()}"
                out += chunk
        took = time.monotonic() - t0
        # ... and the store serves it, with the workload's functions in it
        query = urllib.parse.urlencode(
            {
                "query": PROFILE + '{service_name="hostprof-demo"}',
                "from": "now-5m",
                "until": "now",
            }
        )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/pyroscope/render?{query}", timeout=5
        ) as resp:
            flame = json.load(resp)["flamebearer"]
        names = set(flame["names"])
        assert {"handle_request", "compute_prices", "price_of"} <= names, sorted(names)[:40]
        assert flame["numTicks"] > 0
        print(f"flamegraph served after {took:.1f} s with {len(names)} names")
    finally:
        # WHEN Ctrl-C (SIGINT to the script's process group, as a terminal does)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=15)
        proc.stdout.close()
    # THEN everything it started has stopped
    time.sleep(0.5)
    for name in ("store.pid", "workload.pid", "agent.pid"):
        assert not (state / name).exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(state) not in ps, [line for line in ps.splitlines() if str(state) in line]


def test_demo_script_shows_a_flamegraph_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    _run_demo(port, tmp_path / "demo")
    # Idempotent: a second run on the same state folder works too.
    _run_demo(port, tmp_path / "demo")
