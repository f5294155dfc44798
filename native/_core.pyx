# distutils: sources = native/stacktable.c
"""Thin wrappers over the native aggregation code. Algorithms live in the C files."""

from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t

from stacktable cimport hp_stack_table
from stacktable cimport hp_stack_table_free
from stacktable cimport hp_stack_table_init
from stacktable cimport hp_stack_table_intern
from stacktable cimport hp_stack_table_intern_many
from stacktable cimport hp_stack_table_intern_many_remapped

import numpy as np

cimport numpy as cnp

cnp.import_array()


cdef class StackTable:
    """Interns stacks (sequences of frame ids, root first) into dense ids 0, 1, 2, ...

    Owns one hp_stack_table and frees it in __dealloc__.
    """

    cdef hp_stack_table _t

    def __cinit__(self, uint32_t expected_stacks=1024):
        if hp_stack_table_init(&self._t, expected_stacks) != 0:
            raise MemoryError("StackTable: out of memory")

    def __dealloc__(self):
        hp_stack_table_free(&self._t)

    def __len__(self):
        return self._t.n_stacks

    @property
    def n_frames(self):
        """Total frame ids stored over all stacks."""
        return self._t.n_frames

    def intern(self, frames):
        """Interns one stack given as a sequence of frame ids; returns its id."""
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] arr = np.ascontiguousarray(
            frames, dtype=np.uint32)
        cdef int64_t sid = hp_stack_table_intern(
            &self._t, <const uint32_t *>arr.data, arr.shape[0])
        if sid < 0:
            raise MemoryError("StackTable: out of memory")
        return sid

    def intern_many(self, frames, offsets, remap=None):
        """Interns a batch of stacks given as one flat uint32 array and len(stacks)+1 offsets.

        When ``remap`` is given, every frame id f is first replaced by remap[f] (used to move
        stacks from a batch's local frame table into a profile's).
        Returns a uint32 array of stack ids.
        """
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] f = np.ascontiguousarray(
            frames, dtype=np.uint32)
        cdef cnp.ndarray[cnp.int64_t, ndim=1, mode="c"] o = np.ascontiguousarray(
            offsets, dtype=np.int64)
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] r
        if o.shape[0] == 0:
            raise ValueError("offsets must have len(stacks) + 1 entries")
        cdef Py_ssize_t n = o.shape[0] - 1
        if n > 0 and (o[0] < 0 or o[n] > f.shape[0] or np.any(np.diff(o) < 0)):
            raise ValueError("offsets are not a non-decreasing range within frames")
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] out = np.empty(n, dtype=np.uint32)
        cdef int rc
        cdef const uint32_t *rp
        cdef Py_ssize_t rlen
        if remap is None:
            with nogil:
                rc = hp_stack_table_intern_many(
                    &self._t, <const uint32_t *>f.data, <const int64_t *>o.data, n,
                    <uint32_t *>out.data)
        else:
            r = np.ascontiguousarray(remap, dtype=np.uint32)
            rp = <const uint32_t *>r.data
            rlen = r.shape[0]
            with nogil:
                rc = hp_stack_table_intern_many_remapped(
                    &self._t, <const uint32_t *>f.data, <const int64_t *>o.data, n,
                    rp, rlen, <uint32_t *>out.data)
        if rc == -1:
            raise MemoryError("StackTable: out of memory")
        if rc == -2:
            raise ValueError("a frame id is outside the remap table")
        return out

    def get(self, uint32_t stack_id):
        """Returns the frame ids of one stack as a tuple, root first."""
        if stack_id >= self._t.n_stacks:
            raise IndexError(stack_id)
        cdef uint64_t start = self._t.offsets[stack_id]
        cdef uint64_t end = self._t.offsets[stack_id + 1]
        return tuple(self._t.frames[i] for i in range(start, end))

    def export(self):
        """Returns (frames, offsets) copies covering every stack, in id order."""
        cdef Py_ssize_t n = self._t.n_stacks
        frames = np.empty(self._t.n_frames, dtype=np.uint32)
        offsets = np.empty(n + 1, dtype=np.int64)
        cdef uint32_t[::1] fv = frames
        cdef int64_t[::1] ov = offsets
        cdef Py_ssize_t i
        for i in range(<Py_ssize_t>self._t.n_frames):
            fv[i] = self._t.frames[i]
        for i in range(n + 1):
            ov[i] = <int64_t>self._t.offsets[i]
        return frames, offsets
