"""The cpu collector's bulk paths against real things: stack maps read and swept in one C loop
(hostprof.native._bpfmaps), PROCMAP_QUERY over sorted addresses, and one symbolizer call
resolving the stacks of several live processes."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from hostprof import procmaps
from hostprof import symbolize
from hostprof.native import _bpfmaps
from tests.conftest import require_bpf

BUSY = """
import sys, zlib
data = bytes(range(256)) * 64
print("READY", flush=True)
while True:
    zlib.compress(data, 6)
"""


def _libc_start(pid: int) -> int:
    """Start of libc's executable mapping in a process."""
    for m in procmaps.read_maps(pid):
        if m.executable and m.basename.startswith("libc.so"):
            return m.start
    raise AssertionError(f"no libc in {pid}")


def _libc_functions() -> dict:
    libc = ctypes.CDLL("libc.so.6")
    return {n: ctypes.cast(getattr(libc, n), ctypes.c_void_p).value for n in ("getpid", "qsort")}


def test_procmap_find_answers_sorted_addresses_by_mapping_and_gap() -> None:
    if not symbolize.procmap_query_works():
        pytest.skip("this kernel has no PROCMAP_QUERY (Linux 6.11+)")
    # GIVEN addresses in libc, in no mapping (below everything, and between mappings)
    funcs = _libc_functions()
    maps = [m for m in procmaps.read_maps(os.getpid()) if m.executable]
    gap = next(a.end for a, b in zip(maps, maps[1:]) if b.start > a.end)  # first byte of a gap
    addrs = np.array(sorted([8, *funcs.values(), gap]), dtype=np.uint64)
    fd = os.open(f"/proc/{os.getpid()}/maps", os.O_RDONLY)
    try:
        # WHEN they are looked up in one call
        which, vmas, gaps = _bpfmaps.procmap_find(fd, addrs)
    finally:
        os.close(fd)
    # THEN each address maps to the executable mapping /proc/PID/maps lists for it, the two
    # libc functions share one found mapping, and the others are in none, inside a reported
    # gap that holds no executable mapping
    for lo, hi in gaps.tolist():
        assert not [m for m in maps if m.start < hi and lo < m.end], (hex(lo), hex(hi))
    for a, w in zip(addrs.tolist(), which.tolist()):
        truth = [m for m in maps if m.start <= a < m.end]
        if not truth:
            assert w == -1, hex(a)
            assert any(lo <= a < hi for lo, hi in gaps.tolist()), hex(a)
            continue
        start, end, offset, inode, _flags, _maj, _min, name, build_id = vmas[w]
        assert (start, end, offset, inode, name) == (
            truth[0].start,
            truth[0].end,
            truth[0].offset,
            truth[0].inode,
            truth[0].path,
        )
        assert build_id and len(build_id) == 40  # Debian's libc has a GNU build-id (SHA-1)
    assert len(vmas) == 1


def test_user_frames_of_several_processes_resolve_in_one_call() -> None:
    # GIVEN two live processes (this one and a child), and libc function addresses in each
    child = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        funcs = _libc_functions()
        mine = _libc_start(os.getpid())
        theirs = _libc_start(child.pid)
        names = list(funcs) * 2
        addrs = [*funcs.values(), *(a - mine + theirs for a in funcs.values())]
        pids = [os.getpid()] * len(funcs) + [child.pid] * len(funcs)
        # interleaved, as stacks of a drain come
        order = [0, 2, 1, 3]
        sym = symbolize.Symbolizer()
        # WHEN they are resolved in one call, twice (the second from the per-process cache)
        first = sym.user_frames_multi(
            np.array([pids[i] for i in order]),
            np.array([addrs[i] for i in order], dtype=np.uint64),
            np.zeros(len(order), dtype=bool),
        )
        again = sym.user_frames_multi(
            np.array([pids[i] for i in order]),
            np.array([addrs[i] for i in order], dtype=np.uint64),
            np.zeros(len(order), dtype=bool),
        )
    finally:
        child.kill()
        child.wait()
    # THEN each is its libc function in its own process (glibc may name an alias), and the
    # cached answers are the same frame objects
    for i, frame in zip(order, first):
        assert names[i] in frame.function, (names[i], frame)
        assert frame.file.startswith("libc.so")
    assert all(a is b for a, b in zip(first, again))
    assert sym.unknown == 0


def test_stack_map_reads_and_sweeps_in_bulk() -> None:
    require_bpf()
    from hostprof.collectors import _ebpf
    from hostprof.collectors.cpu import CpuCollector

    child = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    c = CpuCollector.probe([child.pid], frequency=499)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        c.start()
        time.sleep(0.5)
        child.kill()  # the only wanted process: no sample changes the maps from here on
        child.wait()
        # GIVEN the stack ids a real cpu program recorded for a busy process
        keys, _counts = _ebpf.drain_arrays(c._bpf["counts"])
        table = c._bpf["stacks"]
        ids = sorted({int(s) for s in keys["ustack"].tolist() if s >= 0})
        assert ids
        present = {int(k.value) for k in table}
        missing = next(i for i in range(c.stack_entries) if i not in present)
        # WHEN they are read in one C loop, with an id that is not in the map
        addrs, lens = _bpfmaps.read_stacks(table.map_fd, [*ids, missing], 127)
        # THEN each stack equals bcc's own lookup, zero padding cut; the absent id is -1
        assert lens.tolist()[-1] == -1
        pos = 0
        for sid, n in zip(ids, lens.tolist()):
            truth = [a for a in table[ctypes.c_int(sid)].ip if a]
            assert n == len(truth) > 0
            assert addrs[pos : pos + n].tolist() == truth
            pos += n
        # WHEN they are deleted in one call, THEN bcc finds none of them any more
        assert _bpfmaps.delete_ids(table.map_fd, ids) == len(ids)
        assert not {int(k.value) for k in table} & set(ids)
        # and the counters read in C are bcc's
        stats = _bpfmaps.read_u64_array(c._bpf["hp_stats"].map_fd, 4).tolist()
        assert stats == [int(c._bpf["hp_stats"][ctypes.c_int(i)].value) for i in range(4)]
        assert stats[3] >= len(ids)  # events
    finally:
        c.stop()
        child.kill()
        child.wait()


def test_frame_ids_start_over_past_their_limit() -> None:
    # GIVEN libc function addresses of this process resolved to frame ids
    funcs = _libc_functions()
    sym = symbolize.Symbolizer()
    sym.ID_LIMIT = 1  # type: ignore[misc]
    pids = np.full(len(funcs), os.getpid())
    addrs = np.array(list(funcs.values()), dtype=np.uint64)
    leaf = np.zeros(len(funcs), dtype=bool)
    first = sym.frames_of(sym.user_ids_multi(pids, addrs, leaf).tolist())
    generation = sym.id_generation
    # WHEN a drain starts with more ids handed out than the limit
    sym.new_epoch()
    # THEN the id tables start over (a new generation), and the same addresses resolve to
    # the same frames under new ids
    assert sym.id_generation == generation + 1
    ids = sym.user_ids_multi(pids, addrs, leaf)
    assert sorted(ids.tolist()) == list(range(len(funcs)))  # numbered from 0 again
    assert sym.frames_of(ids.tolist()) == first
    for name, frame in zip(funcs, first):
        assert name in frame.function
