/* pyreader: see pyreader.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* process_vm_readv */
#endif
#include "pyreader.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

/* Cache line of the per-instant read cache. Smaller than a page: a steady instant needs a
 * few hundred bytes from each of 20-30 pages (thread states, frames, code objects), and
 * copying whole pages was a third of process_vm_readv's cost. */
#define LINE 1024ULL
/* prefetch_pages packs a slot number into a line address's low bits */
_Static_assert(HP_PAGE_SLOTS <= 1024, "slot numbers must fit below LINE");
#define MAX_STR 4096
#define MAX_LINETABLE (1u << 20)
#define MAX_THREADS 4096

int64_t hp_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------- offsets */

#define F(name) {#name, offsetof(hp_py_offsets, name)}
static const struct {
    const char *name;
    size_t at;
} OFFSET_FIELDS[] = {
    F(version_hex),
    F(rt_interp_head),
    F(rt_gil_holder),
    F(rt_gil_locked),
    F(interp_gil_holder),
    F(interp_gil_locked),
    F(interp_gil_ptr),
    F(gil_holder),
    F(gil_locked),
    F(interp_threads_head),
    F(interp_gc_collecting),
    F(ts_next),
    F(ts_thread_id),
    F(ts_native_thread_id),
    F(ts_frame),
    F(ts_cframe),
    F(cframe_current_frame),
    F(pthread_tid),
    F(frames_kind),
    F(fr_previous),
    F(fr_code),
    F(fr_instr),
    F(fr_owner),
    F(owner_skip_min),
    F(ob_type),
    F(code_name),
    F(code_qualname),
    F(code_filename),
    F(code_firstlineno),
    F(code_linetable),
    F(code_adaptive),
    F(lines_kind),
    F(unicode_state),
    F(unicode_length),
    F(unicode_ascii_size),
    F(unicode_compact_size),
    F(unicode_kind_shift),
    F(bytes_size),
    F(bytes_sval),
    F(code_type_addr),
    F(unicode_type_addr),
    F(executable_mask),
};
#undef F

int hp_offsets_set(hp_py_offsets *o, const char *name, int64_t value) {
    for (size_t i = 0; i < sizeof OFFSET_FIELDS / sizeof OFFSET_FIELDS[0]; i++) {
        if (strcmp(OFFSET_FIELDS[i].name, name) == 0) {
            memcpy((char *)o + OFFSET_FIELDS[i].at, &value, sizeof value);
            return 0;
        }
    }
    return -1;
}

void hp_offsets_clear(hp_py_offsets *o) {
    for (size_t i = 0; i < sizeof OFFSET_FIELDS / sizeof OFFSET_FIELDS[0]; i++) {
        int64_t v = -1;
        memcpy((char *)o + OFFSET_FIELDS[i].at, &v, sizeof v);
    }
    o->code_type_addr = 0;
    o->unicode_type_addr = 0;
    o->executable_mask = ~0ULL;
}

hp_py_offsets *hp_reader_offsets(hp_reader *r) { return &r->off; }

void hp_reader_lock(hp_reader *r) { pthread_mutex_lock(&r->lock); }
void hp_reader_unlock(hp_reader *r) { pthread_mutex_unlock(&r->lock); }

/* ------------------------------------------------------------------------- raw reads */

static int errno_to_hp(int e) {
    if (e == ESRCH) return HP_ERR_GONE;
    if (e == EPERM || e == EACCES) return HP_ERR_PERM;
    return HP_ERR_READ;
}

int hp_read(hp_reader *r, uint64_t addr, void *buf, size_t n) {
    struct iovec local = {buf, n};
    struct iovec remote = {(void *)(uintptr_t)addr, n};
    if (addr == 0) return HP_ERR_READ;
    r->stats.reads++;
    ssize_t got = process_vm_readv(r->pid, &local, 1, &remote, 1, 0);
    if (got > 0) r->stats.bytes_read += (uint64_t)got;
    if (got == (ssize_t)n) return HP_OK;
    if (got < 0) return errno_to_hp(errno);
    return HP_ERR_READ;
}

/* Reads through the per-instant cache of LINE-byte lines: aligned lines never straddle a
 * mapping boundary, and neighbouring frames share lines. */
static int cread(hp_reader *r, uint64_t addr, void *buf, size_t n) {
    uint8_t *dst = buf;
    if (addr == 0) return HP_ERR_READ;
    while (n > 0) {
        uint64_t line = addr & ~(LINE - 1);
        /* Two candidate slots (2-way), from the high bits of a Fibonacci hash: with one slot
         * per line, two lines an instant needs often share it and evict each other every
         * instant, costing extra reads per tick. */
        uint64_t h = (line / LINE) * 0x9E3779B97F4A7C15ULL;
        uint32_t a = (uint32_t)(h >> 40) % HP_PAGE_SLOTS;
        uint32_t b = (uint32_t)(h >> 52) % HP_PAGE_SLOTS;
        if (b == a) b = (a + 1) % HP_PAGE_SLOTS;
        uint32_t slot;
        if (r->page_addr[a] == line) slot = a;
        else if (r->page_addr[b] == line) slot = b;
        else if (r->page_used_tick[a] != r->tick) slot = a;  /* keep what this instant uses */
        else slot = b;
        uint8_t *p = r->pages + (size_t)slot * LINE;
        if (r->page_gen[slot] != r->gen || r->page_addr[slot] != line) {
            int rc = hp_read(r, line, p, LINE);
            if (rc != HP_OK) return rc;
            r->page_addr[slot] = line;
            r->page_gen[slot] = r->gen;
        }
        if (r->page_used_tick[slot] != r->tick) {
            r->page_used_tick[slot] = r->tick;
            uint32_t cur = (uint32_t)(r->tick & 1);
            r->used_slots[cur][r->n_used[cur]++] = (uint16_t)slot;
        }
        size_t off = (size_t)(addr - line);
        size_t take = LINE - off < n ? LINE - off : n;
        memcpy(dst, p + off, take);
        dst += take;
        addr += take;
        n -= take;
    }
    return HP_OK;
}

/* Reads, in one process_vm_readv, every line the previous instant used: a steady target
 * touches the same lines (thread states, C-stack frames, data-stack chunks, code objects)
 * tick after tick, so most instants then need one syscall. Lines are sorted by address and
 * contiguous ones share one remote iovec (the kernel pins pages per remote iovec). Lines
 * that fail (unmapped since) and everything after them are simply read on demand. */
static void check_pending_codes(hp_reader *r, const uint8_t *spans, int n_read);

