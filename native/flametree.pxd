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

    ctypedef struct hp_flame_layout:
        int64_t *rows
        uint64_t n_rows
        int64_t *names
        uint64_t n_names
        int64_t max_self
        int64_t total

    int hp_flame_tree_layout(const hp_flame_tree *t, const int64_t *name_rank, uint64_t n_ranks,
                             uint32_t other_name, uint32_t root_name, uint64_t max_nodes,
                             hp_flame_layout *out) noexcept
    void hp_flame_layout_free(hp_flame_layout *out) noexcept
