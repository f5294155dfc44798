/* threadstate.c: maps the offcpu collector's thread_state BPF array (see threadstate.h). */
#include "threadstate.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int hp_threadstate_open(hp_threadstate *t, int map_fd, uint32_t entries) {
    memset(t, 0, sizeof *t);
    if (entries == 0 || (entries & (entries - 1)) != 0) return -EINVAL;
    long page = sysconf(_SC_PAGESIZE);
    size_t size = (size_t)entries * sizeof(hp_ts_entry);
    size = (size + (size_t)page - 1) & ~((size_t)page - 1);
    /* Writable: the sampler seeds entries of threads the kernel has not reported yet. The
     * mapping holds its own reference to the map, so it stays valid after the BPF object
     * (and its fd) is gone; `live` then says the data is stale. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
    if (p == MAP_FAILED) return -errno;
    t->entries = p;
    t->mask = entries - 1;
    t->map_size = size;
    t->live = 1;
    return 0;
}

void hp_threadstate_close(hp_threadstate *t) {
    t->live = 0;
    if (t->entries) munmap(t->entries, t->map_size);
    t->entries = NULL;
}
