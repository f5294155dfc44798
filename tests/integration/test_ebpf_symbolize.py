"""The symbolizer against real binaries: this process's libc, libpython, and the kernel."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from hostprof import symbolize


def _libc_addresses() -> dict:
    libc = ctypes.CDLL("libc.so.6")
    return {
        name: ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        for name in ("getpid", "ioctl", "qsort")
    }


@pytest.mark.parametrize("query", [True, False], ids=["procmap_query", "maps_file"])
def test_user_addresses_resolve_to_their_functions(query: bool) -> None:
    if query and not symbolize.procmap_query_works():
        pytest.skip("this kernel has no PROCMAP_QUERY (Linux 6.11+)")
    saved = symbolize._PROCMAP_QUERY_OK
    symbolize._PROCMAP_QUERY_OK = query
    try:
        sym = symbolize.Symbolizer()
        addrs = _libc_addresses()
        # GIVEN function entry addresses (leaf frames) and one address in no mapping
        frames = sym.user_frames(
            os.getpid(), [*addrs.values(), 8], callers=[False] * (len(addrs) + 1)
        )
    finally:
        symbolize._PROCMAP_QUERY_OK = saved
    # THEN each resolves to its libc symbol (glibc may name an alias), the object is libc,
    # and the unmapped address is marked for dropping
    for (name, _), frame in zip(addrs.items(), frames):
        assert name in frame.function, (name, frame)
        assert frame.file.startswith("libc.so")
    assert frames[-1] is symbolize.NOT_MAPPED
    assert sym.unknown == 0


def test_kernel_addresses_resolve_through_kallsyms() -> None:
    if os.geteuid() != 0:
        pytest.skip("kallsyms addresses are hidden from non-root")
    wanted = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if name in ("do_syscall_64", "schedule") and kind in "tT":
                wanted[name] = int(addr, 16)
    ks = symbolize.KernelSymbols()
    names = ks.lookup_many(np.array([a + 1 for a in wanted.values()], dtype=np.uint64))
    assert names == list(wanted)
