"""Attaching to a live CPython process: find ``_PyRuntime``, pick offsets, open a Reader.

:func:`attach` is the one entry point. It parses the target's maps, looks ``_PyRuntime`` up
in ``.dynsym`` of the python executable or of libpython (adding the load bias), reads the
version (``_Py_DebugOffsets`` for 3.13+, ``Py_Version`` or the file name before), and returns
a :class:`PyProcess` wrapping a native :class:`hostprof.native._sampler.Reader`.

Every failure is a one-line hostprof error with a hint: no such process, not Python,
permission denied (CAP_SYS_PTRACE, Yama ptrace_scope), unsupported version, or the process
exiting while we attach.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from typing import TYPE_CHECKING
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof._errors import PermissionDeniedError
from hostprof._errors import ProcessGoneError
from hostprof._errors import TargetError
from hostprof._errors import UnsupportedPythonError
from hostprof.elf import ElfError
from hostprof.elf import ElfFile
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.native import pyoffsets
from hostprof.native._sampler import ERR_GONE
from hostprof.native._sampler import ERR_PERM
from hostprof.native._sampler import GC_KEY
from hostprof.native._sampler import Reader
from hostprof.native._sampler import ReadError
from hostprof.procmaps import Mapping
from hostprof.procmaps import open_mapped_file
from hostprof.procmaps import read_maps

if TYPE_CHECKING:
    import numpy as np

SampleRow = Tuple[int, int, int, str, int, List[int], int]
"""One thread of ``Reader.sample_rows()``: (tid, thread_id, flags, os_state, tstate, keys,
ns_tid)."""

_PYTHON_NAME = re.compile(r"^(?:lib)?python(\d)\.(\d+)")

OS_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk wait",
    "T": "stopped",
    "t": "traced",
    "Z": "zombie",
    "I": "idle",
    "X": "dead",
    "?": "unknown",
}


def permission_error(pid: int) -> PermissionDeniedError:
    """The error for a target whose memory we may not read."""
    scope = ""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f" (Yama ptrace_scope is {f.read().strip()})"
    except OSError:
        pass
    return PermissionDeniedError(
        f"permission denied reading the memory of pid {pid}{scope}",
        "run as root, or grant CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep ...), or set "
        "kernel.yama.ptrace_scope=0 for same-user targets",
    )


def gone_error(pid: int, when: str = "") -> ProcessGoneError:
    """The error for a target that exited (or never existed)."""
    if when:
        return ProcessGoneError(f"process {pid} exited {when}", "start it again and retry")
    return ProcessGoneError(f"no process with pid {pid}", "check the pid with 'ps -p PID'")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


@dataclasses.dataclass
class _Object:
    path: str
    mapping: Mapping
    elf: ElfFile
    bias: int

    def symbol(self, name: str) -> Optional[int]:
        addr = self.elf.symbol_address(name)
        return None if addr is None else addr + self.bias


def _python_objects(pid: int, maps: List[Mapping]) -> List[_Object]:
    """The python executable and libpython mappings, libpython first (it holds the runtime
    when present), each opened as the target sees it."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").replace(" (deleted)", "")
    except FileNotFoundError:
        raise gone_error(pid) from None
    except PermissionError:
        raise permission_error(pid) from None
    firsts: Dict[str, Mapping] = {}
    for m in maps:
        if m.is_file and m.path not in firsts:
            firsts[m.path] = m
    ordered = sorted(
        firsts.items(),
        key=lambda kv: 0 if "libpython" in kv[0] else 1 if kv[0] == exe else 2,
    )
    out = []
    for path, first in ordered:
        base = os.path.basename(path)
        if "libpython" not in base and path != exe and not _PYTHON_NAME.match(base):
            continue
        try:
            with open_mapped_file(pid, first) as f:
                elf = ElfFile.from_file(f, path)
        except (OSError, ElfError):
            continue
        bias = first.start - first.offset - elf.first_load_vaddr if elf.is_pie_or_shared else 0
        out.append(_Object(path, first, elf, bias))
    return out


def _version_from_name(path: str) -> Optional[int]:
    m = _PYTHON_NAME.match(os.path.basename(path))
    if not m:
        return None
    return int(m.group(1)) << 24 | int(m.group(2)) << 16


