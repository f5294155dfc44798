"""Kernel feature probes for the eBPF collectors, each failing with a one-line error.

The checks run before any BPF program is compiled, so a missing privilege or package is
reported as what it is (and what to do), not as a bcc traceback. ``bcc`` is imported only
here and in the collectors, lazily: the rest of hostprof works on hosts without it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
from pathlib import Path
from typing import Any
from typing import Iterable
from typing import Optional

from hostprof._errors import DependencyError
from hostprof._errors import PermissionDeniedError

# Capability numbers from <linux/capability.h> (UAPI, stable).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
SETUP_HINT = "run scripts/setup.sh (installs Debian's bcc and links it into the venv)"


def effective_caps() -> int:
    """The effective capability mask of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    """Raises PermissionDeniedError unless this process may load tracing BPF programs.

    Capabilities are checked even for uid 0: root in a container, or under a reduced bounding
    set, may lack them, and bcc would then fail with a bare EPERM.
    """
    caps = effective_caps()
    if caps & (1 << CAP_SYS_ADMIN):
        return
    missing = [
        name
        for name, bit in (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON))
        if not caps & (1 << bit)
    ]
    if missing:
        who = "this root process lacks" if os.geteuid() == 0 else "not root and missing"
        raise PermissionDeniedError(
            f"eBPF collectors need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); "
            f"{who} {', '.join(missing)}",
            "run as root with full capabilities, or: sudo setcap cap_bpf,cap_perfmon+ep <python>",
        )


@functools.lru_cache(maxsize=1)
def import_bcc() -> Any:
    """Imports Debian's bcc module, or raises DependencyError naming the setup command."""
    try:
        import bcc
    except ImportError as exc:
        raise DependencyError(f"bcc is not installed ({exc})", SETUP_HINT) from None
    except OSError as exc:  # libbcc.so.0 missing or broken
        raise DependencyError(f"bcc's library failed to load ({exc})", SETUP_HINT) from None
    if not hasattr(bcc, "BPF"):
        # PyPI's unrelated "bcc" package has the same import name.
        raise DependencyError(
            f"the 'bcc' module at {getattr(bcc, '__file__', '?')} is not the BPF compiler "
            "collection",
            "pip uninstall bcc; " + SETUP_HINT,
        )
    return bcc


def tracefs() -> Path:
    """The mounted tracefs, mounting it (as bcc 0.26 needs) when root and it is not."""
    for p in TRACEFS_CANDIDATES:
        if (p / "events").is_dir():
            return p
    if os.geteuid() == 0:
        # bcc reads tracepoint formats from tracefs; a fresh container often lacks the mounts.
        for fstype, where in (("debugfs", "/sys/kernel/debug"), ("tracefs", "/sys/kernel/tracing")):
            if os.path.isdir(where) and not os.path.ismount(where):
                subprocess.run(
                    ["mount", "-t", fstype, fstype, where],
                    check=False,
                    capture_output=True,
                )
        for p in TRACEFS_CANDIDATES:
            if (p / "events").is_dir():
                return p
    raise DependencyError(
        "tracefs is not mounted (no /sys/kernel/tracing/events)",
        "mount -t tracefs tracefs /sys/kernel/tracing",
    )


def check_tracepoints(names: Iterable[str]) -> None:
    """Raises DependencyError for the first ``category:event`` tracepoint that is missing."""
    root = tracefs()
    for name in names:
        cat, _, event = name.partition(":")
        if not (root / "events" / cat / event / "format").exists():
            raise DependencyError(
                f"the kernel has no tracepoint {name}",
                "hostprof needs CONFIG_FTRACE_SYSCALLS and scheduler tracepoints",
            )


class _PerfEventAttr(ctypes.Structure):
    # The first fields of struct perf_event_attr (UAPI); the kernel accepts a short struct
    # when ``size`` says so (PERF_ATTR_SIZE_VER0 = 64).
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_freq", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
    ]


PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
_SYS_PERF_EVENT_OPEN = 298  # x86-64


def check_perf_cpu_clock() -> None:
    """Raises unless a software CPU-clock perf event can be opened (the cpu collector's timer)."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _PerfEventAttr()
    attr.type = PERF_TYPE_SOFTWARE
    attr.size = ctypes.sizeof(_PerfEventAttr)
    attr.config = PERF_COUNT_SW_CPU_CLOCK
    attr.sample_freq = 99
    attr.flags = 1 | (1 << 10)  # disabled, freq
    fd = libc.syscall(_SYS_PERF_EVENT_OPEN, ctypes.byref(attr), -1, 0, -1, 0)
    if fd < 0:
        err = ctypes.get_errno()
        if err in (1, 13):  # EPERM, EACCES
            raise PermissionDeniedError(
                f"perf_event_open(cpu-clock) was refused ({os.strerror(err)})",
                "run as root, or lower /proc/sys/kernel/perf_event_paranoid",
            )
        raise DependencyError(
            f"the kernel cannot open a software cpu-clock perf event ({os.strerror(err)})",
            "hostprof's cpu collector needs CONFIG_PERF_EVENTS",
        )
    os.close(fd)


def check_all(tracepoints: Iterable[str] = (), perf_clock: bool = False) -> Any:
    """Runs the probes a collector needs, then returns the bcc module."""
    check_privileges()
    bcc = import_bcc()
    tps = list(tracepoints)
    if tps:
        check_tracepoints(tps)
    else:
        tracefs()  # bcc needs it for uprobes and USDT as well
    if perf_clock:
        check_perf_cpu_clock()
    return bcc


def bpf_unavailable_reason() -> Optional[str]:
    """Why no eBPF collector can run here (one line), or None when they can."""
    try:
        check_all()
    except (PermissionDeniedError, DependencyError) as exc:
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return None
