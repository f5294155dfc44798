/* One-pass pprof reader; see pprofscan.h. Field numbers are those of pprof's profile.proto. */
#include "pprofscan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Profile */
#define F_SAMPLE_TYPE 1
#define F_SAMPLE 2
#define F_MAPPING 3
#define F_LOCATION 4
#define F_FUNCTION 5
#define F_STRING_TABLE 6
#define F_TIME_NANOS 9
#define F_PERIOD_TYPE 11
#define F_PERIOD 12

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_SGROUP 3
#define WT_EGROUP 4
#define WT_I32 5

/* Sparse ids would make the direct id tables large: those profiles go to the general reader. */
#define ID_TABLE_SLACK 4096

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} span;

static int fail(hp_pprof *p, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    return code;
}

/* Reads a varint. A varint may take at most 10 bytes; a 10th byte above 1 overflows 64 bits,
 * which protobuf readers treat inconsistently, so that goes to the general reader. */
static int read_varint(hp_pprof *p, span *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (s->p >= s->end)
            return fail(p, HP_PPROF_MALFORMED, "truncated varint");
        uint8_t b = *s->p++;
        if (i == 9 && b > 1)
            return fail(p, HP_PPROF_UNSUPPORTED, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return HP_PPROF_OK;
        }
    }
    return fail(p, HP_PPROF_MALFORMED, "varint longer than 10 bytes");
}

/* Reads a tag; *field and *wire get its parts. */
static int read_tag(hp_pprof *p, span *s, uint32_t *field, uint32_t *wire) {
    uint64_t tag;
    int rc = read_varint(p, s, &tag);
    if (rc)
        return rc;
    if (tag > UINT32_MAX)
        return fail(p, HP_PPROF_UNSUPPORTED, "tag above 32 bits");
    *field = (uint32_t)(tag >> 3);
    *wire = (uint32_t)(tag & 7);
    if (*field == 0)
        return fail(p, HP_PPROF_MALFORMED, "field number 0");
    if (*wire == 6 || *wire == 7)
        return fail(p, HP_PPROF_MALFORMED, "invalid wire type %u", *wire);
    if (*wire == WT_SGROUP || *wire == WT_EGROUP)
        return fail(p, HP_PPROF_UNSUPPORTED, "group wire type");
    return HP_PPROF_OK;
}

/* Reads the length prefix of a length-delimited field into *out. */
static int read_len(hp_pprof *p, span *s, span *out) {
    uint64_t n;
    int rc = read_varint(p, s, &n);
    if (rc)
        return rc;
    if (n > (uint64_t)(s->end - s->p))
        return fail(p, HP_PPROF_MALFORMED, "length %llu past the end", (unsigned long long)n);
    out->p = s->p;
    out->end = s->p + n;
    s->p += n;
    return HP_PPROF_OK;
}

/* Skips the value of a field of wire type `wire`. */
static int skip(hp_pprof *p, span *s, uint32_t wire) {
    uint64_t v;
    span sub;
    switch (wire) {
    case WT_VARINT:
        return read_varint(p, s, &v);
    case WT_I64:
    case WT_I32: {
        size_t n = wire == WT_I64 ? 8 : 4;
        if ((size_t)(s->end - s->p) < n)
            return fail(p, HP_PPROF_MALFORMED, "truncated fixed-width field");
        s->p += n;
        return HP_PPROF_OK;
    }
    case WT_LEN:
        return read_len(p, s, &sub);
    default:
        return fail(p, HP_PPROF_UNSUPPORTED, "wire type %u", wire);
    }
}

/* Checks that a message holds only well-formed fields (for sub-messages whose content the store
 * does not use, e.g. Mapping: all their fields are scalars). */
static int check_message(hp_pprof *p, span s) {
    uint32_t field, wire;
    int rc;
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)) || (rc = skip(p, &s, wire)))
            return rc;
    }
    return HP_PPROF_OK;
}

/* Calls back for each value of a repeated varint field, packed (wire 2) or not (wire 0).
 * Returns 1 in *known when the wire type fits (otherwise the field is unknown and skipped). */
typedef int (*varint_fn)(hp_pprof *p, void *ctx, uint64_t v);

