/* syscalls.bpf.c: per-thread syscall counts and latency for hostprof's syscalls collector.
 *
 * Purpose: raw_syscalls sys_enter stores (entry time, syscall nr) for the running thread;
 *   sys_exit adds the latency to an in-kernel aggregate keyed by (pid, tid, nr, time slot) and
 *   to a log2 latency histogram per syscall. Nothing is sent per event: user space drains the
 *   aggregates.
 * Required kernel: raw tracepoints (4.17+), LRU hash maps, batched lookup-and-delete (5.6+),
 *   BPF_PROG_TEST_RUN of raw tracepoint programs on a chosen CPU (5.10+) for the drain.
 * Overhead: every traced syscall runs two raw-tracepoint programs, and everything they touch
 *   in the common case is one per-CPU record (an inlined array access, no hash, no atomics):
 *   - the call in progress of the thread running on that CPU (entry time, nr). A thread can
 *     only leave its CPU inside a syscall through sched_switch, so a third program on
 *     sched_switch parks the call of a thread that blocks or is preempted mid-syscall in a
 *     per-thread LRU hash (`parked`), and sys_exit finds it there;
 *   - a pending run: consecutive calls with the same key (pid, tid, nr, ustack, slot) are
 *     summed in place, and the run is added to the aggregate hash only when the key changes.
 *     A loop of one syscall thus touches the hash once per time slot instead of per call.
 *   The histogram is a per-CPU array.
 * Timing (HP_TIME_EVERY = N > 1): on this kind of machine one bpf_ktime_get_ns() costs about
 *   40 ns, and two of them alone slow a 0.3 us syscall 1.3x on top of the programs' dispatch.
 *   So a hot run (HP_EXACT_FIRST calls of one thread and syscall on this CPU, the last timed
 *   one in the current jiffy) times only every Nth call; the others are counted (counts stay
 *   exact) and charged the mean latency of the run's timed samples at flush, which also puts
 *   them in the histogram. Calls that block are always timed: an untimed call that leaves its
 *   CPU is timed from the switch. Every call outside hot runs is timed. N = 1 times every
 *   call. `timed` in each aggregate says how many calls were measured.
 *   Measured numbers: docs/ebpf.md.
 * Drain protocol (collectors/syscalls.py), so that no call is lost or counted twice:
 *   - runs are added to one of two aggregate maps, `counts_a` or `counts_b`, chosen by
 *     `active`; user space drains only the other one, which no program writes to;
 *   - every change to a CPU's run happens between `busy = 1` and `busy = 0` on that CPU;
 *   - `hp_flush` (never attached; user space runs it on a given CPU with BPF_PROG_TEST_RUN,
 *     an IPI) adds that CPU's run to the active map, or returns 1 if it interrupted a
 *     program in the middle of a change (user space retries);
 *   - a drain: run hp_flush on every CPU (pending runs go to the active map), switch `active`,
 *     run hp_flush on every CPU again (it succeeds only once no program on that CPU is still
 *     inside a change begun before the switch, so nothing writes the old map any more), then
 *     take everything out of the old map.
 * Options (-D): HP_TIME_EVERY, HP_EXACT_FIRST (above), HP_USER_STACKS (also key by the user
 *   stack at entry), HP_STACK_ENTRIES, HP_COUNT_ENTRIES, HP_THREADS (size of the
 *   parked-thread table), hostprof.bpf.h ones.
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
/* 1: time every call. N > 1: in a hot run, time every Nth call (see the header comment). */
#ifndef HP_TIME_EVERY
#define HP_TIME_EVERY 1
#endif
/* Calls of a run that are always timed before it counts as hot. */
#ifndef HP_EXACT_FIRST
#define HP_EXACT_FIRST 16
#endif
/* Histogram rows: syscall numbers at or above the last row share it (x32 and unknown). */
#define HP_HIST_ROWS 512

/* Keeps the compiler from moving memory accesses across it (the JIT and x86 keep the order
 * as seen by an interrupt on the same CPU). */
#define HP_BARRIER() asm volatile("" ::: "memory")

