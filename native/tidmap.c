/* tidmap.c: namespace tids of a target mapped to host tids (see tidmap.h). */
#include "tidmap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hp_tidmap_init(hp_tidmap *m, pid_t pid) {
    memset(m, 0, sizeof *m);
    m->pid = pid;
    m->nested = -1;
}

void hp_tidmap_free(hp_tidmap *m) {
    free(m->pairs);
    m->pairs = NULL;
    m->n = m->cap = 0;
}

/* The NSpid: line of a status file: its first (ours) and last (innermost) ids, and how
 * many there are. Returns the count, 0 when the file or the line cannot be read. */
static int read_nspid(const char *path, int32_t *first, int32_t *last) {
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strstr(buf, "\nNSpid:");
    if (!p) return 0;
    p += 7;
    int count = 0;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (count == 0) *first = (int32_t)v;
        *last = (int32_t)v;
        count++;
        p = end;
        if (*p == '\n' || *p == 0) break;
    }
    return count;
}

static int pair_cmp(const void *a, const void *b) {
    int32_t x = ((const hp_tid_pair *)a)->ns, y = ((const hp_tid_pair *)b)->ns;
    return (x > y) - (x < y);
}

static hp_tid_pair *find(hp_tidmap *m, int32_t ns) {
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (m->pairs[mid].ns < ns) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n && m->pairs[lo].ns == ns ? &m->pairs[lo] : NULL;
}

static int push(hp_tidmap *m, int32_t ns, int32_t host) {
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 16;
        hp_tid_pair *p = realloc(m->pairs, cap * sizeof *p);
        if (!p) return -1;
        m->pairs = p;
        m->cap = cap;
    }
    m->pairs[m->n].ns = ns;
    m->pairs[m->n].host = host;
    m->n++;
    return 0;
}

static int host_cmp(const void *a, const void *b) {
    int32_t x = ((const hp_tid_pair *)a)->host, y = ((const hp_tid_pair *)b)->host;
    return (x > y) - (x < y);
}

/* Rebuilds the map from the target's task list, when a thread the map does not know shows
 * up. Threads already mapped keep their pair (host tids are not reused while the thread
 * lives); only new ones cost a status read (tens of us each), so a pool that keeps
 * starting threads does not pay for every thread on each start. */
static void scan(hp_tidmap *m, int64_t now_ns) {
    char path[64];
    m->scanned_ns = now_ns;
    m->scans++;
    snprintf(path, sizeof path, "/proc/%d/task", (int)m->pid);
    DIR *dir = opendir(path);
    if (!dir) return;
    /* The old pairs, by host tid (misses, host 0, are dropped). */
    uint32_t n_old = 0;
    hp_tid_pair *old = m->n ? malloc(m->n * sizeof *old) : NULL;
    if (old) {
        for (uint32_t i = 0; i < m->n; i++)
            if (m->pairs[i].host) old[n_old++] = m->pairs[i];
        qsort(old, n_old, sizeof *old, host_cmp);
    }
    m->n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int32_t host = (int32_t)atoi(e->d_name), first = 0, last = 0;
        if (host <= 0) continue;
        hp_tid_pair key = {.ns = 0, .host = host};
        hp_tid_pair *known = n_old ? bsearch(&key, old, n_old, sizeof *old, host_cmp) : NULL;
        if (known) {
            last = known->ns;
        } else {
            snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)m->pid, (int)host);
            if (read_nspid(path, &first, &last) <= 0 || first != host) continue;
            m->status_reads++;
        }
        if (last > 0 && push(m, last, host) != 0) break;
    }
    closedir(dir);
    free(old);
    qsort(m->pairs, m->n, sizeof *m->pairs, pair_cmp);
}

int32_t hp_tidmap_host(hp_tidmap *m, int32_t ns_tid, int64_t now_ns) {
    if (ns_tid <= 0) return 0;
    if (m->nested < 0) {
        /* One NSpid entry: the target lives in the namespace of our /proc. */
        char path[48];
        int32_t first = 0, last = 0;
        snprintf(path, sizeof path, "/proc/%d/status", (int)m->pid);
        m->nested = read_nspid(path, &first, &last) > 1;
    }
    if (!m->nested) return ns_tid;
    hp_tid_pair *p = find(m, ns_tid);
    if (p && (p->host || now_ns - m->scanned_ns < HP_TIDMAP_RETRY_NS)) return p->host;
    /* Unknown (a new thread), or not found for a while: scan, unless this instant did. */
    if (m->scans == 0 || now_ns != m->scanned_ns) scan(m, now_ns);
    p = find(m, ns_tid);
    if (p) return p->host;
    /* Remember the miss, so it is retried only after HP_TIDMAP_RETRY_NS. */
    if (push(m, ns_tid, 0) == 0) qsort(m->pairs, m->n, sizeof *m->pairs, pair_cmp);
    return 0;
}

void hp_tidmap_forget(hp_tidmap *m, int32_t host_tid) {
    if (m->nested <= 0 || host_tid <= 0) return;
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->pairs[i].host == host_tid) {
            memmove(&m->pairs[i], &m->pairs[i + 1], (m->n - i - 1) * sizeof *m->pairs);
            m->n--;
            return;
        }
    }
}
