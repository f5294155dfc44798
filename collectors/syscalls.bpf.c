/* syscalls.bpf.c: per-thread syscall counts and latency for hostprof's syscalls collector.
 *
 * Purpose: raw_syscalls sys_enter stores (entry time, syscall nr) for the running thread;
 *   sys_exit adds the latency to an in-kernel aggregate keyed by (pid, tid, nr, time slot) and
 *   to a log2 latency histogram per syscall. Nothing is sent per event: user space drains the
 *   aggregates.
 * Required kernel: raw tracepoints (4.17+), LRU hash maps, batched lookup-and-delete (5.6+).
 * Overhead: every traced syscall runs two raw-tracepoint programs. The entry time lives in a
 *   per-CPU slot (an inlined array lookup, no hash) for the thread running on that CPU. A
 *   thread can only leave its CPU inside a syscall through sched_switch, so a third program on
 *   sched:sched_switch parks the slot of a thread that blocks (or is preempted) mid-syscall in
 *   a per-thread LRU hash, and sys_exit finds it there. The common, non-blocking syscall thus
 *   costs two clock reads, two array lookups and one hash lookup (the aggregate), with no
 *   map update and no atomics; a context switch costs one array lookup (plus one hash update
 *   when the thread leaving is inside a traced syscall). The histogram is a per-CPU array.
 *   Measured numbers: docs/ebpf.md (benchmarks/ebpf_overhead.py).
 * Options (-D): HP_USER_STACKS (also key by the user stack at entry), HP_STACK_ENTRIES,
 *   HP_COUNT_ENTRIES, HP_THREADS (size of the parked-thread table), hostprof.bpf.h ones.
 */
#include "hostprof.bpf.h"

#ifndef HP_COUNT_ENTRIES
#define HP_COUNT_ENTRIES 65536
#endif
#ifndef HP_THREADS
#define HP_THREADS 32768
#endif
#ifndef HP_STACK_ENTRIES
#define HP_STACK_ENTRIES 16384
#endif
/* Histogram rows: syscall numbers at or above the last row share it (x32 and unknown). */
#define HP_HIST_ROWS 512

struct hp_sys_start {
  u64 ts; /* 0: the slot is free */
  u32 tid;
  u32 nr;
  s32 ustack;
  u32 pad;
};

struct hp_sys_key {
  u32 pid;
  u32 tid;
  u32 nr;
  s32 ustack;
  u64 slot;
};

struct hp_sys_val {
  u64 count;
  u64 total_ns;
};

struct hp_hist_row {
  u64 bucket[64];
};

/* The syscall in progress of the thread running on each CPU. */
BPF_PERCPU_ARRAY(current_call, struct hp_sys_start, 1);
/* Syscalls in progress of threads that left their CPU mid-syscall, by tid. */
BPF_TABLE("lru_hash", u32, struct hp_sys_start, parked, HP_THREADS);
BPF_HASH(counts, struct hp_sys_key, struct hp_sys_val, HP_COUNT_ENTRIES);
/* Per-CPU: the histogram is shared by all threads, and per-CPU rows need no atomics. It is
 * cumulative: user space reads the rows of the syscalls each drain saw. */
BPF_PERCPU_ARRAY(hist, struct hp_hist_row, HP_HIST_ROWS);
#ifdef HP_USER_STACKS
BPF_STACK_TRACE(stacks, HP_STACK_ENTRIES);
#endif

RAW_TRACEPOINT_PROBE(sys_enter) {
  u64 id = bpf_get_current_pid_tgid();
  if (!hp_wanted(id >> 32))
    return 0;
  int zero = 0;
  struct hp_sys_start *s = current_call.lookup(&zero);
  if (!s)
    return 0;
#ifdef HP_USER_STACKS
  s->ustack = hp_stack_result(stacks.get_stackid(ctx, BPF_F_USER_STACK));
#else
  s->ustack = -1;
#endif
  s->tid = (u32)id;
  s->nr = (u32)ctx->args[1];
  s->ts = bpf_ktime_get_ns();
  return 0;
}

/* sched_switch runs while `current` is still the thread leaving the CPU. */
RAW_TRACEPOINT_PROBE(sched_switch) {
  int zero = 0;
  struct hp_sys_start *s = current_call.lookup(&zero);
  if (!s || s->ts == 0)
    return 0;
  u32 tid = (u32)bpf_get_current_pid_tgid();
  if (s->tid != tid)
    return 0;
  if (parked.update(&tid, s) != 0)
    hp_count(HP_STAT_MAPFULL);
  s->ts = 0;
  return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit) {
  u64 id = bpf_get_current_pid_tgid();
  u32 tid = (u32)id;
  int zero = 0;
  struct hp_sys_start *s = current_call.lookup(&zero);
  if (!s)
    return 0;
  u64 ts;
  u32 nr;
  s32 ustack;
  if (s->ts != 0 && s->tid == tid) {
    ts = s->ts;
    nr = s->nr;
    ustack = s->ustack;
    s->ts = 0;
  } else {
    /* Not entered on this CPU without a switch since: the call blocked, was preempted, or
     * is not traced (unwanted process, entered before we attached, a new thread's first
     * return). Only a thread that left its CPU mid-syscall has a parked entry. */
    if (!hp_wanted(id >> 32))
      return 0;
    struct hp_sys_start *p = parked.lookup(&tid);
    if (!p || p->ts == 0)
      return 0;
    ts = p->ts;
    nr = p->nr;
    ustack = p->ustack;
    parked.delete(&tid);
  }
  u64 delta = bpf_ktime_get_ns() - ts;
  struct hp_sys_key key = {};
  key.pid = id >> 32;
  key.tid = tid;
  key.nr = nr;
  key.ustack = ustack;
  key.slot = hp_slot(ts);
  /* Keys are per thread and a thread runs on one CPU at a time: plain adds are safe. */
  struct hp_sys_val *v = counts.lookup(&key);
  if (v) {
    v->count += 1;
    v->total_ns += delta;
  } else {
    struct hp_sys_val first = {};
    first.count = 1;
    first.total_ns = delta;
    if (counts.insert(&key, &first) != 0)
      hp_count(HP_STAT_MAPFULL);
  }
  u32 row = nr < HP_HIST_ROWS - 1 ? nr : HP_HIST_ROWS - 1;
  struct hp_hist_row *h = hist.lookup(&row);
  if (h)
    h->bucket[hp_log2(delta) & 63] += 1;
  return 0;
}
