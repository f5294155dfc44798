/* bpfmaps.h: bulk reads of BPF maps and process mappings for the eBPF collectors.
 *
 * The collectors get map fds from bcc; reading a stack map id by id through ctypes cost more
 * in Python call overhead than the syscalls themselves, and a stack map has no batch lookup.
 * These loops make one direct bpf()/ioctl() call per item with no Python in between.
 * No global state; every function is reentrant.
 */
#ifndef HOSTPROF_BPFMAPS_H
#define HOSTPROF_BPFMAPS_H

#include <stddef.h>
#include <stdint.h>

/* BPF_MAP_LOOKUP_ELEM; 0 or -errno. */
int hp_bpf_lookup(int fd, const void *key, void *value);

/* Reads stack traces (BPF_MAP_TYPE_STACK_TRACE, values of max_depth u64) by id. For ids[i],
 * lens[i] is its frame count (the zero padding after the last frame cut off), or -1 when the
 * id is not in the map (or negative); its addresses are appended to out, which must have room
 * for n * max_depth. Returns the number of addresses written. */
size_t hp_read_stacks(int fd, const int32_t *ids, size_t n, uint32_t max_depth, uint64_t *out,
                      int32_t *lens);

/* Deletes u32 keys (stack ids); negative ids are skipped. Returns how many were deleted. */
size_t hp_delete_ids(int fd, const int32_t *ids, size_t n);

/* Reads entries 0..n-1 of a BPF_ARRAY of u64 into out; returns 0 or -errno. */
int hp_read_u64_array(int fd, uint32_t n, uint64_t *out);

/* One executable mapping found by hp_procmap_find. */
typedef struct {
  uint64_t start;
  uint64_t end;
  uint64_t offset;
  uint64_t inode;
  uint64_t flags; /* PROCMAP_QUERY vma_flags: 1 read, 2 write, 4 exec, 8 shared */
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t name_off;     /* the path is names[name_off .. name_off + name_len) */
  uint32_t name_len;     /* 0 for an anonymous mapping */
  uint32_t build_id_len; /* bytes in build_ids[k * 64], 0 when the kernel found none */
} hp_vma;

#define HP_BUILD_ID_CAP 64
#define HP_NAME_MAX 4096 /* PATH_MAX */

/* The executable mappings holding ascending addresses, through the PROCMAP_QUERY ioctl
 * (Linux 6.11+) on an open /proc/PID/maps. Each query asks for the mapping covering an
 * address or the next one after it, so one ioctl answers every address up to that mapping's
 * end, and a run of addresses in no mapping costs one ioctl, not one each.
 * which[i] is the index into vmas of the mapping holding addrs[i], or -1. vmas has room for n
 * entries, build_ids for n * HP_BUILD_ID_CAP bytes; names is a blob of names_cap bytes for
 * the mappings' paths, packed (a path that does not fit is reported empty).
 * gaps (room for 2 * n) receives *n_gaps [lo, hi) ranges known to hold no executable mapping
 * (hi = UINT64_MAX: none after lo), so a caller can skip later addresses there.
 * Returns the number of mappings found, or -errno of a failed first query (ENOTTY: no
 * PROCMAP_QUERY; ESRCH: the process exited). */
long hp_procmap_find(int maps_fd, const uint64_t *addrs, size_t n, int64_t *which, hp_vma *vmas,
                     char *names, size_t names_cap, uint8_t *build_ids, uint64_t *gaps,
                     size_t *n_gaps);

#endif