static void prefetch_pages(hp_reader *r) {
    struct iovec local[HP_PAGE_SLOTS], remote[HP_PAGE_SLOTS];
    uint64_t want[HP_PAGE_SLOTS]; /* line address | slot (slots < LINE) */
    int n = 0;
    uint32_t prev = (uint32_t)((r->tick - 1) & 1);
    for (uint32_t k = 0; k < r->n_used[prev]; k++) {
        uint32_t slot = r->used_slots[prev][k];
        /* A slot reused later in the same instant holds another line: still wanted. */
        if (r->page_used_tick[slot] != r->tick - 1 || !r->page_addr[slot]) continue;
        uint64_t v = r->page_addr[slot] | slot;
        int j = n++;
        while (j > 0 && want[j - 1] > v) { want[j] = want[j - 1]; j--; }
        want[j] = v;
    }
    if (n < 2 && !r->n_pending) return;
    int nr = 0;
    for (int i = 0; i < n; i++) {
        uint64_t line = want[i] & ~(LINE - 1);
        uint32_t slot = (uint32_t)(want[i] & (LINE - 1));
        local[i].iov_base = r->pages + (size_t)slot * LINE;
        local[i].iov_len = LINE;
        if (nr && (uint64_t)(uintptr_t)remote[nr - 1].iov_base + remote[nr - 1].iov_len == line) {
            remote[nr - 1].iov_len += LINE;
        } else {
            remote[nr].iov_base = (void *)(uintptr_t)line;
            remote[nr].iov_len = LINE;
            nr++;
        }
    }
    /* Code objects due for their periodic check ride along, after the lines (a read stops
     * at the first unreadable remote range: a freed code object must not cost the lines).
     * Drop those checked meanwhile (at once, after an out-of-range instruction offset). */
    uint32_t kept = 0;
    for (uint32_t k = 0; k < r->n_pending; k++)
        if (r->codes[r->pending[k]].pending) r->pending[kept++] = r->pending[k];
    r->n_pending = kept;
    if (n < 2 && !r->n_pending) return;
    int np = 0;
    size_t span = (size_t)r->code_span_len;
    while (np < (int)r->n_pending && n + np < HP_PAGE_SLOTS && nr + np < HP_PAGE_SLOTS) {
        hp_code *c = &r->codes[r->pending[np]];
        local[n + np].iov_base = r->pending_spans + (size_t)np * 64;
        local[n + np].iov_len = span;
        remote[nr + np].iov_base = (void *)(uintptr_t)(c->addr + (uint64_t)r->code_span_lo);
        remote[nr + np].iov_len = span;
        np++;
    }
    r->stats.reads++;
    r->stats.code_checks += (uint64_t)np;
    ssize_t got = process_vm_readv(r->pid, local, (unsigned long)(n + np), remote,
                                   (unsigned long)(nr + np), 0);
    if (got > 0) r->stats.bytes_read += (uint64_t)got;
    for (int i = 0; i < n && (ssize_t)((i + 1) * LINE) <= got; i++)
        r->page_gen[want[i] & (LINE - 1)] = r->gen;
    if (np) {
        ssize_t extra = got - (ssize_t)((size_t)n * LINE);
        int whole = got < 0 ? -1 : extra < 0 ? -1 : (int)(extra / (ssize_t)span);
        /* lines that failed: nothing is known of the code objects (-1) */
        check_pending_codes(r, r->pending_spans, whole > np ? np : whole);
    }
}

static int cread_ptr(hp_reader *r, uint64_t addr, uint64_t *out) {
    return cread(r, addr, out, sizeof *out);
}

static int cread_i32(hp_reader *r, uint64_t addr, int32_t *out) {
    return cread(r, addr, out, sizeof *out);
}

/* ------------------------------------------------------------------------ buffers */

void hp_buf_init(hp_sample_buf *b) { memset(b, 0, sizeof *b); }

void hp_buf_free(hp_sample_buf *b) {
    free(b->samples);
    free(b->frames);
    memset(b, 0, sizeof *b);
}

void hp_buf_clear(hp_sample_buf *b) {
    b->n_samples = 0;
    b->n_frames = 0;
}

static int buf_reserve(hp_sample_buf *b, uint64_t samples, uint64_t frames) {
    if (b->n_samples + samples > b->cap_samples) {
        uint64_t cap = b->cap_samples ? b->cap_samples * 2 : 256;
        while (cap < b->n_samples + samples) cap *= 2;
        hp_sample *s = realloc(b->samples, cap * sizeof *s);
        if (!s) return HP_ERR_NOMEM;
        b->samples = s;
        b->cap_samples = cap;
    }
    if (b->n_frames + frames > b->cap_frames) {
        uint64_t cap = b->cap_frames ? b->cap_frames * 2 : 4096;
        while (cap < b->n_frames + frames) cap *= 2;
        uint64_t *f = realloc(b->frames, cap * sizeof *f);
        if (!f) return HP_ERR_NOMEM;
        b->frames = f;
        b->cap_frames = cap;
    }
    return HP_OK;
}

/* ------------------------------------------------------------------------ strings */

static char *dup_str(const char *s) {
    char *d = strdup(s ? s : "");
    return d;
}

/* Appends the UTF-8 encoding of code point cp. */
static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads a compact str object into a malloc'd UTF-8 string; NULL on failure. */
static char *read_unicode(hp_reader *r, uint64_t addr) {
    const hp_py_offsets *o = &r->off;
    uint32_t state = 0;
    int64_t length = 0;
    if (!addr) return NULL;
    if (o->unicode_type_addr) {
        uint64_t type = 0;
        if (cread_ptr(r, addr + o->ob_type, &type) != HP_OK || type != o->unicode_type_addr)
            return NULL;
    }
    if (cread(r, addr + o->unicode_state, &state, 4) != HP_OK) return NULL;
    if (cread(r, addr + o->unicode_length, &length, 8) != HP_OK) return NULL;
    if (length < 0 || length > MAX_STR) return NULL;
    unsigned kind = (state >> o->unicode_kind_shift) & 7;
    unsigned compact = (state >> (o->unicode_kind_shift + 3)) & 1;
    unsigned ascii = (state >> (o->unicode_kind_shift + 4)) & 1;
    if (!compact || (kind != 1 && kind != 2 && kind != 4)) return NULL;
    uint64_t data = addr + (ascii ? o->unicode_ascii_size : o->unicode_compact_size);
    size_t nbytes = (size_t)length * kind;
    uint8_t *raw = malloc(nbytes + 1);
    char *out = malloc((size_t)length * 4 + 1);
    if (!raw || !out) { free(raw); free(out); return NULL; }
    if (nbytes && cread(r, data, raw, nbytes) != HP_OK) { free(raw); free(out); return NULL; }
    size_t w = 0;
    for (int64_t i = 0; i < length; i++) {
        uint32_t cp;
        if (kind == 1) cp = raw[i];
        else if (kind == 2) cp = ((uint16_t *)raw)[i];
        else cp = ((uint32_t *)raw)[i];
        if (cp > 0x10FFFF) cp = 0xFFFD;
        w += put_utf8(out + w, cp);
    }
    out[w] = 0;
    free(raw);
    return out;
}

/* ------------------------------------------------------------------------ code cache */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int code_slots_grow(hp_reader *r) {
    uint32_t cap = r->code_slots_cap ? r->code_slots_cap * 2 : 1024;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return HP_ERR_NOMEM;
    for (uint32_t i = 0; i < r->n_codes; i++) {
        uint32_t h = (uint32_t)mix64(r->codes[i].addr) & (cap - 1);
        while (slots[h]) h = (h + 1) & (cap - 1);
        slots[h] = i + 1;
    }
    free(r->code_slots);
    r->code_slots = slots;
    r->code_slots_cap = cap;
    return HP_OK;
}

static void code_free(hp_code *c) {
    free(c->name);
    free(c->qualname);
    free(c->filename);
    free(c->linetable);
}

#define CODE_NOMEM (-100)

/* Returns the cache index of the code object at addr, loading it if new; -1 if it is not a
 * readable code object (torn or not code), CODE_NOMEM on allocation failure. */
