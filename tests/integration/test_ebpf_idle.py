"""Idle detection from the offcpu collector's sched_switch table instead of /proc.

A real target runs four threads whose state is known: a pure-Python spinner (the GIL holder),
a hasher running native code with the GIL released (running, not the GIL holder), a thread
in time.sleep and one blocked in recv, plus the main thread blocked reading stdin. Two
samplers read it side by side, one with the mapped sched_switch table, one with /proc only,
and a third reader takes fresh /proc stat letters as the reference.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict
from typing import Iterator
from typing import List

import numpy as np
import pytest

from tests.conftest import require_bpf
from tests.integration._ebpf import PYENV_PYTHON

TARGET = """
import hashlib, json, socket, sys, threading, time
a, b = socket.socketpair()
data = b"x" * (32 << 20)
def spinner():
    x = 0
    while True:
        x += 1
def hasher():
    while True:
        hashlib.sha256(data).digest()  # releases the GIL: runs without holding it
def sleeper():
    while True:
        time.sleep(0.2)
def receiver():
    while True:
        a.recv(1)
for f in (spinner, hasher, sleeper, receiver):
    threading.Thread(target=f, name=f.__name__, daemon=True).start()
time.sleep(0.3)
print("READY", json.dumps({t.name: t.native_id for t in threading.enumerate()}), flush=True)
for line in sys.stdin:
    b.send(b"x")  # one line wakes the receiver once
"""

THREADS = ("MainThread", "spinner", "hasher", "sleeper", "receiver")
BLOCKED = ("MainThread", "sleeper", "receiver")


FREE_THREADED = "/var/cache/hostprof/pythons/bin/python3.13t"


class _Target:
    def __init__(self, python: str = PYENV_PYTHON) -> None:
        self.proc = subprocess.Popen(
            [python, "-u", "-c", textwrap.dedent(TARGET)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        self.pid = self.proc.pid
        self.tids: Dict[str, int] = json.loads(line.split(" ", 1)[1])

    def wake_receiver(self) -> None:
        self.proc.stdin.write("x\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]


@pytest.fixture
def target() -> Iterator[_Target]:
    t = _Target()
    try:
        yield t
    finally:
        t.proc.kill()
        t.proc.wait(timeout=10)


@pytest.fixture(params=["3.11", "3.13t"])
def any_target(request: pytest.FixtureRequest) -> Iterator[_Target]:
    """pyenv 3.11 (GIL: the holder is never looked up) and free-threaded 3.13t (no GIL:
    every thread is looked up every tick)."""
    python = PYENV_PYTHON
    if request.param == "3.13t":
        if not os.path.exists(FREE_THREADED):
            pytest.skip("no free-threaded 3.13t (tools/make-pythons.sh --ft builds it)")
        python = FREE_THREADED
    t = _Target(python)
    try:
        yield t
    finally:
        t.proc.kill()
        t.proc.wait(timeout=10)


def _idle_shares(batches: list, tids: Dict[str, int]) -> Dict[str, float]:
    tid = np.concatenate([b.tid for b in batches])
    flags = np.concatenate([b.flags for b in batches])
    from hostprof.collectors._batch import FLAG_IDLE

    out = {}
    for name in THREADS:
        mine = tid == tids[name]
        assert mine.sum() >= 50, (name, int(mine.sum()))
        out[name] = float(np.mean((flags[mine] & FLAG_IDLE) != 0))
    return out


class _StatReference(threading.Thread):
    """The reference: every thread's state letter from a fresh /proc/PID/task/TID/stat read,
    about every 5 ms (what ``dump`` reads: no reuse, no table), while the samplers run.

    (schedstat's run-queue wait was tried first: it is accounted only when the wait ends, so
    on a loaded machine a long wait across either end of the window skews it by 30 %.)
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        from hostprof.native.pyprocess import attach

        self.proc = attach(pid)
        self.states: Dict[int, List[str]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.005):
            cols = self.proc.reader.sample()
            for tid, state in zip(cols["tid"].tolist(), cols["os_state"].tolist()):
                self.states.setdefault(tid, []).append(chr(state))

    def idle_shares(self, tids: Dict[str, int]) -> Dict[str, float]:
        self.halt.set()
        self.join()
        self.proc.close()
        out = {}
        for name in THREADS:
            known = [c for c in self.states.get(tids[name], []) if c != "?"]
            assert len(known) >= 50, (name, len(known))
            out[name] = sum(c != "R" for c in known) / len(known)
        return out


