"""Feature probes pass as root and every BPF program compiles and loads on this kernel."""

from __future__ import annotations

import os

from tests.conftest import require_bpf


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