static int64_t code_lookup(hp_reader *r, uint64_t addr) {
    const hp_py_offsets *o = &r->off;
    if (r->code_slots_cap) {
        uint32_t h = (uint32_t)mix64(addr) & (r->code_slots_cap - 1);
        while (r->code_slots[h]) {
            uint32_t idx = r->code_slots[h] - 1;
            if (r->codes[idx].addr == addr) return idx;
            h = (h + 1) & (r->code_slots_cap - 1);
        }
    }
    if (o->code_type_addr) {
        uint64_t type = 0;
        if (cread_ptr(r, addr + o->ob_type, &type) != HP_OK || type != o->code_type_addr)
            return -1;
    }
    hp_code c;
    memset(&c, 0, sizeof c);
    c.addr = addr;
    uint64_t p_name = 0, p_qual = 0, p_file = 0, p_lines = 0;
    if (cread_ptr(r, addr + o->code_name, &p_name) != HP_OK) return -1;
    if (o->code_qualname >= 0 && cread_ptr(r, addr + o->code_qualname, &p_qual) != HP_OK)
        return -1;
    if (cread_ptr(r, addr + o->code_filename, &p_file) != HP_OK) return -1;
    if (cread_ptr(r, addr + o->code_linetable, &p_lines) != HP_OK) return -1;
    if (cread_i32(r, addr + o->code_firstlineno, &c.firstlineno) != HP_OK) return -1;
    c.name = read_unicode(r, p_name);
    c.qualname = p_qual ? read_unicode(r, p_qual) : NULL;
    c.filename = read_unicode(r, p_file);
    if (!c.name || !c.filename) { code_free(&c); return -1; }
    if (!c.qualname) c.qualname = dup_str(c.name);
    /* The fields above came from the page cache, possibly from pages read at different
     * moments; a code object being freed or reused meanwhile would mix two objects. Re-read
     * its header in one fresh read and insist it still says the same. */
    {
        int64_t hi = o->code_linetable;
        if (o->code_name > hi) hi = o->code_name;
        if (o->code_filename > hi) hi = o->code_filename;
        if (o->code_qualname > hi) hi = o->code_qualname;
        uint8_t head[512];
        size_t n = (size_t)hi + 8;
        if (n > sizeof head || hp_read(r, addr, head, n) != HP_OK) { code_free(&c); return -1; }
        uint64_t v_type, v_name, v_file, v_lines;
        int32_t v_first;
        memcpy(&v_type, head + o->ob_type, 8);
        memcpy(&v_name, head + o->code_name, 8);
        memcpy(&v_file, head + o->code_filename, 8);
        memcpy(&v_lines, head + o->code_linetable, 8);
        memcpy(&v_first, head + o->code_firstlineno, 4);
        if ((o->code_type_addr && v_type != o->code_type_addr) || v_name != p_name ||
            v_file != p_file || v_lines != p_lines || v_first != c.firstlineno) {
            code_free(&c);
            return -1;
        }
        /* 3.11+ code objects are variable-sized, ob_size (right after ob_type) counting
         * 2-byte code units of the inline bytecode. */
        if (o->frames_kind == HP_FRAMES_INTERP && (size_t)o->ob_type + 16 <= n) {
            int64_t units = 0;
            memcpy(&units, head + o->ob_type + 8, 8);
            if (units > 0 && units < (1 << 28)) c.code_bytes = (uint32_t)units * 2;
        }
    }
    c.p_name = p_name;
    c.p_file = p_file;
    c.p_lines = p_lines;
    c.checked_gen = r->gen;
    c.checked_ns = r->now_ns;
    /* CPython 3.13+ pushes an internal shim frame when a class's __init__ is called
     * (_Py_InitCleanup): its code names itself "__init__" in both co_name and co_filename
     * (one string object) at line 0. It is not user code: leave it out of stacks. */
    c.shim = p_name == p_file && c.firstlineno == 0;
    int64_t len = 0;
    if (p_lines && cread(r, p_lines + o->bytes_size, &len, 8) == HP_OK && len > 0 &&
        len <= MAX_LINETABLE) {
        c.linetable = malloc((size_t)len);
        if (c.linetable && cread(r, p_lines + o->bytes_sval, c.linetable, (size_t)len) == HP_OK)
            c.linetable_len = (uint32_t)len;
        else { free(c.linetable); c.linetable = NULL; }
    }
    if (r->n_codes == r->cap_codes) {
        uint32_t cap = r->cap_codes ? r->cap_codes * 2 : 256;
        hp_code *codes = realloc(r->codes, cap * sizeof *codes);
        if (!codes) { code_free(&c); return CODE_NOMEM; }
        r->codes = codes;
        r->cap_codes = cap;
    }
    if ((r->n_codes + 1) * 2 > r->code_slots_cap && code_slots_grow(r) != HP_OK) {
        code_free(&c);
        return CODE_NOMEM;
    }
    uint32_t idx = r->n_codes++;
    r->codes[idx] = c;
    uint32_t h = (uint32_t)mix64(addr) & (r->code_slots_cap - 1);
    while (r->code_slots[h]) h = (h + 1) & (r->code_slots_cap - 1);
    r->code_slots[h] = idx + 1;
    return idx;
}

/* ------------------------------------------------------------------------ line tables */

static int read_varint(const uint8_t *t, uint32_t n, uint32_t *i, uint32_t *out) {
    uint32_t v = 0, shift = 0;
    while (*i < n) {
        uint8_t b = t[(*i)++];
        v |= (uint32_t)(b & 63) << shift;
        shift += 6;
        if (!(b & 64)) { *out = v; return 1; }
        if (shift > 30) return 0;
    }
    return 0;
}

static int read_svarint(const uint8_t *t, uint32_t n, uint32_t *i, int32_t *out) {
    uint32_t u;
    if (!read_varint(t, n, i, &u)) return 0;
    *out = (u & 1) ? -(int32_t)(u >> 1) : (int32_t)(u >> 1);
    return 1;
}

/* 3.11+ location table: entries cover (length) code units each; see CPython's
 * Objects/locations.md. byte_offset is from the first instruction. */
static int32_t line_locations(const hp_code *c, int64_t byte_offset) {
    const uint8_t *t = c->linetable;
    uint32_t n = c->linetable_len, i = 0;
    int64_t addr = 0, target = byte_offset / 2;
    int32_t line = c->firstlineno;
    while (i < n) {
        uint8_t first = t[i++];
        if (!(first & 0x80)) break;  /* not an entry start: corrupt */
        int code = (first >> 3) & 15;
        int64_t len = (first & 7) + 1;
        int32_t this_line = line, delta = 0;
        uint32_t skip;
        int has_line = 1;
        switch (code) {
            case 15: has_line = 0; break;
            case 14:
                if (!read_svarint(t, n, &i, &delta)) return line;
                line += delta;
                this_line = line;
                if (!read_varint(t, n, &i, &skip)) return line;
                if (!read_varint(t, n, &i, &skip)) return line;
                if (!read_varint(t, n, &i, &skip)) return line;
                break;
            case 13:
                if (!read_svarint(t, n, &i, &delta)) return line;
                line += delta;
                this_line = line;
                break;
            case 10: case 11: case 12:
                line += code - 10;
                this_line = line;
                i += 2;
                break;
            default:
                i += 1;
                this_line = line;
                break;
        }
        if (target >= addr && target < addr + len) return has_line ? this_line : line;
        addr += len;
    }
    return line;
}

/* 3.9 co_lnotab: (address increment, signed line increment) byte pairs. */
static int32_t line_lnotab(const hp_code *c, int64_t byte_offset) {
    int32_t line = c->firstlineno;
    int64_t addr = 0;
    for (uint32_t i = 0; i + 1 < c->linetable_len; i += 2) {
        addr += c->linetable[i];
        if (addr > byte_offset) break;
        line += (int8_t)c->linetable[i + 1];
    }
    return line;
}

/* 3.10 co_linetable: (byte length, signed line delta or -128 for "no line") pairs. */
static int32_t line_310(const hp_code *c, int64_t byte_offset) {
    int32_t line = c->firstlineno, last = c->firstlineno;
    int64_t addr = 0;
    for (uint32_t i = 0; i + 1 < c->linetable_len; i += 2) {
        int64_t end = addr + c->linetable[i];
        int8_t ld = (int8_t)c->linetable[i + 1];
        if (ld != -128) { line += ld; last = line; }
        if (byte_offset >= addr && byte_offset < end) return last;
        addr = end;
    }
    return last;
}

int32_t hp_code_line(const hp_reader *r, const hp_code *c, int64_t byte_offset) {
    if (!c->linetable || byte_offset < 0) return c->firstlineno;
    switch (r->off.lines_kind) {
        case HP_LINES_LOCATIONS: return line_locations(c, byte_offset);
        case HP_LINES_310: return line_310(c, byte_offset);
        default: return line_lnotab(c, byte_offset);
    }
}

