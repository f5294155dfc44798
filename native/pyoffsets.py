"""Offsets for the remote reader (pyreader.c's ``hp_py_offsets``), per CPython version.

* 3.13 and later describe themselves: ``_PyRuntime`` starts with ``_Py_DebugOffsets`` (cookie
  ``xdebugpy``). Its layout is fixed within a minor release, so :data:`DEBUG_LAYOUTS` lists the
  field names of each minor's struct and any patch release works with no code change. A
  sub-struct starts with its ``size``; the names are CPython's.
* 3.9 to 3.12 use :mod:`hostprof.native.pyoffsets_tables`, generated from libpython DWARF by
  ``native/tools/gen_pyoffsets.py`` (offsets are facts of each minor's headers).

Anything else raises :class:`UnsupportedVersion`; a reader never guesses.
"""

from __future__ import annotations

import struct
from typing import Dict
from typing import List
from typing import Tuple

from hostprof.native.pyoffsets_tables import TABLES

# Frame owners at or above these values are C-stack shims / interpreter entry frames.
_OWNER_SKIP_MIN = 3
# Where glibc (x86-64) keeps the kernel tid inside struct pthread; pthread_t points at it.
# Only used for 3.9/3.10, whose thread states lack native_thread_id. Checked at attach time.
GLIBC_PTHREAD_TID = 0x2D0

_Layout = List[Tuple[str, List[str]]]

_COMMON_TAIL_313: _Layout = [
    ("pyobject", ["size", "ob_type"]),
    ("type_object", ["size", "tp_name", "tp_repr", "tp_flags"]),
    ("tuple_object", ["size", "ob_item", "ob_size"]),
    ("list_object", ["size", "ob_item", "ob_size"]),
    ("dict_object", ["size", "ma_keys", "ma_values"]),
    ("float_object", ["size", "ob_fval"]),
    ("long_object", ["size", "lv_tag", "ob_digit"]),
    ("bytes_object", ["size", "ob_size", "ob_sval"]),
    ("unicode_object", ["size", "state", "length", "asciiobject_size"]),
]

