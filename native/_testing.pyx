# distutils: sources = native/pyreader.c native/tidmap.c
"""Test-only entry points into pyreader.c (line-table decoding without a target process)."""

from libc.stdint cimport int32_t
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdlib cimport free
from libc.stdlib cimport malloc
from libc.string cimport memcpy
from libc.string cimport memset

from pyreader cimport hp_code
from pyreader cimport hp_code_line
from pyreader cimport hp_offsets_set
from pyreader cimport hp_offsets_clear
from pyreader cimport hp_reader
from pyreader cimport hp_reader_offsets

LINES_LNOTAB = 0
LINES_310 = 1
LINES_LOCATIONS = 2


def code_lines(int lines_kind, int32_t firstlineno, bytes linetable, offsets):
    """Decodes the line of each byte offset with pyreader.c's decoder for ``lines_kind``."""
    cdef hp_reader *r = <hp_reader *>malloc(sizeof(hp_reader))
    cdef hp_code c
    cdef Py_ssize_t n = len(linetable)
    if r == NULL:
        raise MemoryError()
    memset(r, 0, sizeof(hp_reader))
    memset(&c, 0, sizeof(hp_code))
    hp_offsets_clear(hp_reader_offsets(r))
    hp_offsets_set(hp_reader_offsets(r), b"lines_kind", lines_kind)
    c.firstlineno = firstlineno
    c.linetable = <uint8_t *>malloc(n + 1)
    c.linetable_len = <uint32_t>n
    try:
        if n:
            memcpy(c.linetable, <const char *>linetable, n)
        return [hp_code_line(r, &c, <int64_t>off) for off in offsets]
    finally:
        free(c.linetable)
        free(r)