static int line_cache_grow(hp_reader *r) {
    uint32_t cap = r->line_cap ? r->line_cap * 2 : 4096;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) { free(keys); free(vals); return HP_ERR_NOMEM; }
    memset(keys, 0xff, cap * sizeof *keys);
    for (uint32_t i = 0; i < r->line_cap; i++) {
        if (r->line_keys[i] == UINT64_MAX) continue;
        uint32_t h = (uint32_t)mix64(r->line_keys[i]) & (cap - 1);
        while (keys[h] != UINT64_MAX) h = (h + 1) & (cap - 1);
        keys[h] = r->line_keys[i];
        vals[h] = r->line_vals[i];
    }
    free(r->line_keys);
    free(r->line_vals);
    r->line_keys = keys;
    r->line_vals = vals;
    r->line_cap = cap;
    return HP_OK;
}

/* Memoised line of (code index, byte offset). */
static int32_t cached_line(hp_reader *r, uint32_t code_idx, int64_t byte_offset) {
    if (byte_offset < 0 || byte_offset > 0xffffffffLL)
        return r->codes[code_idx].firstlineno;
    uint64_t key = ((uint64_t)code_idx << 32) | (uint64_t)byte_offset;
    if ((r->n_lines + 1) * 2 > r->line_cap && line_cache_grow(r) != HP_OK)
        return hp_code_line(r, &r->codes[code_idx], byte_offset);
    uint32_t h = (uint32_t)mix64(key) & (r->line_cap - 1);
    while (r->line_keys[h] != UINT64_MAX) {
        if (r->line_keys[h] == key) return r->line_vals[h];
        h = (h + 1) & (r->line_cap - 1);
    }
    int32_t line = hp_code_line(r, &r->codes[code_idx], byte_offset);
    r->line_keys[h] = key;
    r->line_vals[h] = line;
    r->n_lines++;
    return line;
}

/* ------------------------------------------------------------------------ OS state */

/* The OS state of a thread. Two sources, both read with pread on a kept-open fd:
 *  - stat (full state letter: R, S, D, ...): about 15 us, the kernel formats 52 fields;
 *  - wchan (fast mode, for the sampling loop): about 3 us; "0" while running or runnable,
 *    else the kernel function the thread sleeps in. Reported as 'R' or 'S'. */
static char os_state(hp_reader *r, int32_t tid, uint64_t sig) {
    int fast = r->fast_os_state;
    int fd = -1;
    uint32_t i;
    for (i = 0; i < r->n_stat; i++) {
        if (r->stat_tids[i] == tid) break;
    }
    if (i == r->n_stat) {
        if (r->n_stat == r->cap_stat) {
            uint32_t cap = r->cap_stat ? r->cap_stat * 2 : 16;
            int32_t *t = realloc(r->stat_tids, cap * sizeof *t);
            if (t) r->stat_tids = t;
            int *f = realloc(r->stat_fds, 2 * cap * sizeof *f);
            if (f) r->stat_fds = f;
            uint64_t *g = realloc(r->stat_sig, cap * sizeof *g);
            if (g) r->stat_sig = g;
            char *l = realloc(r->stat_last, cap);
            if (l) r->stat_last = l;
            uint8_t *u = realloc(r->stat_reused, cap);
            if (u) r->stat_reused = u;
            if (!t || !f || !g || !l || !u) return '?';
            r->cap_stat = cap;
        }
        r->stat_tids[i] = tid;
        r->stat_fds[2 * i] = -1;
        r->stat_fds[2 * i + 1] = -1;
        r->stat_last[i] = '?';
        r->stat_reused[i] = 0;
        r->stat_sig[i] = 0;
        r->n_stat++;
    }
    /* In the loop, a thread found idle keeps that state while its Python stack (every frame's
     * code and line, the leaf frame's address and instruction) is unchanged, re-read at least
     * every HP_IDLE_REUSE + 1 ticks: threads parked in sleep/recv/wait otherwise cost one
     * /proc read each per tick (the kernel symbolises wchan on each read). */
    if (fast && sig && r->stat_last[i] != 'R' && r->stat_last[i] != '?' &&
        r->stat_sig[i] == sig && r->stat_reused[i] < HP_IDLE_REUSE) {
        r->stat_reused[i]++;
        return r->stat_last[i];
    }
    r->stat_sig[i] = sig;
    r->stat_reused[i] = 0;
    r->stat_last[i] = '?';
    fd = r->stat_fds[2 * i + fast];
    if (fd < 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task/%d/%s", (int)r->pid, (int)tid,
                 fast ? "wchan" : "stat");
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return '?';
        r->stat_fds[2 * i + fast] = fd;
    }
    char buf[512];
    r->stats.os_reads++;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        /* The thread exited: forget its fds (a new thread may reuse the tid later). */
        if (r->stat_fds[2 * i] >= 0) close(r->stat_fds[2 * i]);
        if (r->stat_fds[2 * i + 1] >= 0) close(r->stat_fds[2 * i + 1]);
        r->n_stat--;
        r->stat_tids[i] = r->stat_tids[r->n_stat];
        r->stat_fds[2 * i] = r->stat_fds[2 * r->n_stat];
        r->stat_fds[2 * i + 1] = r->stat_fds[2 * r->n_stat + 1];
        r->stat_sig[i] = r->stat_sig[r->n_stat];
        r->stat_last[i] = r->stat_last[r->n_stat];
        r->stat_reused[i] = r->stat_reused[r->n_stat];
        return '?';
    }
    buf[n] = 0;
    if (fast) {
        char st = (buf[0] == '0' && (n == 1 || buf[1] == '\n' || buf[1] == 0)) ? 'R' : 'S';
        r->stat_last[i] = st;
        return st;
    }
    char *close_paren = strrchr(buf, ')');
    if (!close_paren || close_paren[1] != ' ') return '?';
    return close_paren[2];
}

/* ------------------------------------------------------------------------ sampling */

int hp_reader_init(hp_reader *r, pid_t pid, uint64_t runtime_addr, const hp_py_offsets *off,
                   int max_depth) {
    memset(r, 0, sizeof *r);
    r->pid = pid;
    hp_tidmap_init(&r->tidmap, pid);
    r->runtime_addr = runtime_addr;
    r->off = *off;
    r->max_depth = max_depth > 0 ? max_depth : 4096;
    r->read_os_state = 1;
    r->nice_boost = 5;
    r->realtime = 1;
    r->prefetch = 1;
    r->code_check_ns = HP_CODE_CHECK_NS;
    r->rng = (uint64_t)hp_monotonic_ns() * 0x9E3779B97F4A7C15ULL | 1;
    r->tick = 1;
    r->gen = 1;
    r->pages = malloc(HP_PAGE_SLOTS * LINE);
    r->scratch = malloc(((size_t)r->max_depth + 2) * sizeof *r->scratch);
    if (!r->pages || !r->scratch) {
        hp_reader_free(r);
        return HP_ERR_NOMEM;
    }
    {
        int64_t f[3] = {off->code_name, off->code_filename, off->code_linetable};
        int64_t lo = f[0], hi = f[0];
        for (int i = 1; i < 3; i++) {
            if (f[i] < lo) lo = f[i];
            if (f[i] > hi) hi = f[i];
        }
        r->code_span_lo = lo;
        r->code_span_len = (lo >= 0 && hi + 8 - lo <= 64) ? hi + 8 - lo : 0;
    }
    pthread_mutex_init(&r->lock, NULL);
    hp_buf_init(&r->out);
    int rc = hp_read(r, runtime_addr + off->rt_interp_head, &r->interp_addr, 8);
    if (rc != HP_OK) return rc;
    if (!r->interp_addr) return HP_ERR_READ;
    return HP_OK;
}