static int repeated_varint(hp_pprof *p, span *s, uint32_t wire, varint_fn fn, void *ctx) {
    uint64_t v;
    int rc;
    if (wire == WT_VARINT) {
        if ((rc = read_varint(p, s, &v)))
            return rc;
        return fn(p, ctx, v);
    }
    if (wire == WT_LEN) {
        span packed;
        if ((rc = read_len(p, s, &packed)))
            return rc;
        while (packed.p < packed.end) {
            if ((rc = read_varint(p, &packed, &v)) || (rc = fn(p, ctx, v)))
                return rc;
        }
        return HP_PPROF_OK;
    }
    return skip(p, s, wire);
}

/* A singular varint field: the last occurrence wins; other wire types are unknown fields. */
static int singular_varint(hp_pprof *p, span *s, uint32_t wire, uint64_t *out) {
    if (wire == WT_VARINT)
        return read_varint(p, s, out);
    return skip(p, s, wire);
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF), as protobuf requires
 * of proto3 strings. */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------------ growable arrays */
typedef struct {
    uint64_t *v;
    uint64_t n, cap;
} u64vec;

static int u64_push(u64vec *a, uint64_t x) {
    if (a->n == a->cap) {
        uint64_t cap = a->cap ? a->cap * 2 : 64;
        uint64_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return HP_PPROF_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return HP_PPROF_OK;
}

static int push_cb(hp_pprof *p, void *ctx, uint64_t v) {
    (void)p;
    return u64_push((u64vec *)ctx, v);
}

/* ------------------------------------------------------------------------------ the reader */
typedef struct {
    span *samples, *locations, *functions;
    uint64_t sample_bytes;
    uint64_t n_samples, n_locations, n_functions;
    /* functions: id -> row */
    uint64_t *func_id;
    int64_t *func_name;
    /* locations */
    uint64_t *loc_id;
    uint64_t *loc_addr;
    uint64_t *loc_line_off; /* n_locations + 1 into line_key */
    u64vec line_key;        /* string index of each line's function name */
    int64_t *func_row_of_id;
    uint64_t func_table_len;
    int64_t *loc_row_of_id;
    uint64_t loc_table_len;
    uint32_t *key_name; /* name key (string index, or n_strings + location row) -> name + 1 */
} scan_state;

static void state_free(scan_state *st) {
    free(st->samples);
    free(st->locations);
    free(st->functions);
    free(st->func_id);
    free(st->func_name);
    free(st->loc_id);
    free(st->loc_addr);
    free(st->loc_line_off);
    free(st->line_key.v);
    free(st->func_row_of_id);
    free(st->loc_row_of_id);
    free(st->key_name);
}

static int value_type(hp_pprof *p, span s, int64_t out[2]) {
    uint32_t field, wire;
    uint64_t v;
    int rc;
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)))
            return rc;
        if (field == 1 || field == 2) {
            if (wire == WT_VARINT) {
                if ((rc = read_varint(p, &s, &v)))
                    return rc;
                out[field - 1] = (int64_t)v;
                continue;
            }
        }
        if ((rc = skip(p, &s, wire)))
            return rc;
    }
    return HP_PPROF_OK;
}