/* A call in progress, parked while its thread is off the CPU. */
struct hp_sys_start {
  u64 ts;
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
  u64 total_ns; /* exact for timed calls, plus the estimate for untimed ones */
  u64 timed;    /* calls whose latency was measured (count - timed were estimated) */
};

/* Per CPU: the call in progress of the running thread, and the pending run. */
struct hp_sys_cpu {
  /* The call in progress. */
  u64 ts; /* entry time; 0: no call in progress; 1: an untimed call */
  u32 tid;
  u32 nr;
  s32 ustack;
  u32 sample; /* the call is a hot run's timed sample */
  /* The pending run. */
  struct hp_sys_key key;
  u64 count;     /* calls in the run; 0: no run */
  u64 exact_ns;  /* latency of calls timed because the run was not hot yet, or they blocked */
  u64 exact;     /* how many */
  u64 sample_ns; /* latency of the hot run's timed samples that did not block */
  u64 samples;   /* how many */
  u64 untimed;   /* calls not timed: charged the samples' mean latency at flush */
  u64 mean_ns;   /* the last flushed samples' mean, for untimed calls of a run without one */
  u64 jiffies;   /* jiffies at the run's last timed call */
  u32 countdown; /* hot run: untimed calls before the next sample */
  u32 busy;      /* 1 while the run is being changed */
  /* The pid filter's last answer on this CPU (pid sets beyond the first pid). */
  u32 filter_tgid;
  u32 filter_gen;
  u32 filter_wanted;
  u32 pad;
};

struct hp_hist_row {
  u64 bucket[64];
};

BPF_PERCPU_ARRAY(cpu_state, struct hp_sys_cpu, 1);
/* Syscalls in progress of threads that left their CPU mid-syscall, by tid. */
BPF_TABLE("lru_hash", u32, struct hp_sys_start, parked, HP_THREADS);
BPF_HASH(counts_a, struct hp_sys_key, struct hp_sys_val, HP_COUNT_ENTRIES);
BPF_HASH(counts_b, struct hp_sys_key, struct hp_sys_val, HP_COUNT_ENTRIES);
/* Which aggregate map runs are added to: 0 = counts_a, 1 = counts_b. */
BPF_ARRAY(active, u32, 1);
/* Per-CPU: the histogram is shared by all threads, and per-CPU rows need no atomics. It is
 * cumulative: user space reads the rows of the syscalls each drain saw. */
BPF_PERCPU_ARRAY(hist, struct hp_hist_row, HP_HIST_ROWS);
#ifdef HP_FILTER_PIDS
/* Bumped by user space after every change to hp_pids: invalidates the filter caches. */
BPF_ARRAY(pids_gen, u32, 1);
#endif
#ifdef HP_USER_STACKS
BPF_STACK_TRACE(stacks, HP_STACK_ENTRIES);
#endif

/* Adds one run to key k of an aggregate map. Runs of one thread can be flushed from two
 * CPUs at once (it migrated), so the adds are atomic; a run is flushed once per key change,
 * not per call. The zero insert makes concurrent first inserts safe. bcc rewrites map calls
 * only outside macros, so the function is written out once per map. */
HP_INLINE void hp_add_a(struct hp_sys_key *k, struct hp_sys_val *run) {
  struct hp_sys_val *v = counts_a.lookup(k);
  if (!v) {
    struct hp_sys_val zero = {};
    counts_a.insert(k, &zero);
    v = counts_a.lookup(k);
  }
  if (!v) {
    hp_count(HP_STAT_MAPFULL);
    return;
  }
  __sync_fetch_and_add(&v->count, run->count);
  __sync_fetch_and_add(&v->total_ns, run->total_ns);
  __sync_fetch_and_add(&v->timed, run->timed);
}

HP_INLINE void hp_add_b(struct hp_sys_key *k, struct hp_sys_val *run) {
  struct hp_sys_val *v = counts_b.lookup(k);
  if (!v) {
    struct hp_sys_val zero = {};
    counts_b.insert(k, &zero);
    v = counts_b.lookup(k);
  }
  if (!v) {
    hp_count(HP_STAT_MAPFULL);
    return;
  }
  __sync_fetch_and_add(&v->count, run->count);
  __sync_fetch_and_add(&v->total_ns, run->total_ns);
  __sync_fetch_and_add(&v->timed, run->timed);
}