void hp_reader_free(hp_reader *r) {
    for (uint32_t i = 0; i < r->n_codes; i++) code_free(&r->codes[i]);
    free(r->codes);
    free(r->code_slots);
    free(r->line_keys);
    free(r->line_vals);
    for (uint32_t i = 0; i < 2 * r->n_stat; i++)
        if (r->stat_fds[i] >= 0) close(r->stat_fds[i]);
    free(r->stat_tids);
    free(r->stat_fds);
    free(r->stat_sig);
    free(r->stat_last);
    free(r->stat_reused);
    for (uint32_t i = 0; i < r->n_memos; i++) free(r->memos[i].keys);
    free(r->memos);
    r->memos = NULL;
    r->n_memos = r->cap_memos = 0;
    free(r->seized);
    free(r->seized_state);
    free(r->seized_ran);
    r->seized = NULL;
    r->seized_state = NULL;
    r->seized_ran = NULL;
    hp_tidmap_free(&r->tidmap);
    r->n_seized = r->cap_seized = 0;
    free(r->pages);
    free(r->scratch);
    hp_buf_free(&r->out);
    r->codes = NULL;
    r->code_slots = NULL;
    r->line_keys = NULL;
    r->line_vals = NULL;
    r->stat_tids = NULL;
    r->stat_fds = NULL;
    r->stat_sig = NULL;
    r->stat_last = NULL;
    r->stat_reused = NULL;
    r->pages = NULL;
    r->scratch = NULL;
    r->n_codes = r->n_stat = 0;
}

/* Walks one thread's frames into r->scratch (leaf first). Returns the depth, or -1 for a torn
 * walk, or CODE_NOMEM (distinct from -1: HP_ERR_NOMEM is also -1). */
/* Compares a code object's re-read header span with what it held when loaded: unchanged,
 * it counts as checked now; changed or unreadable (span NULL), it is evicted. Returns 1 when
 * evicted. */
static int code_check_span(hp_reader *r, hp_code *c, const uint8_t *span) {
    c->check_now = 0;
    c->pending = 0;
    if (span) {
        uint64_t name, file, lines;
        memcpy(&name, span + (r->off.code_name - r->code_span_lo), 8);
        memcpy(&file, span + (r->off.code_filename - r->code_span_lo), 8);
        memcpy(&lines, span + (r->off.code_linetable - r->code_span_lo), 8);
        if (name == c->p_name && file == c->p_file && lines == c->p_lines) {
            c->checked_ns = r->now_ns;
            return 0;
        }
    }
    /* Never matches again; a fresh entry is loaded for the address on the next lookup. */
    c->addr = UINT64_MAX;
    r->stats.stale_codes++;
    r->code_epoch++; /* memoised stacks may hold its keys */
    return 1;
}

/* Settles the code objects whose checks rode along with the prefetch: the first n_read
 * spans were read (n_read < 0: the read failed before them); the one after those could not
 * be read (gone); the rest are checked at the end of this instant. Runs before the walk, so
 * an evicted code object is simply reloaded when a frame still uses it. */
static void check_pending_codes(hp_reader *r, const uint8_t *spans, int n_read) {
    for (uint32_t i = 0; i < r->n_pending; i++) {
        hp_code *c = &r->codes[r->pending[i]];
        if (!c->pending) continue; /* checked meanwhile (only when not read: n_read < 0) */
        if ((int)i < n_read) code_check_span(r, c, spans + (size_t)i * 64);
        else if ((int)i == n_read) code_check_span(r, c, NULL);
        else { c->pending = 0; c->check_now = 1; }
    }
    r->n_pending = 0;
}

/* Re-reads the headers (name, filename and line-table pointers) of a batch of cached code
 * objects in one process_vm_readv; evicts those that changed or could not be read. */
#define CHECK_BATCH 64
static int check_code_batch(hp_reader *r, hp_code **batch, int n) {
    struct iovec local[CHECK_BATCH], remote[CHECK_BATCH];
    uint8_t spans[CHECK_BATCH][64];
    size_t len = (size_t)r->code_span_len;
    for (int i = 0; i < n; i++) {
        local[i].iov_base = spans[i];
        local[i].iov_len = len;
        remote[i].iov_base = (void *)(uintptr_t)(batch[i]->addr + (uint64_t)r->code_span_lo);
        remote[i].iov_len = len;
    }
    r->stats.reads++;
    r->stats.code_checks += (uint64_t)n;
    ssize_t got = process_vm_readv(r->pid, local, (unsigned long)n, remote, (unsigned long)n, 0);
    if (got < 0 && (errno == ESRCH || errno == EPERM)) return errno_to_hp(errno);
    if (got > 0) r->stats.bytes_read += (uint64_t)got;
    int stale = 0;
    /* The read stops at the first unreadable object: that one is gone (evicted; reloading
     * it fails if it is not code any more); those after it were not read at all and are
     * checked again next instant. */
    ssize_t whole = got > 0 ? got / (ssize_t)len : 0;
    for (int i = 0; i < n; i++) {
        if (i > whole) batch[i]->check_now = 1;
        else stale |= code_check_span(r, batch[i], i < whole ? spans[i] : NULL);
    }
    return stale;
}

/* Checks the cached code objects behind frame keys against the target: their name,
 * filename and line-table pointers must be unchanged. A code object is checked when
 * `period_ns` has passed since its last check (0: every time), or at once when a frame's
 * instruction offset fell outside its bytecode. Reading a code object's header pins its
 * page: at 100 Hz, where every page is cold, that was a third of an instant's cost, for
 * objects that almost never change. Returns 0 when all are current, -1 after evicting stale
 * ones (the caller samples again), or a negative HP_ERR_* when the process is gone. */
static int validate_codes(hp_reader *r, const uint64_t *keys, uint64_t n_keys,
                          int64_t period_ns) {
    if (r->code_span_len <= 0) return 0;
    hp_code *batch[CHECK_BATCH];
    int n = 0, stale = 0;
    for (uint64_t i = 0; i < n_keys; i++) {
        uint32_t ci = (uint32_t)(keys[i] >> 32);
        if (ci >= r->n_codes) continue;
        hp_code *c = &r->codes[ci];
        if (c->checked_gen == r->gen) continue;
        c->checked_gen = r->gen;
        if (!c->check_now && period_ns > 0) {
            if (r->now_ns - c->checked_ns < period_ns || c->pending) continue;
            /* Due: checked with the next instant's prefetch, in the same syscall. */
            if (r->code_span_len <= 64 && r->n_pending < HP_PENDING_CODES) {
                c->pending = 1;
                r->pending[r->n_pending++] = ci;
                continue;
            }
        }
        batch[n++] = c;
        if (n == CHECK_BATCH) {
            int rc = check_code_batch(r, batch, n);
            if (rc < 0) return rc;
            stale |= rc;
            n = 0;
        }
    }
    if (n) {
        int rc = check_code_batch(r, batch, n);
        if (rc < 0) return rc;
        stale |= rc;
    }
    return stale ? -1 : 0;
}

static int walk_thread(hp_reader *r, uint64_t frame) {
    const hp_py_offsets *o = &r->off;
    int depth = 0;
    r->leaf_sig = 0;
    uint64_t prev = 0;
    /* Skipped frames (shims, no code) do not count toward depth: bound the steps too, or a
     * torn chain (a dying process) cycling through skipped frames never ends. */
    int steps = 0;
    while (frame) {
        if (depth >= r->max_depth || frame == prev || ++steps > 2 * r->max_depth + 16)
            return -1;
        uint64_t code = 0, next = 0;
        if (cread_ptr(r, frame + o->fr_code, &code) != HP_OK) return -1;
        if (cread_ptr(r, frame + o->fr_previous, &next) != HP_OK) return -1;
        code &= o->executable_mask;
        int skip = 0;
        if (o->fr_owner >= 0) {
            uint8_t owner = 0;
            if (cread(r, frame + o->fr_owner, &owner, 1) != HP_OK) return -1;
            skip = owner >= o->owner_skip_min;
        }
        if (!skip && code) {
            int64_t idx = code_lookup(r, code);
            if (idx == CODE_NOMEM) return CODE_NOMEM;
            if (idx >= 0 && r->codes[idx].shim) {
                /* interpreter-internal shim frame: skipped */
            } else if (idx >= 0) {
                int64_t byte_offset;
                if (o->frames_kind == HP_FRAMES_OBJECTS) {
                    int32_t lasti = 0;
                    if (cread_i32(r, frame + o->fr_instr, &lasti) != HP_OK) return -1;
                    byte_offset = o->lines_kind == HP_LINES_310 ? (int64_t)lasti * 2 : lasti;
                } else {
                    uint64_t instr = 0;
                    if (cread_ptr(r, frame + o->fr_instr, &instr) != HP_OK) return -1;
                    byte_offset = (int64_t)(instr - (code + (uint64_t)o->code_adaptive));
                    /* Outside the cached object's bytecode (3.11/3.12 point one unit before
                     * the first instruction at entry): another object now lives at this
                     * address, or the frame was torn. Check the code object this instant. */
                    const hp_code *c = &r->codes[idx];
                    if (c->code_bytes && (byte_offset < -2 || byte_offset > c->code_bytes))
                        r->codes[idx].check_now = 1;
                }
                if (depth == 0) r->leaf_sig = mix64(frame ^ ((uint64_t)byte_offset << 48));
                int32_t line = cached_line(r, (uint32_t)idx, byte_offset);
                r->scratch[depth++] = ((uint64_t)idx << 32) | (uint32_t)line;
            } else if (o->frames_kind == HP_FRAMES_OBJECTS) {
                return -1;  /* frame objects always hold code: this one is torn */
            }
        }
        prev = frame;
        frame = next;
    }
    return depth;
}

