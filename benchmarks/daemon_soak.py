"""Soak benchmark for ``hostprof agent``: RSS over time with 5 targets (not run in CI).

Starts the embedded store, N demo workloads (at a partial duty cycle, so the host stays
usable) and the agent with a budget loose enough that no target is shed (the point is to see
whether memory grows, not the budget). Samples the agent's RSS and CPU from /proc every
``--every`` seconds and prints a table, then compares the median RSS of the first and last
fifth of the run: flat means within 10 %.

    .venv/bin/python benchmarks/daemon_soak.py                  # 30 min, 5 targets
    .venv/bin/python benchmarks/daemon_soak.py --minutes 10 --csv soak.csv
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

HOSTPROF = [sys.executable, "-m", "hostprof"]


def _stat(pid: int) -> tuple:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--targets", type=int, default=5)
    ap.add_argument("--every", type=float, default=10.0, help="sampling period, seconds")
    ap.add_argument("--window", type=float, default=10.0, help="agent window, seconds")
    ap.add_argument("--duty", type=float, default=0.25, help="workload duty cycle")
    ap.add_argument("--csv", help="also write the samples here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostprof-soak-"))
    port = 40000 + os.getpid() % 20000
    token = f"soak-{os.getpid()}"
    procs = []
    try:
        store = subprocess.Popen(
            [
                *HOSTPROF,
                "store",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--data",
                str(work / "store"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(store)
        for _ in range(args.targets):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys, hostprof.demo_workload as w; sys.argv = ['w'] + sys.argv[2:]; "
                        "w.main()",
                        token,
                        "--duty",
                        str(args.duty),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
        cfg = work / "agent.toml"
        cfg.write_text(f"""
[store]
url = "http://127.0.0.1:{port}"
[agent]
host_cpu = "off"
window_s = {args.window}
spool_dir = "{work}/spool"
status_socket = "{work}/agent.sock"
metrics_addr = ""
[budget]
max_cpu_percent = 50
[[rule]]
cmdline = "{token}"
service_name = "soak"
[[rule]]
action = "exclude"
python_only = false
""")
        time.sleep(2)
        agent = subprocess.Popen(
            [*HOSTPROF, "agent", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(agent)
        t0 = time.monotonic()
        rows = []
        print(f"{'t (min)':>8} {'RSS (MiB)':>10} {'CPU (%1core)':>13} {'fds':>5}", flush=True)
        last_cpu, last_t = _stat(agent.pid)[0], t0
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.every)
            if agent.poll() is not None:
                print("agent exited!", file=sys.stderr)
                return 1
            cpu, rss = _stat(agent.pid)
            now = time.monotonic()
            pct = 100 * (cpu - last_cpu) / (now - last_t)
            last_cpu, last_t = cpu, now
            row = ((now - t0) / 60, rss / 2**20, pct, _fds(agent.pid))
            rows.append(row)
            print(f"{row[0]:8.1f} {row[1]:10.1f} {row[2]:13.2f} {row[3]:5d}", flush=True)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
        fifth = max(1, len(rows) // 5)
        early = statistics.median(r[1] for r in rows[fifth : 2 * fifth] or rows[:fifth])
        late = statistics.median(r[1] for r in rows[-fifth:])
        growth = (late - early) / early * 100
        cpu_med = statistics.median(r[2] for r in rows)
        print()
        print("| targets | minutes | RSS early (MiB) | RSS late (MiB) | growth | median CPU |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {args.targets} | {args.minutes:g} | {early:.1f} | {late:.1f} | {growth:+.1f} % "
            f"| {cpu_med:.2f} % |"
        )
        print("RSS flat within 10 %:", "yes" if abs(growth) <= 10 else "NO")
        if args.csv:
            with open(args.csv, "w") as f:
                f.write("minutes,rss_mib,cpu_percent,fds\n")
                for r in rows:
                    f.write(f"{r[0]:.2f},{r[1]:.1f},{r[2]:.2f},{r[3]}\n")
        return 0 if abs(growth) <= 10 else 1
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
