"""Overhead of hostprof's eBPF collectors, printed as a table (medians of several runs).

Measures, each in a fresh process so numbers do not leak between cases:

1. agent CPU for host-wide ``cpu`` at 99 Hz, draining and symbolising every second
   (target: <= 0.5 % of one core), under a defined host activity (HOST_ACTIVITY: three
   duty-cycled busy processes of different binaries, and ``--churn`` short-lived processes a
   second from six binaries) on top of whatever else the machine runs;
2. compile + load time of each collector's BPF program;
3. agent RSS (after 5 s, and peak) with all four collectors running host-wide (target: <= 150 MiB);
4. target slowdown (CPU time) on syscall-heavy loops (1-byte os.read from /dev/zero, about
   0.3 us per call; 4 KiB os.read; os.stat) with the syscalls collector attached, side by side
   with no tracing and with bcc's own ``syscount -L`` (documented at 1.85x on its own loop).

Usage: sudo .venv/bin/python benchmarks/ebpf_overhead.py [--runs 3] [--seconds 10] [--only ...]
The machine is shared: read ratios measured side by side, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Dict
from typing import List
from typing import Optional

PY = sys.executable
BEFORE_ROOT = ""  # a --before revision's package tree (see _before_tree)
RAW = False  # --raw: print each agent's JSON result
PROFILE = False  # --profile: print the host-wide cpu agents' cProfile tables

# Run first in a "before" agent: hostprof is imported from BEFORE_ROOT instead of the
# editable install of the working tree.
BEFORE_PREAMBLE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__
                    and "editable" not in getattr(f, "__name__", "")]
sys.path.insert(0, {root!r})
"""

CPU_AGENT = """
import json, os, sys, time
from hostprof.collectors.cpu import CpuCollector
pids = [int(p) for p in sys.argv[2].split(",")] if len(sys.argv) > 2 and sys.argv[2] else None
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0  # seconds between drains
c = CpuCollector.probe(pids, frequency=99, interval_s=interval)
s0 = time.process_time()
c.start()
start_cpu = time.process_time() - s0
seconds = float(sys.argv[1])
# Warm-up: the first drains load kallsyms and the symbol tables of every running program.
c0 = time.process_time()
for _ in range(3):
    time.sleep(1.0)
    c.drain()
warmup_cpu = time.process_time() - c0
prof = None
if len(sys.argv) > 3 and sys.argv[3]:  # --profile: cProfile in CPU time, steady state only
    import cProfile
    prof = cProfile.Profile(time.process_time)
    prof.enable()
t0, c0, s0 = time.monotonic(), time.process_time(), os.times().system
seen = set()
rows = 0
while time.monotonic() - t0 < seconds:
    time.sleep(interval)
    b = c.drain()
    rows += len(b)
    seen |= set(b.pid.tolist())
cpu = time.process_time() - c0
sys_cpu = os.times().system - s0
wall = time.monotonic() - t0
st = c.stats()
c.stop()
print(json.dumps({"cpu_share": cpu / wall, "sys_share": sys_cpu / wall,
                  "warmup_cpu": warmup_cpu, "rows": rows / wall,
                  "start_cpu": start_cpu,
                  "pids": len(seen) / wall, "unknown": st["unknown_frame_share"],
                  "compile_s": st["compile_s"]}))
if len(sys.argv) > 3 and sys.argv[3]:
    import pstats
    prof.disable()
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
"""

ALL_AGENT = """
import json, os, sys, time
from hostprof.collectors.cpu import CpuCollector
from hostprof.collectors.offcpu import OffCpuCollector
from hostprof.collectors.syscalls import SyscallsCollector
from hostprof.collectors.gc import GcCollector
cs = [CpuCollector.probe(None), OffCpuCollector.probe(None), SyscallsCollector.probe(None)]
gc = GcCollector.probe(None)
if gc is not None:
    cs.append(gc)
compile_s = {}
for c in cs:
    c.start()
    compile_s[c.name] = c.stats().get("compile_s", 0.0)
t0 = time.monotonic()
while time.monotonic() - t0 < float(sys.argv[1]):
    time.sleep(1.0)
    for c in cs:
        c.drain()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
kib = lambda k: int(status[k].split()[0])
print(json.dumps({"hwm_kib": kib("VmHWM"), "rss_kib": kib("VmRSS"),
                  "anon_kib": kib("RssAnon"), "file_kib": kib("RssFile"),
                  "compile_s": compile_s}))
for c in cs:
    c.stop()
"""

