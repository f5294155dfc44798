"""ELF and /proc/PID/maps readers against real binaries and processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostprof.elf import ElfError
from hostprof.elf import ElfFile
from hostprof.procmaps import open_mapped_file
from hostprof.procmaps import read_maps

LIBPYTHON = Path(os.path.realpath(sys.executable)).parent.parent / "lib/libpython3.11.so.1.0"
DEBIAN_PY = Path("/usr/bin/python3.11")
CHROOT_PY = Path("/var/cache/hostprof/pythons/bullseye/usr/bin/python3.9")


def _nm_address(path: Path, name: str) -> int:
    out = subprocess.run(["readelf", "-Ws", str(path)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[7] == name and parts[6] != "UND":
            return int(parts[1], 16)
    raise AssertionError(f"{name} not in readelf output")


@pytest.mark.parametrize("path", [LIBPYTHON, DEBIAN_PY, CHROOT_PY], ids=lambda p: p.name)
def test_symbols_match_readelf(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    with ElfFile.open(str(path)) as elf:
        for name in ("_PyRuntime", "PyCode_Type", "PyEval_EvalCode"):
            assert elf.symbol_address(name) == _nm_address(path, name)
        assert elf.build_id() and len(elf.build_id() or "") >= 40
        table = elf.function_table()
        assert len(table) > 1000
        assert np.all(np.diff(table.addresses.astype(np.int64)) > 0)
        addr = elf.symbol_address("PyEval_EvalCode")
        assert addr is not None
        assert table.lookup(addr + 3) == ("PyEval_EvalCode", 3)
        idx = table.lookup_many(np.array([addr, 1], dtype=np.uint64))
        assert table.names[int(idx[0])] == "PyEval_EvalCode" and idx[1] == -1


def test_static_debian_python_has_runtime_in_dynsym_only() -> None:
    if not DEBIAN_PY.exists():
        pytest.skip("Debian's python3.11 is not installed")
    with ElfFile.open(str(DEBIAN_PY)) as elf:
        assert elf.section(".symtab") is None  # stripped
        assert elf.section(".dynsym") is not None
        assert not elf.is_pie_or_shared  # non-PIE at 0x400000
        assert elf.symbol_address("_PyRuntime") is not None


def test_not_elf_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"#!/bin/sh\necho hi\n" * 10)
    with pytest.raises(ElfError, match="not an ELF"):
        ElfFile.open(str(p))


def test_maps_and_open_mapped_file_of_a_chroot_process() -> None:
    """A chroot process's maps show host paths; the inode check accepts the right file."""
    wrapper = Path("/var/cache/hostprof/pythons/bin/python3.9")
    if not wrapper.exists():
        pytest.skip("the 3.9 chroot interpreter is not built")
    proc = subprocess.Popen(
        [str(wrapper), "-c", "import time; print('R', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith(b"R")
        maps = read_maps(proc.pid)
        exe = next(m for m in maps if m.path.endswith("/python3.9") and m.offset == 0)
        assert exe.path.startswith("/var/cache/hostprof/pythons/bullseye/")
        with open_mapped_file(proc.pid, exe) as f:
            assert os.fstat(f.fileno()).st_ino == exe.inode
            assert f.read(4) == b"\x7fELF"
        libc = next(m for m in maps if "libc" in m.basename and m.offset == 0)
        with open_mapped_file(proc.pid, libc) as f:
            assert os.fstat(f.fileno()).st_ino == libc.inode
    finally:
        proc.kill()
        proc.wait()
