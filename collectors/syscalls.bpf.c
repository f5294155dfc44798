/* syscalls.bpf.c: per-thread syscall counts and latency for hostprof's syscalls collector.
 *
 * Purpose: raw_syscalls sys_enter stores (entry time, syscall nr) per thread; sys_exit adds the
 *   latency to an in-kernel aggregate keyed by (pid, tid, nr, time slot) and to a log2 latency
 *   histogram per syscall. Nothing is sent per event: user space drains the aggregates.
 * Required kernel: raw tracepoints (4.17+), LRU hash maps, batched lookup-and-delete (5.6+).
 * Overhead: two raw-tracepoint programs per syscall, in the common case four hash lookups
 *   and no map update, no atomics (per-thread keys, per-CPU histogram), no perf output.
 *   Raw tracepoints skip the tracepoint argument copy that TRACEPOINT_PROBE pays.
 * Options (-D): HP_USER_STACKS (also key by the user stack at entry), HP_STACK_ENTRIES,
 *   HP_COUNT_ENTRIES, HP_THREADS (size of the per-thread entry table), hostprof.bpf.h ones.
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

struct hp_sys_start {
  u64 ts;
  u32 nr;
  s32 ustack;
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

struct hp_hist_key {
  u32 nr;
  u32 bucket;
};

BPF_TABLE("lru_hash", u32, struct hp_sys_start, starts, HP_THREADS);
BPF_HASH(counts, struct hp_sys_key, struct hp_sys_val, HP_COUNT_ENTRIES);
/* Per-CPU: the histogram is shared by all threads, and per-CPU slots need no atomics. */
BPF_PERCPU_HASH(hist, struct hp_hist_key, u64, 16384);
#ifdef HP_USER_STACKS
BPF_STACK_TRACE(stacks, HP_STACK_ENTRIES);
#endif

RAW_TRACEPOINT_PROBE(sys_enter) {
  u64 id = bpf_get_current_pid_tgid();
  if (!hp_wanted(id >> 32))
    return 0;
  u32 tid = (u32)id;
  u64 now = bpf_ktime_get_ns();
  u32 nr = (u32)ctx->args[1];
#ifdef HP_USER_STACKS
  s32 ustack = hp_stack_result(stacks.get_stackid(ctx, BPF_F_USER_STACK));
#else
  s32 ustack = -1;
#endif
  /* The common case is an existing entry: write it in place (a lookup, no map update). */
  struct hp_sys_start *s = starts.lookup(&tid);
  if (s) {
    s->ts = now;
    s->nr = nr;
    s->ustack = ustack;
    return 0;
  }
  struct hp_sys_start n = {};
  n.ts = now;
  n.nr = nr;
  n.ustack = ustack;
  starts.update(&tid, &n);
  return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit) {
  u64 id = bpf_get_current_pid_tgid();
  u32 tid = (u32)id;
  struct hp_sys_start *s = starts.lookup(&tid);
  if (!s || s->ts == 0)
    return 0; /* not wanted, entered before we attached, or an exit without an entry */
  u64 delta = bpf_ktime_get_ns() - s->ts;
  struct hp_sys_key key = {};
  key.pid = id >> 32;
  key.tid = tid;
  key.nr = s->nr;
  key.ustack = s->ustack;
  key.slot = hp_slot(s->ts);
  s->ts = 0; /* cheaper than a delete; the LRU map evicts exited threads */
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
  struct hp_hist_key hk = {};
  hk.nr = key.nr;
  hk.bucket = hp_log2(delta);
  u64 *h = hist.lookup(&hk);
  if (h) {
    *h += 1;
  } else {
    u64 one = 1;
    hist.insert(&hk, &one);
  }
  return 0;
}
