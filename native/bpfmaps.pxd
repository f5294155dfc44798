# Declarations of bpfmaps.h that the wrapper touches; no Python state, no exceptions.
from libc.stdint cimport int32_t
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "bpfmaps.h" nogil:
    ctypedef struct hp_vma:
        uint64_t start
        uint64_t end
        uint64_t offset
        uint64_t inode
        uint64_t flags
        uint32_t dev_major
        uint32_t dev_minor
        uint32_t name_off
        uint32_t name_len
        uint32_t build_id_len

    int HP_BUILD_ID_CAP

    int hp_bpf_lookup(int fd, const void *key, void *value) noexcept
    size_t hp_read_stacks(int fd, const int32_t *ids, size_t n, uint32_t max_depth,
                          uint64_t *out, int32_t *lens) noexcept
    size_t hp_delete_ids(int fd, const int32_t *ids, size_t n) noexcept
    int hp_read_u64_array(int fd, uint32_t n, uint64_t *out) noexcept
    long hp_procmap_find(int maps_fd, const uint64_t *addrs, size_t n, int64_t *which,
                         hp_vma *vmas, char *names, size_t names_cap,
                         uint8_t *build_ids, uint64_t *gaps, size_t *n_gaps) noexcept
