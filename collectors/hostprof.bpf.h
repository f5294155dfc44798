/* hostprof.bpf.h: definitions shared by hostprof's BPF programs (included by each .bpf.c).
 *
 * Options arrive as -D cflags from the Python side (collectors/_ebpf.py):
 *   HP_FILTER_PIDS   only count tasks whose tgid is in hp_pids (else: the whole host)
 *   HP_FIRST_PID     the first wanted tgid, matched without a map lookup
 *   HP_SELF_PID      the agent's own tgid, never counted
 *   HP_SLOT_SHIFT    events are aggregated per (key, ktime >> HP_SLOT_SHIFT); 63 = no time slots.
 *                    Slots let user space join in-kernel aggregates with Python samples by time
 *                    without a perf event per occurrence.
 * Never read kernel structs here: tracepoint arguments and helpers only (see _kheaders.py).
 */
#ifndef HOSTPROF_BPF_H
#define HOSTPROF_BPF_H

/* uapi stddef.h defines __always_inline as plain inline; BPF needs real inlining. */
#define HP_INLINE static inline __attribute__((always_inline))

#ifndef HP_SLOT_SHIFT
#define HP_SLOT_SHIFT 63
#endif
#ifndef HP_SELF_PID
#define HP_SELF_PID 0
#endif

/* Indexes into hp_stats: per-program loss counters user space reports with each batch. */
#define HP_STAT_COLLISION 0 /* stack map bucket held another stack (-EEXIST) */
#define HP_STAT_NOSTACK 1   /* no stack could be taken (-EFAULT, e.g. kernel thread user stack) */
#define HP_STAT_MAPFULL 2   /* an aggregation map was full: the event is lost */
#define HP_STAT_EVENTS 3    /* events seen after filtering */
#define HP_STAT_ORPHAN 4    /* an exit/return without its entry (attached mid-call) */
#define HP_STAT_SHORT 5     /* off-CPU intervals below the threshold */
#define HP_NSTATS 8

BPF_ARRAY(hp_stats, u64, HP_NSTATS);

#ifdef HP_FILTER_PIDS
BPF_HASH(hp_pids, u32, u8, 4096);
#endif

HP_INLINE void hp_count(int idx) {
  u64 *v = hp_stats.lookup(&idx);
  if (v)
    __sync_fetch_and_add(v, 1);
}

/* Whether events of this process are wanted. */
HP_INLINE int hp_wanted(u32 tgid) {
  if (tgid == 0 || tgid == HP_SELF_PID)
    return 0;
#ifdef HP_FILTER_PIDS
#ifdef HP_FIRST_PID
  /* The first wanted process skips the hash lookup: its events are the hot path. */
  if (tgid == HP_FIRST_PID)
    return 1;
#endif
  return hp_pids.lookup(&tgid) != 0;
#else
  return 1;
#endif
}

HP_INLINE u64 hp_slot(u64 ts) {
#if HP_SLOT_SHIFT >= 63
  return 0;
#else
  return ts >> HP_SLOT_SHIFT;
#endif
}

/* Record a stack-id result, counting failures; returns the id or a negative errno. */
HP_INLINE int hp_stack_result(int id) {
  if (id == -17 /* EEXIST */)
    hp_count(HP_STAT_COLLISION);
  else if (id < 0)
    hp_count(HP_STAT_NOSTACK);
  return id;
}

/* log2 bucket of a latency, 0..63. */
HP_INLINE u32 hp_log2(u64 v) {
  u32 r = 0;
#pragma unroll
  for (int i = 32; i > 0; i /= 2) {
    if (v >= (1ULL << i)) {
      v >>= i;
      r += i;
    }
  }
  return r;
}

/* Key of a sampled or timed event with its stacks (cpu, offcpu). */
struct hp_stack_key {
  u32 pid;
  u32 tid;
  s32 ustack;
  s32 kstack;
  u64 slot;
};

#endif
