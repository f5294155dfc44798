"""One-line errors with hints for targets the sampling core cannot read."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import target

from hostprof._errors import EXIT_PERMISSION
from hostprof._errors import EXIT_TARGET
from hostprof._errors import ProcessGoneError
from hostprof._errors import TargetError
from hostprof._errors import UnsupportedPythonError
from hostprof.elf import ElfFile
from hostprof.native import pyoffsets
from hostprof.native.pyprocess import attach

HOSTPROF = str(Path(sys.executable).parent / "hostprof")
PY313 = Path("/var/cache/hostprof/pythons/trixie/usr/bin/python3.13")
OLD_PYTHON = Path.home() / ".pyenv/versions/3.8.18/bin/python3.8"
SLEEPER = "import time\nprint('READY', flush=True)\ntime.sleep(60)\n"


def run_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess:
    cmd = [HOSTPROF, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert lines[0].startswith("hostprof: error: "), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_such_pid() -> None:
    pid = 4_000_000  # above pid_max's default range
    with pytest.raises(ProcessGoneError):
        attach(pid)
    assert_one_line_error(run_cli("dump", "--pid", str(pid)), EXIT_TARGET, "no process")
    assert_one_line_error(run_cli("record", "--pid", str(pid), "-d", "1"), EXIT_TARGET)


def test_not_a_python_process() -> None:
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            with pytest.raises(TargetError, match="not a Python process"):
                attach(sleeper.pid)
            proc = run_cli("dump", "--pid", str(sleeper.pid))
            assert_one_line_error(proc, EXIT_TARGET, "not a Python process", "(sleep)")
        finally:
            sleeper.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_names_ptrace() -> None:
    with target(SLEEPER) as t:
        proc = run_cli("dump", "--pid", str(t.pid), user=65534)
        assert_one_line_error(
            proc, EXIT_PERMISSION, "permission denied", "CAP_SYS_PTRACE", "ptrace_scope"
        )


@pytest.mark.skipif(not OLD_PYTHON.exists(), reason="pyenv 3.8 is not installed")
def test_unsupported_old_version_is_named() -> None:
    with target(SLEEPER, str(OLD_PYTHON)) as t:
        with pytest.raises(UnsupportedPythonError, match=r"3\.8"):
            attach(t.pid)
        assert_one_line_error(run_cli("dump", "--pid", str(t.pid)), EXIT_TARGET, "3.8")


@pytest.mark.skipif(not PY313.exists(), reason="the 3.13 chroot interpreter is not built")
def test_unknown_future_version_raises() -> None:
    """A _Py_DebugOffsets of a minor version hostprof does not know must raise, never guess."""
    # GIVEN a real 3.13 debug-offsets block relabelled as 3.99
    with ElfFile.open(str(PY313)) as elf:
        data = elf.read_vaddr(elf.symbol_address("_PyRuntime"), 4096)
    assert data is not None and data[:8] == b"xdebugpy"
    version, ft, offsets = pyoffsets.from_debug_offsets(data, 0)
    assert version >> 16 & 0xFF == 13 and not ft and offsets["ts_next"] == 8
    future = data[:8] + struct.pack("<Q", 0x036300F0) + data[16:]
    # THEN parsing fails with a message naming the version
    with pytest.raises(pyoffsets.UnsupportedVersion, match=r"3\.99"):
        pyoffsets.from_debug_offsets(future, 0)


def test_process_exiting_while_attaching_or_reading() -> None:
    """A target that exits gives ProcessGoneError from attach or from reading, never a crash."""
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.05)"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                p = attach(proc.pid)
            except (ProcessGoneError, TargetError):
                break
            try:
                p.stacks()
            except (ProcessGoneError, TargetError):
                break
            finally:
                p.close()
        proc.wait()
    with pytest.raises(ProcessGoneError, match=r"exited|no process"):
        attach(proc.pid)
