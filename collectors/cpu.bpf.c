/* cpu.bpf.c: on-CPU stack sampling for hostprof's cpu collector.
 *
 * Purpose: a software CPU-clock perf event fires HP-frequency times a second on every CPU; each
 *   firing takes the user and kernel stack ids of the running task and increments a counter keyed
 *   by (pid, tid, user stack, kernel stack, time slot). User space drains unique keys and counts.
 * Required kernel: perf_event software events, BPF_PROG_TYPE_PERF_EVENT, stack maps (4.9+);
 *   batched map lookup-and-delete for draining (5.6+).
 * Overhead: one stack walk pair per sample; about 0.2% of a CPU at 99 Hz on 2 CPUs.
 * Options (-D): HP_STACK_ENTRIES (stack map size), HP_COUNT_ENTRIES, HP_INCLUDE_IDLE, and the
 *   hostprof.bpf.h ones.
 */
#include <uapi/linux/bpf_perf_event.h>
#include "hostprof.bpf.h"

#ifndef HP_STACK_ENTRIES
#define HP_STACK_ENTRIES 16384
#endif
#ifndef HP_COUNT_ENTRIES
#define HP_COUNT_ENTRIES 65536
#endif

BPF_HASH(counts, struct hp_stack_key, u64, HP_COUNT_ENTRIES);
BPF_STACK_TRACE(stacks, HP_STACK_ENTRIES);

int on_cpu_clock(struct bpf_perf_event_data *ctx) {
  u64 id = bpf_get_current_pid_tgid();
  u32 tgid = id >> 32;
  u32 tid = (u32)id;
#ifndef HP_INCLUDE_IDLE
  if (tid == 0)
    return 0; /* the idle task */
#endif
  if (!hp_wanted(tgid) && tid != 0)
    return 0;
  hp_count(HP_STAT_EVENTS);
  struct hp_stack_key key = {};
  key.pid = tgid;
  key.tid = tid;
  key.slot = hp_slot(bpf_ktime_get_ns());
  key.ustack = tgid ? hp_stack_result(stacks.get_stackid(&ctx->regs, BPF_F_USER_STACK)) : -1;
  key.kstack = hp_stack_result(stacks.get_stackid(&ctx->regs, 0));
  u64 zero = 0;
  u64 *v = counts.lookup_or_try_init(&key, &zero);
  if (v)
    __sync_fetch_and_add(v, 1);
  else
    hp_count(HP_STAT_MAPFULL);
  return 0;
}
