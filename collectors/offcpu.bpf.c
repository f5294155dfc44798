/* offcpu.bpf.c: blocked (off-CPU) time per thread with the stack it blocked in.
 *
 * Purpose: at sched:sched_switch the outgoing task (still `current`) records its block time and
 *   user+kernel stack ids when it leaves the CPU blocked; when a task is switched back in, the
 *   time it spent off-CPU is added to an in-kernel aggregate keyed by (pid, tid, stacks, slot of
 *   the block start). The per-thread `offcpu_since` table doubles as a live "is this thread
 *   blocked, and since when" view.
 *   A second, host-wide table (`thread_state`, an mmapable array) holds every thread's
 *   scheduler state for the sampling core's idle detection: user space maps it and reads it
 *   directly (native/threadstate.h), with no syscall per thread per tick.
 * Required kernel: sched:sched_switch and sched:sched_wakeup(_new) tracepoints, stack maps,
 *   LRU hash (4.10+), BPF_F_MMAPABLE arrays (5.5+).
 * Overhead: one or two stack walks per context switch of a wanted task; one array store per
 *   context switch and per wakeup of any task (thread_state).
 * Options (-D): HP_MIN_NS (ignore shorter blocks), HP_INCLUDE_PREEMPTED (also count time a
 *   runnable task waited for a CPU), HP_STACK_ENTRIES, HP_COUNT_ENTRIES, HP_TSTATE_ENTRIES
 *   (thread_state size, a power of two; 0 = no thread_state), hostprof.bpf.h ones.
 */
#include <linux/sched.h>
#include "hostprof.bpf.h"

#ifndef HP_MIN_NS
#define HP_MIN_NS 0
#endif
#ifndef HP_STACK_ENTRIES
#define HP_STACK_ENTRIES 16384
#endif
#ifndef HP_COUNT_ENTRIES
#define HP_COUNT_ENTRIES 65536
#endif
#ifndef HP_TSTATE_ENTRIES
#define HP_TSTATE_ENTRIES 65536
#endif
/* sched_switch reports a preempted task as TASK_REPORT_MAX (bit 8 here) or 0 (running). */
#define HP_STATE_MASK 0xff
/* A task leaving the CPU for the last time (EXIT_DEAD, EXIT_ZOMBIE, TASK_DEAD) never returns. */
#define HP_STATE_DEAD 0xb0

struct hp_off_start {
  u64 ts; /* 0 while on CPU */
  u32 pid;
  s32 ustack;
  s32 kstack;
  u32 pad;
};

/* How far user space already charged a still-blocked thread's current interval (it charges
 * long blocks at each drain so they are not invisible until they end); the kernel marks an
 * entry consumed (start = 0) when it closes that interval. */
struct hp_off_charged {
  u64 start; /* the interval's offcpu_since.ts */
  u64 until;
};

#if HP_TSTATE_ENTRIES
/* thread_state: one entry per slot tid & (HP_TSTATE_ENTRIES - 1). Thread ids are handed out
 * sequentially, so the low bits spread threads created around the same time over distinct
 * slots; two live tids collide only when they are a multiple of HP_TSTATE_ENTRIES apart. The
 * tid is stored in the entry: a reader that finds another tid there falls back to /proc.
 * Layout shared with native/threadstate.h (keep in sync):
 *   word  = tid | letter << 32 | seeded << 39 | ((ns >> 10) & 0xffffff) << 40
 *   since = CLOCK_MONOTONIC ns of the transition (0 when user space seeded the entry)
 * `word` is written with one 8-byte store, so a reader never sees a tid with another thread's
 * state. The stamp bits make every write distinct, so user space can seed an entry from /proc
 * with a compare-and-swap that fails if the kernel wrote the entry meanwhile. Letters:
 * 'R' running or runnable (on a CPU, preempted, or woken), 'S' sleeping, 'D' disk wait,
 * 'T'/'t' stopped/traced, 'P' parked, 'I' idle kthread, 'X' exited (= unknown). */
struct hp_tstate {
  u64 word;
  u64 since;
};
BPF_F_TABLE("array", u32, struct hp_tstate, thread_state, HP_TSTATE_ENTRIES, BPF_F_MMAPABLE);

