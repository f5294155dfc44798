# Declarations of flametree.h that the wrapper touches; no Python state, no exceptions.
from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "flametree.h" nogil:
    ctypedef struct hp_flame_tree:
        uint32_t sides
        uint32_t n_nodes
        uint32_t *parent
        uint32_t *name
        int64_t *self

    int hp_flame_tree_init(hp_flame_tree *t, uint32_t sides) noexcept
    void hp_flame_tree_free(hp_flame_tree *t) noexcept
    int hp_flame_tree_add(hp_flame_tree *t, const uint32_t *frames, uint64_t n_frames,
                          const int64_t *offsets, uint64_t n_stacks, const uint32_t *ids,
                          const int64_t *values, uint64_t n, uint32_t side,
                          uint32_t unknown_name) noexcept
