/* syscalls_floor.bpf.c: reference programs for benchmarks/syscalls_floor.py.
 *
 * The floor under any raw_syscalls latency tracer: HP_FLOOR_EMPTY attaches two programs that
 * do nothing (the tracepoint dispatch, plus the syscall slow path that any enabled
 * raw_syscalls tracepoint forces); HP_FLOOR_CLOCK adds what every exact latency needs, one
 * bpf_ktime_get_ns() at entry and one at exit, stored in a per-CPU slot.
 */
#include "hostprof.bpf.h"

BPF_PERCPU_ARRAY(floor_slot, u64, 1);

RAW_TRACEPOINT_PROBE(sys_enter) {
#ifdef HP_FLOOR_CLOCK
  u64 id = bpf_get_current_pid_tgid();
  if (!hp_wanted(id >> 32))
    return 0;
  int zero = 0;
  u64 *slot = floor_slot.lookup(&zero);
  if (slot)
    *slot = bpf_ktime_get_ns();
#endif
  return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit) {
#ifdef HP_FLOOR_CLOCK
  int zero = 0;
  u64 *slot = floor_slot.lookup(&zero);
  if (slot)
    *slot = bpf_ktime_get_ns() - *slot;
#endif
  return 0;
}
