"""Thread dumps through hostprof's own remote reader (:mod:`hostprof.native.pyprocess`).

It reads the target's memory with ``process_vm_readv`` and never pauses it; it knows the GIL
holder and whether a thread is running the cyclic GC (a ``<gc>`` leaf frame), which py-spy
cannot tell. Attached processes are kept for the snapshot's lifetime, so the second dump does
not parse the target's ELF files again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof._errors import HostprofError
from hostprof.model import FrameKind
from hostprof.snapshot.records import FrameRecord
from hostprof.snapshot.records import ProcessDump
from hostprof.snapshot.records import ThreadRecord
from hostprof.snapshot.records import cap_repr

_KINDS = {
    FrameKind.PYTHON: "python",
    FrameKind.NATIVE: "native",
    FrameKind.KERNEL: "kernel",
    FrameKind.SYNTHETIC: "synthetic",
}


class CoreReader:
    """Dumps with the sampling core; one attached reader per pid, closed by :meth:`close`."""

    def __init__(self) -> None:
        from hostprof.native import pyprocess

        self._attach = pyprocess.attach
        self._procs: Dict[int, object] = {}
        self._locks: Dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.locals_deadline: Optional[float] = None
        """CLOCK_MONOTONIC time after which no more locals are read (the snapshot's budget);
        threads not reached by then get none, and the dump says how many."""

    def _proc(self, pid: int):
        with self._guard:
            lock = self._locks.setdefault(pid, threading.Lock())
        with lock:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = self._attach(pid)
            return proc, lock

    def process(self, pid: int):
        """The attached :class:`~hostprof.native.pyprocess.PyProcess` of ``pid``.

        The profile's Python collector samples through this same object, so the target's
        ELF files and thread names are read once per snapshot, not once per user. Sharing is
        safe: the native reader takes its own lock around every sample.
        """
        return self._proc(pid)[0]

    def __call__(self, pid: int, with_locals: bool) -> ProcessDump:
        """Dumps every thread of ``pid``; with ``with_locals``, each frame's locals too.

        Locals are read by the core's locals reader (:mod:`hostprof.native.pylocals`, through
        :mod:`hostprof.snapshot.corelocals`) right after the stacks of the same sample: values
        are summarised from the target's memory, never executed, and the target is not
        paused. A thread whose stack moved between the two reads gets no locals (``locals``
        stays None) and a note.

        Raises:
            HostprofError subclasses from :func:`hostprof.native.pyprocess.attach` and
            ``stacks()`` (gone, permission, unsupported version).
        """
        proc, lock = self._proc(pid)
        taken = time.time_ns()
        locals_error = ""
        with lock:  # thread-name lookups of one process are not meant to run twice at once
            stacks = None
            if with_locals:
                try:
                    stacks = _stacks_with_locals(proc, self.locals_deadline)
                except HostprofError:
                    raise
                except Exception as exc:  # a locals-reader bug must not cost the stacks
                    locals_error = f"{type(exc).__name__}: {exc}"
            if stacks is None:
                stacks = proc.stacks()  # type: ignore[attr-defined]
            version = proc.version  # type: ignore[attr-defined]
        dump = ProcessDump(pid=pid, taken_ns=taken, source="hostprof", python_version=version)
        moved = 0
        late = sum(1 for st in stacks if getattr(st, "locals_late", False))
        for st in stacks:
            frames = []
            in_gc = bool(st.in_gc)
            found = st.locals if with_locals else None
            if with_locals and not locals_error and found is None and st.frames:
                moved += 0 if getattr(st, "locals_late", False) else 1
            for i, f in enumerate(st.frames):
                if f.kind == FrameKind.SYNTHETIC and f.function.startswith("<gc"):
                    in_gc = True
                rec = FrameRecord(f.function, f.file, f.line, _KINDS.get(f.kind, "python"))
                if found is not None and rec.kind == "python":
                    rec.locals = {str(k): cap_repr(str(v)) for k, v in found[i].items()}
                frames.append(rec)
            dump.threads.append(
                ThreadRecord(
                    tid=st.tid,
                    name=st.name,
                    frames=frames,
                    holds_gil=bool(st.holds_gil),
                    in_gc=in_gc,
                    os_state=st.os_state,
                )
            )
        dump.gc_collecting = any(t.in_gc for t in dump.threads)
        if with_locals:
            if locals_error:
                dump.notes.append(f"hostprof could not read locals ({locals_error})")
            else:
                dump.locals_source = "hostprof"
                if moved:
                    dump.notes.append(
                        f"locals unavailable for {moved} thread(s): the stack moved while "
                        "being read"
                    )
                if late:
                    dump.notes.append(
                        f"locals not read for {late} thread(s): out of the snapshot's time budget"
                    )
        return dump

    def close(self) -> None:
        """Releases every attached reader."""
        with self._guard:
            procs = list(self._procs.values())
            self._procs.clear()
        for p in procs:
            with contextlib.suppress(Exception):
                p.close()  # type: ignore[attr-defined]


def _stacks_with_locals(proc: Any, deadline: Optional[float] = None) -> List[Any]:
    """``proc.stacks(locals=True)`` with one caching locals reader for the whole dump.

    The same steps as :meth:`hostprof.native.pyprocess.PyProcess.stacks`, through its public
    pieces (``reader.sample()``, ``frame``, ``thread_names``), because the thread-state
    addresses the locals reader starts from are not part of ``ThreadStack``.
    """
    from hostprof.native.pyprocess import OS_STATES
    from hostprof.native.pyprocess import ThreadStack
    from hostprof.snapshot.corelocals import DumpLocalsReader

    try:
        cols = proc.reader.sample()
    except Exception:
        # Let the core turn the failure into its one-line error (gone, no permission...); if
        # the process is readable again, that is simply a dump without this first attempt.
        return proc.stacks(locals=True)
    names = proc.thread_names(cols["tid"].tolist())
    offsets = cols["offsets"]
    reader = DumpLocalsReader(proc)
    out = []
    for i in range(len(cols["tid"])):
        keys = cols["keys"][offsets[i] : offsets[i + 1]]
        frames = [proc.frame(int(k)) for k in keys.tolist()]
        tid = int(cols["tid"][i])
        flags = int(cols["flags"][i])
        st = ThreadStack(
            tid=tid,
            thread_id=int(cols["thread_id"][i]),
            name=names.get(tid, ""),
            frames=frames,
            holds_gil=bool(flags & 1),
            in_gc=bool(flags & 2),
            os_state=OS_STATES.get(chr(cols["os_state"][i]), "unknown"),
        )
        if deadline is not None and time.monotonic() > deadline:
            st.locals_late = True  # type: ignore[attr-defined]
        else:
            st.locals = reader.thread(int(cols["tstate"][i]), frames)
        out.append(st)
    return out


def available() -> Tuple[Optional[CoreReader], str]:
    """A :class:`CoreReader`, or (None, why the core cannot be used here)."""
    try:
        return CoreReader(), ""
    except ImportError as exc:
        return None, f"hostprof's native stack reader is not built ({exc})"
