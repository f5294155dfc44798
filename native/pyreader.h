/* pyreader: reads Python stacks out of a live CPython process with process_vm_readv.
 *
 * The target is never stopped. Everything version-specific arrives in hp_py_offsets, filled by
 * Python (hostprof.native.pyoffsets) from _Py_DebugOffsets (3.13+) or from the generated
 * per-minor tables (3.9-3.12). The reader then:
 *   - walks interpreter -> thread states -> frames, reading through a small per-sample page
 *     cache so a 200-deep stack costs a handful of syscalls;
 *   - caches code objects by address (name, qualname, file, first line, line table) and the
 *     line of each (code, instruction offset) pair it has decoded;
 *   - appends one sample per thread: tid, flags (GIL, GC, idle), CLOCK_MONOTONIC time and
 *     frame keys (code id << 32 | line), root first.
 * A frame chain that cannot be read consistently (the target changed it under us) is a torn
 * read: the thread is retried once, then dropped and counted.
 *
 * Nothing here touches Python objects; every function can run with the GIL released.
 */
#ifndef HOSTPROF_PYREADER_H
#define HOSTPROF_PYREADER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "threadstate.h"
#include "tidmap.h"

#define HP_FLAG_GIL 1
#define HP_FLAG_GC 2
#define HP_FLAG_IDLE 4

/* Frame key of the synthetic <gc> leaf frame (code id 0xffffffff). */
#define HP_GC_KEY 0xffffffff00000000ULL

/* Return codes. */
#define HP_OK 0
#define HP_ERR_NOMEM -1
#define HP_ERR_GONE -2   /* the process exited (ESRCH) */
#define HP_ERR_PERM -3   /* EPERM: no ptrace permission */
#define HP_ERR_READ -4   /* the interpreter state itself could not be read */

/* Kinds of frame chains. */
#define HP_FRAMES_OBJECTS 0  /* 3.9/3.10: PyFrameObject linked by f_back */
#define HP_FRAMES_INTERP 1   /* 3.11+: _PyInterpreterFrame linked by previous */

/* Line table formats. */
#define HP_LINES_LNOTAB 0    /* 3.9 co_lnotab, f_lasti in bytes */
#define HP_LINES_310 1       /* 3.10 co_linetable, f_lasti in code units */
#define HP_LINES_LOCATIONS 2 /* 3.11+ location table, instruction pointer */

/* Offsets of one interpreter version. -1 means "absent in this version". */
typedef struct {
    int64_t version_hex;
    int64_t rt_interp_head;
    int64_t rt_gil_holder;       /* 3.9-3.11: in _PyRuntime */
    int64_t rt_gil_locked;
    int64_t interp_gil_holder;   /* 3.13+: absolute offsets in the interpreter state */
    int64_t interp_gil_locked;
    int64_t interp_gil_ptr;      /* 3.12: interp->ceval.gil, then gil_holder/gil_locked */
    int64_t gil_holder;
    int64_t gil_locked;
    int64_t interp_threads_head;
    int64_t interp_gc_collecting;
    int64_t ts_next;
    int64_t ts_thread_id;
    int64_t ts_native_thread_id;
    int64_t ts_frame;            /* direct frame pointer (3.9/3.10, 3.13+) */
    int64_t ts_cframe;           /* 3.11/3.12: cframe pointer ... */
    int64_t cframe_current_frame;/* ... then its current_frame */
    int64_t pthread_tid;         /* where glibc keeps the tid in struct pthread (3.9/3.10) */
    int64_t frames_kind;
    int64_t fr_previous;
    int64_t fr_code;
    int64_t fr_instr;            /* f_lasti (int) or prev_instr/instr_ptr (pointer) */
    int64_t fr_owner;            /* -1 for frame objects */
    int64_t owner_skip_min;      /* owners >= this are C-stack/interpreter shims */
    int64_t ob_type;
    int64_t code_name;
    int64_t code_qualname;
    int64_t code_filename;
    int64_t code_firstlineno;
    int64_t code_linetable;
    int64_t code_adaptive;
    int64_t lines_kind;
    int64_t unicode_state;
    int64_t unicode_length;
    int64_t unicode_ascii_size;
    int64_t unicode_compact_size;
    int64_t unicode_kind_shift;  /* bit position of the 3-bit kind in the state word */
    int64_t bytes_size;
    int64_t bytes_sval;
    uint64_t code_type_addr;     /* runtime address of PyCode_Type; 0 = do not check */
    uint64_t unicode_type_addr;  /* runtime address of PyUnicode_Type; 0 = do not check */
    uint64_t executable_mask;    /* mask applied to f_executable (tagged stackrefs, 3.14+) */
} hp_py_offsets;

