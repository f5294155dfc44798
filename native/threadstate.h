/* threadstate: every thread's scheduler state, read from a BPF map mapped into the agent.
 *
 * collectors/offcpu.bpf.c keeps a host-wide array `thread_state` (BPF_F_MMAPABLE) up to date
 * from sched:sched_switch and sched:sched_wakeup(_new). The agent maps it (threadstate.c) and
 * the sampling loop (pyreader.c) reads a thread's state with one load, instead of a pread of
 * /proc/PID/task/TID/wchan per thread per tick.
 *
 * Entry layout (keep in sync with offcpu.bpf.c), at index tid & mask:
 *   word  = tid | letter << 32 | seeded << 39 | ((ns >> 10) & 0xffffff) << 40
 *   since = CLOCK_MONOTONIC ns of the transition the kernel recorded (0 when seeded)
 * The kernel writes `word` with one 8-byte store. A lookup that finds another tid in the slot
 * (a collision, or a thread not seen switching since the program attached) returns 0 and
 * the caller falls back to /proc; after such a /proc read the caller may seed the entry with
 * hp_threadstate_seed(), a compare-and-swap that loses against any kernel write made since
 * the lookup (every kernel write carries a fresh time stamp), so a seed never overwrites
 * newer kernel data.
 *
 * Letters: 'R' running or runnable (on a CPU, preempted, or woken and waiting for one), as
 * /proc's wchan reports 0; 'S' sleeping, 'D' disk wait, 'T'/'t' stopped/traced, 'P' parked,
 * 'I' idle: the thread is blocked. 'X' (exited) reads as unknown.
 *
 * Nothing here touches Python objects: safe with the GIL released.
 */
#ifndef HOSTPROF_THREADSTATE_H
#define HOSTPROF_THREADSTATE_H

#include <stddef.h>
#include <stdint.h>

#define HP_TS_SEEDED (1ULL << 39)

typedef struct {
    uint64_t word;
    uint64_t since;
} hp_ts_entry;

typedef struct {
    hp_ts_entry *entries;   /* the mapped BPF array; NULL when not mapped */
    uint32_t mask;          /* entries - 1 (a power of two) */
    size_t map_size;        /* bytes mapped */
    volatile int live;      /* 0 once the BPF program is detached: the data went stale */
} hp_threadstate;

/* Maps the BPF array behind map_fd (entries must be a power of two). Returns 0 or -errno. */
int hp_threadstate_open(hp_threadstate *t, int map_fd, uint32_t entries);
/* Unmaps it. Only when no sampling loop can still read it. */
void hp_threadstate_close(hp_threadstate *t);

/* The state letter of tid, or 0 when the table does not know it (slot holds another tid,
 * never written, exited, or the table is not live). *seen receives the slot's word, for a
 * later hp_threadstate_seed(). */
static inline char hp_threadstate_get(const hp_threadstate *t, int32_t tid, uint64_t *seen) {
    *seen = 0;
    if (!t || !t->entries || !t->live || tid <= 0) return 0;
    uint64_t w = __atomic_load_n(&t->entries[(uint32_t)tid & t->mask].word, __ATOMIC_ACQUIRE);
    *seen = w;
    if ((uint32_t)w != (uint32_t)tid) return 0;
    char c = (char)((w >> 32) & 0x7f);
    return (c == 'X') ? 0 : c;
}

/* Records a state read elsewhere (/proc) for tid, unless the slot changed since `seen` was
 * read (before that /proc read). Returns 1 when stored. */
static inline int hp_threadstate_seed(hp_threadstate *t, int32_t tid, uint64_t seen, char state,
                                      int64_t now_ns) {
    if (!t || !t->entries || !t->live || tid <= 0 || state <= 0) return 0;
    hp_ts_entry *e = &t->entries[(uint32_t)tid & t->mask];
    uint64_t w = (uint64_t)(uint32_t)tid | ((uint64_t)(state & 0x7f) << 32) | HP_TS_SEEDED |
                 ((((uint64_t)now_ns >> 10) & 0xffffff) << 40);
    return __atomic_compare_exchange_n(&e->word, &seen, w, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

/* For a blocked tid whose entry the kernel wrote: CLOCK_MONOTONIC ns when it blocked, else 0.
 * The word is read before and after `since`; a rewrite racing with this read can still pair
 * the word with the next transition's time (advisory: a later time, never an earlier one). */
static inline int64_t hp_threadstate_blocked_since(const hp_threadstate *t, int32_t tid) {
    if (!t || !t->entries || !t->live || tid <= 0) return 0;
    const hp_ts_entry *e = &t->entries[(uint32_t)tid & t->mask];
    uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
    uint64_t since = __atomic_load_n(&e->since, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&e->word, __ATOMIC_ACQUIRE) != w) return 0;
    if ((uint32_t)w != (uint32_t)tid || (w & HP_TS_SEEDED)) return 0;
    char c = (char)((w >> 32) & 0x7f);
    if (c == 'R' || c == 'X' || c == 0) return 0;
    return (int64_t)since;
}

#endif