@dataclasses.dataclass
class ThreadStack:
    """One thread's Python stack at one instant (what ``dump`` prints)."""

    tid: int
    """OS thread id, as hostprof's PID namespace (the host's) numbers it: /proc, ps, eBPF."""
    thread_id: int
    """``threading.get_ident()`` of the thread (its pthread_t)."""
    name: str
    """Thread name (``threading`` name where known, else the OS name)."""
    frames: List[Frame]
    """Frames, root first."""
    holds_gil: bool
    """Whether it held the GIL."""
    in_gc: bool
    """Whether it was running the cyclic GC."""
    os_state: str
    """OS scheduler state: running, sleeping, disk wait..."""
    locals: Optional[List[Dict[str, str]]] = None
    """With ``stacks(locals=True)``: each frame's local variables (name -> summary), parallel
    to ``frames``; None when not asked for or when the stack moved while being read."""
    ns_tid: int = 0
    """The thread id as the target's own PID namespace numbers it (what the program itself
    sees, e.g. ``threading.get_native_id()``); equal to ``tid`` unless the target runs in a
    container with its own PID namespace."""

    @property
    def idle(self) -> bool:
        """True when the thread was not on a CPU or runnable."""
        return self.os_state not in ("running", "unknown")


class PyProcess:
    """A CPython process we can read stacks from. Create with :func:`attach`."""

    def __init__(
        self,
        pid: int,
        reader: Reader,
        version_hex: int,
        free_threaded: bool,
        offsets: Dict[str, int],
        binary: str,
    ) -> None:
        self.pid = pid
        self.reader = reader
        self.version_hex = version_hex
        self.free_threaded = free_threaded
        self.offsets = offsets
        self.binary = binary
        self._frames: Dict[int, Frame] = {}
        self._names: Dict[int, str] = {}

    @property
    def version(self) -> str:
        """``3.11.7``-style version string of the target."""
        text = pyoffsets.version_string(self.version_hex)
        if self.version_hex & 0xFF == 0:  # from the file name only: the micro is unknown
            text = text.rsplit(".", 1)[0]
        return text + ("t" if self.free_threaded else "")

    def close(self) -> None:
        """Releases the native reader."""
        self.reader.close()

    # ----------------------------------------------------------------------- frames
    def frame(self, key: int) -> Frame:
        """The Frame for a frame key (code id << 32 | line)."""
        f = self._frames.get(key)
        if f is None:
            if key == GC_KEY:
                f = Frame.synthetic("<gc>")
            else:
                name, qualname, filename, _first = self.reader.code(key >> 32)
                f = Frame(qualname or name, filename, key & 0xFFFFFFFF)
            self._frames[key] = f
        return f

    def frames_for(self, keys: np.ndarray) -> Tuple[List[Frame], np.ndarray]:
        """(local frame table, local ids) for an array of frame keys; one Frame per unique key."""
        import numpy as np  # not at module load: `dump` never needs it

        uniq, inverse = np.unique(keys, return_inverse=True)
        table = [self.frame(int(k)) for k in uniq.tolist()]
        return table, inverse.reshape(-1).astype(np.uint32)

    # ---------------------------------------------------------------------- threads
    def thread_names(
        self, tids: Optional[List[int]] = None, rows: Optional[List[SampleRow]] = None
    ) -> Dict[int, str]:
        """Thread names by tid: from ``threading`` where readable, else the OS name.

        Args:
            tids: the threads wanted; names are looked up again only when one is new.
            rows: an instant just read with ``reader.sample_rows()`` (saves a second read).
        """
        from hostprof.native.pythreads import thread_names

        wanted = set(tids or [])
        if wanted - set(self._names) or not wanted:
            self._names.update(thread_names(self, rows))
        return dict(self._names)

    def stacks(self, locals: bool = False) -> List[ThreadStack]:
        """Every thread's stack now (one sample, no pause); with ``locals``, also each
        frame's local variables (a slower second read, see :mod:`hostprof.native.pylocals`)."""
        try:
            rows = self.reader.sample_rows()
        except ReadError as exc:
            raise self._read_error(exc) from None
        names = self.thread_names([row[0] for row in rows], rows)
        out = []
        for tid, thread_id, flags, os_state, tstate, keys, ns_tid in rows:
            frames = [self.frame(k) for k in keys]
            out.append(
                ThreadStack(
                    tid=tid,
                    thread_id=thread_id,
                    name=names.get(tid, ""),
                    frames=frames,
                    holds_gil=bool(flags & 1),
                    in_gc=bool(flags & 2),
                    os_state=OS_STATES.get(os_state, "unknown"),
                    ns_tid=ns_tid,
                )
            )
            if locals:
                out[-1].locals = self._locals(tstate, frames)
        return out

    def _locals(self, tstate: int, frames: List[Frame]) -> Optional[List[Dict[str, str]]]:
        from hostprof.native.pylocals import thread_locals

        found = thread_locals(self, tstate)
        python = [f for f in frames if f.kind != FrameKind.SYNTHETIC]
        if found is None or len(found) != len(python):
            return None
        by_frame = [loc for _code, loc in reversed(found)]
        it = iter(by_frame)
        return [next(it) if f.kind != FrameKind.SYNTHETIC else {} for f in frames]

    def _read_error(self, exc: ReadError) -> Exception:
        if exc.code == ERR_PERM:
            return permission_error(self.pid)
        if exc.code == ERR_GONE or not os.path.exists(f"/proc/{self.pid}"):
            return gone_error(self.pid, "while being read")
        return TargetError(
            f"cannot read the interpreter state of pid {self.pid}: {exc}",
            "the process may be starting up or shutting down; retry",
        )


