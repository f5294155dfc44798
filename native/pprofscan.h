/* One-pass reader of pprof profiles (perftools.profiles.Profile, protobuf wire format) for the
 * store's ingest path.
 *
 * Why C: a push carries ~1,000 samples over ~15 frames each; walking that with protobuf objects
 * costs more than everything else the store does with a push. This reader walks the wire bytes
 * once per message, resolves sample -> location -> line -> function -> name with direct id
 * tables, and hands back flat arrays (frames, offsets, values) ready for stack interning, with no
 * Python object per sample or frame.
 *
 * Robustness: the input is untrusted. Every read is bounds-checked, varints are at most 10 bytes,
 * lengths are checked against what remains, nesting is fixed by the schema (no recursion), and
 * the expanded frame count is capped. The result codes separate input that the general protobuf
 * reader would also reject (HP_PPROF_MALFORMED) from valid input this reader does not handle
 * (HP_PPROF_UNSUPPORTED: groups, sparse ids, ...), which callers hand to the general reader.
 */
#ifndef HOSTPROF_PPROFSCAN_H
#define HOSTPROF_PPROFSCAN_H

#include <stddef.h>
#include <stdint.h>

#define HP_PPROF_OK 0
#define HP_PPROF_MALFORMED 1   /* not a valid pprof profile (the general reader rejects it too) */
#define HP_PPROF_UNSUPPORTED 2 /* maybe valid, but needs the general reader */
#define HP_PPROF_TOO_LARGE 3   /* expands past HP_PPROF_MAX_FRAMES */
#define HP_PPROF_NOMEM (-1)

#define HP_PPROF_MAX_DEPTH 1024      /* frames kept per sample (the leaf-most ones) */
#define HP_PPROF_MAX_FRAMES (1u << 25) /* frames over all samples */

typedef struct hp_pprof {
    /* String table: string i is data[str_off[i] .. str_off[i] + str_len[i]), valid UTF-8. */
    uint64_t n_strings;
    uint64_t *str_off;
    uint32_t *str_len;

    /* Sample types: (type, unit) string indexes, 2 per type. */
    uint32_t n_types;
    int64_t *types;
    int has_period_type;
    int64_t period_type[2];
    int64_t period;
    int64_t time_nanos;

    /* Samples: stack i is frames[offsets[i] .. offsets[i + 1]), leaf first; values are
     * n_samples x n_types, row-major. */
    uint64_t n_samples;
    int64_t *offsets;
    uint32_t *frames;
    uint64_t n_frames;
    int64_t *values;
    int any_negative;        /* some value is below zero */
    uint8_t *type_nonzero;   /* per sample type: some value of that type is not zero */

    /* Local name table that frames index: name i is string name_str[i], or when name_str[i] is
     * -1 the address name_addr[i] of a location without lines. */
    uint32_t n_names;
    int64_t *name_str;
    uint64_t *name_addr;

    /* Sample labels: labels of sample i are rows label_off[i] .. label_off[i + 1] of labels,
     * 3 per row: key string, str string (0 = none), num. */
    int64_t *label_off;
    int64_t *labels;
    uint64_t n_labels;

    char error[160]; /* why the result is not HP_PPROF_OK */
} hp_pprof;

/* Reads the (already inflated) profile data[0..len). Fills *p, which must be zeroed before the
 * first call, and freed with hp_pprof_free after any call. data must outlive *p (strings point
 * into it). Holds no Python state: safe to call without the GIL. */
int hp_pprof_scan(hp_pprof *p, const uint8_t *data, size_t len);
void hp_pprof_free(hp_pprof *p);

#endif