def _reader_stats(py: object) -> Dict[str, int]:
    (t,) = py.targets.values()  # type: ignore[attr-defined]
    return t.proc.reader.stats()


def _colliding(tids: List[int], entries: int) -> bool:
    """Whether another thread on the host shares a table slot with one of ``tids``."""
    slots = {t & (entries - 1): t for t in tids}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            task = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in map(int, task):
            if slots.get(t & (entries - 1), t) != t:
                return True
    return False


def _sample(collectors: list, seconds: float) -> List[list]:
    """Drains each collector every 0.25 s for ``seconds``: one list of batches per collector."""
    out: List[list] = [[] for _ in collectors]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.25)
        for batches, c in zip(out, collectors):
            batches.append(c.drain())
    return out


def test_idle_from_sched_switch_matches_proc_without_proc_reads(any_target: _Target) -> None:
    require_bpf()
    target = any_target
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector
    from hostprof.native import _threadstate

    # GIVEN an offcpu collector running, and two samplers: one takes the table (default),
    # one is told to read /proc only
    off = OffCpuCollector.probe([target.pid])
    off.start()
    bpf_py = PythonCollector.probe([target.pid], rate=200, idle=True)
    proc_py = PythonCollector.probe([target.pid], rate=200, idle=True, thread_states=False)
    try:
        assert _threadstate.current() is off.thread_states is not None
        bpf_py.start()
        proc_py.start()
        # Threads blocked since before the collector attached are unknown to the table:
        # the first tick reads /proc once for them and seeds the table.
        time.sleep(0.5)
        bpf_py.drain(), proc_py.drain()
        b0, p0 = _reader_stats(bpf_py), _reader_stats(proc_py)
        reference = _StatReference(target.pid)
        reference.start()
        # WHEN both sample for 2 s, while the receiver is woken twice (it blocks again)
        bpf_batches, proc_batches = _sample([bpf_py, proc_py], 1.0)
        woke = time.monotonic_ns()
        target.wake_receiver()
        more = _sample([bpf_py, proc_py], 1.0)
        bpf_batches += more[0]
        proc_batches += more[1]
        b1, p1 = _reader_stats(bpf_py), _reader_stats(proc_py)
        truth = reference.idle_shares(target.tids)
        since = off.blocked_since([target.tids["receiver"], target.tids["sleeper"]])
    finally:
        bpf_py.close()
        proc_py.close()
    try:
        bpf_idle = _idle_shares(bpf_batches, target.tids)
        proc_idle = _idle_shares(proc_batches, target.tids)
        ticks = b1["ticks"] - b0["ticks"]
        print(f"idle share by thread: table {bpf_idle}, /proc {proc_idle}, stat {truth}")
        print(
            f"over {ticks} ticks: table sampler {b1['os_reads'] - b0['os_reads']} /proc reads, "
            f"{b1['state_hits'] - b0['state_hits']} table hits, {b1['state_seeds']} seeds; "
            f"/proc sampler {p1['os_reads'] - p0['os_reads']} /proc reads"
        )
        # THEN the table's idle share of every thread matches fresh /proc stat reads (idle =
        # neither on a CPU nor runnable): blocked threads idle, running ones not
        for name in THREADS:
            assert abs(bpf_idle[name] - truth[name]) <= 0.1, (name, bpf_idle, truth)
        # (the scenario holds: the sleeper and the receiver are blocked most of the time; a
        # woken thread can wait runnable for long on a loaded machine, and 3.13t's main thread
        # was once runnable 45 % of the window by every source)
        for name in ("sleeper", "receiver"):
            assert truth[name] >= 0.7, name
        assert bpf_idle["spinner"] <= 0.3
        # AND /proc polling agrees, except on the hasher: its idle-state reuse over-reports
        # a thread whose Python stack never changes between GIL waits and native work
        # (see sampling-core.md)
        for name in (*BLOCKED, "spinner"):
            assert abs(truth[name] - proc_idle[name]) <= 0.15, name
        # AND the table sampler read no /proc file for these threads in steady state
        # (a slot shared with another host thread would legitimately fall back)
        assert ticks >= 200
        hits = b1["state_hits"] - b0["state_hits"]
        if not _colliding(list(target.tids.values()), off.thread_states.entries):
            assert b1["os_reads"] == b0["os_reads"]
            # every thread but the GIL holder is looked up in the table every tick
            assert hits >= 3 * ticks
        # AND at most one seeding read per thread blocked since before the collector attached
        assert b1["state_seeds"] <= len(THREADS)
        # while the /proc sampler kept reading /proc and never used the table
        assert p1["os_reads"] - p0["os_reads"] >= ticks * 0.4
        assert p1["state_hits"] == 0
        # AND the receiver, blocked again after a wake-up the kernel saw, reports when it
        # blocked (the sleeper blocks every 200 ms)
        assert woke <= since[target.tids["receiver"]] <= time.monotonic_ns()
        assert target.tids["sleeper"] in since
    finally:
        off.stop()
    assert _threadstate.current() is None


