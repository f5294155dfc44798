/* gc.bpf.c: CPython cyclic-GC collections and their pause times for hostprof's gc collector.
 *
 * Purpose: a collection's start stores (time, generation) per thread; its end adds the pause to
 *   an in-kernel aggregate keyed by (pid, tid, generation, time slot) and to a log2 histogram
 *   per generation. Two ways in, chosen per interpreter binary by collectors/gc.py:
 *   - USDT gc__start(int generation) / gc__done(long collected), where the interpreter was built
 *     with them (Debian's python3.x): functions usdt_gc_start / usdt_gc_done;
 *   - an entry+return uprobe on gc_collect_main(tstate, generation, ...) (pyenv's libpython3.11,
 *     a local symbol): functions uprobe_gc_entry / uprobe_gc_return.
 * Required kernel: uprobes (and uprobe ref_ctr_offset for USDT semaphores by path, 4.20+).
 * Overhead: about 1.7 us per collection for the probe pair; collections are rare.
 * Options (-D): hostprof.bpf.h ones.
 */
#include <uapi/linux/ptrace.h>
#include "hostprof.bpf.h"

struct hp_gc_start {
  u64 ts;
  u32 gen;
  u32 depth; /* nested entries seen (gc_collect_main does not recurse; guards misuse) */
};

struct hp_gc_key {
  u32 pid;
  u32 tid;
  u32 gen;
  u32 pad;
  u64 slot;
};

struct hp_gc_val {
  u64 count;
  u64 total_ns;
};

struct hp_gc_hist_key {
  u32 gen;
  u32 bucket;
};

BPF_TABLE("lru_hash", u32, struct hp_gc_start, gc_starts, 16384);
BPF_HASH(gc_counts, struct hp_gc_key, struct hp_gc_val, 16384);
BPF_HASH(gc_hist, struct hp_gc_hist_key, u64, 1024);

HP_INLINE int hp_gc_begin(u32 gen) {
  u64 id = bpf_get_current_pid_tgid();
  if (!hp_wanted(id >> 32))
    return 0;
  u32 tid = (u32)id;
  struct hp_gc_start s = {};
  s.ts = bpf_ktime_get_ns();
  s.gen = gen;
  gc_starts.update(&tid, &s);
  return 0;
}

HP_INLINE int hp_gc_end(void) {
  u64 id = bpf_get_current_pid_tgid();
  if (!hp_wanted(id >> 32))
    return 0;
  u32 tid = (u32)id;
  struct hp_gc_start *s = gc_starts.lookup(&tid);
  if (!s || s->ts == 0) {
    hp_count(HP_STAT_ORPHAN);
    return 0;
  }
  u64 delta = bpf_ktime_get_ns() - s->ts;
  struct hp_gc_key key = {};
  key.pid = id >> 32;
  key.tid = tid;
  key.gen = s->gen;
  key.slot = hp_slot(s->ts);
  s->ts = 0;
  hp_count(HP_STAT_EVENTS);
  struct hp_gc_val zero = {};
  struct hp_gc_val *v = gc_counts.lookup_or_try_init(&key, &zero);
  if (v) {
    __sync_fetch_and_add(&v->count, 1);
    __sync_fetch_and_add(&v->total_ns, delta);
  } else {
    hp_count(HP_STAT_MAPFULL);
  }
  struct hp_gc_hist_key hk = {};
  hk.gen = key.gen;
  hk.bucket = hp_log2(delta);
  u64 hzero = 0;
  u64 *h = gc_hist.lookup_or_try_init(&hk, &hzero);
  if (h)
    __sync_fetch_and_add(h, 1);
  return 0;
}

#ifdef HP_USDT
/* USDT probes are plain uprobes at the probe sites; user space parsed the note's argument spec
 * of gc__start into: HP_ARG_REG (byte offset of the register in struct pt_regs, the program's
 * own context), HP_ARG_DEREF (1: the argument is in memory at register + HP_ARG_DISP) and
 * HP_ARG_SIZE (bytes). */
int usdt_gc_start(struct pt_regs *ctx) {
  u64 reg = *(u64 *)((char *)ctx + HP_ARG_REG);
  u64 gen = 0;
#if HP_ARG_DEREF
  bpf_probe_read_user(&gen, HP_ARG_SIZE, (void *)(reg + (HP_ARG_DISP)));
#else
  gen = reg;
#endif
#if HP_ARG_SIZE < 8
  gen &= (1ULL << (8 * HP_ARG_SIZE)) - 1;
#endif
  return hp_gc_begin((u32)gen);
}

int usdt_gc_done(struct pt_regs *ctx) { return hp_gc_end(); }
#endif

int uprobe_gc_entry(struct pt_regs *ctx) { return hp_gc_begin((u32)PT_REGS_PARM2(ctx)); }

int uprobe_gc_return(struct pt_regs *ctx) { return hp_gc_end(); }