/* Reads the GIL holder (0 when the GIL is free) and, where known, the GIL's switch_number
 * with the raw last_holder (*switch_no stays 0 when unknown). switch_number follows `locked`
 * in struct _gil_runtime_state (interval, last_holder, locked, switch_number) in every
 * CPython since 3.2; take_gil() bumps it whenever a thread other than last_holder takes the
 * GIL. */
static int read_gil_holder(hp_reader *r, uint64_t *holder, uint64_t *switch_no,
                           uint64_t *last_holder) {
    const hp_py_offsets *o = &r->off;
    uint64_t base, at_holder, at_locked;
    *switch_no = 0;
    *last_holder = 0;
    if (o->rt_gil_holder >= 0) {
        base = r->runtime_addr;
        at_holder = o->rt_gil_holder;
        at_locked = o->rt_gil_locked;
    } else if (o->interp_gil_holder >= 0) {
        base = r->interp_addr;
        at_holder = o->interp_gil_holder;
        at_locked = o->interp_gil_locked;
    } else if (o->interp_gil_ptr >= 0) {
        if (cread_ptr(r, r->interp_addr + o->interp_gil_ptr, &base) != HP_OK) return -1;
        at_holder = o->gil_holder;
        at_locked = o->gil_locked;
    } else {
        *holder = 0;
        return 0;
    }
    int32_t locked = 0;
    if (cread_ptr(r, base + at_holder, holder) != HP_OK) return -1;
    if (cread_i32(r, base + at_locked, &locked) != HP_OK) return -1;
    *last_holder = *holder;
    if (!locked) *holder = 0;
    if (r->gil_reuse && at_holder + 8 == at_locked) {
        uint64_t sw = 0;
        if (cread_ptr(r, base + ((at_locked + 4 + 7) & ~7ULL), &sw) == HP_OK) *switch_no = sw;
    }
    return 0;
}

/* ------------------------------------------------------------------------ parked threads */

/* With a GIL, a thread's Python frames change only while it holds the GIL. If the GIL's
 * switch_number is the same as when a thread's frames were last read, no thread but
 * last_holder has taken the GIL since; so every other thread's frames are still the ones
 * read then, and need not be read again (its thread state still is: the list, the tid).
 * At 100 Hz each such thread saves the two cold pages of its C-stack frame and data-stack
 * chunk per instant. Free-threaded builds have no such guarantee: gil_reuse stays 0. */
static hp_stack_memo *memo_find(hp_reader *r, uint64_t tstate) {
    for (uint32_t i = 0; i < r->n_memos; i++) {
        uint32_t k = (r->memo_hint + i) % r->n_memos;
        if (r->memos[k].tstate == tstate) {
            r->memo_hint = k + 1;
            return &r->memos[k];
        }
    }
    return NULL;
}

static void memo_store(hp_reader *r, uint64_t tstate, uint64_t switch_no, int depth) {
    hp_stack_memo *m = memo_find(r, tstate);
    if (!m) {
        /* Reuse the entry of a thread state not seen for a while, else grow. */
        for (uint32_t i = 0; i < r->n_memos && !m; i++)
            if (r->memos[i].seen_tick + 2 < r->tick) m = &r->memos[i];
        if (!m) {
            if (r->n_memos == r->cap_memos) {
                uint32_t cap = r->cap_memos ? r->cap_memos * 2 : 16;
                if (cap > MAX_THREADS) return;
                hp_stack_memo *t = realloc(r->memos, cap * sizeof *t);
                if (!t) return;
                r->memos = t;
                r->cap_memos = cap;
            }
            m = &r->memos[r->n_memos++];
            memset(m, 0, sizeof *m);
        }
        m->tstate = tstate;
    }
    if ((uint32_t)depth > m->cap) {
        uint64_t *k = realloc(m->keys, (size_t)depth * sizeof *k);
        if (!k) { m->tstate = 0; return; }
        m->keys = k;
        m->cap = (uint32_t)depth;
    }
    memcpy(m->keys, r->scratch, (size_t)depth * sizeof *m->keys);
    m->depth = (uint32_t)depth;
    m->leaf_sig = r->leaf_sig;
    m->switch_no = switch_no;
    m->code_epoch = r->code_epoch;
    m->seen_tick = r->tick;
}

/* --blocking: the OS state of host tid `tid` read just before this instant's ptrace stop, or
 * 0 when we did not stop it. */
static char paused_state(const hp_reader *r, int32_t tid) {
    for (uint32_t i = 0; i < r->n_seized; i++)
        if (r->seized[i] == tid) return r->seized_state[i];
    return 0;
}

