/* bpfmaps.c: see bpfmaps.h. */
#include "bpfmaps.h"

#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int hp_bpf_lookup(int fd, const void *key, void *value) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.map_fd = (uint32_t)fd;
  attr.key = (uint64_t)(uintptr_t)key;
  attr.value = (uint64_t)(uintptr_t)value;
  return sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) == 0 ? 0 : -errno;
}

static int bpf_delete(int fd, const void *key) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.map_fd = (uint32_t)fd;
  attr.key = (uint64_t)(uintptr_t)key;
  return sys_bpf(BPF_MAP_DELETE_ELEM, &attr) == 0 ? 0 : -errno;
}

size_t hp_read_stacks(int fd, const int32_t *ids, size_t n, uint32_t max_depth, uint64_t *out,
                      int32_t *lens) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t key = (uint32_t)ids[i];
    uint64_t *dst = out + total;
    if (ids[i] < 0 || hp_bpf_lookup(fd, &key, dst) != 0) {
      lens[i] = -1;
      continue;
    }
    /* The kernel zero-fills after the last frame (bpf_get_stackid). */
    uint32_t k = 0;
    while (k < max_depth && dst[k] != 0)
      k++;
    lens[i] = (int32_t)k;
    total += k;
  }
  return total;
}

size_t hp_delete_ids(int fd, const int32_t *ids, size_t n) {
  size_t done = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t key = (uint32_t)ids[i];
    if (ids[i] >= 0 && bpf_delete(fd, &key) == 0)
      done++;
  }
  return done;
}

int hp_read_u64_array(int fd, uint32_t n, uint64_t *out) {
  for (uint32_t i = 0; i < n; i++) {
    int rc = hp_bpf_lookup(fd, &i, &out[i]);
    if (rc)
      return rc;
  }
  return 0;
}

/* struct procmap_query of <linux/fs.h> (Linux 6.11+, UAPI: the layout is stable). Declared
 * here because the installed UAPI headers may predate it. */
struct hp_procmap_query {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};

#define HP_PROCMAP_QUERY _IOWR('f', 17, struct hp_procmap_query)
#define HP_QUERY_VMA_EXECUTABLE 0x04
#define HP_QUERY_COVERING_OR_NEXT_VMA 0x10

long hp_procmap_find(int maps_fd, const uint64_t *addrs, size_t n, int64_t *which, hp_vma *vmas,
                     char *names, size_t names_cap, uint8_t *build_ids, uint64_t *gaps,
                     size_t *n_gaps) {
  size_t i = 0;
  long found = 0;
  size_t names_used = 0;
  char name[HP_NAME_MAX];
  *n_gaps = 0;
  struct hp_procmap_query q;
  while (i < n) {
    memset(&q, 0, sizeof(q));
    q.size = sizeof(q);
    q.query_flags = HP_QUERY_VMA_EXECUTABLE | HP_QUERY_COVERING_OR_NEXT_VMA;
    q.query_addr = addrs[i];
    q.vma_name_addr = (uint64_t)(uintptr_t)name;
    q.vma_name_size = sizeof(name);
    q.build_id_addr = (uint64_t)(uintptr_t)(build_ids + (size_t)found * HP_BUILD_ID_CAP);
    q.build_id_size = HP_BUILD_ID_CAP;
    if (ioctl(maps_fd, HP_PROCMAP_QUERY, &q) != 0) {
      int err = errno;
      if (err != ENOENT && found == 0 && i == 0)
        return -err;
      /* ENOENT: no executable mapping at or after this address (other errors: treat the
       * rest as unresolved rather than fail the drain). */
      if (err == ENOENT) {
        gaps[2 * *n_gaps] = addrs[i];
        gaps[2 * *n_gaps + 1] = UINT64_MAX;
        (*n_gaps)++;
      }
      for (; i < n; i++)
        which[i] = -1;
      break;
    }
    if (addrs[i] < q.vma_start) {
      /* Nothing executable in [addrs[i], vma_start): every address there is garbage. */
      gaps[2 * *n_gaps] = addrs[i];
      gaps[2 * *n_gaps + 1] = q.vma_start;
      (*n_gaps)++;
    }
    for (; i < n && addrs[i] < q.vma_start; i++)
      which[i] = -1; /* in the gap before the next executable mapping */
    if (i < n && addrs[i] < q.vma_end) {
      hp_vma *v = &vmas[found];
      v->start = q.vma_start;
      v->end = q.vma_end;
      v->offset = q.vma_offset;
      v->inode = q.inode;
      v->flags = q.vma_flags;
      v->dev_major = q.dev_major;
      v->dev_minor = q.dev_minor;
      /* vma_name_size comes back with the terminating NUL counted (0: anonymous). Names
       * are packed into one blob; a name that does not fit is reported empty. */
      size_t len = q.vma_name_size ? strnlen(name, sizeof(name)) : 0;
      if (names_used + len > names_cap)
        len = 0;
      memcpy(names + names_used, name, len);
      v->name_off = (uint32_t)names_used;
      v->name_len = (uint32_t)len;
      names_used += len;
      v->build_id_len = q.build_id_size;
      for (; i < n && addrs[i] < q.vma_end; i++)
        which[i] = found;
      found++;
    }
  }
  return found;
}
