"""Where a syscall tracer's cost goes: one long-lived 1-byte read loop, with BPF programs
attached one set at a time, interleaved in every round.

Cases (each a ratio to the untraced loop in the same round):
- ``empty``: two raw_syscalls programs that do nothing (the floor of any such tracer);
- ``clock``: the same plus one ``bpf_ktime_get_ns()`` at entry and one at exit (the floor of
  any tracer that times every call);
- ``hostprof``: collectors/syscalls.bpf.c as SyscallsCollector builds it (``time_every`` 16);
- ``hostprof-exact``: the same with ``time_every=1`` (every call timed);
- ``before``: with ``--before REV``, that revision's collectors/syscalls.bpf.c.

All programs are compiled first and attached in turn to the same target, so compile time and
process start-up do not enter the figures. ``--stats`` also prints each program's mean run
time from the kernel's BPF statistics (BPF_ENABLE_STATS, held only while this script runs; the
statistics add their own clock reads to every program run, so the loop ratios of a ``--stats``
run are higher).

Usage: sudo .venv/bin/python benchmarks/syscalls_floor.py [--rounds 9] [--reads 300000]
       [--before REV] [--stats]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LOOP = """
import os, sys, time
fd = os.open("/dev/zero", os.O_RDONLY)
print("READY", flush=True)
for line in sys.stdin:
    n = int(line)
    t = time.process_time()
    for _ in range(n):
        os.read(fd, 1)
    print(time.process_time() - t, flush=True)
"""

TRACEPOINTS = ("sched_switch", "sys_exit", "sys_enter")


def _compile(source: Path, defines: Dict[str, object], pid: int) -> Any:
    """Compiles a program filtered to one pid, with its programs loaded but detached."""
    from bcc import BPF

    from hostprof.collectors import _ebpf

    cflags = [
        f"-I{REPO / 'collectors'}",
        f"-DHP_SELF_PID={os.getpid()}",
        "-DHP_FILTER_PIDS=1",
        f"-DHP_FIRST_PID={pid}",
        "-Wno-macro-redefined",
        f"-DHP_SLOT_SHIFT={_ebpf.slot_shift(_ebpf.DEFAULT_SLOT_NS)}",
    ] + [f"-D{k}={int(v)}" for k, v in defines.items()]
    text = _ebpf.inline_includes(source)
    bpf = BPF(text=text, cflags=cflags)  # bcc attaches RAW_TRACEPOINT_PROBEs at once
    bpf["hp_pids"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
    _attach(bpf, False)
    return bpf


def _attach(bpf: Any, on: bool) -> None:
    for tp in TRACEPOINTS:
        fn = f"raw_tracepoint__{tp}".encode()
        if fn not in bpf.funcs:
            continue
        if on:
            bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)
        else:
            bpf.detach_raw_tracepoint(tp=tp)


def _prog_stats(bpf: Any) -> Dict[str, Tuple[int, int]]:
    """(run_time_ns, run_cnt) per program, from /proc/self/fdinfo."""
    out = {}
    for name, fn in bpf.funcs.items():
        try:
            text = Path(f"/proc/self/fdinfo/{fn.fd}").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        key = name.decode() if isinstance(name, bytes) else name
        out[key.replace("raw_tracepoint__", "")] = (
            int(fields.get("run_time_ns", 0)),
            int(fields.get("run_cnt", 0)),
        )
    return out


def _enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): on until the returned fd is closed."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 32)()  # enable_stats.type = 0 (BPF_STATS_RUN_TIME)
    fd = libc.syscall(321, 32, attr, ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS")
    return int(fd)


def _before_source(rev: str, tmp: str) -> Path:
    """That revision's syscalls.bpf.c and hostprof.bpf.h, in a temporary directory."""
    for name in ("syscalls.bpf.c", "hostprof.bpf.h"):
        text = subprocess.run(
            ["git", "show", f"{rev}:collectors/{name}"], cwd=REPO, capture_output=True, check=True
        ).stdout
        Path(tmp, name).write_bytes(text)
    return Path(tmp, "syscalls.bpf.c")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reads", type=int, default=300_000)
    ap.add_argument("--before", metavar="REV", help="also that revision's syscalls.bpf.c")
    ap.add_argument("--stats", action="store_true", help="per-program run time (BPF stats)")
    args = ap.parse_args(argv)

    from hostprof.collectors import _kheaders
    from hostprof.collectors import syscalls

    os.environ["BCC_KERNEL_SOURCE"] = str(_kheaders.ensure())
    target = subprocess.Popen(
        [sys.executable, "-c", LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert target.stdin is not None and target.stdout is not None
    target.stdout.readline()

    def loop() -> float:
        target.stdin.write(f"{args.reads}\n")  # type: ignore[union-attr]
        target.stdin.flush()  # type: ignore[union-attr]
        return float(target.stdout.readline())  # type: ignore[union-attr]

    tmp = tempfile.mkdtemp(prefix="hostprof-floor-")
    floor = HERE / "syscalls_floor.bpf.c"
    here = REPO / "collectors" / "syscalls.bpf.c"
    every = syscalls.TIME_EVERY
    cases: Dict[str, Optional[Any]] = {"none": None}
    cases["empty"] = _compile(floor, {}, target.pid)
    cases["clock"] = _compile(floor, {"HP_FLOOR_CLOCK": 1}, target.pid)
    cases[f"hostprof (time_every={every})"] = _compile(here, {"HP_TIME_EVERY": every}, target.pid)
    cases["hostprof-exact (time_every=1)"] = _compile(here, {"HP_TIME_EVERY": 1}, target.pid)
    if args.before:
        cases[f"before ({args.before})"] = _compile(
            _before_source(args.before, tmp), {}, target.pid
        )
    stats_fd = _enable_stats() if args.stats else -1
    times: Dict[str, List[float]] = {name: [] for name in cases}
    run_ns: Dict[str, Dict[str, List[float]]] = {name: {} for name in cases}
    try:
        loop()  # warm-up
        for _ in range(args.rounds):
            for name, bpf in cases.items():
                if bpf is None:
                    times[name].append(loop())
                    continue
                _attach(bpf, True)
                s0 = _prog_stats(bpf)
                times[name].append(loop())
                s1 = _prog_stats(bpf)
                _attach(bpf, False)
                for prog, (ns, cnt) in s1.items():
                    runs = cnt - s0[prog][1]
                    if runs:
                        run_ns[name].setdefault(prog, []).append((ns - s0[prog][0]) / runs)
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
        target.kill()
        target.wait()
        for bpf in cases.values():
            if bpf is not None:
                bpf.cleanup()
    base = times["none"]
    print(
        f"{'case':<34} {'ns/call':>8} {'median':>7}  rounds (ratio to that round's untraced loop)"
    )
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base)]
        print(
            f"{name:<34} {1e9 * statistics.median(ts) / args.reads:8.0f} "
            f"{statistics.median(ratios):6.2f}x  " + " ".join(f"{r:.2f}" for r in ratios)
        )
        for prog, vals in sorted(run_ns[name].items()):
            print(f"    {prog:<30} {statistics.median(vals):6.1f} ns per run (BPF stats)")
    print(f"(rounds={args.rounds}, reads={args.reads}, {os.popen('uptime').read().strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
