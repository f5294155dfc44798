# distutils: sources = native/pprofscan.c
"""Thin wrapper over pprofscan.c: reads a pprof profile into flat arrays in one C pass."""

from cpython.bytes cimport PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeUTF8


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t
from libc.string cimport memcmp
from libc.string cimport memcpy
from libc.string cimport memset

from pprofscan cimport HP_PPROF_MALFORMED
from pprofscan cimport HP_PPROF_MAX_DEPTH
from pprofscan cimport HP_PPROF_NOMEM
from pprofscan cimport HP_PPROF_OK
from pprofscan cimport HP_PPROF_TOO_LARGE
from pprofscan cimport hp_pprof
from pprofscan cimport hp_pprof_free
from pprofscan cimport hp_pprof_scan

import numpy as np

cimport numpy as cnp

cnp.import_array()

MAX_DEPTH = HP_PPROF_MAX_DEPTH


class PprofError(ValueError):
    """The data is not a valid pprof profile (a general protobuf reader rejects it too)."""


class PprofUnsupported(ValueError):
    """The data may be a valid profile, but needs the general reader (groups, sparse ids...)."""


class PprofTooLarge(ValueError):
    """The profile's stacks expand past the reader's frame cap."""


# Agents send the same function names push after push: decoding each from UTF-8 again costs
# more than looking it up, and reusing the str objects reuses their cached hashes downstream.
# Keyed by a 64-bit FNV-1a hash of the bytes, verified by comparing them; bounded.
cdef dict _names = {}
cdef Py_ssize_t _NAMES_MAX = 1 << 16


cdef inline uint64_t _fnv1a(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h


cdef str _name(const char *s, Py_ssize_t n):
    cdef uint64_t h = _fnv1a(<const unsigned char *>s, n)
    cdef object hit = _names.get(h)
    cdef const char *u
    cdef Py_ssize_t un
    if hit is not None:
        u = PyUnicode_AsUTF8AndSize(hit, &un)
        if un == n and memcmp(u, s, n) == 0:
            return <str>hit
    text = PyUnicode_DecodeUTF8(s, n, "strict")
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    _names[h] = text
    return text


cdef object _copy(const void *src, Py_ssize_t n, object dtype):
    out = np.empty(n, dtype=dtype)
    cdef cnp.ndarray arr = out
    if n:
        memcpy(arr.data, src, n * arr.itemsize)
    return out


cdef class PprofScan:
    """One read profile. Owns one hp_pprof (freed in __dealloc__) and the bytes it points into.

    Attributes are copies: ``frames`` (uint32, leaf first, indexes into ``names``), ``offsets``
    (int64, one more than the samples), ``values`` (int64, samples x types), ``label_off`` and
    ``labels`` (int64 rows of key, str, num string indexes / number; None without labels),
    ``any_negative`` and ``type_nonzero`` (per type) about the values.
    """

    cdef hp_pprof _p
    cdef bytes _data
    cdef readonly object frames
    cdef readonly object offsets
    cdef readonly object values
    cdef readonly object label_off
    cdef readonly object labels
    cdef readonly list names
    cdef readonly list types
    cdef readonly object period_type
    cdef readonly int64_t period
    cdef readonly int64_t time_nanos
    cdef readonly bint any_negative
    cdef readonly list type_nonzero

    def __cinit__(self, bytes data not None):
        memset(&self._p, 0, sizeof(hp_pprof))
        self._data = data
        cdef const uint8_t *ptr = <const uint8_t *>PyBytes_AS_STRING(data)
        cdef size_t n = len(data)
        cdef int rc
        # Releasing the GIL costs a hand-over to any other thread waiting for it: worth it
        # only for large profiles (a push's typical ~30 KiB takes tens of microseconds).
        if n >= (1 << 18):
            with nogil:
                rc = hp_pprof_scan(&self._p, ptr, n)
        else:
            rc = hp_pprof_scan(&self._p, ptr, n)
        if rc != HP_PPROF_OK:
            msg = self._p.error.decode("utf-8", "replace")
            hp_pprof_free(&self._p)
            if rc == HP_PPROF_NOMEM:
                raise MemoryError("pprof reader: out of memory")
            if rc == HP_PPROF_MALFORMED:
                raise PprofError(msg)
            if rc == HP_PPROF_TOO_LARGE:
                raise PprofTooLarge(msg)
            raise PprofUnsupported(msg)
        cdef hp_pprof *p = &self._p
        cdef Py_ssize_t ns = p.n_samples
        self.frames = _copy(p.frames, p.n_frames, np.uint32)
        self.offsets = _copy(p.offsets, ns + 1, np.int64)
        self.values = _copy(p.values, ns * p.n_types, np.int64).reshape(ns, p.n_types)
        self.label_off = None
        self.labels = None
        if p.n_labels:
            self.label_off = _copy(p.label_off, ns + 1, np.int64)
            self.labels = _copy(p.labels, 3 * p.n_labels, np.int64).reshape(p.n_labels, 3)
        self.any_negative = p.any_negative
        self.type_nonzero = [bool(p.type_nonzero[i]) for i in range(p.n_types)]
        cdef uint32_t i
        cdef const char *base = PyBytes_AS_STRING(data)
        names = []
        for i in range(p.n_names):
            if p.name_str[i] >= 0:
                names.append(_name(base + p.str_off[p.name_str[i]], p.str_len[p.name_str[i]]))
            else:
                names.append(f"0x{p.name_addr[i]:x}")
        self.names = names
        self.types = [(self.string(p.types[2 * i]), self.string(p.types[2 * i + 1]))
                      for i in range(p.n_types)]
        self.period_type = None
        if p.has_period_type:
            self.period_type = (self.string(p.period_type[0]), self.string(p.period_type[1]))
        self.period = p.period
        self.time_nanos = p.time_nanos

    def __dealloc__(self):
        hp_pprof_free(&self._p)

    def __len__(self):
        return self._p.n_samples

    cpdef str string(self, int64_t i):
        """String ``i`` of the profile's string table (IndexError when out of range)."""
        if i < 0 or <uint64_t>i >= self._p.n_strings:
            raise IndexError(i)
        cdef const char *base = PyBytes_AS_STRING(self._data)
        return PyUnicode_DecodeUTF8(base + self._p.str_off[i], self._p.str_len[i], "strict")


def scan(bytes data not None) -> PprofScan:
    """Reads an inflated pprof profile.

    Raises:
        PprofError: malformed protobuf or pprof (bad indexes, unknown ids, value counts).
        PprofUnsupported: valid protobuf this reader leaves to the general reader.
        PprofTooLarge: stacks expand past the frame cap.
    """
    return PprofScan(data)