def test_collisions_and_unknown_threads_fall_back_to_proc(target: _Target) -> None:
    require_bpf()
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector
    from hostprof.native import _threadstate

    # GIVEN a one-slot table: every thread on the host collides with every other
    off = OffCpuCollector.probe([target.pid], thread_state_entries=1)
    off.start()
    py = PythonCollector.probe([target.pid], rate=200, idle=True)
    try:
        ts = off.thread_states
        assert ts is not None and ts.entries == 1
        # WHEN the sampler runs for 1.5 s
        py.start()
        (batches,) = _sample([py], 1.5)
        stats = _reader_stats(py)
        # THEN the idle state is still right: taken from /proc whenever the slot holds
        # another thread
        idle = _idle_shares(batches, target.tids)
        print(f"one-slot table: idle {idle}, stats {stats}")
        for name in BLOCKED:
            assert idle[name] >= 0.7, name
        assert idle["spinner"] <= 0.3  # (the hasher: see the first test)
        # AND /proc was read all along (a table that ignored the stored tid would answer
        # every look-up with another thread's state, and never read /proc)
        assert stats["os_reads"] >= 0.3 * stats["ticks"], stats
    finally:
        py.close()
        off.stop()

    # GIVEN the normal table, a thread it knows, and a tid sharing its slot
    off = OffCpuCollector.probe([target.pid])
    off.start()
    try:
        ts = off.thread_states
        spinner = target.tids["spinner"]
        deadline = time.monotonic() + 5
        while ts.state(spinner) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the spinner is preempted within a few ms on a shared machine
        # THEN the known thread reads as running, the other tid of its slot as unknown
        assert ts.state(spinner) == "R"
        assert ts.state(spinner + ts.entries) is None
        assert ts.states([spinner, spinner + ts.entries]) == {spinner: "R"}
        # AND a thread blocked since before the collector attached is unknown (its state
        # must come from /proc), until a /proc read seeds it
        assert ts.state(target.tids["MainThread"]) is None
    finally:
        off.stop()
    # AND a stopped collector's table reads as unknown (samplers holding it fall back)
    assert not ts.live and ts.state(spinner) is None
    assert _threadstate.current() is None


