/* See stacktable.h. */
#include "stacktable.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define HP_MIN_SLOTS 1024u

/* 64-bit multiply-xorshift mixing over 32-bit words: cheap, and good enough spread for
 * sequences of small dense ids (frame ids are counters, so a plain sum would collide). */
static inline uint64_t hp_hash_frames(const uint32_t *frames, uint64_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    uint64_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t w = ((uint64_t)frames[i] << 32) | frames[i + 1];
        w *= 0xFF51AFD7ED558CCDull;
        w ^= w >> 32;
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
    }
    if (i < n) {
        uint64_t w = (uint64_t)frames[i] * 0xFF51AFD7ED558CCDull;
        h = (h ^ w ^ (w >> 31)) * 0xC4CEB9FE1A85EC53ull;
    }
    h ^= h >> 33;
    return h;
}

int hp_stack_table_init(hp_stack_table *t, uint32_t expected_stacks)
{
    memset(t, 0, sizeof(*t));
    uint64_t slots = HP_MIN_SLOTS;
    while (slots < (uint64_t)expected_stacks * 2) slots <<= 1;
    t->cap_stacks = expected_stacks > 64 ? expected_stacks : 64;
    t->cap_frames = (uint64_t)t->cap_stacks * 16;
    t->frames = malloc(t->cap_frames * sizeof(uint32_t));
    t->offsets = malloc(((uint64_t)t->cap_stacks + 1) * sizeof(uint64_t));
    t->hashes = malloc((uint64_t)t->cap_stacks * sizeof(uint64_t));
    t->slots = calloc(slots, sizeof(uint32_t));
    t->n_slots = slots;
    if (!t->frames || !t->offsets || !t->hashes || !t->slots) {
        hp_stack_table_free(t);
        return -1;
    }
    t->offsets[0] = 0;
    return 0;
}

void hp_stack_table_free(hp_stack_table *t)
{
    free(t->frames);
    free(t->offsets);
    free(t->hashes);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

static int hp_grow_slots(hp_stack_table *t)
{
    uint64_t n_slots = t->n_slots * 2;
    uint32_t *slots = calloc(n_slots, sizeof(uint32_t));
    if (!slots) return -1;
    uint64_t mask = n_slots - 1;
    for (uint32_t id = 0; id < t->n_stacks; id++) {
        uint64_t i = t->hashes[id] & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

static int hp_reserve(hp_stack_table *t, uint64_t extra_frames)
{
    if (t->n_stacks + 1 >= t->cap_stacks) {
        if (t->cap_stacks >= UINT32_MAX / 2) return -1;
        uint32_t cap = t->cap_stacks * 2;
        uint64_t *offsets = realloc(t->offsets, ((uint64_t)cap + 1) * sizeof(uint64_t));
        if (!offsets) return -1;
        t->offsets = offsets;
        uint64_t *hashes = realloc(t->hashes, (uint64_t)cap * sizeof(uint64_t));
        if (!hashes) return -1;
        t->hashes = hashes;
        t->cap_stacks = cap;
    }
    if (t->n_frames + extra_frames > t->cap_frames) {
        uint64_t cap = t->cap_frames * 2;
        while (cap < t->n_frames + extra_frames) cap *= 2;
        uint32_t *frames = realloc(t->frames, cap * sizeof(uint32_t));
        if (!frames) return -1;
        t->frames = frames;
        t->cap_frames = cap;
    }
    /* Keep the load factor under 1/2 so probe chains stay short. */
    if ((uint64_t)(t->n_stacks + 1) * 2 > t->n_slots) return hp_grow_slots(t);
    return 0;
}

static inline int64_t hp_intern_hashed(hp_stack_table *t, const uint32_t *frames, uint64_t n,
                                       uint64_t h)
{
    uint64_t mask = t->n_slots - 1;
    uint64_t i = h & mask;
    for (;;) {
        uint32_t slot = t->slots[i];
        if (!slot) break;
        uint32_t id = slot - 1;
        if (t->hashes[id] == h) {
            uint64_t start = t->offsets[id];
            uint64_t len = t->offsets[id + 1] - start;
            if (len == n && memcmp(t->frames + start, frames, n * sizeof(uint32_t)) == 0)
                return id;
        }
        i = (i + 1) & mask;
    }
    if (hp_reserve(t, n) < 0) return -1;
    /* hp_reserve may have grown the slot table: find the free slot again. */
    mask = t->n_slots - 1;
    i = h & mask;
    while (t->slots[i]) i = (i + 1) & mask;
    uint32_t id = t->n_stacks++;
    memcpy(t->frames + t->n_frames, frames, n * sizeof(uint32_t));
    t->n_frames += n;
    t->offsets[id + 1] = t->n_frames;
    t->hashes[id] = h;
    t->slots[i] = id + 1;
    return id;
}

int64_t hp_stack_table_intern(hp_stack_table *t, const uint32_t *frames, uint64_t n)
{
    return hp_intern_hashed(t, frames, n, hp_hash_frames(frames, n));
}

int hp_stack_table_intern_many(hp_stack_table *t, const uint32_t *frames, const int64_t *offsets,
                               uint64_t n_stacks, uint32_t *out_ids)
{
    for (uint64_t s = 0; s < n_stacks; s++) {
        const uint32_t *f = frames + offsets[s];
        uint64_t n = (uint64_t)(offsets[s + 1] - offsets[s]);
        int64_t id = hp_intern_hashed(t, f, n, hp_hash_frames(f, n));
        if (id < 0) return -1;
        out_ids[s] = (uint32_t)id;
    }
    return 0;
}

int hp_stack_table_intern_many_remapped(hp_stack_table *t, const uint32_t *frames,
                                        const int64_t *offsets, uint64_t n_stacks,
                                        const uint32_t *remap, uint64_t remap_len,
                                        uint32_t *out_ids)
{
    uint32_t stack_buf[256];
    uint32_t *buf = stack_buf;
    uint64_t buf_cap = 256;
    int rc = 0;
    for (uint64_t s = 0; s < n_stacks && rc == 0; s++) {
        uint64_t n = (uint64_t)(offsets[s + 1] - offsets[s]);
        if (n > buf_cap) {
            uint32_t *nb = malloc(n * sizeof(uint32_t));
            if (!nb) { rc = -1; break; }
            if (buf != stack_buf) free(buf);
            buf = nb;
            buf_cap = n;
        }
        const uint32_t *f = frames + offsets[s];
        for (uint64_t k = 0; k < n; k++) {
            if (f[k] >= remap_len) { rc = -2; break; }
            buf[k] = remap[f[k]];
        }
        if (rc) break;
        int64_t id = hp_intern_hashed(t, buf, n, hp_hash_frames(buf, n));
        if (id < 0) { rc = -1; break; }
        out_ids[s] = (uint32_t)id;
    }
    if (buf != stack_buf) free(buf);
    return rc;
}
