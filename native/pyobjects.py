"""Reading a few kinds of Python objects out of a target's memory: str, int, dict, instance
attributes. Slow path (plain Python over :meth:`Reader.read`), used once per new thread to
find ``threading._active`` names, never per sample.

Layouts (facts of CPython's headers, x86-64):

* dict keys, 3.9/3.10: ``dk_refcnt, dk_size, dk_lookup, dk_usable, dk_nentries`` then
  ``dk_indices`` (``dk_size`` entries of 1/2/4/8 bytes), then 24-byte (hash, key, value)
  entries. 3.11+: ``dk_refcnt`` (8), ``dk_log2_size``, ``dk_log2_index_bytes``, ``dk_kind``
  (bytes at 8, 9, 10), ``dk_usable`` at 16, ``dk_nentries`` at 24, indices at 32, then
  entries of 24 bytes (general) or 16 bytes (key, value: unicode-only and split tables).
* split values: 3.11/3.12 ``PyDictValues`` is the value array; 3.13+ has a 8-byte header.
* instance dicts: 3.9/3.10 at ``tp_dictoffset``; 3.11 managed dict at ``obj - 24`` and
  values at ``obj - 32``; 3.12 a dict-or-values word at ``obj - 24`` (odd: values - 1);
  3.13+ managed dict at ``obj - 24`` (free-threaded 3.13t: ``obj - 8``, its pre-header has no
  GC links) or inline values at ``obj + tp_basicsize``, 8-byte ``_dictvalues`` header first.
  The free-threaded dict keys object has a one-byte ``dk_mutex`` after ``dk_kind``, which
  ends in the padding before ``dk_version``: same offsets.
* type objects: ``PyObject`` header (16 bytes; 32 free-threaded), then ``ob_size``,
  ``tp_name``, ``tp_basicsize`` (header + 16), and ``tp_flags`` 19 words after the header
  (header + 152; 3.13+ read it from ``_Py_DebugOffsets``); ``tp_dictoffset`` is 15 words
  after ``tp_flags``. ``PyHeapTypeObject.ht_cached_keys`` is ``sizeof(PyTypeObject)`` (3.13+:
  ``_Py_DebugOffsets.type_object.size``) + 464: ``as_async`` (4 slots), ``as_number`` (36),
  ``as_mapping`` (3), ``as_sequence`` (10), ``as_buffer`` (2), ``ht_name``, ``ht_slots`` and
  ``ht_qualname`` (checked on 3.11, 3.13, 3.13t, 3.14 and 3.15).
* module objects: ``md_dict`` right after the ``PyObject`` header.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING
from typing import Dict
from typing import Iterator
from typing import Optional
from typing import Tuple

if TYPE_CHECKING:
    from hostprof.native.pyprocess import PyProcess

_TPFLAGS_MANAGED_DICT = 1 << 4
_TPFLAGS_INLINE_VALUES = 1 << 2
# PyHeapTypeObject.ht_cached_keys, from the generated tables (3.9-3.12); 3.13+ derive it
# from sizeof(PyTypeObject) in _Py_DebugOffsets.
_CACHED_KEYS = {9: 864, 10: 872, 11: 872, 12: 880, 13: 880}
_HEAPTYPE_CACHED_KEYS_AFTER_TYPE = 464
_MAX_ENTRIES = 100_000
# Bytes of string data read together with a str's header (one read for most names).
_STR_PREFETCH = 64


class ObjectReader:
    """Reads objects of one target. Raises OSError subclasses when memory is unreadable."""

    def __init__(self, proc: PyProcess) -> None:
        self.proc = proc
        self.read = proc.reader.read
        self.minor = proc.version_hex >> 16 & 0xFF
        self.o = o = proc.offsets
        self.header = o.get("_ob_header", 16)
        self.type_flags = o.get("_type_flags", self.header + 152)
        self.type_basicsize = self.header + 16
        self.type_dictoffset = self.type_flags + 120
        if "_type_size" in o:
            self.cached_keys = o["_type_size"] + _HEAPTYPE_CACHED_KEYS_AFTER_TYPE
        else:
            self.cached_keys = _CACHED_KEYS.get(self.minor, -1)
        self.managed_dict = -8 if proc.free_threaded else -24
        # Per reader (one dump): every Thread shares its type, so its facts and the slot of
        # an attribute name in the type's shared keys are read once, not once per thread.
        self._types: Dict[int, Tuple[int, int, int, int]] = {}
        self._slots: Dict[Tuple[int, str], int] = {}

    def ptr(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def str(self, addr: int) -> Optional[str]:
        """A compact str object's value, or None."""
        o = self.o
        # One read for the header and the start of the data: names are short, and a read
        # per field made scanning sys.modules the slowest part of `dump`.
        try:
            blob = self.read(addr, o["unicode_compact_size"] + _STR_PREFETCH)
        except OSError:  # the object ends near unmapped memory: read only what is needed
            blob = self.read(addr, max(o["unicode_state"] + 4, o["unicode_length"] + 8))
        state = struct.unpack_from("<I", blob, o["unicode_state"])[0]
        length = struct.unpack_from("<q", blob, o["unicode_length"])[0]
        shift = o["unicode_kind_shift"]
        kind, compact, ascii_ = (
            (state >> shift) & 7,
            (state >> (shift + 3)) & 1,
            (state >> (shift + 4)) & 1,
        )
        if not compact or kind not in (1, 2, 4) or not 0 <= length <= 4096:
            return None
        start = o["unicode_ascii_size"] if ascii_ else o["unicode_compact_size"]
        size = length * kind
        if start + size <= len(blob):
            raw = blob[start : start + size]
        else:
            raw = self.read(addr + start, size) if size else b""
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        return raw.decode(codec, "replace")

    def int(self, addr: int) -> int:
        """A PyLong's value."""
        tag_at = self.o.get("_long_tag", 16)
        digits_at = self.o.get("_long_digits", 24)
        # Header and the first three digits in one read (thread idents need two or three).
        try:
            blob = self.read(addr + tag_at, digits_at - tag_at + 12)
        except OSError:  # a small int right before unmapped memory: header only
            blob = self.read(addr + tag_at, digits_at - tag_at)
        head = struct.unpack_from("<q", blob, 0)[0]
        if self.minor >= 12:
            ndigits, sign = head >> 3, 1 - (head & 3)
        else:
            ndigits, sign = abs(head), (1 if head >= 0 else -1)
        if ndigits > 8:
            raise ValueError("int too large")
        if digits_at - tag_at + 4 * ndigits > len(blob):
            blob = blob[: digits_at - tag_at] + self.read(addr + digits_at, 4 * ndigits)
        digits = struct.unpack_from(f"<{ndigits}I", blob, digits_at - tag_at)
        value = 0
        for d in reversed(digits):
            value = (value << 30) | d
        return sign * value

    # ------------------------------------------------------------------------- dicts
    def _keys_layout(self, keys: int) -> Tuple[int, int, int, bool]:
        """(entries address, entry count, entry size, split/unicode-kind) of a keys object."""
        if self.minor <= 10:
            size, _lookup, _usable, nentries = struct.unpack("<qQqq", self.read(keys + 8, 32))
            width = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8
            return keys + 40 + size * width, nentries, 24, False
        _log2_size, log2_index_bytes, kind = struct.unpack("<BBB", self.read(keys + 8, 3))
        nentries = struct.unpack("<q", self.read(keys + 24, 8))[0]
        entry_size = 24 if kind == 0 else 16
        return keys + 32 + (1 << log2_index_bytes), nentries, entry_size, kind != 0

    def _values_base(self, values: int) -> int:
        return values + (8 if self.minor >= 13 else 0)

    def keys_items(self, keys: int, values: int = 0) -> Iterator[Tuple[int, int]]:
        """(key address, value address) of a keys object, values from ``values`` if split."""
        entries, n, size, _ = self._keys_layout(keys)
        n = min(n, _MAX_ENTRIES)
        if n <= 0:
            return
        blob = self.read(entries, n * size)
        base = self._values_base(values) if values else 0
        for i in range(n):
            if size == 24:
                _h, k, v = struct.unpack_from("<qQQ", blob, i * 24)
            else:
                k, v = struct.unpack_from("<QQ", blob, i * 16)
            if values:
                v = self.ptr(base + 8 * i)
            if k and v:
                yield k, v

    def dict_items(self, addr: int) -> Iterator[Tuple[int, int]]:
        """(key address, value address) pairs of a dict object."""
        keys = self.ptr(addr + self.o["_dict_keys"])
        values = self.ptr(addr + self.o["_dict_values"])
        yield from self.keys_items(keys, values)

    def dict_get_str(self, addr: int, name: str) -> Optional[int]:
        """The value address for str key ``name`` in a dict, or None."""
        for k, v in self.dict_items(addr):
            if self.str(k) == name:
                return v
        return None

    # ---------------------------------------------------------------------- attributes
    def _type_facts(self, tp: int) -> Tuple[int, int, int, int]:
        """(tp_flags, tp_dictoffset, tp_basicsize, ht_cached_keys or 0) of a type."""
        facts = self._types.get(tp)
        if facts is None:
            flags = struct.unpack("<Q", self.read(tp + self.type_flags, 8))[0]
            dictoffset = struct.unpack("<q", self.read(tp + self.type_dictoffset, 8))[0]
            basicsize = struct.unpack("<q", self.read(tp + self.type_basicsize, 8))[0]
            cached = 0
            if self.minor >= 11 and flags & _TPFLAGS_MANAGED_DICT and self.cached_keys >= 0:
                cached = self.ptr(tp + self.cached_keys)
            facts = self._types[tp] = (flags, dictoffset, basicsize, cached)
        return facts

    def attribute(self, obj: int, name: str) -> Optional[int]:
        """An instance attribute stored in the object's __dict__ (or its inline values)."""
        tp = self.ptr(obj + self.o.get("ob_type", 8))
        flags, dictoffset, basicsize, cached_keys = self._type_facts(tp)
        if self.minor <= 10 or not flags & _TPFLAGS_MANAGED_DICT:
            if dictoffset <= 0:
                return None
            d = self.ptr(obj + dictoffset)
            return self.dict_get_str(d, name) if d else None
        if not cached_keys:
            return None
        if self.minor == 11:
            d = self.ptr(obj - 24)
            if d:
                return self.dict_get_str(d, name)
            values = self.ptr(obj - 32)
            return self._split_get(cached_keys, values, name) if values else None
        if self.minor == 12:
            word = self.ptr(obj - 24)
            if word & 1:  # tagged: the word is the values pointer minus one
                return self._split_get(cached_keys, word + 1, name)
            return self.dict_get_str(word, name) if word else None
        d = self.ptr(obj + self.managed_dict)
        if d:
            return self.dict_get_str(d, name)
        if flags & _TPFLAGS_INLINE_VALUES:
            return self._split_get(cached_keys, obj + basicsize, name)
        return None

    def _split_get(self, keys: int, values: int, name: str) -> Optional[int]:
        """The value of str key ``name`` in a split table: its slot in the shared ``keys``
        (found once per keys object), then one read of that slot of ``values``."""
        slot = self._slots.get((keys, name))
        if slot is None:
            slot = -1
            entries, n, size, _ = self._keys_layout(keys)
            n = min(n, _MAX_ENTRIES)
            blob = self.read(entries, n * size) if n > 0 else b""
            for i in range(max(n, 0)):
                k = struct.unpack_from("<Q", blob, i * size + (8 if size == 24 else 0))[0]
                if k and self.str(k) == name:
                    slot = i
                    break
            self._slots[(keys, name)] = slot
        if slot < 0:
            return None
        return self.ptr(self._values_base(values) + 8 * slot) or None


def threading_names(proc: PyProcess) -> Dict[int, str]:
    """``threading.get_ident()`` -> thread name, from ``threading._active`` in the target.

    Every supported version, free-threaded 3.13t included (3.14+ also copy names into the OS
    thread name, but cut to 15 bytes, and 3.13t not at all). Returns {} when ``threading`` is
    not imported.
    """
    r = ObjectReader(proc)
    modules = r.ptr(proc.reader.interp_addr + r.o["_interp_modules"])
    if not modules:
        return {}
    mod = r.dict_get_str(modules, "threading")
    if not mod:
        return {}
    md_dict = r.ptr(mod + r.header)
    active = r.dict_get_str(md_dict, "_active")
    out: Dict[int, str] = {}
    if not active:
        return out
    for k, thread in r.dict_items(active):
        ident = r.int(k)
        name_obj = r.attribute(thread, "_name")
        if name_obj:
            name = r.str(name_obj)
            if name is not None:
                out[ident & 0xFFFFFFFFFFFFFFFF] = name
    return out