/* Top level: collects sub-message spans and scalars, reads sample types and the string table. */
static int top_level(hp_pprof *p, scan_state *st, const uint8_t *data, size_t len) {
    span s = {data, data + len};
    uint32_t field, wire;
    uint64_t v;
    int rc;
    uint64_t n_types = 0;
    /* Counting pass: sizes the arrays. */
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)))
            return rc;
        if (wire == WT_LEN) {
            switch (field) {
            case F_SAMPLE_TYPE: n_types++; break;
            case F_SAMPLE: st->n_samples++; break;
            case F_LOCATION: st->n_locations++; break;
            case F_FUNCTION: st->n_functions++; break;
            case F_STRING_TABLE: p->n_strings++; break;
            default: break;
            }
        }
        if ((rc = skip(p, &s, wire)))
            return rc;
    }
    if (n_types > 4096)
        return fail(p, HP_PPROF_UNSUPPORTED, "too many sample types");
    st->samples = malloc((st->n_samples + 1) * sizeof(span));
    st->locations = malloc((st->n_locations + 1) * sizeof(span));
    st->functions = malloc((st->n_functions + 1) * sizeof(span));
    p->str_off = malloc((p->n_strings + 1) * sizeof(uint64_t));
    p->str_len = malloc((p->n_strings + 1) * sizeof(uint32_t));
    p->types = malloc((n_types + 1) * 2 * sizeof(int64_t));
    if (!st->samples || !st->locations || !st->functions || !p->str_off || !p->str_len ||
        !p->types)
        return HP_PPROF_NOMEM;
    uint64_t i_sample = 0, i_loc = 0, i_func = 0, i_str = 0;
    s.p = data;
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)))
            return rc;
        span sub;
        if (wire == WT_LEN && field <= F_STRING_TABLE) {
            if ((rc = read_len(p, &s, &sub)))
                return rc;
            switch (field) {
            case F_SAMPLE_TYPE: {
                int64_t *t = &p->types[2 * p->n_types++];
                t[0] = t[1] = 0;
                if ((rc = value_type(p, sub, t)))
                    return rc;
                break;
            }
            case F_SAMPLE:
                st->samples[i_sample++] = sub;
                st->sample_bytes += (uint64_t)(sub.end - sub.p);
                break;
            case F_MAPPING:
                if ((rc = check_message(p, sub)))
                    return rc;
                break;
            case F_LOCATION: st->locations[i_loc++] = sub; break;
            case F_FUNCTION: st->functions[i_func++] = sub; break;
            case F_STRING_TABLE:
                if ((uint64_t)(sub.end - sub.p) > UINT32_MAX)
                    return fail(p, HP_PPROF_UNSUPPORTED, "string above 4 GiB");
                if (!valid_utf8(sub.p, (size_t)(sub.end - sub.p)))
                    return fail(p, HP_PPROF_MALFORMED, "string %llu is not UTF-8",
                                (unsigned long long)i_str);
                p->str_off[i_str] = (uint64_t)(sub.p - data);
                p->str_len[i_str++] = (uint32_t)(sub.end - sub.p);
                break;
            }
            continue;
        }
        if (wire == WT_LEN && field == F_PERIOD_TYPE) {
            if ((rc = read_len(p, &s, &sub)))
                return rc;
            if (!p->has_period_type)
                p->period_type[0] = p->period_type[1] = 0;
            p->has_period_type = 1; /* repeated occurrences merge field by field */
            if ((rc = value_type(p, sub, p->period_type)))
                return rc;
            continue;
        }
        if (wire == WT_VARINT && (field == F_TIME_NANOS || field == F_PERIOD)) {
            if ((rc = read_varint(p, &s, &v)))
                return rc;
            if (field == F_TIME_NANOS)
                p->time_nanos = (int64_t)v;
            else
                p->period = (int64_t)v;
            continue;
        }
        if ((rc = skip(p, &s, wire)))
            return rc;
    }
    return HP_PPROF_OK;
}

static int check_string(hp_pprof *p, int64_t i, const char *what) {
    if (i < 0 || (uint64_t)i >= p->n_strings)
        return fail(p, HP_PPROF_MALFORMED, "%s string index %lld out of range (%llu strings)",
                    what, (long long)i, (unsigned long long)p->n_strings);
    return HP_PPROF_OK;
}

/* Builds an id -> row table; later rows win, as in a protobuf reader's dict. */
static int id_table(hp_pprof *p, const uint64_t *ids, uint64_t n, int64_t **table,
                    uint64_t *table_len) {
    uint64_t top = 0;
    for (uint64_t i = 0; i < n; i++)
        if (ids[i] > top)
            top = ids[i];
    if (top > 4 * n + ID_TABLE_SLACK)
        return fail(p, HP_PPROF_UNSUPPORTED, "sparse ids");
    *table_len = top + 1;
    *table = malloc(*table_len * sizeof(int64_t));
    if (!*table)
        return HP_PPROF_NOMEM;
    for (uint64_t i = 0; i < *table_len; i++)
        (*table)[i] = -1;
    for (uint64_t i = 0; i < n; i++)
        (*table)[ids[i]] = (int64_t)i;
    return HP_PPROF_OK;
}

