/* tidmap: thread ids of a target in another PID namespace, as the host numbers them.
 *
 * CPython records a thread's id as its own PID namespace numbers it (gettid() in the thread:
 * tstate->native_thread_id, or the tid glibc keeps in struct pthread). Everything hostprof
 * asks the kernel uses the tids of the /proc it reads (ours, normally the host's):
 * /proc/PID/task/TID, the sched_switch thread-state table, bpf_get_current_pid_tgid(). For a
 * target in a container with its own PID namespace the two differ, so the sampler maps each
 * namespace tid to a host tid through the NSpid: line of /proc/PID/task/HOSTTID/status (ours
 * first, innermost last).
 *
 * The map is built on first use: a target in our namespace (one NSpid entry) maps every tid
 * to itself at no cost. Otherwise /proc/PID/task is scanned whenever a namespace tid the map
 * does not know shows up (threads come and go), reading the status of threads not mapped
 * yet only; a tid still not found is retried at most every HP_TIDMAP_RETRY_NS, so a thread
 * state outliving its thread does not rescan each tick. Nothing here touches Python objects: safe with the GIL released.
 */
#ifndef HOSTPROF_TIDMAP_H
#define HOSTPROF_TIDMAP_H

#include <stdint.h>
#include <sys/types.h>

/* A namespace tid not found by a scan is looked for again after this long. */
#define HP_TIDMAP_RETRY_NS 100000000LL

typedef struct {
    int32_t ns;    /* the tid as the target's PID namespace numbers it */
    int32_t host;  /* the tid in our /proc; 0: not found by the scan at scanned_ns */
} hp_tid_pair;

typedef struct {
    pid_t pid;
    int nested;          /* -1 not known yet, 0 our namespace (identity), 1 mapped */
    hp_tid_pair *pairs;  /* sorted by ns */
    uint32_t n, cap;
    int64_t scanned_ns;  /* when /proc/PID/task was last scanned (the caller's clock) */
    uint64_t scans;      /* scans so far */
    uint64_t status_reads; /* /proc/PID/task/TID/status reads by scans */
} hp_tidmap;

void hp_tidmap_init(hp_tidmap *m, pid_t pid);
void hp_tidmap_free(hp_tidmap *m);

/* The host tid of namespace tid ns_tid (itself for a target in our namespace), or 0 when
 * no thread of the target has that namespace tid. now_ns (any monotonic clock, the same on
 * every call) rate-limits rescans for tids not found. */
int32_t hp_tidmap_host(hp_tidmap *m, int32_t ns_tid, int64_t now_ns);

/* Drops the pair of a host tid whose /proc entries are gone (the thread exited; its
 * namespace tid may be reused by a thread with another host tid). */
void hp_tidmap_forget(hp_tidmap *m, int32_t host_tid);

#endif