DEBUG_LAYOUTS: Dict[Tuple[int, int], _Layout] = {
    (3, 13): [
        ("runtime_state", ["size", "finalizing", "interpreters_head"]),
        (
            "interpreter_state",
            [
                "size",
                "id",
                "next",
                "threads_head",
                "gc",
                "imports_modules",
                "sysdict",
                "builtins",
                "ceval_gil",
                "gil_runtime_state",
                "gil_runtime_state_enabled",
                "gil_runtime_state_locked",
                "gil_runtime_state_holder",
            ],
        ),
        (
            "thread_state",
            [
                "size",
                "prev",
                "next",
                "interp",
                "current_frame",
                "thread_id",
                "native_thread_id",
                "datastack_chunk",
                "status",
            ],
        ),
        (
            "interpreter_frame",
            ["size", "previous", "executable", "instr_ptr", "localsplus", "owner"],
        ),
        (
            "code_object",
            [
                "size",
                "filename",
                "name",
                "qualname",
                "linetable",
                "firstlineno",
                "argcount",
                "localsplusnames",
                "localspluskinds",
                "co_code_adaptive",
            ],
        ),
        *_COMMON_TAIL_313,
        ("gc", ["size", "collecting"]),
    ],
}
_INTERP_314 = [
    "size",
    "id",
    "next",
    "threads_head",
    "threads_main",
    "gc",
    "imports_modules",
    "sysdict",
    "builtins",
    "ceval_gil",
    "gil_runtime_state",
    "gil_runtime_state_enabled",
    "gil_runtime_state_locked",
    "gil_runtime_state_holder",
    "code_object_generation",
    "tlbc_generation",
]
_FRAME_314 = [
    "size",
    "previous",
    "executable",
    "instr_ptr",
    "localsplus",
    "owner",
    "stackpointer",
    "tlbc_index",
]
_CODE_314 = [
    "size",
    "filename",
    "name",
    "qualname",
    "linetable",
    "firstlineno",
    "argcount",
    "localsplusnames",
    "localspluskinds",
    "co_code_adaptive",
    "co_tlbc",
]
DEBUG_LAYOUTS[(3, 14)] = [
    ("runtime_state", ["size", "finalizing", "interpreters_head"]),
    ("interpreter_state", _INTERP_314),
    (
        "thread_state",
        [
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
        ],
    ),
    ("interpreter_frame", _FRAME_314),
    ("code_object", _CODE_314),
    ("pyobject", ["size", "ob_type"]),
    ("type_object", ["size", "tp_name", "tp_repr", "tp_flags"]),
    ("tuple_object", ["size", "ob_item", "ob_size"]),
    ("list_object", ["size", "ob_item", "ob_size"]),
    ("set_object", ["size", "used", "table", "mask"]),
    ("dict_object", ["size", "ma_keys", "ma_values"]),
    ("float_object", ["size", "ob_fval"]),
    ("long_object", ["size", "lv_tag", "ob_digit"]),
    ("bytes_object", ["size", "ob_size", "ob_sval"]),
    ("unicode_object", ["size", "state", "length", "asciiobject_size"]),
    ("gc", ["size", "collecting", "frame"]),
]
# 3.15 grew the thread state (base/last-profiled frames, GIL fields), an exception-stack item,
# and type-object fields. Names of fields hostprof does not read are placeholders.
DEBUG_LAYOUTS[(3, 15)] = [
    ("runtime_state", ["size", "finalizing", "interpreters_head"]),
    ("interpreter_state", _INTERP_314),
    (
        "thread_state",
        [
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "base_frame",
            "last_profiled_frame",
            "_unused_7",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
            "holds_gil",
            "gil_requested",
            "current_exception",
            "exc_state",
        ],
    ),
    ("err_stackitem", ["exc_value"]),
    ("interpreter_frame", _FRAME_314),
    ("code_object", _CODE_314),
    ("pyobject", ["size", "ob_type"]),
    (
        "type_object",
        [
            "size",
            "tp_name",
            "tp_repr",
            "tp_flags",
            "_unused_4",
            "_unused_5",
            "_unused_6",
            "_unused_7",
        ],
    ),
    ("tuple_object", ["size", "ob_item", "ob_size"]),
    ("list_object", ["size", "ob_item", "ob_size"]),
    ("set_object", ["size", "used", "table", "mask"]),
    ("dict_object", ["size", "ma_keys", "ma_values"]),
    ("float_object", ["size", "ob_fval"]),
    ("long_object", ["size", "lv_tag", "ob_digit"]),
    ("bytes_object", ["size", "ob_size", "ob_sval"]),
    ("unicode_object", ["size", "state", "length", "asciiobject_size"]),
]
# Offsets the 3.15 debug struct does not carry (or carries after fields whose layout is not
# pinned here): gc.collecting inside struct _gc_runtime_state, measured on 3.15 builds.
_GC_COLLECTING_315 = 112

DEBUG_COOKIE = b"xdebugpy"
DEBUG_HEADER_SIZE = 24


class UnsupportedVersion(Exception):
    """No offsets are known for this interpreter version or build."""


def version_string(version_hex: int) -> str:
    """``0x030b07f0`` -> ``3.11.7``."""
    return f"{version_hex >> 24 & 0xFF}.{version_hex >> 16 & 0xFF}.{version_hex >> 8 & 0xFF}"


def debug_layout_size(major: int, minor: int) -> int:
    """Bytes of ``_Py_DebugOffsets`` that :func:`parse_debug_offsets` needs for a minor."""
    layout = DEBUG_LAYOUTS.get((major, minor))
    if layout is None:
        return 4096
    return DEBUG_HEADER_SIZE + 8 * sum(len(fields) for _, fields in layout)


def parse_debug_offsets(data: bytes) -> Tuple[int, bool, Dict[str, int]]:
    """Parses ``_Py_DebugOffsets``: returns (version_hex, free_threaded, {"sub.field": value}).

    Raises:
        UnsupportedVersion: no layout is known for this minor version.
    """
    if data[:8] != DEBUG_COOKIE:
        raise ValueError("no _Py_DebugOffsets cookie")
    version, free_threaded = struct.unpack_from("<QQ", data, 8)
    key = (version >> 24 & 0xFF, version >> 16 & 0xFF)
    layout = DEBUG_LAYOUTS.get(key)
    if layout is None:
        raise UnsupportedVersion(
            f"Python {version_string(version)} is newer than this hostprof knows "
            f"(its _Py_DebugOffsets layout for {key[0]}.{key[1]} is not described)"
        )
    out: Dict[str, int] = {}
    pos = DEBUG_HEADER_SIZE
    for sub, fields in layout:
        for name in fields:
            (out[f"{sub}.{name}"],) = struct.unpack_from("<Q", data, pos)
            pos += 8
    return version, bool(free_threaded), out


