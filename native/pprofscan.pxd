# Declarations of pprofscan.h that the wrapper touches. The reader holds no Python state and
# cannot throw, so everything is noexcept nogil.
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "pprofscan.h" nogil:
    int HP_PPROF_OK
    int HP_PPROF_MALFORMED
    int HP_PPROF_UNSUPPORTED
    int HP_PPROF_TOO_LARGE
    int HP_PPROF_NOMEM
    int HP_PPROF_MAX_DEPTH

    ctypedef struct hp_pprof:
        uint64_t n_strings
        uint64_t *str_off
        uint32_t *str_len
        uint32_t n_types
        int64_t *types
        int has_period_type
        int64_t period_type[2]
        int64_t period
        int64_t time_nanos
        uint64_t n_samples
        int64_t *offsets
        uint32_t *frames
        uint64_t n_frames
        int64_t *values
        int any_negative
        uint8_t *type_nonzero
        uint32_t n_names
        int64_t *name_str
        uint64_t *name_addr
        int64_t *label_off
        int64_t *labels
        uint64_t n_labels
        char error[160]

    int hp_pprof_scan(hp_pprof *p, const uint8_t *data, size_t len) noexcept
    void hp_pprof_free(hp_pprof *p) noexcept
