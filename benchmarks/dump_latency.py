"""Wall time of ``hostprof dump`` vs ``py-spy dump`` on a 4-thread process, with the floors.

Usage::

    .venv/bin/python benchmarks/dump_latency.py [--runs 30] [--before REV]

Starts the ``threads_4`` workload of ``sampler_vs_pyspy.py`` (two CPU-bound threads, one
sleeping, one blocked on a socket, plus the main thread) under pyenv's 3.11.7 and times, in
interleaved rounds (the machine is shared: every command sees the same load), the median and
minimum wall time and the median CPU time (user + system of the child) of:

* ``hostprof dump --pid PID`` through the console script users run;
* with ``--before REV``: the dump command of git revision REV and of this tree, both loaded
  the same way (a package tree in a temporary directory, through ``python -c``);
* this tree's dump under ``python -S`` (no site: dump needs nothing from site-packages), to
  show what site and the editable install's finder add;
* ``py-spy dump --pid PID``;
* the floors: ``python -c pass`` in the venv (site plus the editable install's finder, which
  imports pathlib and importlib.util: a wheel install has no finder), and ``python -S -c
  pass`` (the bare interpreter, no site at all);
* hostprof's attach + read in this process (no start-up).

Every command first runs once unmeasured, and PYTHONDONTWRITEBYTECODE is dropped from its
environment: an installed hostprof runs from compiled bytecode, and without it every module
would be compiled from source on each run. ``uptime`` is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from sampler_vs_pyspy import PYSPY  # noqa: E402
from sampler_vs_pyspy import WORKLOADS  # noqa: E402
from sampler_vs_pyspy import start_target  # noqa: E402

VENV_BIN = Path(sys.executable).parent
BASE_PYTHON = os.path.realpath(sys.executable)
RUN_CLI = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from hostprof.cli import main; sys.exit(main())"
)


def _package_tree(dest: Path, rev: Optional[str]) -> Path:
    """agent/, native/ and collectors/ of ``rev`` (None: the working tree) laid out as the
    ``hostprof`` package, with this tree's built extension modules."""
    src = dest / "src"
    src.mkdir(parents=True)
    if rev is None:
        for part in ("agent", "native", "collectors"):
            shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = dest / "src.tar"
        with archive.open("wb") as f:
            subprocess.run(
                ["git", "-C", str(ROOT), "archive", rev, "agent", "native", "collectors"],
                stdout=f,
                check=True,
            )
        with tarfile.open(archive) as tar:
            tar.extractall(src)
        for so in (ROOT / "native").glob("*.so"):
            shutil.copy(so, src / "native" / so.name)
    pkg = dest / "tree" / "hostprof"
    shutil.move(str(src / "agent"), pkg)
    shutil.move(str(src / "native"), pkg / "native")
    shutil.move(str(src / "collectors"), pkg / "collectors")
    return dest / "tree"


def _run(cmd: List[str], env: Dict[str, str]) -> Tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--before", metavar="REV", help="also time the dump of git revision REV")
    args = parser.parse_args(argv)
    if not PYSPY:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    target = start_target(str(WORKLOADS["threads_4"]["source"]))
    tmp = Path(tempfile.mkdtemp(prefix="hostprof-dump-bench-"))
    try:
        pid = str(target.pid)
        venv_python = str(VENV_BIN / "python")
        commands: Dict[str, List[str]] = {
            "hostprof dump": [str(VENV_BIN / "hostprof"), "dump", "--pid", pid],
        }
        if args.before:
            before = _package_tree(tmp / "before", args.before)
            now = _package_tree(tmp / "now", None)
            commands[f"dump @ {args.before}"] = [
                venv_python, "-c", RUN_CLI, str(before), "dump", "--pid", pid,
            ]  # fmt: skip
            commands["dump @ this tree"] = [
                venv_python, "-c", RUN_CLI, str(now), "dump", "--pid", pid,
            ]  # fmt: skip
        # The same dump without site (dump needs nothing from site-packages): what site.py
        # and the editable install's finder add to every run of the console script.
        tree = _package_tree(tmp / "nosite", None)
        commands["dump, python -S"] = [
            venv_python, "-S", "-c", RUN_CLI, str(tree), "dump", "--pid", pid,
        ]  # fmt: skip
        commands["py-spy dump"] = [PYSPY, "dump", "--pid", pid]
        commands["venv python -c pass"] = [venv_python, "-c", "pass"]
        commands["python -S -c pass"] = [BASE_PYTHON, "-S", "-c", "pass"]
        for cmd in commands.values():  # warm up: bytecode caches, page cache
            _run(cmd, env)
        walls: Dict[str, List[float]] = {k: [] for k in commands}
        cpus: Dict[str, List[float]] = {k: [] for k in commands}
        lib: List[float] = []
        from hostprof.native.pyprocess import attach

        for _ in range(args.runs):
            for name, cmd in commands.items():
                wall, cpu = _run(cmd, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
            t0 = time.perf_counter()
            proc = attach(target.pid)
            stacks = proc.stacks()
            lib.append(time.perf_counter() - t0)
            proc.close()
            assert len(stacks) == 5, stacks
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    spy = statistics.median(walls["py-spy dump"])
    print(f"\ndump of a 4-thread process (pyenv 3.11.7), {args.runs} interleaved rounds")
    header = ("command", "wall med ms", "wall min", "CPU med ms", "vs py-spy")
    print("{:24s} {:>11s} {:>9s} {:>10s} {:>9s}".format(*header))
    for name in commands:
        med = statistics.median(walls[name])
        print(
            f"{name:24s} {med * 1000:11.1f} {min(walls[name]) * 1000:9.1f} "
            f"{statistics.median(cpus[name]) * 1000:10.1f} {med / spy:9.2f}"
        )
    med_lib = statistics.median(lib)
    print(
        f"{'attach+read in-process':24s} {med_lib * 1000:11.1f} {min(lib) * 1000:9.1f} "
        f"{'':10s} {med_lib / spy:9.2f}"
    )
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