static int functions(hp_pprof *p, scan_state *st) {
    uint64_t n = st->n_functions;
    st->func_id = malloc((n + 1) * sizeof(uint64_t));
    st->func_name = malloc((n + 1) * sizeof(int64_t));
    if (!st->func_id || !st->func_name)
        return HP_PPROF_NOMEM;
    for (uint64_t i = 0; i < n; i++) {
        span s = st->functions[i];
        uint32_t field, wire;
        uint64_t id = 0, name = 0;
        int rc;
        while (s.p < s.end) {
            if ((rc = read_tag(p, &s, &field, &wire)))
                return rc;
            if (field == 1)
                rc = singular_varint(p, &s, wire, &id);
            else if (field == 2)
                rc = singular_varint(p, &s, wire, &name);
            else
                rc = skip(p, &s, wire);
            if (rc)
                return rc;
        }
        if ((rc = check_string(p, (int64_t)name, "function name")))
            return rc;
        st->func_id[i] = id;
        st->func_name[i] = (int64_t)name;
    }
    return id_table(p, st->func_id, n, &st->func_row_of_id, &st->func_table_len);
}

static int line(hp_pprof *p, scan_state *st, span s) {
    uint32_t field, wire;
    uint64_t fid = 0;
    int rc;
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)))
            return rc;
        rc = field == 1 ? singular_varint(p, &s, wire, &fid) : skip(p, &s, wire);
        if (rc)
            return rc;
    }
    if (fid >= st->func_table_len || st->func_row_of_id[fid] < 0)
        return fail(p, HP_PPROF_MALFORMED, "a location names an unknown function %llu",
                    (unsigned long long)fid);
    return u64_push(&st->line_key, (uint64_t)st->func_name[st->func_row_of_id[fid]]);
}

static int locations(hp_pprof *p, scan_state *st) {
    uint64_t n = st->n_locations;
    st->loc_id = malloc((n + 1) * sizeof(uint64_t));
    st->loc_addr = malloc((n + 1) * sizeof(uint64_t));
    st->loc_line_off = malloc((n + 1) * sizeof(uint64_t));
    if (!st->loc_id || !st->loc_addr || !st->loc_line_off)
        return HP_PPROF_NOMEM;
    st->loc_line_off[0] = 0;
    for (uint64_t i = 0; i < n; i++) {
        span s = st->locations[i];
        uint32_t field, wire;
        uint64_t id = 0, addr = 0;
        uint64_t lines_before = st->line_key.n;
        int rc;
        while (s.p < s.end) {
            if ((rc = read_tag(p, &s, &field, &wire)))
                return rc;
            if (field == 1) {
                rc = singular_varint(p, &s, wire, &id);
            } else if (field == 3) {
                rc = singular_varint(p, &s, wire, &addr);
            } else if (field == 4 && wire == WT_LEN) {
                span sub;
                if (!(rc = read_len(p, &s, &sub)))
                    rc = line(p, st, sub);
            } else {
                rc = skip(p, &s, wire);
            }
            if (rc)
                return rc;
        }
        (void)lines_before;
        st->loc_id[i] = id;
        st->loc_addr[i] = addr;
        st->loc_line_off[i + 1] = st->line_key.n;
    }
    return id_table(p, st->loc_id, n, &st->loc_row_of_id, &st->loc_table_len);
}

/* Name id of a name key, assigning one on first use (so the name table holds used names only). */
static int name_of(hp_pprof *p, scan_state *st, uint64_t key, uint32_t *out) {
    uint32_t v = st->key_name[key];
    if (!v) {
        uint32_t id = p->n_names++;
        if (key < p->n_strings) {
            p->name_str[id] = (int64_t)key;
            p->name_addr[id] = 0;
        } else {
            p->name_str[id] = -1;
            p->name_addr[id] = st->loc_addr[key - p->n_strings];
        }
        v = st->key_name[key] = id + 1;
    }
    *out = v - 1;
    return HP_PPROF_OK;
}