def _unicode_kind_shift(free_threaded: bool, minor: int) -> int:
    # PyASCIIObject.state: interned:2 (a whole byte in free-threaded 3.14+), then kind:3.
    return 8 if free_threaded and minor >= 14 else 2


def from_debug_offsets(data: bytes, code_type_addr: int) -> Tuple[int, bool, Dict[str, int]]:
    """Reader offsets from a 3.13+ ``_Py_DebugOffsets``: (version, free_threaded, offsets)."""
    version, ft, d = parse_debug_offsets(data)
    minor = version >> 16 & 0xFF
    interp_gc = d["interpreter_state.gc"]
    if "gc.collecting" in d:
        gc_collecting = interp_gc + d["gc.collecting"]
    elif minor == 15:
        gc_collecting = interp_gc + _GC_COLLECTING_315
    else:
        gc_collecting = -1
    asciiobject = d["unicode_object.asciiobject_size"]
    # PyCompactUnicodeObject adds utf8_length and utf8 (16 bytes) to PyASCIIObject in 3.12+.
    offsets = {
        "version_hex": version,
        "rt_interp_head": d["runtime_state.interpreters_head"],
        "interp_gil_holder": d["interpreter_state.gil_runtime_state_holder"],
        "interp_gil_locked": d["interpreter_state.gil_runtime_state_locked"],
        "interp_threads_head": d["interpreter_state.threads_head"],
        "interp_gc_collecting": gc_collecting,
        "ts_next": d["thread_state.next"],
        "ts_thread_id": d["thread_state.thread_id"],
        "ts_native_thread_id": d["thread_state.native_thread_id"],
        "ts_frame": d["thread_state.current_frame"],
        "frames_kind": 1,
        "fr_previous": d["interpreter_frame.previous"],
        "fr_code": d["interpreter_frame.executable"],
        "fr_instr": d["interpreter_frame.instr_ptr"],
        "fr_owner": d["interpreter_frame.owner"],
        "owner_skip_min": _OWNER_SKIP_MIN,
        "ob_type": d["pyobject.ob_type"],
        "code_name": d["code_object.name"],
        "code_qualname": d["code_object.qualname"],
        "code_filename": d["code_object.filename"],
        "code_firstlineno": d["code_object.firstlineno"],
        "code_linetable": d["code_object.linetable"],
        "code_adaptive": d["code_object.co_code_adaptive"],
        "lines_kind": 2,
        "unicode_state": d["unicode_object.state"],
        "unicode_length": d["unicode_object.length"],
        "unicode_ascii_size": asciiobject,
        "unicode_compact_size": asciiobject + 16,
        "unicode_kind_shift": _unicode_kind_shift(ft, minor),
        "bytes_size": d["bytes_object.ob_size"],
        "bytes_sval": d["bytes_object.ob_sval"],
        "code_type_addr": code_type_addr,
        "unicode_type_addr": 0,
        # f_executable is a tagged _PyStackRef from 3.14: the low bits are flags.
        "executable_mask": (~7) & 0xFFFFFFFFFFFFFFFF if minor >= 14 else 0xFFFFFFFFFFFFFFFF,
    }
    offsets["_dict_keys"] = d["dict_object.ma_keys"]
    offsets["_dict_values"] = d["dict_object.ma_values"]
    offsets["_interp_modules"] = d["interpreter_state.imports_modules"]
    # For reading locals (dump --locals): slow path, Python side.
    offsets["_fr_localsplus"] = d["interpreter_frame.localsplus"]
    offsets["_code_varnames"] = -1
    offsets["_code_nlocals"] = -1
    offsets["_code_localsplusnames"] = d["code_object.localsplusnames"]
    offsets["_code_localspluskinds"] = d["code_object.localspluskinds"]
    offsets["_tuple_items"] = d["tuple_object.ob_item"]
    offsets["_tuple_size"] = d["tuple_object.ob_size"]
    offsets["_float_value"] = d["float_object.ob_fval"]
    offsets["_type_name"] = d["type_object.tp_name"]
    # Instance attributes (thread names): tp_flags, and sizeof(PyTypeObject) to find the
    # heap type's cached keys after it.
    offsets["_type_flags"] = d["type_object.tp_flags"]
    offsets["_type_size"] = d["type_object.size"]
    offsets["_long_tag"] = d["long_object.lv_tag"]
    offsets["_long_digits"] = d["long_object.ob_digit"]
    offsets["_code_cellvars"] = -1
    offsets["_ob_header"] = d["pyobject.size"]
    return version, ft, offsets