HP_INLINE void hp_hist_add(u32 nr, u64 ns, u64 n) {
  u32 row = nr < HP_HIST_ROWS - 1 ? nr : HP_HIST_ROWS - 1;
  struct hp_hist_row *h = hist.lookup(&row);
  if (h)
    h->bucket[hp_log2(ns) & 63] += n;
}

/* hp_wanted with a per-CPU cache of the last answer. Without it, every syscall of every
 * other process on the host pays a hash lookup in hp_pids, at entry and again at exit;
 * consecutive syscalls on a CPU mostly come from one process. */
HP_INLINE int hp_sys_wanted(struct hp_sys_cpu *s, u32 tgid) {
#ifdef HP_FILTER_PIDS
#ifdef HP_FIRST_PID
  if (tgid == HP_FIRST_PID)
    return tgid != HP_SELF_PID;
#endif
  int zero = 0;
  u32 *g = pids_gen.lookup(&zero);
  u32 gen = g ? *g : 0;
  if (s->filter_tgid == tgid && s->filter_gen == gen && tgid != 0)
    return s->filter_wanted;
  int wanted = hp_wanted(tgid);
  s->filter_tgid = tgid;
  s->filter_gen = gen;
  s->filter_wanted = wanted;
  return wanted;
#else
  return hp_wanted(tgid);
#endif
}

/* Moves a CPU's pending run into the active aggregate map. Call with s->busy set. */
HP_INLINE void hp_flush_run(struct hp_sys_cpu *s) {
  struct hp_sys_key key = s->key;
  struct hp_sys_val run = {};
  run.count = s->count;
  run.total_ns = s->exact_ns + s->sample_ns;
  run.timed = s->exact + s->samples;
#if HP_TIME_EVERY > 1
  if (s->samples)
    s->mean_ns = s->sample_ns / s->samples;
  if (s->untimed) {
    run.total_ns += s->mean_ns * s->untimed;
    hp_hist_add(key.nr, s->mean_ns, s->untimed);
  }
#endif
  int zero = 0;
  u32 *a = active.lookup(&zero);
  if (a && *a)
    hp_add_b(&key, &run);
  else
    hp_add_a(&key, &run);
  s->count = 0;
  s->exact_ns = 0;
  s->exact = 0;
  s->sample_ns = 0;
  s->samples = 0;
  s->untimed = 0;
}

/* sched_switch runs while `current` is still the thread leaving the CPU. The programs are
 * defined (and attached by bcc) in this order so that parking is live before any slot fills. */
