"""Local variables of a thread's Python frames, read from the target (``dump --locals``).

Slow path in Python over :class:`hostprof.native.pyobjects.ObjectReader`: it walks the
thread's frame chain again (the same rules as pyreader.c: skip C-stack shims and non-code
executables), then reads each frame's fast locals:

* 3.9/3.10: ``co_varnames[:co_nlocals]`` then ``co_cellvars``, values at ``f_localsplus``;
* 3.11+: ``co_localsplusnames`` with ``co_localspluskinds`` (locals 0x20, cells 0x40, free
  0x80; a cell's value is its contents), values at ``_PyInterpreterFrame.localsplus`` (tagged
  ``_PyStackRef`` from 3.14: low bits masked).

Values are summarised, never executed: ints, floats, str, bytes, None and bools by value,
containers by length, anything else by type and address. The target keeps running, so locals
are a best-effort snapshot.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.native.pyobjects import ObjectReader

if TYPE_CHECKING:
    from hostprof.native.pyprocess import PyProcess

_CO_FAST_LOCAL = 0x20
_CO_FAST_CELL = 0x40
_CO_FAST_FREE = 0x80
_MAX_LOCALS = 256
_MAX_REPR = 80


class LocalsReader:
    """Reads frames and their locals for one target."""

    def __init__(self, proc: PyProcess) -> None:
        self.proc = proc
        self.r = ObjectReader(proc)
        self.o = proc.offsets
        self.mask = ~7 & 0xFFFFFFFFFFFFFFFF if self.r.minor >= 14 else 0xFFFFFFFFFFFFFFFF

    def frames(self, tstate: int) -> List[Tuple[int, int]]:
        """(frame address, code address) of a thread's Python frames, leaf first."""
        o, r = self.o, self.r
        if o["ts_frame"] >= 0:
            frame = r.ptr(tstate + o["ts_frame"])
        else:
            cframe = r.ptr(tstate + o["ts_cframe"])
            frame = r.ptr(cframe + o["cframe_current_frame"]) if cframe else 0
        out: List[Tuple[int, int]] = []
        seen = set()
        while frame and frame not in seen and len(out) < 4096:
            seen.add(frame)
            code = r.ptr(frame + o["fr_code"]) & o["executable_mask"] & 0xFFFFFFFFFFFFFFFF
            nxt = r.ptr(frame + o["fr_previous"])
            skip = False
            if o["fr_owner"] >= 0:
                skip = self.r.read(frame + o["fr_owner"], 1)[0] >= o["owner_skip_min"]
            if not skip and code and self._is_code(code) and not self._is_shim(code):
                out.append((frame, code))
            frame = nxt
        return out

    def _is_code(self, addr: int) -> bool:
        expected = self.o["code_type_addr"] & 0xFFFFFFFFFFFFFFFF
        return not expected or self.r.ptr(addr + self.o["ob_type"]) == expected

    def _is_shim(self, code: int) -> bool:
        """The 3.13+ __init__ shim (same rule as pyreader.c): name is filename, line 0."""
        o, r = self.o, self.r
        first = struct.unpack("<i", r.read(code + o["code_firstlineno"], 4))[0]
        return first == 0 and r.ptr(code + o["code_name"]) == r.ptr(code + o["code_filename"])

    def _tuple(self, addr: int) -> List[int]:
        size = struct.unpack("<q", self.r.read(addr + self.o["_tuple_size"], 8))[0]
        size = max(0, min(size, _MAX_LOCALS))
        if not size:
            return []
        return list(
            struct.unpack(f"<{size}Q", self.r.read(addr + self.o["_tuple_items"], 8 * size))
        )

    def locals_of(self, frame: int, code: int) -> Dict[str, str]:
        """name -> summary of each bound local of one frame."""
        o, r = self.o, self.r
        base = frame + o["_fr_localsplus"]
        out: Dict[str, str] = {}
        if o["_code_localsplusnames"] >= 0:
            names = self._tuple(r.ptr(code + o["_code_localsplusnames"]))
            kinds_obj = r.ptr(code + o["_code_localspluskinds"])
            kinds = r.read(kinds_obj + o["bytes_sval"], len(names)) if names else b""
        else:
            # 3.9/3.10: f_localsplus holds co_nlocals locals, then the cells of co_cellvars.
            nlocals = struct.unpack("<i", r.read(code + o["_code_nlocals"], 4))[0]
            names = self._tuple(r.ptr(code + o["_code_varnames"]))[: max(nlocals, 0)]
            cells = self._tuple(r.ptr(code + o["_code_cellvars"]))
            kinds = bytes([_CO_FAST_LOCAL]) * len(names) + bytes([_CO_FAST_CELL]) * len(cells)
            names = names + cells
        if not names:
            return out
        values = struct.unpack(f"<{len(names)}Q", r.read(base, 8 * len(names)))
        for name_addr, kind, value in zip(names, kinds, values):
            value &= self.mask
            if not value or not kind & (_CO_FAST_LOCAL | _CO_FAST_CELL | _CO_FAST_FREE):
                continue
            name = r.str(name_addr)
            if name is None:
                continue
            if kind & (_CO_FAST_CELL | _CO_FAST_FREE) and self.type_name(value) == "cell":
                value = r.ptr(value + o["_ob_header"])  # PyCellObject.ob_ref
                if not value:
                    continue
            out[name] = self.summary(value)
        return out

    def type_name(self, addr: int) -> str:
        tp = self.r.ptr(addr + self.o["ob_type"])
        name_ptr = self.r.ptr(tp + self.o["_type_name"])
        raw = self.r.read(name_ptr, 64)
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def summary(self, addr: int) -> str:
        """A short, side-effect-free description of the object at ``addr``."""
        try:
            kind = self.type_name(addr)
            r = self.r
            if kind == "NoneType":
                return "None"
            if kind == "bool":
                return "True" if r.int(addr) else "False"
            if kind == "int":
                return str(r.int(addr))
            if kind == "float":
                return repr(struct.unpack("<d", r.read(addr + self.o["_float_value"], 8))[0])
            if kind == "str":
                text = r.str(addr)
                if text is not None:
                    return repr(text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "...")
            if kind == "bytes":
                size = struct.unpack("<q", r.read(addr + self.o["bytes_size"], 8))[0]
                head = r.read(addr + self.o["bytes_sval"], min(max(size, 0), 32))
                return repr(head) + ("..." if size > 32 else "")
            if kind in ("tuple", "list", "dict"):
                # ob_size (tuple, list) and ma_used (dict) follow the object header.
                size = struct.unpack("<q", r.read(addr + self.o["_tuple_size"], 8))[0]
                return f"<{kind} of {size}>"
            return f"<{kind} object at {addr:#x}>"
        except (OSError, ValueError, struct.error):
            return f"<unreadable at {addr:#x}>"


def thread_locals(proc: PyProcess, tstate: int) -> Optional[List[Tuple[int, Dict[str, str]]]]:
    """(code address, locals) per Python frame of one thread, leaf first; None if unreadable."""
    reader = LocalsReader(proc)
    try:
        return [(code, reader.locals_of(frame, code)) for frame, code in reader.frames(tstate)]
    except (OSError, ValueError, struct.error):
        return None