def test_sampler_falls_back_when_offcpu_stops(target: _Target) -> None:
    require_bpf()
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector

    off = OffCpuCollector.probe([target.pid])
    off.start()
    py = PythonCollector.probe([target.pid], rate=200, idle=True)
    try:
        py.start()
        _sample([py], 0.5)
        s0 = _reader_stats(py)
        assert s0["state_hits"] > 0
        # WHEN the offcpu collector stops while the sampler runs
        off.stop()
        (batches,) = _sample([py], 1.0)
        s1 = _reader_stats(py)
    finally:
        py.close()
        off.stop()
    # THEN the sampler reads /proc again, with the same idle answers
    idle = _idle_shares(batches, target.tids)
    print(f"after stop: idle {idle}, reads {s1['os_reads'] - s0['os_reads']}")
    assert s1["os_reads"] - s0["os_reads"] >= (s1["ticks"] - s0["ticks"]) * 0.4
    for name in BLOCKED:
        assert idle[name] >= 0.7, name
    assert idle["spinner"] <= 0.3


def test_record_with_offcpu_takes_idle_states_from_the_table(
    target: _Target, tmp_path: Path
) -> None:
    require_bpf()
    hostprof = os.path.join(os.path.dirname(sys.executable), "hostprof")
    out = tmp_path / "idle.folded"
    # WHEN `record` runs the Python sampler next to the offcpu collector
    args = ["record", "--pid", str(target.pid), "-d", "1.5", "--idle", "--threads"]
    args += ["--collect", "python,offcpu", "-o", str(out)]
    res = subprocess.run([hostprof, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    # THEN the sampler took its idle states from the table. /proc was read only while
    # attaching (one stat per thread) and to seed the threads blocked since before the
    # collector attached.
    line = r"idle states from sched_switch \(offcpu\): (\d+) look-ups, (\d+) /proc reads"
    m = re.search(line, res.stderr)
    assert m, res.stderr
    hits, reads = int(m.group(1)), int(m.group(2))
    assert hits >= 3 * 100 and reads <= 2 * len(THREADS), res.stderr
    # AND the profile still holds the blocked threads' stacks (--idle keeps them)
    text = out.read_text()
    for name in ("sleeper", "receiver"):
        assert f"({target.tids[name]})>" in text and f"{name}" in text, name


def test_targets_in_another_pid_namespace_use_the_table_by_host_tid(target: _Target) -> None:
    require_bpf()
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector

    # GIVEN a target in its own PID namespace (its interpreter numbers threads 1, 2, ...,
    # while the sched_switch table is keyed by host tids: the sampler maps them) next to
    # one in ours
    unshare = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            PYENV_PYTHON,
            "-u",
            "-c",
            textwrap.dedent(TARGET),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    off = OffCpuCollector.probe([target.pid])
    py = None
    try:
        line = unshare.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        with open(f"/proc/{unshare.pid}/task/{unshare.pid}/children") as f:
            (inner,) = map(int, f.read().split())
        off.start()
        py = PythonCollector.probe([target.pid, inner], rate=200, idle=True)
        # WHEN both are sampled while the offcpu collector runs
        py.start()
        (batches,) = _sample([py], 0.75)
        stats = {pid: t.proc.reader.stats() for pid, t in py.targets.items()}
        host_tids = set(map(int, os.listdir(f"/proc/{inner}/task")))
    finally:
        if py is not None:
            py.close()
        off.stop()
        unshare.kill()
        unshare.wait(timeout=10)
    print({pid: (s["state_hits"], s["os_reads"]) for pid, s in stats.items()})
    # THEN both take thread states from the table, and the namespaced target's samples
    # carry its host tids (tests/integration/test_sampler_pidns.py checks its idle flags)
    assert stats[target.pid]["state_hits"] > 0
    assert stats[inner]["state_hits"] > 0 and stats[inner]["samples"] > 0
    inner_tids = {t for b in batches for p, t in zip(b.pid.tolist(), b.tid.tolist()) if p == inner}
    assert inner_tids == host_tids, (inner_tids, host_tids)
