"""Where a snapshot's thread stacks come from: hostprof's own reader, else py-spy.

The sampling core (:mod:`hostprof.native.pyprocess`, through
:mod:`hostprof.snapshot.corereader`) is preferred: it gives the GIL holder and the GC flag
without pausing the target. When it is not importable
or does not support the target's interpreter, ``py-spy dump --nonblocking`` is used, which
also never pauses the target but cannot tell whether a collection is running (``in_gc`` stays
unknown). Either way, /proc supplies each thread's OS state.

Locals (``--locals``) come from the same reader as the stacks: the core reads them from the
target's memory in the same dump (never executing anything in it); py-spy's ``--locals`` is
used only for a target the core cannot read, or if the core's locals reader fails on it.

Every reader raises :class:`~hostprof._errors.TargetError` (or a subclass) or
:class:`~hostprof._errors.PermissionDeniedError` for a process it cannot read, with a one-line
message; the snapshot records it and goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable
from typing import List
from typing import Optional
from typing import Tuple

from hostprof._errors import HostprofError
from hostprof._errors import PermissionDeniedError
from hostprof._errors import ProcessGoneError
from hostprof._errors import TargetError
from hostprof._errors import UnsupportedPythonError
from hostprof.snapshot.osstate import read_process_states
from hostprof.snapshot.records import FrameRecord
from hostprof.snapshot.records import ProcessDump
from hostprof.snapshot.records import ThreadRecord
from hostprof.snapshot.records import cap_repr

DumpFn = Callable[[int, bool], ProcessDump]
"""A reader: (pid, with_locals) -> dump."""

PYSPY_TIMEOUT = 10.0
"""Seconds one py-spy dump may take before it is abandoned."""


def find_pyspy() -> Optional[str]:
    """The py-spy executable: on PATH, or beside this interpreter (a venv's bin)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else None


def _pyspy_error(pid: int, stderr: str) -> HostprofError:
    low = stderr.lower()
    if not os.path.exists(f"/proc/{pid}"):
        return ProcessGoneError(f"process {pid} exited", "")
    if "permission" in low or "operation not permitted" in low:
        return PermissionDeniedError(
            f"no permission to read process {pid}", "run as root or grant CAP_SYS_PTRACE"
        )
    if "python version" in low or "python interpreter" in low or "not a python" in low:
        return UnsupportedPythonError(f"process {pid}: {stderr.strip().splitlines()[0]}", "")
    first = stderr.strip().splitlines()[0] if stderr.strip() else "py-spy failed"
    return TargetError(f"process {pid}: {first}", "")


def pyspy_dump(pid: int, with_locals: bool, exe: Optional[str] = None) -> ProcessDump:
    """Dumps every thread with ``py-spy dump --nonblocking --json`` (never pauses the target)."""
    exe = exe or find_pyspy()
    if not exe:
        raise TargetError("py-spy is not installed", "pip install py-spy")
    cmd = [exe, "dump", "--nonblocking", "--json", "--pid", str(pid)]
    if with_locals:
        cmd.append("--locals")
    taken = time.time_ns()
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=PYSPY_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise TargetError(
            f"process {pid}: py-spy timed out after {PYSPY_TIMEOUT:.0f} s", ""
        ) from None
    if res.returncode != 0:
        raise _pyspy_error(pid, res.stderr.decode(errors="replace"))
    try:
        traces = json.loads(res.stdout)
    except ValueError:
        raise TargetError(f"process {pid}: py-spy printed no JSON", "") from None
    dump = ProcessDump(pid=pid, taken_ns=taken, source="py-spy")
    for tr in traces:
        frames = []
        for fr in reversed(tr.get("frames") or []):  # py-spy lists innermost first
            locs = None
            if with_locals:
                locs = {
                    str(v.get("name")): cap_repr(str(v.get("repr") or ""))
                    for v in (fr.get("locals") or [])
                }
            frames.append(
                FrameRecord(
                    function=str(fr.get("name") or "?"),
                    file=str(fr.get("filename") or ""),
                    line=int(fr.get("line") or 0),
                    locals=locs,
                )
            )
        dump.threads.append(
            ThreadRecord(
                tid=int(tr.get("os_thread_id") or tr.get("thread_id") or 0),
                name=str(tr.get("thread_name") or ""),
                frames=frames,
                holds_gil=bool(tr.get("owns_gil")),
                in_gc=None,
            )
        )
    if with_locals:
        dump.locals_source = "py-spy"
    dump.notes.append("read with py-spy --nonblocking: GC state unknown")
    return dump


def core_dump_fn() -> Tuple[Optional[DumpFn], str]:
    """hostprof's own dump function, or (None, why it is unavailable)."""
    try:
        from hostprof.snapshot import corereader
    except ImportError as exc:
        return None, f"hostprof sampling core not importable ({exc})"
    return corereader.available()


def readers() -> List[Tuple[str, DumpFn]]:
    """Available readers, preferred first. Pass the list to :func:`close_readers` after use."""
    out: List[Tuple[str, DumpFn]] = []
    fn, _ = core_dump_fn()
    if fn is not None:
        out.append(("hostprof", fn))
    exe = find_pyspy()
    if exe:
        out.append(("py-spy", lambda pid, loc: pyspy_dump(pid, loc, exe)))
    return out


def close_readers(chain: List[Tuple[str, DumpFn]]) -> None:
    """Releases readers that hold resources (attached processes)."""
    for _, fn in chain:
        close = getattr(fn, "close", None)
        if close is not None:
            close()


def read_dump(pid: int, with_locals: bool, chain: List[Tuple[str, DumpFn]]) -> ProcessDump:
    """Dumps ``pid`` with the first reader in ``chain`` that can, adding OS thread states.

    When locals are wanted and the reader that succeeded could not read them (its
    ``locals_source`` stays None: the core's locals reader failed on this target), py-spy (if
    in the chain) supplies them, matched by thread id and identical frames.

    Raises:
        TargetError, PermissionDeniedError: no reader could read the process (the message of
            the most telling failure is kept).
    """
    if not chain:
        raise TargetError(
            "no Python stack reader is available",
            "build hostprof's native core (setup.py build_ext) or pip install py-spy",
        )
    failures: List[str] = []
    last: Optional[HostprofError] = None
    for name, fn in chain:
        try:
            dump = fn(pid, with_locals)
        except ProcessGoneError:
            raise
        except HostprofError as exc:
            failures.append(f"{name}: {exc.message}")
            last = exc
            continue
        if failures:
            dump.notes.append("; ".join(failures))
        if with_locals and dump.locals_source is None:
            _add_locals(dump, [f for n, f in chain if n == "py-spy" and n != name])
        _add_os_state(dump)
        return dump
    assert last is not None
    if len(failures) > 1:
        last.message = "; ".join(failures)
    raise last


def _add_locals(dump: ProcessDump, pyspy: List[DumpFn]) -> None:
    """Copies py-spy's locals onto a dump whose reader has none (same tid, same frames)."""
    if not pyspy:
        dump.notes.append("locals unavailable: py-spy not installed")
        return
    try:
        other = pyspy[0](dump.pid, True)
    except HostprofError as exc:
        dump.notes.append(f"locals unavailable: {exc.message}")
        return
    for t in dump.threads:
        o = other.thread(t.tid)
        if o is None:
            continue
        mine = [f for f in t.frames if f.kind == "python"]
        theirs = o.frames
        # The thread may have moved between the two reads: copy only where frames agree,
        # matching from the root.
        for a, b in zip(mine, theirs):
            if a.function.rsplit(".", 1)[-1] != b.function.rsplit(".", 1)[-1] or a.line != b.line:
                break
            a.locals = b.locals
    dump.locals_source = "py-spy"
    dump.notes.append("locals read by py-spy")


def _add_os_state(dump: ProcessDump) -> None:
    """Fills OS state, blocking syscall and CPU ticks of each thread from /proc."""
    states = read_process_states(dump.pid)
    for t in dump.threads:
        st = states.get(t.tid)
        if st is None:
            continue
        t.os_state = st.state
        t.syscall = st.syscall
        t.wchan = st.wchan
        t.cpu_ticks = st.cpu_ticks
        if not t.name:
            t.name = st.comm