typedef struct {
    u64vec locs;
    u64vec values;
} sample_tmp;

static int label(hp_pprof *p, span s, u64vec *labels) {
    uint32_t field, wire;
    uint64_t key = 0, str = 0, num = 0;
    int rc;
    while (s.p < s.end) {
        if ((rc = read_tag(p, &s, &field, &wire)))
            return rc;
        if (field == 1)
            rc = singular_varint(p, &s, wire, &key);
        else if (field == 2)
            rc = singular_varint(p, &s, wire, &str);
        else if (field == 3)
            rc = singular_varint(p, &s, wire, &num);
        else
            rc = skip(p, &s, wire);
        if (rc)
            return rc;
    }
    if ((rc = check_string(p, (int64_t)key, "label key")))
        return rc;
    if (str && (rc = check_string(p, (int64_t)str, "label value")))
        return rc;
    if ((rc = u64_push(labels, key)) || (rc = u64_push(labels, str)) ||
        (rc = u64_push(labels, num)))
        return rc;
    return HP_PPROF_OK;
}

static int samples(hp_pprof *p, scan_state *st) {
    uint64_t n = st->n_samples;
    uint64_t n_keys = p->n_strings + st->n_locations;
    uint64_t ntypes = p->n_types;
    int rc = HP_PPROF_OK;
    /* Each value takes at least a byte, so more values than bytes cannot all be there. */
    if (ntypes && n > st->sample_bytes / ntypes)
        return fail(p, HP_PPROF_MALFORMED, "samples lack values");
    p->n_samples = n;
    p->offsets = malloc((n + 1) * sizeof(int64_t));
    p->label_off = malloc((n + 1) * sizeof(int64_t));
    p->values = malloc((n * ntypes + 1) * sizeof(int64_t));
    p->type_nonzero = calloc(ntypes + 1, 1);
    st->key_name = calloc(n_keys + 1, sizeof(uint32_t));
    p->name_str = malloc((n_keys + 1) * sizeof(int64_t));
    p->name_addr = malloc((n_keys + 1) * sizeof(uint64_t));
    if (!p->offsets || !p->label_off || !p->values || !p->type_nonzero || !st->key_name || !p->name_str ||
        !p->name_addr)
        return HP_PPROF_NOMEM;
    if (n_keys > UINT32_MAX - 1)
        return fail(p, HP_PPROF_UNSUPPORTED, "too many names");
    u64vec locs = {0}, labels = {0};
    uint64_t cap_frames = 0;
    p->offsets[0] = 0;
    p->label_off[0] = 0;
    for (uint64_t i = 0; i < n; i++) {
        span s = st->samples[i];
        uint32_t field, wire;
        uint64_t n_values = 0;
        int64_t *row = &p->values[i * ntypes];
        locs.n = 0;
        while (s.p < s.end) {
            if ((rc = read_tag(p, &s, &field, &wire)))
                goto out;
            if (field == 1) {
                rc = repeated_varint(p, &s, wire, push_cb, &locs);
            } else if (field == 2 && (wire == WT_VARINT || wire == WT_LEN)) {
                /* Values: count them all, keep the first ntypes (more is an error below). */
                uint64_t v;
                span packed = s;
                if (wire == WT_LEN) {
                    if ((rc = read_len(p, &s, &packed)))
                        goto out;
                } else {
                    packed.end = s.end;
                }
                /* One varint unpacked; any number (zero included) packed. */
                while (wire == WT_VARINT || packed.p < packed.end) {
                    if ((rc = read_varint(p, &packed, &v)))
                        goto out;
                    if (n_values < ntypes)
                        row[n_values] = (int64_t)v;
                    n_values++;
                    if (wire == WT_VARINT)
                        break;
                }
                if (wire == WT_VARINT)
                    s.p = packed.p;
            } else if (field == 3 && wire == WT_LEN) {
                span sub;
                if (!(rc = read_len(p, &s, &sub)))
                    rc = label(p, sub, &labels);
            } else {
                rc = skip(p, &s, wire);
            }
            if (rc)
                goto out;
        }
        if (n_values != ntypes) {
            rc = fail(p, HP_PPROF_MALFORMED, "sample has %llu values, expected %llu",
                      (unsigned long long)n_values, (unsigned long long)ntypes);
            goto out;
        }
        for (uint64_t t = 0; t < ntypes; t++) {
            p->any_negative |= row[t] < 0;
            p->type_nonzero[t] |= row[t] != 0;
        }
        p->label_off[i + 1] = (int64_t)(labels.n / 3);
        /* Expand locations to frames (a location with inlined calls gives several). */
        uint64_t depth = 0;
        for (uint64_t j = 0; j < locs.n && depth < HP_PPROF_MAX_DEPTH; j++) {
            uint64_t lid = locs.v[j];
            if (lid >= st->loc_table_len || st->loc_row_of_id[lid] < 0) {
                rc = fail(p, HP_PPROF_MALFORMED, "a sample names an unknown location %llu",
                          (unsigned long long)lid);
                goto out;
            }
            uint64_t row_i = (uint64_t)st->loc_row_of_id[lid];
            uint64_t a = st->loc_line_off[row_i], b = st->loc_line_off[row_i + 1];
            uint64_t count = b > a ? b - a : 1;
            if (p->n_frames + count > cap_frames) {
                uint64_t cap = cap_frames ? cap_frames * 2 : 4096;
                while (cap < p->n_frames + count)
                    cap *= 2;
                if (cap > HP_PPROF_MAX_FRAMES + HP_PPROF_MAX_DEPTH)
                    cap = HP_PPROF_MAX_FRAMES + HP_PPROF_MAX_DEPTH;
                if (p->n_frames + count > cap) {
                    rc = fail(p, HP_PPROF_TOO_LARGE, "profile expands past %u frames",
                              HP_PPROF_MAX_FRAMES);
                    goto out;
                }
                uint32_t *f = realloc(p->frames, cap * sizeof(uint32_t));
                if (!f) {
                    rc = HP_PPROF_NOMEM;
                    goto out;
                }
                p->frames = f;
                cap_frames = cap;
            }
            for (uint64_t k = 0; k < count && depth < HP_PPROF_MAX_DEPTH; k++, depth++) {
                uint64_t key = b > a ? st->line_key.v[a + k] : p->n_strings + row_i;
                name_of(p, st, key, &p->frames[p->n_frames++]);
            }
        }
        if (p->n_frames > HP_PPROF_MAX_FRAMES) {
            rc = fail(p, HP_PPROF_TOO_LARGE, "profile expands past %u frames",
                      HP_PPROF_MAX_FRAMES);
            goto out;
        }
        p->offsets[i + 1] = (int64_t)p->n_frames;
    }
    p->n_labels = labels.n / 3;
    p->labels = (int64_t *)labels.v;
    labels.v = NULL;
out:
    free(locs.v);
    free(labels.v);
    return rc;
}