static int sample_threads(hp_reader *r, hp_sample_buf *buf, int64_t timestamp_ns) {
    const hp_py_offsets *o = &r->off;
    uint64_t holder = 0, tstate = 0;
    int32_t gc_collecting = 0;
    int rc = cread_ptr(r, r->interp_addr + o->interp_threads_head, &tstate);
    if (rc != HP_OK) return rc == HP_ERR_READ ? HP_ERR_READ : rc;
    uint64_t switch_no = 0, last_holder = 0;
    read_gil_holder(r, &holder, &switch_no, &last_holder);
    /* Reuse only once switch_number has held still for a few instants: a reused thread's
     * pages drop out of the next instant's prefetch, so where the GIL changes hands every
     * few ticks (several busy threads) they would come back as one read each. */
    if (r->switch_tick != r->tick) {
        r->switch_tick = r->tick;
        if (switch_no == r->last_switch) {
            r->switch_same++;
        } else {
            r->switch_same = 0;
            r->switch_changed_ns = r->now_ns;
        }
        r->last_switch = switch_no;
    }
    /* switch_number 0: unknown, or no GIL hand-over ever (then nothing is reused). "Held
     * still" means 3 instants and 25 ms: longer than CPython's 5 ms switch interval, so
     * two busy threads at 1 kHz do not flip between reuse and fresh reads. */
    int reuse = r->fast_os_state && switch_no != 0;
    int reuse_now = reuse && r->switch_same >= 3 && r->now_ns - r->switch_changed_ns >= 25000000;
    if (o->interp_gc_collecting >= 0)
        cread_i32(r, r->interp_addr + o->interp_gc_collecting, &gc_collecting);
    /* Thread states from sched_switch: the loop only (dump reads the full /proc state). */
    hp_threadstate *ts = r->fast_os_state
        ? __atomic_load_n(&r->threadstate, __ATOMIC_ACQUIRE) : NULL;
    int n_threads = 0;
    while (tstate && n_threads < MAX_THREADS) {
        uint64_t next = 0, frame = 0, thread_id = 0;
        int64_t tid = 0;
        int depth = -1;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (attempt) { r->gen++; r->stats.torn_retries++; }
            if (cread_ptr(r, tstate + o->ts_next, &next) != HP_OK) break;
            cread_ptr(r, tstate + o->ts_thread_id, &thread_id);
            if (o->ts_native_thread_id >= 0) {
                cread(r, tstate + o->ts_native_thread_id, &tid, 8);
            } else if (o->pthread_tid >= 0 && thread_id) {
                int32_t t32 = 0;
                if (cread_i32(r, thread_id + o->pthread_tid, &t32) == HP_OK) tid = t32;
            }
            if (reuse_now && !attempt && tstate != last_holder) {
                hp_stack_memo *m = memo_find(r, tstate);
                if (m && m->switch_no == switch_no && m->code_epoch == r->code_epoch) {
                    memcpy(r->scratch, m->keys, (size_t)m->depth * sizeof *r->scratch);
                    r->leaf_sig = m->leaf_sig;
                    m->seen_tick = r->tick;
                    depth = (int)m->depth;
                    r->stats.frames_reused++;
                    break;
                }
            }
            if (o->ts_frame >= 0) {
                if (cread_ptr(r, tstate + o->ts_frame, &frame) != HP_OK) continue;
            } else {
                uint64_t cframe = 0;
                if (cread_ptr(r, tstate + o->ts_cframe, &cframe) != HP_OK) continue;
                frame = 0;
                if (cframe && cread_ptr(r, cframe + o->cframe_current_frame, &frame) != HP_OK)
                    continue;
            }
            depth = walk_thread(r, frame);
            if (depth == CODE_NOMEM) return HP_ERR_NOMEM;
            if (depth >= 0) {
                if (reuse) memo_store(r, tstate, switch_no, depth);
                break;
            }
        }
        n_threads++;
        if (depth < 0) {
            r->stats.torn_dropped++;
            if (!next) break;
            tstate = next;
            continue;
        }
        uint8_t flags = 0;
        if (holder && holder == tstate) flags |= HP_FLAG_GIL;
        /* The interpreter's tid is its PID namespace's; /proc and the sched_switch table
         * want ours (the same number unless the target is in a container). */
        int32_t ns_tid = (int32_t)tid;
        int32_t host_tid = hp_tidmap_host(&r->tidmap, ns_tid, timestamp_ns);
        tid = host_tid;
        char state = '?';
        char before = r->paused && tid > 0 ? paused_state(r, (int32_t)tid) : 0;
        /* In the loop, the GIL holder is running Python code: skip its OS-state read. */
        if (r->fast_os_state && (flags & HP_FLAG_GIL)) state = 'R';
        /* --blocking: we stopped it; its state is the one read just before. */
        else if (before) state = before;
        else if (r->read_os_state && tid > 0) {
            /* sched_switch data, when the offcpu collector runs: one load, no syscall. */
            uint64_t seen = 0;
            char known = ts ? hp_threadstate_get(ts, (int32_t)tid, &seen) : 0;
            if (known) {
                state = known;
                r->stats.state_hits++;
            } else {
                uint64_t sig = 0, reads0 = r->stats.os_reads;
                if (r->fast_os_state && depth > 0) {
                    sig = r->leaf_sig ^ mix64(tstate);
                    for (int i = 0; i < depth; i++) sig = mix64(sig ^ r->scratch[i]);
                    sig |= 1;  /* 0 means "no signature" */
                }
                state = os_state(r, (int32_t)tid, sig);
                /* A fresh /proc read of a thread the table does not know (blocked since
                 * before the collector attached, or a colliding slot): store it, unless the
                 * kernel wrote the slot since `seen` was read. */
                if (ts && r->stats.os_reads != reads0 && (state == 'R' || state == 'S') &&
                    hp_threadstate_seed(ts, (int32_t)tid, seen, state, timestamp_ns))
                    r->stats.state_seeds++;
                /* Gone from /proc: the thread exited (its namespace tid may come back). */
                if (state == '?') hp_tidmap_forget(&r->tidmap, host_tid);
            }
        }
        if (state != 'R' && state != '?') flags |= HP_FLAG_IDLE;
        /* The collector runs in the GIL holder. Without a GIL (free-threaded builds) the
         * collection stops the world, so the thread still running is the collector. */
        int in_gc = gc_collecting && (holder ? (flags & HP_FLAG_GIL) : state == 'R');
        if (in_gc) flags |= HP_FLAG_GC;
        if (buf_reserve(buf, 1, (uint64_t)depth + 1) != HP_OK) return HP_ERR_NOMEM;
        hp_sample *s = &buf->samples[buf->n_samples++];
        s->timestamp_ns = timestamp_ns;
        s->tstate = tstate;
        s->thread_id = thread_id;
        s->frames_start = buf->n_frames;
        s->tid = host_tid ? host_tid : ns_tid;  /* not found: exiting or starting */
        s->ns_tid = ns_tid;
        s->flags = flags;
        s->os_state = state;
        for (int i = depth - 1; i >= 0; i--) buf->frames[buf->n_frames++] = r->scratch[i];
        if (in_gc) buf->frames[buf->n_frames++] = HP_GC_KEY;
        s->n_frames = (uint32_t)(buf->n_frames - s->frames_start);
        r->stats.samples++;
        tstate = next;
    }
    return n_threads;
}

void hp_reader_set_threadstate(hp_reader *r, hp_threadstate *t) {
    __atomic_store_n(&r->threadstate, t, __ATOMIC_RELEASE);
}

int hp_sample_once(hp_reader *r, hp_sample_buf *buf, int64_t timestamp_ns) {
    r->gen++;
    r->tick++;
    r->now_ns = timestamp_ns;
    /* One-shot samples (dump, stack_now) may come long after the previous one: they check
     * every code object they use. */
    int64_t period = r->fast_os_state ? r->code_check_ns : 0;
    r->n_used[r->tick & 1] = 0;
    if (r->prefetch) prefetch_pages(r);
    if (r->n_pending) check_pending_codes(r, NULL, -1); /* not read: check at the end */
    uint64_t s0 = buf->n_samples, f0 = buf->n_frames, kept0 = r->stats.samples;
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = sample_threads(r, buf, timestamp_ns);
        if (rc < 0) return rc;
        /* A cached code object replaced at the same address: sample the instant again. */
        int v = validate_codes(r, buf->frames + f0, buf->n_frames - f0, period);
        if (v == 0) break;
        if (v != -1) return v;
        if (attempt == 0) {
            buf->n_samples = s0;
            buf->n_frames = f0;
            r->stats.samples = kept0;
            r->stats.torn_retries++;
            r->gen++;
        }
    }
    return rc;
}


/* ------------------------------------------------------------------------ --blocking */

/* Opt-in pausing (record --blocking): each instant, every thread of the target is stopped
 * with PTRACE_SEIZE + PTRACE_INTERRUPT, read, then resumed with PTRACE_CONT. Only the sampling
 * thread traces (ptrace requests must come from the tracer thread). A signal that arrives
 * while we stop a thread is re-injected when it resumes. If hostprof dies, the kernel detaches
 * the tracees. */

static int is_seized(hp_reader *r, int32_t tid) {
    for (uint32_t i = 0; i < r->n_seized; i++)
        if (r->seized[i] == tid) return 1;
    return 0;
}

static void forget_seized(hp_reader *r, uint32_t i) {
    r->n_seized--;
    r->seized[i] = r->seized[r->n_seized];
    r->seized_state[i] = r->seized_state[r->n_seized];
    r->seized_ran[i] = r->seized_ran[r->n_seized];
}

