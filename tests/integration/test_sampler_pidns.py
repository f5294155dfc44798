"""Targets in their own PID namespace (containers): thread ids mapped to host tids.

The target runs under ``unshare --pid --fork --mount-proc``, so its interpreter numbers its
threads 1, 2, 3... (what ``threading.get_native_id()`` returns inside) while the host's
/proc, the eBPF collectors and the sched_switch table know them by host tids. The expected
mapping is read here from each task's ``NSpid:`` line, independently of the sampler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict
from typing import Iterator

import numpy as np
import pytest

from hostprof.collectors._batch import FLAG_IDLE
from tests.conftest import require_bpf
from tests.integration._ebpf import PYENV_PYTHON

SOURCE = """
import json, os, sys, threading, time
fd = os.open("/dev/zero", os.O_RDONLY)
def spinner():
    x = 0
    while True:
        x += 1
def sleeper():
    while True:
        time.sleep(0.2)
def reader():
    while True:
        os.read(fd, 1)
        time.sleep(0.002)
for f in (spinner, sleeper, reader):
    threading.Thread(target=f, name=f.__name__, daemon=True).start()
time.sleep(0.2)
print("READY", json.dumps({t.name: t.native_id for t in threading.enumerate()}), flush=True)
def late():
    while True:
        time.sleep(0.2)
for line in sys.stdin:  # each line starts one more sleeping thread, named after it
    t = threading.Thread(target=late, name=line.strip(), daemon=True)
    t.start()
    print("STARTED", t.native_id, flush=True)
