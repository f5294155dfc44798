# distutils: sources = native/flametree.c
"""Thin wrapper over flametree.c: merges (stack id, value) pairs into a call tree."""

from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from flametree cimport hp_flame_layout
from flametree cimport hp_flame_layout_free
from flametree cimport hp_flame_tree
from flametree cimport hp_flame_tree_layout
from flametree cimport hp_flame_tree_add
from flametree cimport hp_flame_tree_free
from flametree cimport hp_flame_tree_init

import numpy as np

cimport numpy as cnp

cnp.import_array()


cdef class FlameTree:
    """A call tree over stacks of name ids. Owns one hp_flame_tree, freed in __dealloc__."""

    cdef hp_flame_tree _t

    def __cinit__(self, uint32_t sides=1):
        if hp_flame_tree_init(&self._t, sides) != 0:
            raise MemoryError("FlameTree: out of memory (or sides not in 1..8)")

    def __dealloc__(self):
        hp_flame_tree_free(&self._t)

    def __len__(self):
        return self._t.n_nodes

    def add(self, frames, offsets, ids, values, uint32_t side, uint32_t unknown_name):
        """Adds stacks ``ids`` (rows of the ``frames``/``offsets`` stack table, leaf first)
        with ``values`` to one side. Ids past the table go under ``unknown_name``."""
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] f = np.ascontiguousarray(
            frames, dtype=np.uint32)
        cdef cnp.ndarray[cnp.int64_t, ndim=1, mode="c"] o = np.ascontiguousarray(
            offsets, dtype=np.int64)
        cdef cnp.ndarray[cnp.uint32_t, ndim=1, mode="c"] i = np.ascontiguousarray(
            ids, dtype=np.uint32)
        cdef cnp.ndarray[cnp.int64_t, ndim=1, mode="c"] v = np.ascontiguousarray(
            values, dtype=np.int64)
        if i.shape[0] != v.shape[0]:
            raise ValueError("ids and values differ in length")
        if o.shape[0] == 0:
            raise ValueError("offsets must have one more entry than the stack table")
        cdef int rc
        with nogil:
            rc = hp_flame_tree_add(&self._t, <const uint32_t *>f.data, f.shape[0],
                                   <const int64_t *>o.data, o.shape[0] - 1,
                                   <const uint32_t *>i.data, <const int64_t *>v.data,
                                   i.shape[0], side, unknown_name)
        if rc == -1:
            raise MemoryError("FlameTree: out of memory")
        if rc == -2:
            raise ValueError("side or stack offsets out of range")

    def arrays(self):
        """Copies of (parent, name id, self values nodes x sides), int64; the root's are -1."""
        cdef Py_ssize_t n = self._t.n_nodes
        parent = np.empty(n, dtype=np.uint32)
        name = np.empty(n, dtype=np.uint32)
        selfv = np.empty((n, self._t.sides), dtype=np.int64)
        cdef cnp.ndarray p = parent
        cdef cnp.ndarray nm = name
        cdef cnp.ndarray s = selfv
        memcpy(p.data, self._t.parent, n * 4)
        memcpy(nm.data, self._t.name, n * 4)
        memcpy(s.data, self._t.self, n * self._t.sides * 8)
        parent = parent.astype(np.int64)
        name = name.astype(np.int64)
        if n:
            parent[0] = -1
            name[0] = -1
        return parent, name, selfv

    def layout(self, name_rank, uint32_t other_name, uint32_t root_name, uint64_t max_nodes):
        """Flamebearer layout of side 0: (rows int64 (n, 5): depth, x delta, total, self, name
        index; name ids in first-use order; max self; total). ``name_rank`` orders children."""
        cdef cnp.ndarray[cnp.int64_t, ndim=1, mode="c"] r = np.ascontiguousarray(
            name_rank, dtype=np.int64)
        cdef hp_flame_layout out
        cdef int rc
        with nogil:
            rc = hp_flame_tree_layout(&self._t, <const int64_t *>r.data, r.shape[0],
                                      other_name, root_name, max_nodes, &out)
        if rc == -1:
            raise MemoryError("FlameTree: out of memory")
        if rc == -2:
            raise ValueError("a name id has no rank")
        try:
            rows = np.empty((out.n_rows, 5), dtype=np.int64)
            names = np.empty(out.n_names, dtype=np.int64)
            if out.n_rows:
                memcpy((<cnp.ndarray>rows).data, out.rows, out.n_rows * 5 * 8)
            if out.n_names:
                memcpy((<cnp.ndarray>names).data, out.names, out.n_names * 8)
            return rows, names, out.max_self, out.total
        finally:
            hp_flame_layout_free(&out)
