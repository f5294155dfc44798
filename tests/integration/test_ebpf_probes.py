"""Feature probes: missing capabilities give one-line errors; with them, every program loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require_bpf


def test_missing_capabilities_give_a_one_line_error() -> None:
    require_bpf()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # GIVEN a process whose capability bounding set lacks CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN
    code = (
        "from hostprof.collectors.cpu import CpuCollector\n"
        "from hostprof._errors import PermissionDeniedError\n"
        "try:\n    CpuCollector.probe(None)\nexcept PermissionDeniedError as e:\n"
        "    print('ERR', e.message); print('HINT', e.hint)\n"
    )
    res = subprocess.run(
        [setpriv, "--bounding-set", "-bpf,-perfmon,-sys_admin", sys.executable, "-c", code],
        capture_output=True,
        text=True,
    )
    # WHEN the cpu collector is probed THEN one line names what is missing, no traceback
    errs = [line for line in res.stdout.splitlines() if line.startswith("ERR")]
    assert errs, res.stdout + res.stderr
    assert "CAP_BPF" in errs[0] and "CAP_PERFMON" in errs[0]
    assert "Traceback" not in res.stderr
    # AND the CLI exits with the permission code and a hint
    cli = subprocess.run(
        [
            setpriv,
            "--bounding-set",
            "-bpf,-perfmon,-sys_admin",
            os.path.join(os.path.dirname(sys.executable), "hostprof"),
            "record",
            "--all",
            "--collect",
            "cpu",
            "--duration",
            "1",
            "-o",
            os.devnull,
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 4, cli.stderr
    assert "CAP_BPF" in cli.stderr and "Traceback" not in cli.stderr


def test_probes_pass_as_root_and_compile_every_program() -> None:
    require_bpf()
    from hostprof.collectors import _kernel
    from hostprof.collectors.cpu import CpuCollector
    from hostprof.collectors.offcpu import OffCpuCollector
    from hostprof.collectors.syscalls import SyscallsCollector

    assert _kernel.bpf_unavailable_reason() is None
    for cls in (CpuCollector, OffCpuCollector, SyscallsCollector):
        c = cls.probe([os.getpid() + 1_000_000])  # a pid that matches nothing
        c.start()
        try:
            assert c.stats()["compile_s"] > 0
            assert len(c.drain()) == 0
        finally:
            c.stop()