HP_INLINE void hp_tstate_set(u32 tid, u64 letter, u64 now) {
  u32 idx = tid & (HP_TSTATE_ENTRIES - 1);
  struct hp_tstate *e = thread_state.lookup(&idx);
  if (!e)
    return;
  e->since = now;
  e->word = (u64)tid | (letter << 32) | (((now >> 10) & 0xffffff) << 40);
}

/* The letter of prev_state: sched_switch reports a preempted task with bit 8 set
 * (TASK_REPORT_MAX), a task that stays runnable (yield, woken before it left) as 0, else one
 * bit per TASK_REPORT state, in /proc's order S D T t X Z P I. */
HP_INLINE u64 hp_tstate_letter(long state) {
  if (state & 0x100)
    return 'R';
  switch (state & 0xff) {
  case 0:
    return 'R';
  case 0x01:
    return 'S';
  case 0x02:
    return 'D';
  case 0x04:
    return 'T';
  case 0x08:
    return 't';
  case 0x40:
    return 'P';
  case 0x80:
    return 'I';
  default: /* X, Z: the task never runs again */
    return 'X';
  }
}

/* A woken task is runnable: /proc shows it 'R' (wchan 0) before it gets a CPU. */
TRACEPOINT_PROBE(sched, sched_wakeup) {
  hp_tstate_set(args->pid, 'R', bpf_ktime_get_ns());
  return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new) {
  hp_tstate_set(args->pid, 'R', bpf_ktime_get_ns());
  return 0;
}
#endif

BPF_TABLE("lru_hash", u32, struct hp_off_start, offcpu_since, 65536);
BPF_TABLE("lru_hash", u32, struct hp_off_charged, offcpu_charged, 65536);
BPF_HASH(counts, struct hp_stack_key, u64, HP_COUNT_ENTRIES);
BPF_STACK_TRACE(stacks, HP_STACK_ENTRIES);

TRACEPOINT_PROBE(sched, sched_switch) {
  u64 now = bpf_ktime_get_ns();
  u64 id = bpf_get_current_pid_tgid();
  u32 prev_tgid = id >> 32;
  u32 prev = args->prev_pid;
  long state = args->prev_state;
#ifdef HP_INCLUDE_PREEMPTED
  int blocked = 1;
#else
  int blocked = (state & HP_STATE_MASK) != 0;
#endif
  if (state & HP_STATE_DEAD)
    blocked = 0;
#if HP_TSTATE_ENTRIES
  if (prev != 0)
    hp_tstate_set(prev, hp_tstate_letter(state), now);
  if (args->next_pid != 0)
    hp_tstate_set(args->next_pid, 'R', now);
#endif
  if (prev != 0 && blocked && hp_wanted(prev_tgid)) {
    struct hp_off_start s = {};
    s.ts = now;
    s.pid = prev_tgid;
    s.ustack = hp_stack_result(stacks.get_stackid(args, BPF_F_USER_STACK));
    s.kstack = hp_stack_result(stacks.get_stackid(args, 0));
    offcpu_since.update(&prev, &s);
  }
  u32 next = args->next_pid;
  struct hp_off_start *s = offcpu_since.lookup(&next);
  if (!s || s->ts == 0)
    return 0;
  u64 start = s->ts;
  /* Consume user space's partial charge before closing the interval (s->ts = 0): user space
   * re-reads offcpu_since after writing offcpu_charged, and a closed interval whose charge
   * was not consumed tells it the kernel accounted the whole interval itself. */
  u64 from = start;
  struct hp_off_charged *c = offcpu_charged.lookup(&next);
  if (c && c->start == start) {
    if (c->until > start && c->until < now)
      from = c->until; /* user space charged [start, until) already */
    c->start = 0;      /* consumed */
  }
  s->ts = 0;
  if (now - start < HP_MIN_NS) {
    hp_count(HP_STAT_SHORT);
    return 0;
  }
  start = from;
  u64 delta = now - start;
  hp_count(HP_STAT_EVENTS);
  struct hp_stack_key key = {};
  key.pid = s->pid;
  key.tid = next;
  key.ustack = s->ustack;
  key.kstack = s->kstack;
  key.slot = hp_slot(start);
  u64 zero = 0;
  u64 *v = counts.lookup_or_try_init(&key, &zero);
  if (v)
    __sync_fetch_and_add(v, delta);
  else
    hp_count(HP_STAT_MAPFULL);
  return 0;
}