/* CPU time a thread has run (first field of /proc/PID/task/TID/schedstat), 0 if unknown. */
static uint64_t run_time_ns(pid_t pid, int32_t tid) {
    char path[64], buf[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtoull(buf, NULL, 10);
}

static int blocked_state(char c) { return c && c != 'R' && c != '?'; }

/* The OS state of seized thread i, about to be stopped. Read before the stop: once stopped,
 * /proc and the sched_switch table show every thread stopped by us ('t'), i.e. idle.
 * Stopping a blocked thread wakes it, so after we resume it, it is runnable until it gets a
 * CPU and blocks again: on a busy host that outlasts a tick. One found runnable that has not
 * run since the previous pause left it blocked (its schedstat run time then, seized_ran, is
 * unchanged) is still where that pause found it: it keeps that state. */
static char state_before_pause(hp_reader *r, uint32_t i) {
    if (!r->read_os_state) return 0;
    int32_t tid = r->seized[i];
    hp_threadstate *ts = __atomic_load_n(&r->threadstate, __ATOMIC_ACQUIRE);
    uint64_t seen = 0;
    char c = ts ? hp_threadstate_get(ts, tid, &seen) : 0;
    if (c) r->stats.state_hits++;
    else c = os_state(r, tid, 0);
    if (c == 'R' && blocked_state(r->seized_state[i]) && r->seized_ran[i] &&
        run_time_ns(r->pid, tid) == r->seized_ran[i])
        c = r->seized_state[i];
    return c;
}

/* Waits for tid's interrupt stop, passing on any signal it receives meanwhile. Returns 0 when
 * stopped, -1 when the thread is gone. */
static int wait_interrupt_stop(pid_t tid) {
    for (int guard = 0; guard < 64; guard++) {
        int status = 0;
        pid_t got = waitpid(tid, &status, __WALL);
        if (got < 0) return errno == EINTR ? 0 : -1;
        if (WIFEXITED(status) || WIFSIGNALED(status)) return -1;
        if (!WIFSTOPPED(status)) continue;
        if ((status >> 16) == PTRACE_EVENT_STOP) return 0;
        /* A signal-delivery stop: deliver the signal; our interrupt is still pending. */
        if (ptrace(PTRACE_CONT, tid, 0, (void *)(uintptr_t)WSTOPSIG(status)) != 0) return -1;
    }
    return -1;
}

static void pause_threads(hp_reader *r) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)r->pid);
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            int32_t tid = (int32_t)atoi(e->d_name);
            if (tid <= 0 || is_seized(r, tid)) continue;
            if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) continue;
            if (r->n_seized == r->cap_seized) {
                uint32_t cap = r->cap_seized ? r->cap_seized * 2 : 16;
                int32_t *t = realloc(r->seized, cap * sizeof *t);
                if (t) r->seized = t;
                char *st = realloc(r->seized_state, cap);
                if (st) r->seized_state = st;
                uint64_t *ran = realloc(r->seized_ran, cap * sizeof *ran);
                if (ran) r->seized_ran = ran;
                if (!t || !st || !ran) { ptrace(PTRACE_DETACH, tid, 0, 0); continue; }
                r->cap_seized = cap;
            }
            r->seized_state[r->n_seized] = 0;
            r->seized_ran[r->n_seized] = 0;
            r->seized[r->n_seized++] = tid;
        }
        closedir(dir);
    }
    for (uint32_t i = 0; i < r->n_seized; i++) r->seized_state[i] = state_before_pause(r, i);
    for (uint32_t i = 0; i < r->n_seized;) {
        if (ptrace(PTRACE_INTERRUPT, r->seized[i], 0, 0) != 0) { forget_seized(r, i); continue; }
        i++;
    }
    for (uint32_t i = 0; i < r->n_seized;) {
        if (wait_interrupt_stop(r->seized[i]) != 0) { forget_seized(r, i); continue; }
        i++;
    }
    /* Run times of the blocked ones while stopped (stopping them made them run a little). */
    for (uint32_t i = 0; i < r->n_seized; i++) {
        int blocked = blocked_state(r->seized_state[i]);
        r->seized_ran[i] = blocked ? run_time_ns(r->pid, r->seized[i]) : 0;
    }
    r->paused = 1;
}

static void resume_threads(hp_reader *r) {
    r->paused = 0;
    for (uint32_t i = 0; i < r->n_seized; i++) ptrace(PTRACE_CONT, r->seized[i], 0, 0);
}

static void detach_threads(hp_reader *r) {
    pause_threads(r);
    r->paused = 0;
    for (uint32_t i = 0; i < r->n_seized; i++) ptrace(PTRACE_DETACH, r->seized[i], 0, 0);
    r->n_seized = 0;
}

static int64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int hp_sample_loop(hp_reader *r, int64_t interval_ns) {
    int64_t next = hp_monotonic_ns();
    int result = HP_OK;
    r->fast_os_state = 1;
    /* Timely ticks matter more than this thread's CPU share: where allowed (root), run the
     * sampling thread a little ahead of ordinary work. Failure is harmless. */
    if (r->nice_boost) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -r->nice_boost);
    /* Better still, the lowest real-time priority: on a busy host a CFS thread, even at
     * nice -5, often wakes more than 1 ms late, and at 1 kHz every such tick is lost (a
     * quarter of them with a load of 9 on 2 CPUs here; ~2% as SCHED_FIFO). The loop sleeps
     * between ticks; should it ever use more than half a CPU over a second (a huge target
     * at a high rate), it drops back to the normal policy for good. */
    int realtime = 0;
    /* Only for fast rates: a real-time wake-up preempts whatever runs at once, which costs
     * more per tick (56 -> 71 us at 100 Hz here), and at 100 Hz a CFS wake-up is rarely a
     * whole 10 ms late. */
    if (r->realtime && interval_ns <= HP_REALTIME_INTERVAL_NS) {
        struct sched_param sp = {.sched_priority = 1};
        realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
    }
    int64_t window_start = next, window_cpu = thread_cpu_ns();
    while (!r->stop) {
        /* The lock covers the whole instant: drain() and code lookups from Python see the
         * code cache and output buffer only between samples. */
        pthread_mutex_lock(&r->lock);
        int64_t start = hp_monotonic_ns();
        int64_t paused_at = 0;
        if (r->blocking) {
            pause_threads(r);
            paused_at = hp_monotonic_ns();
        }
        int rc = hp_sample_once(r, &r->out, start);
        if (r->blocking) {
            resume_threads(r);
            r->stats.paused_ns += (uint64_t)(hp_monotonic_ns() - paused_at);
        }
        int64_t end = hp_monotonic_ns();
        r->stats.ticks++;
        r->stats.busy_ns += (uint64_t)(end - start);
        if (rc < 0) r->stats.errors++;
        pthread_mutex_unlock(&r->lock);
        if (realtime && end - window_start >= 1000000000LL) {
            int64_t cpu = thread_cpu_ns();
            if (2 * (cpu - window_cpu) > end - window_start) {
                struct sched_param sp = {.sched_priority = 0};
                pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
                if (r->nice_boost)
                    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -r->nice_boost);
                realtime = 0;
            }
            window_start = end;
            window_cpu = cpu;
        }
        if (rc == HP_ERR_GONE || rc == HP_ERR_PERM || rc == HP_ERR_NOMEM) {
            result = rc;
            break;
        }
        if (rc == HP_ERR_READ && kill(r->pid, 0) != 0 && errno == ESRCH) {
            result = HP_ERR_GONE;
            break;
        }
        /* Ticks sit on a fixed grid (so the mean rate is exact), each shifted by a random
         * offset within +-interval/2: a workload whose period divides the interval would
         * otherwise be sampled at the same phase every time (aliasing). */
        next += interval_ns;
        r->rng ^= r->rng << 13;
        r->rng ^= r->rng >> 7;
        r->rng ^= r->rng << 17;
        int64_t wake = next + (int64_t)(r->rng % (uint64_t)interval_ns) - interval_ns / 2;
        int64_t now = hp_monotonic_ns();
        if (now > wake) {
            /* Behind schedule: skip the missed ticks instead of bursting to catch up. */
            int64_t missed = (now - wake) / interval_ns;
            if (missed > 0) {
                pthread_mutex_lock(&r->lock);
                r->stats.late += (uint64_t)missed;
                pthread_mutex_unlock(&r->lock);
                next += missed * interval_ns;
            }
            continue;
        }
        struct timespec ts = {wake / 1000000000LL, wake % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !r->stop) {
        }
    }
    if (r->blocking) detach_threads(r);
    r->fast_os_state = 0;
    r->last_error = result;
    return result;
}