/* One cached code object. Strings are malloc'd UTF-8, never NULL. */
typedef struct {
    uint64_t addr;
    char *name;
    char *qualname;
    char *filename;
    int32_t firstlineno;
    uint8_t *linetable;
    uint32_t linetable_len;
    /* The name, filename and line-table pointers seen when loaded: a cache hit is checked
     * against them (one batched read per sample), so a code object freed and replaced at
     * the same address is never reported under the old name. */
    uint64_t p_name, p_file, p_lines;
    uint64_t checked_gen;  /* the instant that last considered it (one check per instant) */
    int64_t checked_ns;    /* when its header was last read and found unchanged */
    uint32_t code_bytes;   /* 3.11+: size of its bytecode (0 = unknown): an instruction
                            * offset outside it means the object changed: check it now */
    uint8_t check_now;
    uint8_t pending;       /* queued for the next instant's prefetch read */
    int shim;            /* an interpreter-internal shim (3.13+ _Py_InitCleanup): not shown */
} hp_code;

/* One sample: a thread's stack at one instant. Frames are in hp_sample_buf.frames. */
typedef struct {
    int64_t timestamp_ns;
    uint64_t tstate;
    uint64_t thread_id;  /* pthread_t as Python's threading.get_ident() */
    uint64_t frames_start;
    int32_t tid;         /* host tid (ours: /proc, eBPF), see tidmap.h */
    uint32_t n_frames;
    uint8_t flags;
    char os_state;       /* R, S, D, ... from /proc/PID/task/TID/stat; '?' if unknown */
    int32_t ns_tid;      /* the tid as the target's PID namespace numbers it */
} hp_sample;

typedef struct {
    hp_sample *samples;
    uint64_t n_samples, cap_samples;
    uint64_t *frames;    /* keys: code id << 32 | (uint32) line; root first per sample */
    uint64_t n_frames, cap_frames;
} hp_sample_buf;

typedef struct {
    uint64_t ticks;          /* sampling instants attempted */
    uint64_t samples;        /* thread samples kept */
    uint64_t torn_retries;   /* thread walks that were retried */
    uint64_t torn_dropped;   /* thread samples dropped after a failed retry */
    uint64_t late;           /* ticks skipped because the sampler fell behind */
    uint64_t reads;          /* process_vm_readv calls */
    uint64_t errors;         /* ticks that failed entirely */
    uint64_t busy_ns;        /* time spent sampling (not sleeping) */
    uint64_t stale_codes;    /* cached code objects found replaced at the same address */
    uint64_t paused_ns;      /* time the target was stopped (--blocking only) */
    uint64_t bytes_read;     /* bytes transferred by process_vm_readv */
    uint64_t os_reads;       /* /proc/PID/task/TID/{stat,wchan} reads */
    uint64_t state_hits;     /* thread states taken from sched_switch data (threadstate.h) */
    uint64_t state_seeds;    /* /proc reads stored into that table for later ticks */
    uint64_t code_checks;    /* cached code objects re-read to check they were not replaced */
    uint64_t frames_reused;  /* thread stacks not re-read: no GIL hand-over since (parked) */
} hp_stats;

/* The frames last read of one thread state, and the GIL switch_number they were read at. */
typedef struct {
    uint64_t tstate;
    uint64_t switch_no;
    uint64_t code_epoch;
    uint64_t leaf_sig;
    uint64_t seen_tick;
    uint64_t *keys;           /* leaf first, as r->scratch */
    uint32_t depth, cap;
} hp_stack_memo;

/* Slots of the per-instant read cache (1 KiB lines; at most IOV_MAX, one prefetch iovec each). */
#define HP_PAGE_SLOTS 1024
/* Code objects whose periodic check can ride along with one instant's prefetch. */
#define HP_PENDING_CODES 256
/* The sampling thread asks for SCHED_FIFO only at rates of 250 Hz and more. */
#define HP_REALTIME_INTERVAL_NS 4000000LL
/* Default bound on how long the sampling loop trusts a cached code object unread. */
#define HP_CODE_CHECK_NS 100000000LL
/* An idle thread whose Python stack is unchanged keeps its state this many ticks unread. */
#define HP_IDLE_REUSE 7