RAW_TRACEPOINT_PROBE(sched_switch) {
  int zero = 0;
  struct hp_sys_cpu *s = cpu_state.lookup(&zero);
  if (!s || s->ts == 0)
    return 0;
  u32 tid = (u32)bpf_get_current_pid_tgid();
  if (s->tid != tid)
    return 0;
  struct hp_sys_start p = {};
  /* An untimed call that blocks is timed from here: it misses only the part before it
   * left the CPU, and a call that blocks is never charged an estimate. */
  p.ts = s->ts == 1 ? bpf_ktime_get_ns() : s->ts;
  p.tid = tid;
  p.nr = s->nr;
  p.ustack = s->ustack;
  if (parked.update(&tid, &p) != 0)
    hp_count(HP_STAT_MAPFULL);
  s->ts = 0;
  return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit) {
  int zero = 0;
  struct hp_sys_cpu *s = cpu_state.lookup(&zero);
  if (!s)
    return 0;
#if HP_TIME_EVERY > 1
  if (s->ts == 1) {
    /* An untimed call, and sys_enter checked that it continues this CPU's run. It is the
     * running thread's: sched_switch (attached first) clears the record of a thread that
     * leaves its CPU mid-syscall, so a record still set was set by the thread now running.
     * This skips the helper call for the thread id on the hottest path. */
    s->ts = 0;
    s->busy = 1;
    HP_BARRIER();
    s->count += 1;
    s->untimed += 1;
    HP_BARRIER();
    s->busy = 0;
    return 0;
  }
#endif
  u64 id = bpf_get_current_pid_tgid();
  u32 tid = (u32)id;
  u64 ts;
  u32 nr;
  s32 ustack;
  u32 sample = 0;
  if (s->ts > 1 && s->tid == tid) {
#if HP_TIME_EVERY > 1
    sample = s->sample;
#endif
    ts = s->ts;
    nr = s->nr;
    ustack = s->ustack;
    s->ts = 0;
  } else {
    /* Not entered on this CPU without a switch since: the call blocked, was preempted, or
     * is not traced (unwanted process, entered before we attached, a new thread's first
     * return). Only a thread that left its CPU mid-syscall has a parked entry. */
    if (!hp_sys_wanted(s, id >> 32))
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
  u64 slot = hp_slot(ts);
  u32 pid = id >> 32;
  s->busy = 1;
  HP_BARRIER();
  if (!(s->count != 0 && s->key.tid == tid && s->key.pid == pid && s->key.nr == nr &&
        s->key.slot == slot && s->key.ustack == ustack)) {
    if (s->count != 0)
      hp_flush_run(s);
    s->key.pid = pid;
    s->key.tid = tid;
    s->key.nr = nr;
    s->key.ustack = ustack;
    s->key.slot = slot;
  }
  s->count += 1;
  if (sample) {
    s->sample_ns += delta;
    s->samples += 1;
  } else {
    s->exact_ns += delta;
    s->exact += 1;
  }
#if HP_TIME_EVERY > 1
  s->jiffies = bpf_jiffies64();
#endif
  HP_BARRIER();
  s->busy = 0;
  hp_hist_add(nr, delta, 1);
  return 0;
}

RAW_TRACEPOINT_PROBE(sys_enter) {
  u64 id = bpf_get_current_pid_tgid();
  int zero = 0;
  struct hp_sys_cpu *s = cpu_state.lookup(&zero);
  if (!s || !hp_sys_wanted(s, id >> 32))
    return 0;
  u32 tid = (u32)id;
  u32 nr = (u32)ctx->args[1];
#ifdef HP_USER_STACKS
  s32 ustack = hp_stack_result(stacks.get_stackid(ctx, BPF_F_USER_STACK));
#else
  s32 ustack = -1;
#endif
  u32 sample = 0;
#if HP_TIME_EVERY > 1
  /* A hot run: this CPU's run has had HP_EXACT_FIRST calls of the same thread and syscall,
   * the last timed one within this jiffy (so an untimed call's slot is at most a tick off,
   * and a thread that paused is timed again). Then only every HP_TIME_EVERY-th call is
   * timed; the others cost no clock read. */
  if (s->count >= HP_EXACT_FIRST && s->key.tid == tid && s->key.nr == nr &&
      s->key.pid == (u32)(id >> 32) && s->key.ustack == ustack &&
      s->jiffies == bpf_jiffies64()) {
    if (s->countdown != 0) {
      s->countdown -= 1;
      s->tid = tid;
      s->nr = nr;
      s->ustack = ustack;
      s->ts = 1;
      return 0;
    }
    s->countdown = HP_TIME_EVERY - 1;
    sample = 1;
  }
#endif
  s->sample = sample;
  s->ustack = ustack;
  s->tid = tid;
  s->nr = nr;
  s->ts = bpf_ktime_get_ns();
  return 0;
}

/* Run by user space on one CPU (BPF_PROG_TEST_RUN): moves that CPU's pending run into the
 * active map. Returns 1, changing nothing, when it interrupted a change of the run. */
int hp_flush(struct bpf_raw_tracepoint_args *ctx) {
  int zero = 0;
  struct hp_sys_cpu *s = cpu_state.lookup(&zero);
  if (!s)
    return 0;
  if (s->busy)
    return 1;
  if (s->count != 0)
    hp_flush_run(s);
  return 0;
}
