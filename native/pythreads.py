"""Thread names of a CPython target.

Names come from ``threading._active`` (ident -> Thread, then the Thread's ``_name``) read out
of the target's memory (see :mod:`hostprof.native.pyobjects`), on every supported version,
free-threaded 3.13t included. The OS thread name (``/proc/PID/task/TID/comm``) is only the
fallback: Python 3.14+ copies ``Thread.name`` into it but cut to 15 bytes and never updated
on rename, and older versions (and 3.13t) leave it as the program's name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from typing import Dict
from typing import List
from typing import Optional
from typing import Set

if TYPE_CHECKING:
    from hostprof.native.pyprocess import PyProcess
    from hostprof.native.pyprocess import SampleRow


def os_thread_names(pid: int, skip: Optional[Set[int]] = None) -> Dict[int, str]:
    """tid -> /proc/PID/task/TID/comm for every thread of ``pid`` not in ``skip``."""
    out: Dict[int, str] = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        if skip and tid in skip:
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/comm", "rb") as f:
                out[tid] = f.read().strip().decode("utf-8", "replace")
        except OSError:
            continue
    return out


def thread_names(proc: PyProcess, rows: Optional[List[SampleRow]] = None) -> Dict[int, str]:
    """tid -> best known thread name for every thread of ``proc``.

    Args:
        proc: the attached process.
        rows: an instant read with ``reader.sample_rows()``, to map thread idents to tids
            without reading the target again.
    """
    names: Dict[int, str] = {}
    try:
        from hostprof.native.pyobjects import threading_names

        by_ident = threading_names(proc)
    except Exception:
        by_ident = {}
    if by_ident:
        try:
            if rows is None:
                rows = proc.reader.sample_rows()
            for row in rows:
                tid, ident = row[0], row[1]
                if ident in by_ident:
                    names[tid] = by_ident[ident]
        except Exception:
            pass
    # The OS name only for threads threading does not know (a /proc read each: a process
    # with hundreds of threads would spend most of a dump here).
    os_names = os_thread_names(proc.pid, skip=set(names))
    # Python never copies the main thread's name to the OS (its comm stays the program's):
    # threading's default is the best answer when _active could not be read.
    if proc.pid in os_names:
        os_names[proc.pid] = "MainThread"
    os_names.update(names)
    return os_names
