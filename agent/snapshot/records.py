"""The records a snapshot's stack dumps are made of (plain data, JSON-ready, no I/O)."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

LOCAL_REPR_CAP = 200
"""Characters kept of each local variable's repr (``--locals``)."""


def cap_repr(text: str, cap: int = LOCAL_REPR_CAP) -> str:
    """Caps a repr at ``cap`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= cap else text[: cap - 1] + "…"


@dataclasses.dataclass
class FrameRecord:
    """One frame of a dumped stack."""

    function: str
    """Python qualname, or native symbol."""
    file: str = ""
    """Source file (Python) or object file (native)."""
    line: int = 0
    """Line number (Python), 0 if unknown."""
    kind: str = "python"
    """``python``, ``native``, ``kernel`` or ``synthetic``."""
    locals: Optional[Dict[str, str]] = None
    """Local variable reprs, capped (only with ``--locals``)."""

    def key(self) -> Tuple[str, str, int, str]:
        """Identity for comparing stacks across dumps (locals excluded)."""
        return (self.function, self.file, self.line, self.kind)

    def to_json(self) -> Dict[str, Any]:
        """Plain dict; ``locals`` only when present."""
        out: Dict[str, Any] = {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "kind": self.kind,
        }
        if self.locals is not None:
            out["locals"] = self.locals
        return out


@dataclasses.dataclass
class ThreadRecord:
    """One thread in one dump."""

    tid: int
    """OS thread id (native id), the key threads are matched by across dumps."""
    name: str = ""
    """Python thread name (``threading``), else the kernel's comm."""
    frames: List[FrameRecord] = dataclasses.field(default_factory=list)
    """Stack, root (outermost caller) first, like :mod:`hostprof.model`."""
    holds_gil: Optional[bool] = None
    """Whether the thread held the GIL (None: the reader could not tell)."""
    in_gc: Optional[bool] = None
    """Whether the thread was running the cyclic GC (None: unknown)."""
    os_state: str = ""
    """Kernel scheduler state (``running``, ``sleeping``, ``disk-wait``...)."""
    syscall: Optional[str] = None
    """Syscall it was blocked in, when known."""
    wchan: Optional[str] = None
    """Kernel wait channel, when shown."""
    cpu_ticks: Optional[int] = None
    """utime+stime clock ticks at dump time."""
    native: List[FrameRecord] = dataclasses.field(default_factory=list)
    """Native/kernel frames seen for this thread by eBPF during the profile (root first)."""

    def stack_key(self) -> Tuple[Tuple[str, str, int, str], ...]:
        """Identity of the Python stack, for hang detection."""
        return tuple(f.key() for f in self.frames)

    def to_json(self) -> Dict[str, Any]:
        """Plain dict for snapshot.json."""
        out = {
            "tid": self.tid,
            "name": self.name,
            "holds_gil": self.holds_gil,
            "in_gc": self.in_gc,
            "os_state": self.os_state,
            "syscall": self.syscall,
            "wchan": self.wchan,
            "cpu_ticks": self.cpu_ticks,
            "frames": [f.to_json() for f in self.frames],
        }
        if self.native:
            out["native"] = [f.to_json() for f in self.native]
        return out


@dataclasses.dataclass
class ProcessDump:
    """All threads of one process at one instant."""

    pid: int
    """Process id."""
    taken_ns: int
    """Wall-clock time of the dump (ns since the epoch)."""
    source: str
    """What read the stacks (``hostprof``, ``py-spy``)."""
    threads: List[ThreadRecord] = dataclasses.field(default_factory=list)
    """Threads, in the reader's order."""
    python_version: str = ""
    """Interpreter version, where the reader knows it."""
    gc_collecting: Optional[bool] = None
    """Whether the interpreter was inside a GC collection (process-wide flag)."""
    notes: List[str] = dataclasses.field(default_factory=list)
    """Reader remarks (torn reads retried, fallbacks used)."""
    locals_source: Optional[str] = None
    """What read the locals (``hostprof``, ``py-spy``); None when none were read."""

    def thread(self, tid: int) -> Optional[ThreadRecord]:
        """The thread with OS id ``tid``, if present."""
        for t in self.threads:
            if t.tid == tid:
                return t
        return None

    def to_json(self) -> Dict[str, Any]:
        """Plain dict for snapshot.json."""
        return {
            "pid": self.pid,
            "taken_ns": self.taken_ns,
            "source": self.source,
            "python_version": self.python_version,
            "gc_collecting": self.gc_collecting,
            "notes": self.notes,
            "locals_source": self.locals_source,
            "threads": [t.to_json() for t in self.threads],
        }
