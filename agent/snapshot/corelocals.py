"""Locals for a snapshot's dumps, read by the sampling core's locals reader with per-dump caches.

:mod:`hostprof.native.pylocals` (what ``hostprof dump --locals`` uses) reads every code
object's names, every name string and every value's type name afresh for each thread: about
500 small ``process_vm_readv`` calls for a 20-frame thread, 3-6 s for 20 processes x 50
threads. A snapshot reads all threads of a process at one instant, and most threads share
their code objects (the same handler in 50 workers), so this module keeps, for one process
and one dump only, what cannot change within it: whether an address is a code object (and
CPython's ``__init__`` shim), code objects' name tuples, interned name strings and type names
by type address. Values are still read fresh for every frame. Nothing is executed in the
target and nothing pauses it.
"""

from __future__ import annotations

import struct
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.model import FrameKind
from hostprof.native.pylocals import LocalsReader


class _CachedStr:
    """Wraps an ObjectReader's ``str`` with a memo by address (names repeat across frames)."""

    def __init__(self, reader: Any) -> None:
        self._str = reader.str
        self._memo: Dict[int, Optional[str]] = {}

    def __call__(self, addr: int) -> Optional[str]:
        try:
            return self._memo[addr]
        except KeyError:
            value = self._memo[addr] = self._str(addr)
            return value


class DumpLocalsReader(LocalsReader):
    """A :class:`~hostprof.native.pylocals.LocalsReader` for one process and one dump."""

    def __init__(self, proc: Any) -> None:
        super().__init__(proc)
        self.r.str = _CachedStr(self.r)  # type: ignore[method-assign]
        self._code: Dict[int, bool] = {}
        self._shim: Dict[int, bool] = {}
        self._tuples: Dict[int, List[int]] = {}
        self._types: Dict[int, str] = {}

    def _is_code(self, addr: int) -> bool:
        found = self._code.get(addr)
        if found is None:
            found = self._code[addr] = super()._is_code(addr)
        return found

    def _is_shim(self, code: int) -> bool:
        found = self._shim.get(code)
        if found is None:
            found = self._shim[code] = super()._is_shim(code)
        return found

    def _tuple(self, addr: int) -> List[int]:
        # Only code objects' name tuples go through here: immutable while the code lives.
        found = self._tuples.get(addr)
        if found is None:
            found = self._tuples[addr] = super()._tuple(addr)
        return found

    def type_name(self, addr: int) -> str:
        tp = self.r.ptr(addr + self.o["ob_type"])
        found = self._types.get(tp)
        if found is None:
            name_ptr = self.r.ptr(tp + self.o["_type_name"])
            raw = self.r.read(name_ptr, 64)
            found = self._types[tp] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return found

    def thread(self, tstate: int, frames: List[Any]) -> Optional[List[Dict[str, str]]]:
        """Each frame's locals, parallel to ``frames`` (root first; synthetic frames get {}),
        or None when the thread's stack no longer matches ``frames`` or cannot be read."""
        try:
            found: List[Tuple[int, Dict[str, str]]] = [
                (code, self.locals_of(frame, code)) for frame, code in self.frames(tstate)
            ]
        except (OSError, ValueError, struct.error):
            return None
        python = [f for f in frames if f.kind != FrameKind.SYNTHETIC]
        if len(found) != len(python):
            return None  # the thread moved between the stack read and this one
        it = iter(loc for _code, loc in reversed(found))
        return [next(it) if f.kind != FrameKind.SYNTHETIC else {} for f in frames]
