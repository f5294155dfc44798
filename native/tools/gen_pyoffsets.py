"""Regenerates native/pyoffsets_tables.py: struct offsets of CPython minor versions
without ``_Py_DebugOffsets`` (3.9 to 3.12), read from the DWARF of an unstripped libpython.

Offsets are facts of each minor release's headers (the structs do not change within a minor
release). This script asks gdb for them so nobody copies them by hand:

    python native/tools/gen_pyoffsets.py ~/.pyenv/versions/3.{9,10,11,12}.*/lib/libpython3.*.so.1.0

Each field lists candidate C expressions; the first one gdb accepts wins, and a field none
of them matches is recorded as -1 (absent in that version).
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Dict
from typing import List
from typing import Tuple

RT = "((_PyRuntimeState*)0)"
IS = "((PyInterpreterState*)0)"
TS = "((PyThreadState*)0)"

FIELDS: List[Tuple[str, List[str]]] = [
    ("runtime_interpreters_head", [f"&{RT}->interpreters.head"]),
    ("runtime_gil_holder", [f"&{RT}->ceval.gil.last_holder"]),
    ("runtime_gil_locked", [f"&{RT}->ceval.gil.locked"]),
    ("interp_gil_ptr", [f"&{IS}->ceval.gil"]),
    ("gil_holder", ["&((struct _gil_runtime_state*)0)->last_holder"]),
    ("gil_locked", ["&((struct _gil_runtime_state*)0)->locked"]),
    ("interp_next", [f"&{IS}->next"]),
    ("interp_threads_head", [f"&{IS}->threads.head", f"&{IS}->tstate_head"]),
    ("interp_gc_collecting", [f"&{IS}->gc.collecting"]),
    ("interp_modules", [f"&{IS}->imports.modules", f"&{IS}->modules"]),
    ("tstate_next", [f"&{TS}->next"]),
    ("tstate_interp", [f"&{TS}->interp"]),
    ("tstate_thread_id", [f"&{TS}->thread_id"]),
    ("tstate_native_thread_id", [f"&{TS}->native_thread_id"]),
    ("tstate_frame", [f"&{TS}->current_frame", f"&{TS}->frame"]),
    ("tstate_cframe", [f"&{TS}->cframe"]),
    ("cframe_current_frame", ["&((_PyCFrame*)0)->current_frame"]),
    (
        "iframe_code",
        ["&((_PyInterpreterFrame*)0)->f_code", "&((_PyInterpreterFrame*)0)->f_executable"],
    ),
    ("iframe_previous", ["&((_PyInterpreterFrame*)0)->previous"]),
    (
        "iframe_instr",
        ["&((_PyInterpreterFrame*)0)->prev_instr", "&((_PyInterpreterFrame*)0)->instr_ptr"],
    ),
    ("iframe_owner", ["&((_PyInterpreterFrame*)0)->owner"]),
    ("frame_back", ["&((PyFrameObject*)0)->f_back"]),
    ("frame_code", ["&((PyFrameObject*)0)->f_code"]),
    ("frame_lasti", ["&((PyFrameObject*)0)->f_lasti"]),
    ("code_name", ["&((PyCodeObject*)0)->co_name"]),
    ("code_qualname", ["&((PyCodeObject*)0)->co_qualname"]),
    ("code_filename", ["&((PyCodeObject*)0)->co_filename"]),
    ("code_firstlineno", ["&((PyCodeObject*)0)->co_firstlineno"]),
    ("code_linetable", ["&((PyCodeObject*)0)->co_linetable", "&((PyCodeObject*)0)->co_lnotab"]),
    ("code_adaptive", ["&((PyCodeObject*)0)->co_code_adaptive"]),
    ("unicode_state", ["&((PyASCIIObject*)0)->state"]),
    ("unicode_length", ["&((PyASCIIObject*)0)->length"]),
    ("unicode_ascii_size", ["sizeof(PyASCIIObject)"]),
    ("unicode_compact_size", ["sizeof(PyCompactUnicodeObject)"]),
    ("bytes_size", ["&((PyVarObject*)0)->ob_size"]),
    ("bytes_sval", ["&((PyBytesObject*)0)->ob_sval"]),
    ("dict_keys", ["&((PyDictObject*)0)->ma_keys"]),
    ("dict_values", ["&((PyDictObject*)0)->ma_values"]),
    ("type_basicsize", ["&((PyTypeObject*)0)->tp_basicsize"]),
    ("type_dictoffset", ["&((PyTypeObject*)0)->tp_dictoffset"]),
    ("type_flags", ["&((PyTypeObject*)0)->tp_flags"]),
    ("heaptype_cached_keys", ["&((PyHeapTypeObject*)0)->ht_cached_keys"]),
    ("module_dict", ["&((PyModuleObject*)0)->md_dict"]),
    ("long_digits", ["&((PyLongObject*)0)->ob_digit", "&((PyLongObject*)0)->long_value.ob_digit"]),
    ("long_size", ["&((PyVarObject*)0)->ob_size", "&((PyLongObject*)0)->long_value.lv_tag"]),
    ("frame_localsplus", ["&((PyFrameObject*)0)->f_localsplus"]),
    ("iframe_localsplus", ["&((_PyInterpreterFrame*)0)->localsplus"]),
    ("code_varnames", ["&((PyCodeObject*)0)->co_varnames"]),
    ("code_nlocals", ["&((PyCodeObject*)0)->co_nlocals"]),
    ("code_localsplusnames", ["&((PyCodeObject*)0)->co_localsplusnames"]),
    ("code_localspluskinds", ["&((PyCodeObject*)0)->co_localspluskinds"]),
    ("tuple_items", ["&((PyTupleObject*)0)->ob_item"]),
    ("float_value", ["&((PyFloatObject*)0)->ob_fval"]),
    ("type_name", ["&((PyTypeObject*)0)->tp_name"]),
]


def _gdb_value(lib: str, expr: str) -> int | None:
    out = subprocess.run(
        ["gdb", "-q", "-batch", "-ex", f"print (long)({expr})", lib],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"\$1 = (-?\d+)", out)
    return int(m.group(1)) if m else None


def offsets_of(lib: str) -> Dict[str, int]:
    """Every field's offset in ``lib`` (-1 where the version lacks it)."""
    table: Dict[str, int] = {}
    for name, candidates in FIELDS:
        value = -1
        for expr in candidates:
            got = _gdb_value(lib, expr)
            if got is not None:
                value = got
                break
        table[name] = value
    return table


def main(libs: List[str]) -> None:
    print('"""Generated by native/tools/gen_pyoffsets.py from libpython DWARF; do not edit."""')
    print()
    print("TABLES = {")
    for lib in libs:
        minor = re.search(r"libpython(3\.\d+)", lib).group(1)  # type: ignore[union-attr]
        print(f'    "{minor}": {{')
        for k, v in offsets_of(lib).items():
            print(f'        "{k}": {v},')
        print("    },")
    print("}")


if __name__ == "__main__":
    main(sys.argv[1:])