SYSCALL_LOOP = """
import os, sys, time
fd = os.open("/dev/zero", os.O_RDONLY)
print("READY", flush=True)
sys.stdin.readline()
n = int(sys.argv[1])
kind = sys.argv[2]
t = time.process_time()
if kind == "read1":
    for _ in range(n):
        os.read(fd, 1)
elif kind == "read4k":
    for _ in range(n):
        os.read(fd, 4096)
else:
    for _ in range(n):
        os.stat("/tmp")
print(time.process_time() - t, flush=True)
"""

LOOPS = {
    "read1": "1-byte os.read (/dev/zero)",
    "read4k": "4 KiB os.read (/dev/zero)",
    "stat": "os.stat",
}

SYSCALLS_AGENT = """
import sys, time
from hostprof.collectors.syscalls import SyscallsCollector
options = {"time_every": int(sys.argv[2])} if len(sys.argv) > 2 else {}
c = SyscallsCollector.probe([int(sys.argv[1])], **options)
c.start()
print("ATTACHED", flush=True)
sys.stdin.readline()
b = c.drain()
print(int(b.values[:, 0].sum()), flush=True)
c.stop()
"""


BUSY = """
import time
def spin():
    x = 0
    for i in range(10000):
        x += i * i
    return x
while True:
    spin()
"""


# A defined host activity for the host-wide cpu case, so its figure can be compared across
# runs (the machine's own activity still adds to it; the table reports both):
# - three long-lived processes of different binaries, each busy for 25 ms of every 100 ms:
#   pyenv's python (libpython), Debian's static python3.11 in zlib (libz), perl;
# - CHURN short-lived processes a second, rotating through six binaries, each running about
#   20-30 ms of CPU (a few samples each at 99 Hz), so every one brings a new pid, new maps
#   and new stacks to symbolise, like a host running cron jobs, health checks and scripts.
HOST_ACTIVITY = """
import json, os, signal, subprocess, sys, time
rate = float(sys.argv[1])
DUTY = ("import time\\nwhile True:\\n    t = time.monotonic()\\n"
        "    while time.monotonic() - t < 0.025:\\n        {}\\n    time.sleep(0.075)")
busy = [
    [sys.executable, "-c", DUTY.format("sum(i * i for i in range(2000))")],
    ["/usr/bin/python3.11", "-c",
     "import zlib\\ndata = bytes(range(256)) * 256\\n" + DUTY.format("zlib.compress(data, 6)")],
    ["perl", "-MTime::HiRes=time,sleep", "-e",
     "while (1) { my $t = time; while (time - $t < 0.025) { my $s = 0; $s += $_ for 1..2000 }"
     " sleep 0.075 }"],
]
CHURN = [
    ["gzip", "-1", "-c", "/usr/bin/bash"],
    ["sha256sum", "/usr/bin/bash", "/usr/bin/perl", "/usr/bin/python3.11"],
    ["awk", "BEGIN{for(i=0;i<2000000;i++)s+=i}"],
    ["perl", "-e", "for(1..1000000){$s+=$_}"],
    ["/usr/bin/python3.11", "-c", "sum(i*i for i in range(300000))"],
    ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"],
]
out = subprocess.DEVNULL
procs = [subprocess.Popen(c, stdout=out, stderr=out) for c in busy]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
print("READY", flush=True)
t0 = time.monotonic()
spawned, children = 0, []
while not stop:
    if rate > 0:
        children.append(subprocess.Popen(CHURN[spawned % len(CHURN)], stdout=out, stderr=out))
        spawned += 1
    children = [c for c in children if c.poll() is None]
    time.sleep(max(0.0, t0 + spawned / rate - time.monotonic()) if rate > 0 else 0.1)
wall = time.monotonic() - t0
for p in procs + children:
    p.kill()
    p.wait()
print(json.dumps({"spawned_per_s": spawned / wall, "busy": len(busy)}), flush=True)
"""