def attach(pid: int, max_depth: int = 4096) -> PyProcess:
    """Attaches to CPython process ``pid`` (without stopping it).

    Raises:
        ProcessGoneError: no such process, or it exited while attaching.
        TargetError: not a Python process.
        PermissionDeniedError: its memory is not readable.
        UnsupportedPythonError: its version or build is not supported.
    """
    if not os.path.exists(f"/proc/{pid}"):
        raise gone_error(pid)
    maps = read_maps(pid)
    objects = _python_objects(pid, maps)
    runtime = None
    owner = None
    for obj in objects:
        runtime = obj.symbol("_PyRuntime")
        if runtime:
            owner = obj
            break
    if runtime is None or owner is None:
        if not os.path.exists(f"/proc/{pid}"):
            raise gone_error(pid, "while attaching")
        raise TargetError(
            f"process {pid} ({_comm(pid)}) is not a Python process (no _PyRuntime symbol "
            "in its executable or libpython)",
            "point --pid at a CPython 3.9+ interpreter process",
        )
    code_type = owner.symbol("PyCode_Type") or 0
    probe = _Probe(pid)
    head = probe.read(runtime, 24)
    if head[:8] == pyoffsets.DEBUG_COOKIE:
        version = struct.unpack_from("<Q", head, 8)[0]
        size = pyoffsets.debug_layout_size(version >> 24 & 0xFF, version >> 16 & 0xFF)
        data = probe.read(runtime, size)
        try:
            version, ft, offsets = pyoffsets.from_debug_offsets(data, code_type)
        except pyoffsets.UnsupportedVersion as exc:
            raise _unsupported(str(exc)) from None
        if ft and (version >> 16 & 0xFF) >= 14:
            raise _unsupported(
                f"free-threaded Python {pyoffsets.version_string(version)}t is not supported"
            )
    else:
        ft = False
        version = 0
        py_version = owner.symbol("Py_Version")
        if py_version:
            version = struct.unpack("<I", probe.read(py_version, 4))[0]
        if not version:
            version = _version_from_name(owner.path) or 0
            if not version:
                for obj in objects:
                    version = _version_from_name(obj.path) or 0
                    if version:
                        break
        if not version:
            raise _unsupported(f"cannot tell the Python version of pid {pid} ({owner.path})")
        try:
            offsets = pyoffsets.from_table(version, code_type)
        except pyoffsets.UnsupportedVersion as exc:
            raise _unsupported(str(exc)) from None
    offsets["unicode_type_addr"] = owner.symbol("PyUnicode_Type") or 0
    try:
        reader = Reader(pid, runtime, pyoffsets.reader_fields(offsets), max_depth)
    except ReadError as exc:
        if exc.code == ERR_PERM:
            raise permission_error(pid) from None
        if not os.path.exists(f"/proc/{pid}"):
            raise gone_error(pid, "while attaching") from None
        raise TargetError(
            f"pid {pid} runs Python {pyoffsets.version_string(version)} but its interpreter "
            "state is not readable yet",
            "the interpreter may still be starting; retry in a moment",
        ) from None
    return PyProcess(pid, reader, version, ft, offsets, owner.path)


def _unsupported(message: str) -> UnsupportedPythonError:
    return UnsupportedPythonError(
        message, "supported: CPython 3.9-3.12 (built-in tables) and 3.13+ via _Py_DebugOffsets"
    )


class _Probe:
    """Reads a few bytes before a Reader exists (version sniffing)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self, addr: int, size: int) -> bytes:
        try:
            with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as f:
                f.seek(addr)
                data = f.read(size)
        except FileNotFoundError:
            raise gone_error(self.pid, "while attaching") from None
        except PermissionError:
            raise permission_error(self.pid) from None
        except OSError as exc:
            if not os.path.exists(f"/proc/{self.pid}"):
                raise gone_error(self.pid, "while attaching") from None
            raise TargetError(f"cannot read pid {self.pid} memory: {exc.strerror}", "") from None
        if len(data) != size:
            raise gone_error(self.pid, "while attaching")
        return data
