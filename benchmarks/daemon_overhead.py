"""Overhead of ``hostprof agent``: its own CPU per target and rate, and the slowdown of the
profiled program (not run in CI).

For each rate, runs the demo workload for ``--seconds`` with and without the agent attached
(alternating, ``--runs`` times each) and reports the median requests/s, plus the agent's CPU
measured from /proc. The budget is lifted for the measurement so the requested rate is kept.

    .venv/bin/python benchmarks/daemon_overhead.py
    .venv/bin/python benchmarks/daemon_overhead.py --rates 10 100 1000 --runs 3 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional
from typing import Tuple

HOSTPROF = [sys.executable, "-m", "hostprof"]


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(seconds: float, token: str, cfg: Optional[Path]) -> Tuple[float, float]:
    """(workload requests/s, agent CPU % of one core or 0)."""
    agent = None
    if cfg is not None:
        agent = subprocess.Popen(
            [*HOSTPROF, "agent", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0)  # imports, first scan
    work = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, hostprof.demo_workload as w; sys.argv = ['w'] + sys.argv[2:]; w.main()",
            token,
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert work.stdout is not None
    assert work.stdout.readline().startswith("READY")
    time.sleep(1.0)  # let the agent attach (discovery every 0.5 s here)
    c0 = _cpu(agent.pid) if agent else 0.0
    t0 = time.monotonic()
    out = work.stdout.read()
    work.wait()
    elapsed = time.monotonic() - t0
    agent_cpu = 100 * (_cpu(agent.pid) - c0) / elapsed if agent else 0.0
    if agent:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
    requests = int(out.strip().split()[-1])
    return requests / seconds, agent_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostprof-overhead-"))
    token = f"ovh-{os.getpid()}"
    try:
        rows = []
        for rate in args.rates:
            cfg = work / f"agent-{rate:g}.toml"
            cfg.write_text(f"""
[store]
url = "file://{work}/out"
[agent]
host_cpu = "off"
window_s = 10
discovery_interval_s = 0.5
spool_dir = "{work}/spool"
status_socket = "{work}/agent.sock"
metrics_addr = ""
[budget]
max_cpu_percent = 100
[[rule]]
cmdline = "{token}"
[rule.collectors]
python = {{ rate_hz = {rate} }}
[[rule]]
action = "exclude"
python_only = false
""")
            base, prof, cpu = [], [], []
            for _ in range(args.runs):
                base.append(_run(args.seconds, token, None)[0])
                r, c = _run(args.seconds, token, cfg)
                prof.append(r)
                cpu.append(c)
            rows.append(
                (rate, statistics.median(base), statistics.median(prof), statistics.median(cpu))
            )
        print("| rate (Hz) | workload req/s alone | with agent | slowdown | agent CPU (% 1 core) |")
        print("|---|---|---|---|---|")
        for rate, b, p, c in rows:
            print(f"| {rate:g} | {b:.1f} | {p:.1f} | {100 * (b - p) / b:+.1f} % | {c:.2f} |")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
