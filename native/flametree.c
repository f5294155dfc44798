/* Call-tree merging for flamegraphs; see flametree.h. */
#include "flametree.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint32_t parent, uint32_t name) {
    uint64_t h = ((uint64_t)parent << 32) | name;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int grow_slots(hp_flame_tree *t) {
    uint64_t n = t->n_slots * 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t node = 1; node < t->n_nodes; node++) {
        uint64_t i = mix(t->parent[node], t->name[node]) & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = node + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
    return 0;
}

static int grow_nodes(hp_flame_tree *t) {
    if (t->cap >= UINT32_MAX / 2)
        return -1;
    uint32_t cap = t->cap * 2;
    uint32_t *parent = realloc(t->parent, (size_t)cap * sizeof *parent);
    if (!parent)
        return -1;
    t->parent = parent;
    uint32_t *name = realloc(t->name, (size_t)cap * sizeof *name);
    if (!name)
        return -1;
    t->name = name;
    int64_t *self = realloc(t->self, (size_t)cap * t->sides * sizeof *self);
    if (!self)
        return -1;
    memset(self + (size_t)t->cap * t->sides, 0, (size_t)(cap - t->cap) * t->sides * sizeof *self);
    t->self = self;
    t->cap = cap;
    return 0;
}

int hp_flame_tree_init(hp_flame_tree *t, uint32_t sides) {
    memset(t, 0, sizeof *t);
    if (sides < 1 || sides > 8)
        return -1;
    t->sides = sides;
    t->cap = 1024;
    t->n_slots = 2048;
    t->parent = malloc(t->cap * sizeof *t->parent);
    t->name = malloc(t->cap * sizeof *t->name);
    t->self = calloc((size_t)t->cap * sides, sizeof *t->self);
    t->slots = calloc(t->n_slots, sizeof *t->slots);
    if (!t->parent || !t->name || !t->self || !t->slots) {
        hp_flame_tree_free(t);
        return -1;
    }
    t->parent[0] = UINT32_MAX;
    t->name[0] = UINT32_MAX;
    t->n_nodes = 1;
    return 0;
}

void hp_flame_tree_free(hp_flame_tree *t) {
    free(t->parent);
    free(t->name);
    free(t->self);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* The child of parent named name, created when missing; UINT32_MAX when out of memory. */
static uint32_t child(hp_flame_tree *t, uint32_t parent, uint32_t name) {
    uint64_t mask = t->n_slots - 1;
    uint64_t i = mix(parent, name) & mask;
    for (;;) {
        uint32_t s = t->slots[i];
        if (!s)
            break;
        if (t->parent[s - 1] == parent && t->name[s - 1] == name)
            return s - 1;
        i = (i + 1) & mask;
    }
    if (t->n_nodes == t->cap && grow_nodes(t))
        return UINT32_MAX;
    uint32_t node = t->n_nodes++;
    t->parent[node] = parent;
    t->name[node] = name;
    t->slots[i] = node + 1;
    if ((uint64_t)t->n_nodes * 2 > t->n_slots && grow_slots(t))
        return UINT32_MAX;
    return node;
}

int hp_flame_tree_add(hp_flame_tree *t, const uint32_t *frames, uint64_t n_frames,
                      const int64_t *offsets, uint64_t n_stacks, const uint32_t *ids,
                      const int64_t *values, uint64_t n, uint32_t side, uint32_t unknown_name) {
    if (side >= t->sides)
        return -2;
    for (uint64_t k = 0; k < n; k++) {
        if (!values[k])
            continue;
        uint32_t node = 0;
        uint64_t sid = ids[k];
        if (sid >= n_stacks) {
            node = child(t, 0, unknown_name);
        } else {
            int64_t a = offsets[sid], b = offsets[sid + 1];
            if (a < 0 || b < a || (uint64_t)b > n_frames)
                return -2;
            for (int64_t f = b - 1; f >= a && node != UINT32_MAX; f--) /* root first */
                node = child(t, node, frames[f]);
        }
        if (node == UINT32_MAX)
            return -1;
        t->self[(size_t)node * t->sides + side] += values[k];
    }
    return 0;
}