class HostActivity:
    """Runs HOST_ACTIVITY for the duration of a ``with`` block; ``result`` holds what it
    actually spawned per second."""

    def __init__(self, churn: float) -> None:
        self.churn = churn
        self.result: Dict = {}

    def __enter__(self) -> HostActivity:
        self._proc = subprocess.Popen(
            [PY, "-c", textwrap.dedent(HOST_ACTIVITY), str(self.churn)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # READY: the busy processes run
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        stdout, _ = self._proc.communicate(timeout=30)
        self.result = json.loads(stdout.strip().splitlines()[-1])


def _host_cpu(seconds: float, churn: float, profile: bool, interval: float = 1.0) -> List[Dict]:
    """The cpu collector host-wide under HostActivity, draining every ``interval`` seconds;
    the activity's spawn rate is added to each agent's result."""
    with HostActivity(churn) as activity:
        out = _run_side_by_side(CPU_AGENT, str(seconds), "", "1" if profile else "", str(interval))
    for r in out:
        r["spawned_per_s"] = activity.result["spawned_per_s"]
    return out


def _pid_set_cpu(seconds: float) -> List[Dict]:
    """The cpu collector on 4 long-lived busy processes (a pid set): no process churn."""
    busy = [subprocess.Popen([PY, "-c", BUSY]) for _ in range(4)]
    try:
        time.sleep(0.5)
        return _run_side_by_side(CPU_AGENT, str(seconds), ",".join(str(b.pid) for b in busy))
    finally:
        for b in busy:
            b.kill()
            b.wait()


def _loop_time(n: int, tracer: Optional[str], kind: str = "read1") -> float:
    """CPU seconds (user + system, so BPF time in the syscall path counts) for n calls of a
    loop kind (see LOOPS) in a fresh target with the given tracer attached. CPU time, not wall
    time: on a shared machine the wall time mostly measures how long the target waited for a
    CPU."""
    target = subprocess.Popen(
        [PY, "-c", SYSCALL_LOOP, str(n), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert target.stdout is not None and target.stdin is not None
    target.stdout.readline()
    agent = None
    try:
        if tracer in ("hostprof", "exact", "before"):
            # "exact": the working tree's collector timing every call (time_every=1)
            extra = ["1"] if tracer == "exact" else []
            agent = subprocess.Popen(
                [PY, "-c", _source(SYSCALLS_AGENT, tracer == "before"), str(target.pid), *extra],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert agent.stdout is not None
            agent.stdout.readline()  # ATTACHED
        elif tracer == "syscount":
            agent = subprocess.Popen(
                [shutil.which("syscount-bpfcc") or "syscount-bpfcc", "-L", "-p", str(target.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(os.environ),
            )
            time.sleep(3.0)  # syscount prints nothing when attached; give it time to compile
        target.stdin.write("go\n")
        target.stdin.flush()
        secs = float(target.stdout.readline())
    finally:
        target.kill()
        target.wait()
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=30)
    return secs


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reads", type=int, default=300_000)
    ap.add_argument(
        "--loops",
        default=",".join(LOOPS),
        help="comma-separated syscall loops: read1 (1-byte read), read4k, stat",
    )
    ap.add_argument(
        "--only",
        default="cpu,rss,syscalls",
        help="comma-separated sections: cpu (agent CPU), rss (compile + memory), syscalls",
    )
    ap.add_argument(
        "--before",
        metavar="REV",
        help="also run this git revision's agent side by side (cpu: at the same time)",
    )
    ap.add_argument("--raw", action="store_true", help="print each agent's result on stderr")
    ap.add_argument(
        "--churn",
        type=float,
        default=5.0,
        help="short-lived processes spawned per second during the host-wide cpu case",
    )
    ap.add_argument(
        "--daemon-seconds",
        type=float,
        default=30.0,
        help="length of the host-wide cpu case draining every 10 s, as the daemon does "
        "(agent.window_s); 0 skips it",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="run the host-wide cpu agents under cProfile (CPU time) and print their top "
        "functions on stderr (the profiler inflates their CPU figure)",
    )
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    global BEFORE_ROOT, RAW, PROFILE
    RAW = args.raw
    PROFILE = args.profile
    if args.before:
        BEFORE_ROOT = _before_tree(args.before)
    try:
        return _run(args, only)
    finally:
        if BEFORE_ROOT:
            shutil.rmtree(BEFORE_ROOT, ignore_errors=True)


def _before_tree(rev: str) -> str:
    """Unpacks agent/ and collectors/ of a git revision as an importable ``hostprof`` package
    (native extensions linked from the working tree) and returns the sys.path entry."""
    import tempfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = tempfile.mkdtemp(prefix="hostprof-before-")
    src = os.path.join(root, "src")
    os.makedirs(src)
    archive = subprocess.run(
        ["git", "archive", rev, "agent", "collectors"], cwd=repo, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    pkg = os.path.join(root, "hostprof")
    shutil.move(os.path.join(src, "agent"), pkg)
    shutil.move(os.path.join(src, "collectors"), os.path.join(pkg, "collectors"))
    os.symlink(os.path.join(repo, "native"), os.path.join(pkg, "native"))
    return root


def _source(source: str, before: bool) -> str:
    """An agent's program text, importing the --before revision when asked."""
    source = textwrap.dedent(source)
    return BEFORE_PREAMBLE.format(root=BEFORE_ROOT) + source if before else source


def _run_side_by_side(source: str, *args: str, concurrent: bool = True) -> List[Dict]:
    """Runs the agent of the working tree and, with --before, the older one; returns their
    JSON results, working tree first.

    ``concurrent``: both at the same time, so both see the same host activity (CPU cases).
    Memory cases run one after the other: two agents mapping the same libraries share their
    pages, and a page mapped by another process cannot be paged out.
    """
    out = []
    procs = []
    for before in [False, True] if BEFORE_ROOT else [False]:
        procs.append(
            subprocess.Popen(
                [PY, "-c", _source(source, before), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if not concurrent:
            out.append(_result(procs.pop()))
    return out + [_result(p) for p in procs]


def _result(proc: subprocess.Popen) -> Dict:
    """The JSON line an agent printed last (also on stderr with --raw)."""
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"agent failed: {stderr[-2000:]}")
    line = stdout.strip().splitlines()[-1]
    if PROFILE and stderr.strip():
        print(stderr, file=sys.stderr)
    if RAW:
        print(line, file=sys.stderr)
    return json.loads(line)


med = statistics.median


def _merge_columns(tables: List[List[tuple]]) -> List[tuple]:
    """Rows (measure, now, target) of each version -> (measure, now, before, target)."""
    if len(tables) == 1:
        return [(name, now, "", note) for name, now, note in tables[0]]
    return [(a[0], a[1], b[1], a[2]) for a, b in zip(tables[0], tables[1])]


DAEMON_INTERVAL_S = 10.0  # the daemon's drain interval in host-wide mode (agent.window_s)


def _cpu_rows(cpu_runs: List[Dict], pid_runs: List[Dict], daemon_runs: List[Dict]) -> List[tuple]:
    """Table rows of the agent-CPU section."""
    daemon = daemon_runs and [
        (
            f"agent CPU, host-wide, drains every {DAEMON_INTERVAL_S:.0f} s (daemon default)",
            f"{100 * med(r['cpu_share'] for r in daemon_runs):.2f} % of a core",
            "<= 0.5 %",
        ),
        (
            # Processes that exit before a drain cannot be symbolised: with 10 s drains most
            # of the short-lived ones are gone, which also makes those drains cheaper.
            "  [unknown] frame share with 10 s drains",
            f"{100 * med(r['unknown'] for r in daemon_runs):.1f} %",
            "reported",
        ),
    ]
    return (
        [
            (
                "agent CPU, host-wide cpu @99 Hz incl. symbolisation, drains every 1 s",
                f"{100 * med(r['cpu_share'] for r in cpu_runs):.2f} % of a core",
                "<= 0.5 %",
            ),
            (
                "  of which in the kernel (system time)",
                f"{100 * med(r.get('sys_share', 0.0) for r in cpu_runs):.2f} % of a core",
                "",
            ),
        ]
        + (daemon or [])
        + [
            (
                "  host activity: 3 busy processes (25 % duty) + short-lived processes/s",
                f"{med(r.get('spawned_per_s', 0.0) for r in cpu_runs):.1f} /s",
                "defined (--churn)",
            ),
            (
                "  start() CPU: compile, load (+ kallsyms: now read at start)",
                f"{med(r['start_cpu'] for r in cpu_runs):.2f} s CPU",
                "once",
            ),
            (
                "  first 3 s (every program's symbols; kallsyms before)",
                f"{med(r['warmup_cpu'] for r in cpu_runs):.2f} s CPU",
                "once",
            ),
            (
                "  host churn: distinct pids sampled per second",
                f"{med(r['pids'] for r in cpu_runs):.1f}",
                "context",
            ),
            (
                "  rows (pid, tid, stacks, slot) drained per second",
                f"{med(r['rows'] for r in cpu_runs):.0f}",
                "context",
            ),
            (
                "agent CPU, cpu @99 Hz on 4 busy long-lived processes (pid set)",
                f"{100 * med(r['cpu_share'] for r in pid_runs):.2f} % of a core",
                "<= 0.5 %",
            ),
            (
                "[unknown] frame share (host-wide, 1 s drains)",
                f"{100 * med(r['unknown'] for r in cpu_runs):.1f} %",
                "reported",
            ),
        ]
    )


def _rss_rows(all_runs: List[Dict]) -> List[tuple]:
    """Table rows of the compile-time and memory section."""
    rows = []
    for name in ("cpu", "offcpu", "syscalls", "gc"):
        vals = [r["compile_s"][name] for r in all_runs if name in r["compile_s"]]
        if vals:
            rows.append((f"compile + load: {name}", f"{med(vals):.2f} s", ""))
    mib = lambda key: f"{med(r[key] for r in all_runs) / 1024:.0f} MiB"  # noqa: E731
    rows.append(
        ("agent RSS, all four collectors host-wide, after 5 s", mib("rss_kib"), "<= 150 MiB")
    )
    rows.append(("  of which anonymous (heaps)", mib("anon_kib"), ""))
    rows.append(("  of which file-backed (libbcc+LLVM, libpython, numpy)", mib("file_kib"), ""))
    rows.append(("  peak RSS (VmHWM: clang compiles, first drain)", mib("hwm_kib"), ""))
    return rows


def _run(args: argparse.Namespace, only: set) -> int:
    """Runs the selected sections and prints the table."""
    from hostprof.collectors import _kheaders

    os.environ["BCC_KERNEL_SOURCE"] = str(_kheaders.ensure())  # for syscount-bpfcc too

    runs = range(args.runs)
    # Each run: [working tree, --before revision], measured at the same time.
    cpu: List[List[Dict]] = []
    daemon: List[List[Dict]] = []
    pid: List[List[Dict]] = []
    rss: List[List[Dict]] = []
    for _ in runs if "cpu" in only else ():
        cpu.append(_host_cpu(args.seconds, args.churn, args.profile))
        if args.daemon_seconds:
            daemon.append(_host_cpu(args.daemon_seconds, args.churn, False, DAEMON_INTERVAL_S))
        pid.append(_pid_set_cpu(args.seconds))
    for _ in runs if "rss" in only else ():
        rss.append(_run_side_by_side(ALL_AGENT, str(min(args.seconds, 5.0)), concurrent=False))
    have_syscount = shutil.which("syscount-bpfcc") is not None
    tracers = ["none", "hostprof", "exact"] + (["before"] if args.before else [])
    tracers += ["syscount"] if have_syscount else []
    kinds = [k for k in args.loops.split(",") if k in LOOPS]
    loops: Dict[str, Dict[str, List[float]]] = {k: {t: [] for t in tracers} for k in kinds}
    # Each traced case's own untraced loop, run just before it: the load of a shared machine
    # moves within a round, and a ratio to a baseline measured seconds apart inherits that.
    paired: Dict[str, Dict[str, List[float]]] = {k: {t: [] for t in tracers} for k in kinds}
    for _ in range(args.runs if "syscalls" in only else 0):
        # Interleave the cases so drifting machine load hits each alike.
        for kind in kinds:
            for tracer in tracers:
                n = args.reads if kind == "read1" else args.reads // 4
                if tracer != "none":
                    paired[kind][tracer].append(_loop_time(n, None, kind))
                loops[kind][tracer].append(
                    _loop_time(n, None if tracer == "none" else tracer, kind)
                )

    rows: List[tuple] = []
    versions = [0, 1] if BEFORE_ROOT else [0]
    if cpu:
        rows += _merge_columns(
            [
                _cpu_rows([r[v] for r in cpu], [r[v] for r in pid], [r[v] for r in daemon])
                for v in versions
            ]
        )
        if BEFORE_ROOT:
            # Per run, both agents saw the same host activity: their ratio is the comparable
            # figure when the machine's own load moves between runs.
            for label, runs in (("1 s", cpu), (f"{DAEMON_INTERVAL_S:.0f} s", daemon)):
                ratios = [r[0]["cpu_share"] / r[1]["cpu_share"] for r in runs if r[1]["cpu_share"]]
                if ratios:
                    rows.append(
                        (
                            f"agent CPU host-wide ({label} drains), now / before, per-run median",
                            f"{med(ratios):.2f}x",
                            "",
                            " ".join(f"{x:.2f}" for x in ratios),
                        )
                    )
    if rss:
        rows += _merge_columns([_rss_rows([r[v] for r in rss]) for v in versions])
    for kind in kinds if "syscalls" in only else ():
        label = LOOPS[kind]
        base = med(loops[kind]["none"])
        n = args.reads if kind == "read1" else args.reads // 4
        rows.append((f"{label} loop, no tracing", f"{1e9 * base / n:.0f} ns/call", "", "1.00x"))
        for tracer, name in (
            ("hostprof", "hostprof syscalls"),
            ("exact", "hostprof syscalls, time_every=1"),
            ("before", f"hostprof syscalls @ {args.before}"),
            ("syscount", "bcc syscount -L"),
        ):
            if loops[kind].get(tracer):
                t = med(loops[kind][tracer])
                # Each round's ratio to the untraced loop run just before it, in the order run.
                ratios = [x / b for x, b in zip(loops[kind][tracer], paired[kind][tracer])]
                per_round = " ".join(f"{r:.2f}" for r in ratios)
                rows.append(
                    (
                        f"  with {name}",
                        f"{1e9 * t / n:.0f} ns/call",
                        "",
                        f"{t / base:.2f}x; paired: median {med(ratios):.2f}x, rounds {per_round}",
                    )
                )
    width = max(len(r[0]) for r in rows)
    before = f"@ {args.before}" if args.before else ""
    print(f"{'measure':<{width}}  {'median':>18}  {before:>18}  target/ratio")
    for name, value, old, note in rows:
        print(f"{name:<{width}}  {value:>18}  {old:>18}  {note}")
    print(
        f"(runs={args.runs}, seconds={args.seconds}, reads={args.reads}, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