"""


class _NamespacedTarget:
    """The target, its host pid, and each thread's tid inside (ns) and on the host."""

    def __init__(self) -> None:
        self.unshare = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                PYENV_PYTHON,
                "-u",
                "-c",
                textwrap.dedent(SOURCE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.unshare.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        self.ns_tids: Dict[str, int] = json.loads(line.split(" ", 1)[1])
        with open(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children") as f:
            (self.pid,) = map(int, f.read().split())
        host_of_ns = self.host_of_ns()
        self.host_tids = {name: host_of_ns[ns] for name, ns in self.ns_tids.items()}

    def host_of_ns(self) -> Dict[int, int]:
        """Namespace tid -> host tid of every thread, from the NSpid: lines."""
        out = {}
        for task in os.listdir(f"/proc/{self.pid}/task"):
            status = Path(f"/proc/{self.pid}/task/{task}/status").read_text()
            ids = [int(x) for x in status.split("NSpid:")[1].splitlines()[0].split()]
            assert ids[0] == int(task) and len(ids) == 2, ids
            out[ids[-1]] = ids[0]
        return out

    def start_thread(self, name: str) -> int:
        """Starts one more sleeping thread; returns its host tid."""
        self.unshare.stdin.write(name + "\n")  # type: ignore[union-attr]
        self.unshare.stdin.flush()  # type: ignore[union-attr]
        line = self.unshare.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("STARTED"), line
        return self.host_of_ns()[int(line.split()[1])]

    def kill(self) -> None:
        self.unshare.kill()
        self.unshare.wait(timeout=10)


@pytest.fixture(scope="module")
def target() -> Iterator[_NamespacedTarget]:
    t = _NamespacedTarget()
    try:
        # The namespace really renumbers: otherwise this file tests nothing.
        assert t.ns_tids["MainThread"] == 1 and t.host_tids["MainThread"] == t.pid != 1
        yield t
    finally:
        t.kill()


def _idle_shares(batches: list, tids: Dict[str, int]) -> Dict[str, float]:
    tid = np.concatenate([b.tid for b in batches])
    flags = np.concatenate([b.flags for b in batches])
    out = {}
    for name, t in tids.items():
        mine = tid == t
        assert mine.sum() >= 30, (name, int(mine.sum()), sorted(set(tid.tolist())))
        out[name] = float(np.mean((flags[mine] & FLAG_IDLE) != 0))
    return out


def _sample(collectors: list, seconds: float) -> list:
    batches: list = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.25)
        for c in collectors:
            batches.append(c.drain())
    return batches


def test_samples_carry_host_tids_and_right_idle_flags_from_proc(
    target: _NamespacedTarget,
) -> None:
    from hostprof.collectors.python import PythonCollector

    # WHEN the namespaced target is sampled with /proc as the idle source
    py = PythonCollector.probe([target.pid], rate=200, idle=True, thread_states=False)
    assert py is not None
    try:
        py.start()
        batches = [b for b in _sample([py], 1.0) if b.collector == "python"]
        stats = py.targets[target.pid].proc.reader.stats()
    finally:
        py.close()
    # THEN every sample carries a host tid, named by its Python thread name
    tids = set(np.concatenate([b.tid for b in batches]).tolist())
    assert tids == set(target.host_of_ns().values()), (tids, target.host_tids)
    names: Dict[int, str] = {}
    for b in batches:
        names.update(b.thread_names)
    for name, host in target.host_tids.items():
        assert names[host] == name
    # AND the idle flags come from the right /proc entries: the spinner runs, the sleeper
    # and the main thread (blocked reading stdin) are idle
    shares = _idle_shares(batches, target.host_tids)
    print(shares, stats["os_reads"])
    assert shares["spinner"] < 0.35, shares
    assert shares["sleeper"] > 0.8 and shares["MainThread"] > 0.9, shares
    assert stats["os_reads"] > 0


def test_threads_started_while_sampling_are_mapped(target: _NamespacedTarget) -> None:
    from hostprof.collectors.python import PythonCollector

    py = PythonCollector.probe([target.pid], rate=200, idle=True, thread_states=False)
    assert py is not None
    try:
        py.start()
        time.sleep(0.3)
        # WHEN threads start while the sampler runs (a namespace tid it has not mapped yet)
        late = {target.start_thread(f"late{i}"): f"late{i}" for i in range(2)}
        time.sleep(0.3)
        late[target.start_thread("late2")] = "late2"
        batches = [b for b in _sample([py], 0.75) if b.collector == "python"]
    finally:
        py.close()
    # THEN their samples carry their host tids, their names, and the idle flag
    tid = np.concatenate([b.tid for b in batches])
    flags = np.concatenate([b.flags for b in batches])
    names: Dict[int, str] = {}
    for b in batches:
        names.update(b.thread_names)
    known = set(target.host_tids.values()) | set(target.host_of_ns().values())
    assert set(tid.tolist()) <= known, (set(tid.tolist()), known)
    for host, name in late.items():
        mine = tid == host
        assert mine.sum() >= 30, (name, int(mine.sum()))
        assert names[host] == name
        assert np.mean((flags[mine] & FLAG_IDLE) != 0) > 0.8, name


def test_dump_shows_host_tids_namespace_tids_and_os_states(target: _NamespacedTarget) -> None:
    hostprof = os.path.join(os.path.dirname(sys.executable), "hostprof")
    spinner_states = []
    for _ in range(3):
        res = subprocess.run(
            [hostprof, "dump", "--pid", str(target.pid), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        threads = {t["name"]: t for t in json.loads(res.stdout)["threads"]}
        # THEN tid is the host's, ns_tid what the program itself sees
        assert set(target.ns_tids) <= set(threads)
        host_of_ns = target.host_of_ns()
        for name, t in threads.items():
            assert t["tid"] == host_of_ns[t["ns_tid"]], (name, t)
        for name in target.ns_tids:
            t = threads[name]
            assert t["tid"] == target.host_tids[name], (name, t)
            assert t["ns_tid"] == target.ns_tids[name], (name, t)
        # AND the OS states are those of the right threads
        assert threads["sleeper"]["os_state"] == "sleeping", threads["sleeper"]
        assert threads["MainThread"]["os_state"] == "sleeping", threads["MainThread"]
        spinner_states.append(threads["spinner"]["os_state"])
        assert threads["spinner"]["frames"][-1]["function"] == "spinner"
    assert "running" in spinner_states, spinner_states
    # AND the text form shows both ids
    res = subprocess.run(
        [hostprof, "dump", "--pid", str(target.pid)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    host, ns = target.host_tids["sleeper"], target.ns_tids["sleeper"]
    assert f"Thread {host} (tid {ns} in its PID namespace) 'sleeper' (sleeping)" in res.stdout


def test_record_charges_syscalls_and_blocked_time_to_python_functions(
    target: _NamespacedTarget, tmp_path: Path
) -> None:
    require_bpf()
    from hostprof.io import read_profile

    out = tmp_path / "ns.pprof"
    hostprof = os.path.join(os.path.dirname(sys.executable), "hostprof")
    # WHEN the namespaced target is recorded with the syscalls and offcpu collectors
    res = subprocess.run(
        [
            hostprof,
            "record",
            "--pid",
            str(target.pid),
            "--duration",
            "2",
            "--collect",
            "python,syscalls,offcpu",
            "--threads",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    profile = read_profile(out.read_bytes())

    def by_function(sample_type: str, leaf: str = "") -> Dict[str, int]:
        i = profile.sample_type_index(sample_type)
        found: Dict[str, int] = {}
        for frames, _labels, values in profile.items():
            if values[i] and frames[-1].function.startswith(leaf):
                py = [f.function for f in frames if f.kind == 0]
                key = py[-1] if py else ""
                found[key] = found.get(key, 0) + values[i]
        return found

    # THEN its reads are charged to `reader` and its blocked time to `sleeper`: the eBPF
    # rows (host tids) joined the Python samples (rows at the recording's edges may find
    # no Python sample close enough: they keep no Python frame)
    reads = by_function("syscalls:count", "<syscall:read>")
    print(reads)
    assert set(reads) <= {"reader", ""}, reads
    assert reads.get("reader", 0) > 0.7 * sum(reads.values()), reads
    blocked = by_function("offcpu:nanoseconds")
    print({k: v / 1e9 for k, v in blocked.items()})
    assert blocked.get("sleeper", 0) > 1.0e9, blocked
    assert blocked.get("", 0) < 0.5 * sum(blocked.values()), blocked
    # AND the thread roots name host tids
    roots = {frames[0].function for frames, _l, _v in profile.items()}
    assert f"<thread sleeper ({target.host_tids['sleeper']})>" in roots, roots
    # AND the sampler took the idle states from the sched_switch table
    line = [x for x in res.stderr.splitlines() if "idle states from sched_switch" in x]
    assert line and int(line[0].split(":")[-1].split()[0]) > 0, res.stderr


def test_thread_state_table_serves_namespaced_targets(target: _NamespacedTarget) -> None:
    require_bpf()
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.python import PythonCollector

    # GIVEN an offcpu collector running (its table is keyed by host tids)
    off = OffCpuCollector.probe([target.pid])
    assert off is not None
    py = None
    try:
        off.start()
        py = PythonCollector.probe([target.pid], rate=200, idle=True)
        assert py is not None
        # WHEN the namespaced target is sampled
        py.start()
        batches = [b for b in _sample([py], 1.0) if b.collector == "python"]
        stats = py.targets[target.pid].proc.reader.stats()
        n_threads = len(os.listdir(f"/proc/{target.pid}/task"))
    finally:
        if py is not None:
            py.close()
        off.stop()
    # THEN its states come from the table (a /proc read at most per thread it has not
    # seen switch yet), and the idle flags are right
    print(stats["state_hits"], stats["os_reads"])
    assert stats["state_hits"] > 100
    assert stats["os_reads"] <= 2 * n_threads, stats
    shares = _idle_shares(batches, target.host_tids)
    print(shares)
    assert shares["spinner"] < 0.35, shares
    assert shares["sleeper"] > 0.8 and shares["MainThread"] > 0.9, shares


OTHER_PYTHONS = {
    # 3.9 reads the tid from glibc's struct pthread (no native_thread_id); 3.13t has no GIL
    # holder, so every thread's state is read.
    "3.9": "/var/cache/hostprof/pythons/bin/python3.9",
    "3.13t": "/var/cache/hostprof/pythons/bin/python3.13t",
}

OTHER_SOURCE = """
import threading, time
def sleeper():
    while True:
        time.sleep(0.2)
def spinner():
    while True:
        pass
for f in (sleeper, spinner):
    threading.Thread(target=f, name=f.__name__, daemon=True).start()
time.sleep(0.2)
print("READY", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("version", sorted(OTHER_PYTHONS))
def test_dump_maps_tids_on_other_interpreters(version: str) -> None:
    python = OTHER_PYTHONS[version]
    if not os.path.exists(python):
        pytest.skip(f"no {python} (tools/make-pythons.sh builds it)")
    # GIVEN a chroot interpreter in its own PID namespace
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", python, "-u", "-c", OTHER_SOURCE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = unshare.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        with open(f"/proc/{unshare.pid}/task/{unshare.pid}/children") as f:
            (pid,) = map(int, f.read().split())
        host_of_ns = {}
        for task in os.listdir(f"/proc/{pid}/task"):
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
            ids = [int(x) for x in status.split("NSpid:")[1].splitlines()[0].split()]
            host_of_ns[ids[-1]] = ids[0]
        hostprof = os.path.join(os.path.dirname(sys.executable), "hostprof")
        # WHEN it is dumped
        res = subprocess.run(
            [hostprof, "dump", "--pid", str(pid), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        unshare.kill()
        unshare.wait(timeout=10)
    assert res.returncode == 0, res.stderr
    threads = {t["name"]: t for t in json.loads(res.stdout)["threads"]}
    # THEN every thread shows its host tid and namespace tid, and the right OS state
    assert set(threads) == {"MainThread", "sleeper", "spinner"}, threads
    assert threads["MainThread"]["ns_tid"] == 1 and threads["MainThread"]["tid"] == pid
    for t in threads.values():
        assert t["tid"] == host_of_ns[t["ns_tid"]] != t["ns_tid"], t
    assert threads["sleeper"]["os_state"] == "sleeping"
    assert threads["MainThread"]["os_state"] == "sleeping"
