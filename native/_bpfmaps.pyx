# distutils: sources = native/bpfmaps.c
"""Thin wrapper over bpfmaps.c: bulk BPF map reads and PROCMAP_QUERY lookups, one C loop per
call instead of one ctypes call per item (see bpfmaps.h)."""

from libc.stdint cimport int32_t
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t
from libc.stdlib cimport free
from libc.stdlib cimport malloc

from bpfmaps cimport HP_BUILD_ID_CAP
from bpfmaps cimport hp_delete_ids
from bpfmaps cimport hp_procmap_find
from bpfmaps cimport hp_read_stacks
from bpfmaps cimport hp_read_u64_array
from bpfmaps cimport hp_vma

import os

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef enum:
    _NAME_BYTES = 512  # blob bytes per address for mapping paths (typical paths are < 200)


def read_stacks(int fd, ids, uint32_t max_depth):
    """Addresses of stack ids (leaf first) from a stack map: ``(addrs, lens)``, where
    ``lens[i]`` is the frame count of ``ids[i]`` (-1: not in the map) and ``addrs`` holds the
    stacks back to back (uint64)."""
    cdef cnp.ndarray[cnp.int32_t, ndim=1, mode="c"] i = np.ascontiguousarray(ids, dtype=np.int32)
    cdef size_t n = i.shape[0]
    cdef cnp.ndarray[cnp.uint64_t, ndim=1, mode="c"] out = np.empty(
        max(n * max_depth, 1), dtype=np.uint64)
    cdef cnp.ndarray[cnp.int32_t, ndim=1, mode="c"] lens = np.empty(n, dtype=np.int32)
    cdef size_t total
    with nogil:
        total = hp_read_stacks(fd, <const int32_t *>i.data, n, max_depth,
                               <uint64_t *>out.data, <int32_t *>lens.data)
    return out[:total].copy(), lens


def delete_ids(int fd, ids):
    """Deletes stack ids (u32 keys) from a map; returns how many were there."""
    cdef cnp.ndarray[cnp.int32_t, ndim=1, mode="c"] i = np.ascontiguousarray(ids, dtype=np.int32)
    cdef size_t done
    with nogil:
        done = hp_delete_ids(fd, <const int32_t *>i.data, i.shape[0])
    return done


def read_u64_array(int fd, uint32_t n):
    """Entries 0..n-1 of a BPF array of u64 (uint64 numpy array)."""
    cdef cnp.ndarray[cnp.uint64_t, ndim=1, mode="c"] out = np.zeros(max(n, 1), dtype=np.uint64)
    cdef int rc
    with nogil:
        rc = hp_read_u64_array(fd, n, <uint64_t *>out.data)
    if rc:
        raise OSError(-rc, f"BPF_MAP_LOOKUP_ELEM failed: {os.strerror(-rc)}")
    return out[:n]


def procmap_find(int maps_fd, addrs):
    """The executable mappings holding ascending ``addrs`` (uint64), by PROCMAP_QUERY on an
    open /proc/PID/maps.

    Returns ``(which, vmas, gaps)``: ``which[i]`` indexes ``vmas`` (-1: no executable
    mapping holds the address); each vma is a tuple (start, end, offset, inode, flags,
    dev_major, dev_minor, name, build_id hex or None); ``gaps`` is a uint64 array of shape
    (k, 2) of [lo, hi) ranges the queries found without any executable mapping. Raises
    OSError when the first query fails (ENOTTY: the kernel has no PROCMAP_QUERY)."""
    cdef cnp.ndarray[cnp.uint64_t, ndim=1, mode="c"] a = np.ascontiguousarray(
        addrs, dtype=np.uint64)
    cdef size_t n = a.shape[0]
    cdef cnp.ndarray[cnp.int64_t, ndim=1, mode="c"] which = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return which, [], np.empty((0, 2), dtype=np.uint64)
    cdef cnp.ndarray[cnp.uint64_t, ndim=2, mode="c"] gaps = np.empty((n, 2), dtype=np.uint64)
    cdef size_t n_gaps = 0
    cdef hp_vma *vmas = <hp_vma *>malloc(n * sizeof(hp_vma))
    cdef size_t names_cap = n * _NAME_BYTES + 4096
    cdef char *names = <char *>malloc(names_cap)
    cdef uint8_t *bids = <uint8_t *>malloc(n * HP_BUILD_ID_CAP)
    cdef long found
    cdef long k
    try:
        if vmas == NULL or names == NULL or bids == NULL:
            raise MemoryError()
        with nogil:
            found = hp_procmap_find(maps_fd, <const uint64_t *>a.data, n,
                                    <int64_t *>which.data, vmas, names, names_cap, bids,
                                    <uint64_t *>gaps.data, &n_gaps)
        if found < 0:
            raise OSError(-found, f"PROCMAP_QUERY failed: {os.strerror(-found)}")
        out = []
        for k in range(found):
            v = vmas[k]
            name = names[v.name_off:v.name_off + v.name_len].decode("utf-8", "replace")
            bid = (bids[k * HP_BUILD_ID_CAP:k * HP_BUILD_ID_CAP + v.build_id_len].hex()
                   if v.build_id_len else None)
            out.append((v.start, v.end, v.offset, v.inode, v.flags, v.dev_major, v.dev_minor,
                        name, bid))
        return which, out, gaps[:n_gaps].copy()
    finally:
        free(vmas)
        free(names)
        free(bids)