int hp_pprof_scan(hp_pprof *p, const uint8_t *data, size_t len) {
    scan_state st;
    memset(&st, 0, sizeof st);
    int rc = top_level(p, &st, data, len);
    if (!rc && p->n_types == 0)
        rc = fail(p, HP_PPROF_MALFORMED, "pprof profile has no sample_type");
    for (uint32_t i = 0; !rc && i < 2 * p->n_types; i++)
        rc = check_string(p, p->types[i], "sample type");
    for (int i = 0; !rc && p->has_period_type && i < 2; i++)
        rc = check_string(p, p->period_type[i], "period type");
    if (!rc)
        rc = functions(p, &st);
    if (!rc)
        rc = locations(p, &st);
    if (!rc)
        rc = samples(p, &st);
    state_free(&st);
    if (rc == HP_PPROF_NOMEM)
        fail(p, HP_PPROF_NOMEM, "out of memory");
    return rc;
}

void hp_pprof_free(hp_pprof *p) {
    free(p->str_off);
    free(p->str_len);
    free(p->types);
    free(p->offsets);
    free(p->frames);
    free(p->values);
    free(p->type_nonzero);
    free(p->name_str);
    free(p->name_addr);
    free(p->label_off);
    free(p->labels);
    memset(p, 0, sizeof *p);
}