def from_table(version_hex: int, code_type_addr: int) -> Dict[str, int]:
    """Reader offsets for 3.9-3.12 from the generated tables.

    Raises:
        UnsupportedVersion: the minor version has no table.
    """
    major, minor = version_hex >> 24 & 0xFF, version_hex >> 16 & 0xFF
    t = TABLES.get(f"{major}.{minor}")
    if t is None or minor >= 13:
        raise UnsupportedVersion(f"Python {version_string(version_hex)} is not supported")
    objects = t["iframe_code"] < 0
    offsets = {
        "version_hex": version_hex,
        "rt_interp_head": t["runtime_interpreters_head"],
        "rt_gil_holder": t["runtime_gil_holder"],
        "rt_gil_locked": t["runtime_gil_locked"],
        "interp_gil_ptr": t["interp_gil_ptr"],
        "gil_holder": t["gil_holder"],
        "gil_locked": t["gil_locked"],
        "interp_threads_head": t["interp_threads_head"],
        "interp_gc_collecting": t["interp_gc_collecting"],
        "ts_next": t["tstate_next"],
        "ts_thread_id": t["tstate_thread_id"],
        "ts_native_thread_id": t["tstate_native_thread_id"],
        "ts_frame": t["tstate_frame"] if objects else -1,
        "ts_cframe": -1 if objects else t["tstate_cframe"],
        "cframe_current_frame": t["cframe_current_frame"],
        "pthread_tid": GLIBC_PTHREAD_TID if t["tstate_native_thread_id"] < 0 else -1,
        "frames_kind": 0 if objects else 1,
        "fr_previous": t["frame_back"] if objects else t["iframe_previous"],
        "fr_code": t["frame_code"] if objects else t["iframe_code"],
        "fr_instr": t["frame_lasti"] if objects else t["iframe_instr"],
        "fr_owner": -1 if objects else t["iframe_owner"],
        "owner_skip_min": _OWNER_SKIP_MIN,
        "ob_type": 8,
        "code_name": t["code_name"],
        "code_qualname": t["code_qualname"],
        "code_filename": t["code_filename"],
        "code_firstlineno": t["code_firstlineno"],
        "code_linetable": t["code_linetable"],
        "code_adaptive": t["code_adaptive"],
        "lines_kind": {9: 0, 10: 1}.get(minor, 2),
        "unicode_state": t["unicode_state"],
        "unicode_length": t["unicode_length"],
        "unicode_ascii_size": t["unicode_ascii_size"],
        "unicode_compact_size": t["unicode_compact_size"],
        "unicode_kind_shift": 2,
        "bytes_size": t["bytes_size"],
        "bytes_sval": t["bytes_sval"],
        "code_type_addr": code_type_addr,
        "unicode_type_addr": 0,
        "executable_mask": 0xFFFFFFFFFFFFFFFF,
    }
    offsets["_dict_keys"] = t["dict_keys"]
    offsets["_dict_values"] = t["dict_values"]
    offsets["_interp_modules"] = t["interp_modules"]
    offsets["_fr_localsplus"] = t["frame_localsplus"] if objects else t["iframe_localsplus"]
    offsets["_code_varnames"] = t["code_varnames"]
    offsets["_code_nlocals"] = t["code_nlocals"]
    offsets["_code_localsplusnames"] = t["code_localsplusnames"]
    offsets["_code_localspluskinds"] = t["code_localspluskinds"]
    offsets["_tuple_items"] = t["tuple_items"]
    offsets["_tuple_size"] = t["bytes_size"]  # PyVarObject.ob_size
    offsets["_float_value"] = t["float_value"]
    offsets["_type_name"] = t["type_name"]
    offsets["_long_tag"] = t["long_size"]
    offsets["_long_digits"] = t["long_digits"]
    # co_cellvars (3.9/3.10 keep cells after the locals in f_localsplus): PyCodeObject facts.
    offsets["_code_cellvars"] = 88 if minor <= 10 else -1
    offsets["_ob_header"] = 16
    return offsets


def reader_fields(offsets: Dict[str, int]) -> Dict[str, int]:
    """The subset of ``offsets`` that pyreader.c takes (drops ``_``-prefixed extras)."""
    out = {k: v for k, v in offsets.items() if not k.startswith("_")}
    # int64 in C: store the unsigned 64-bit masks as their two's-complement values.
    for k in ("executable_mask", "code_type_addr", "unicode_type_addr"):
        if out[k] >= 1 << 63:
            out[k] -= 1 << 64
    return out
