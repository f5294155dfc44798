# Declarations of threadstate.h that the Cython wrapper touches. Plain C: nothing raises, so
# everything is noexcept nogil.
from libc.stdint cimport int32_t
from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "threadstate.h" nogil:
    ctypedef struct hp_threadstate:
        uint32_t mask
        int live

    int hp_threadstate_open(hp_threadstate *t, int map_fd, uint32_t entries) noexcept
    void hp_threadstate_close(hp_threadstate *t) noexcept
    char hp_threadstate_get(const hp_threadstate *t, int32_t tid, uint64_t *seen) noexcept
    int64_t hp_threadstate_blocked_since(const hp_threadstate *t, int32_t tid) noexcept
