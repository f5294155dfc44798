"""Per-thread OS state from /proc: scheduler state, the syscall a thread is blocked in, CPU ticks.

This is what tells a deadlock (sleeping in ``futex``, no CPU used between two dumps) from a
busy loop (running, CPU ticks rising) when the Python stack is the same in both dumps. Reading
/proc never stops the target.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Dict
from typing import Optional

STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-wait",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing-stop",
    "X": "dead",
    "I": "idle",
    "P": "parked",
    "W": "waking",
}
"""Single-letter /proc states, spelled out."""

# x86-64 syscall numbers of the calls a thread is usually found blocked in (facts from the
# kernel's syscall_64.tbl). Other numbers are shown as "syscall N".
_X86_64 = {
    0: "read",
    1: "write",
    7: "poll",
    17: "pread64",
    18: "pwrite64",
    23: "select",
    24: "sched_yield",
    34: "pause",
    35: "nanosleep",
    42: "connect",
    43: "accept",
    44: "sendto",
    45: "recvfrom",
    46: "sendmsg",
    47: "recvmsg",
    61: "wait4",
    72: "fcntl",
    74: "fsync",
    128: "rt_sigtimedwait",
    202: "futex",
    230: "clock_nanosleep",
    232: "epoll_wait",
    247: "waitid",
    270: "pselect6",
    271: "ppoll",
    281: "epoll_pwait",
    288: "accept4",
    299: "recvmmsg",
    441: "epoll_pwait2",
    449: "futex_waitv",
}
_SYSCALL_NAMES = _X86_64 if platform.machine() == "x86_64" else {}

LOCK_SYSCALLS = frozenset({"futex", "futex_waitv"})
"""Syscalls that mean "waiting for a lock or condition" (also the GIL wait)."""
SLEEP_SYSCALLS = frozenset(
    {"nanosleep", "clock_nanosleep", "pause", "select(sleep)", "poll(sleep)"}
)
"""Syscalls that mean an intentional sleep. ``select``/``poll`` with no file descriptors is a
sleep too (Python 3.9's ``time.sleep`` is a bare ``select``); it is named ``select(sleep)``."""

# Syscalls whose nfds argument (0-based position) tells a bare sleep from real I/O waiting.
_NFDS_ARG = {"select": 0, "pselect6": 0, "poll": 1, "ppoll": 1}
IO_SYSCALLS = frozenset(
    {
        "read",
        "write",
        "poll",
        "select",
        "pselect6",
        "ppoll",
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "accept",
        "accept4",
        "recvfrom",
        "recvmsg",
        "recvmmsg",
        "connect",
        "sendto",
        "sendmsg",
        "pread64",
        "pwrite64",
        "fsync",
    }
)
"""Syscalls that mean waiting for I/O."""


def syscall_name(nr: int) -> str:
    """The name of a syscall number on this architecture, or ``syscall N``."""
    return _SYSCALL_NAMES.get(nr, f"syscall {nr}")


@dataclasses.dataclass
class ThreadOsState:
    """What the kernel says about one thread at one instant."""

    tid: int
    """OS thread id."""
    state: str
    """Spelled-out scheduler state (``running``, ``sleeping``, ``disk-wait``...)."""
    comm: str = ""
    """The kernel's thread name (``/proc/PID/task/TID/comm``, 15 characters)."""
    syscall: Optional[str] = None
    """The syscall the thread is blocked in, when it is in one (root only)."""
    wchan: Optional[str] = None
    """The kernel function it sleeps in, where the kernel shows it."""
    cpu_ticks: int = 0
    """utime + stime in clock ticks: compare two readings to see if the thread ran."""

    def to_json(self) -> Dict[str, object]:
        """Plain dict for snapshot.json."""
        return dataclasses.asdict(self)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_thread_state(pid: int, tid: int, detail: bool = True) -> Optional[ThreadOsState]:
    """Reads one thread's state; None when the thread (or process) is gone.

    With ``detail=False`` only ``stat`` and ``syscall`` are read (two reads, not four): what
    a dump needs for 1,000 threads.
    """
    base = f"/proc/{pid}/task/{tid}"
    stat = _read(f"{base}/stat")
    if not stat:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    letter = fields[0] if fields else "?"
    try:
        ticks = int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        ticks = 0
    out = ThreadOsState(tid=tid, state=STATES.get(letter, letter), cpu_ticks=ticks)
    # comm is in stat already, between the first '(' and the last ')'.
    out.comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    sc = _read(f"{base}/syscall")
    if sc:
        parts = sc.split()
        first = parts[0]
        if first.lstrip("-").isdigit() and int(first) >= 0:
            out.syscall = syscall_name(int(first))
            pos = _NFDS_ARG.get(out.syscall)
            if pos is not None and len(parts) > pos + 1 and int(parts[pos + 1], 16) == 0:
                out.syscall = "poll(sleep)" if "poll" in out.syscall else "select(sleep)"
    if detail:
        wchan = (_read(f"{base}/wchan") or "").strip()
        if wchan and wchan != "0":
            out.wchan = wchan
    return out


def read_process_states(pid: int, detail: bool = False) -> Dict[int, ThreadOsState]:
    """Every thread's state of one process, by tid (empty when the process is gone)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return {}
    out = {}
    for tid in tids:
        st = read_thread_state(pid, tid, detail)
        if st is not None:
            out[tid] = st
    return out