typedef struct {
    pid_t pid;
    uint64_t runtime_addr;
    uint64_t interp_addr;
    hp_py_offsets off;
    int max_depth;
    int read_os_state;
    int nice_boost;           /* sampling thread's nice decrease (root only), 0 = none */
    int realtime;             /* sampling thread tries SCHED_FIFO priority 1 (root only) */
    int fast_os_state;        /* 1 inside hp_sample_loop: wchan instead of stat */
    /* page cache, valid for one sampling instant */
    uint64_t page_addr[HP_PAGE_SLOTS];
    uint64_t page_gen[HP_PAGE_SLOTS];
    uint64_t page_used_tick[HP_PAGE_SLOTS]; /* last sampling instant that touched the page */
    uint64_t tick;            /* sampling instants so far (retries share one) */
    /* slots touched by the previous and the current instant, in first-touch order: the
     * prefetch walks this list instead of scanning every slot's tick (cold at 100 Hz) */
    uint16_t used_slots[2][HP_PAGE_SLOTS];
    uint32_t n_used[2];
    int prefetch;             /* read last instant's pages in one syscall first */
    uint64_t rng;             /* xorshift state for tick jitter */
    uint8_t *pages;           /* HP_PAGE_SLOTS lines of 1 KiB */
    uint64_t gen;
    /* code cache: open addressing on address -> index into codes */
    hp_code *codes;
    uint32_t n_codes, cap_codes;
    uint32_t *code_slots;     /* index + 1, 0 = empty */
    uint32_t code_slots_cap;  /* power of two */
    /* line cache: (code id, instr offset) -> line */
    uint64_t *line_keys;
    int32_t *line_vals;
    uint32_t line_cap;        /* power of two */
    uint32_t n_lines;
    /* /proc/PID/task/TID/stat fds, by tid */
    int32_t *stat_tids;
    int *stat_fds;            /* two per tid: stat, wchan (-1 until opened) */
    uint32_t n_stat, cap_stat;
    /* per tid, sampling loop only: the last OS state read, the signature of the Python stack
     * it was read with, and how many ticks it has been reused without a read */
    uint64_t *stat_sig;
    char *stat_last;
    uint8_t *stat_reused;
    /* sampling loop */
    pthread_mutex_t lock;     /* guards out and stats */
    hp_sample_buf out;
    hp_stats stats;
    volatile int stop;
    int blocking;             /* opt-in: ptrace-stop every thread while reading */
    int32_t *seized;          /* tids seized with PTRACE_SEIZE (blocking mode) */
    char *seized_state;       /* each one's OS state read just before it was stopped */
    uint64_t *seized_ran;     /* and its run time then (schedstat), when it was blocked */
    uint32_t n_seized, cap_seized;
    int paused;               /* the seized threads are stopped now: their OS state is ours */
    int last_error;
    uint64_t *scratch;        /* one thread's frame keys, leaf first */
    uint64_t leaf_sig;        /* walk_thread: leaf frame address and instruction offset, mixed */
    /* code-object validation: the [lo, lo + len) span holding name/filename/linetable */
    int64_t code_span_lo, code_span_len;
    /* In the sampling loop, a cached code object is re-checked at most this often (its
     * page is otherwise not read at all); one-shot samples check every code object. */
    int64_t code_check_ns;
    int64_t now_ns;           /* time stamp of the instant being read */
    /* code objects due for a check, read with the next instant's prefetch */
    uint32_t pending[HP_PENDING_CODES];
    uint32_t n_pending;
    uint8_t pending_spans[HP_PENDING_CODES * 64];
    /* parked threads' stacks (sampling loop, GIL builds only: gil_reuse) */
    int gil_reuse;
    uint64_t code_epoch;      /* bumped when a cached code object is evicted */
    uint64_t last_switch, switch_tick;  /* GIL switch_number at the last instant */
    uint32_t switch_same;     /* instants it has not changed */
    int64_t switch_changed_ns;  /* when it last changed */
    hp_stack_memo *memos;
    uint32_t n_memos, cap_memos, memo_hint;
    /* sched_switch thread states (offcpu collector), or NULL: /proc only. Not owned. */
    hp_threadstate *threadstate;
    /* namespace tids -> host tids (targets in another PID namespace) */
    hp_tidmap tidmap;
} hp_reader;

/* Sets one offsets field by name (as in pyreader.h); returns 0, or -1 for an unknown name. */
int hp_offsets_set(hp_py_offsets *o, const char *name, int64_t value);
/* Initialises every field to -1 (absent) and the masks to "no masking". */
void hp_offsets_clear(hp_py_offsets *o);

/* The reader's offsets (for tests that drive the decoders directly). */
hp_py_offsets *hp_reader_offsets(hp_reader *r);

void hp_reader_lock(hp_reader *r);
void hp_reader_unlock(hp_reader *r);

int hp_reader_init(hp_reader *r, pid_t pid, uint64_t runtime_addr, const hp_py_offsets *off,
                   int max_depth);
void hp_reader_free(hp_reader *r);

/* Makes the sampling loop take thread states from t (NULL: /proc only), with a /proc read
 * only for threads t does not know. t must stay mapped as long as the reader may run. Safe
 * while the loop runs (it picks t up at its next instant). */
void hp_reader_set_threadstate(hp_reader *r, hp_threadstate *t);

/* Reads target memory directly (no cache). Returns HP_OK or a negative HP_ERR_*. */
int hp_read(hp_reader *r, uint64_t addr, void *buf, size_t n);

/* Takes one sample of every thread into buf. Returns the number of threads sampled, or a
 * negative HP_ERR_*. Safe without the GIL; not thread-safe for one reader. */
int hp_sample_once(hp_reader *r, hp_sample_buf *buf, int64_t timestamp_ns);

/* Samples every interval_ns into r->out (under r->lock) until r->stop is set or the process
 * exits. Returns HP_OK when stopped, or the error that ended it. */
int hp_sample_loop(hp_reader *r, int64_t interval_ns);

/* Decodes the line of an instruction offset (bytes from the code start) of a cached code. */
int32_t hp_code_line(const hp_reader *r, const hp_code *c, int64_t byte_offset);

void hp_buf_init(hp_sample_buf *b);
void hp_buf_free(hp_sample_buf *b);
void hp_buf_clear(hp_sample_buf *b);

int64_t hp_monotonic_ns(void);

#endif
