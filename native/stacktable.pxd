# Declarations of stacktable.h that Python-facing code touches. None of these can raise a C++
# exception or touch Python state, so all are noexcept nogil.
from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "stacktable.h" nogil:
    ctypedef struct hp_stack_table:
        uint32_t *frames
        uint64_t n_frames
        uint64_t *offsets
        uint32_t n_stacks

    int hp_stack_table_init(hp_stack_table *t, uint32_t expected_stacks) noexcept
    void hp_stack_table_free(hp_stack_table *t) noexcept
    int64_t hp_stack_table_intern(hp_stack_table *t, const uint32_t *frames, uint64_t n) noexcept
    int hp_stack_table_intern_many(hp_stack_table *t, const uint32_t *frames,
                                   const int64_t *offsets, uint64_t n_stacks,
                                   uint32_t *out_ids) noexcept
    int hp_stack_table_intern_many_remapped(hp_stack_table *t, const uint32_t *frames,
                                            const int64_t *offsets, uint64_t n_stacks,
                                            const uint32_t *remap, uint64_t remap_len,
                                            uint32_t *out_ids) noexcept
