"""The small known profile the flamegraph encoder tests (unit and browser) draw.

cpu total 1300: work_hard 1100 (memcpy 100 below it), idle_wait 150 (a kernel frame below),
gc 50; two threads; one frame of each kind.
"""

from __future__ import annotations

from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile

MAIN = Frame("<module>", "app.py", 1)
RUN = Frame("run", "app.py", 10)
WORK = Frame("work_hard", "app.py", 20)
IDLE = Frame("idle_wait", "app.py", 30)
MEMCPY = Frame("memcpy", "libc.so.6", 0, FrameKind.NATIVE)
SYSCALL = Frame("do_syscall_64", "", 0, FrameKind.KERNEL)
GC = Frame.synthetic("<gc gen=2>")
T1 = {"thread_id": "100", "thread_name": "MainThread"}
T2 = {"thread_id": "101", "thread_name": "worker-1"}


def sample_profile(prefix_stack: bool = False) -> Profile:
    """The profile; ``prefix_stack`` adds a sample on a stack that is a prefix of others."""
    p = Profile([CPU_NS, SAMPLES], CPU_NS, 10_000_000)
    p.add([MAIN, RUN, WORK], [700, 70], T1)
    p.add([MAIN, RUN, WORK, MEMCPY], [100, 10], T1)
    p.add([MAIN, RUN, IDLE, SYSCALL], [150, 15], T2)
    p.add([MAIN, RUN, GC], [50, 5], T2)
    p.add([MAIN, RUN, WORK], [300, 30], T2)
    if prefix_stack:
        p.add([MAIN], [4, 1], T2)
    return p
