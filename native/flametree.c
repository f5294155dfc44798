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

/* ------------------------------------------------------------------------------ layout */
typedef struct {
    int64_t total;
    uint32_t id;
} ranked;

static int by_total_then_id(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}


typedef struct {
    int64_t rank;
    uint32_t id;
} child_key;

static int by_rank(const void *a, const void *b) {
    const child_key *x = a, *y = b;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

typedef struct {
    int64_t node; /* < 0: the "other" child of node -node - 1 */
    int64_t depth;
    int64_t x;
} dfs_item;

void hp_flame_layout_free(hp_flame_layout *out) {
    free(out->rows);
    free(out->names);
    memset(out, 0, sizeof *out);
}

int hp_flame_tree_layout(const hp_flame_tree *t, const int64_t *name_rank, uint64_t n_ranks,
                         uint32_t other_name, uint32_t root_name, uint64_t max_nodes,
                         hp_flame_layout *out) {
    uint32_t n = t->n_nodes, sides = t->sides;
    int rc = -1;
    memset(out, 0, sizeof *out);
    if (other_name >= n_ranks || root_name >= n_ranks)
        return -2;
    for (uint32_t i = 1; i < n; i++)
        if (t->name[i] >= n_ranks)
            return -2;
    int64_t *total = malloc((size_t)n * sizeof *total);
    uint8_t *keep = malloc(n);
    int64_t *other = calloc(n, sizeof *other);
    uint8_t *has_other = calloc(n, 1);
    uint32_t *kid_start = calloc((size_t)n + 1, sizeof *kid_start);
    child_key *kids = malloc((size_t)n * sizeof *kids);
    dfs_item *stack = malloc(((size_t)n * 2 + 1) * sizeof *stack);
    int64_t *level_end = calloc((size_t)n + 1, sizeof *level_end);
    int64_t *name_out = malloc((size_t)n_ranks * sizeof *name_out);
    ranked *order = NULL;
    out->rows = malloc(((size_t)n * 2 + 1) * 5 * sizeof *out->rows);
    out->names = malloc(((size_t)n_ranks + 1) * sizeof *out->names);
    if (!total || !keep || !other || !has_other || !kid_start || !kids || !stack || !level_end ||
        !name_out || !out->rows || !out->names)
        goto done;
    for (uint64_t i = 0; i < n_ranks; i++)
        name_out[i] = -1;
    /* Totals: children have larger ids than their parents. */
    for (uint32_t i = 0; i < n; i++)
        total[i] = t->self[(size_t)i * sides];
    for (uint32_t i = n - 1; i >= 1; i--)
        total[t->parent[i]] += total[i];
    if (max_nodes == 0 || n <= max_nodes) {
        memset(keep, 1, n);
    } else {
        /* Ties go to the smaller id (the parent), so the kept set is closed under ancestors. */
        order = malloc((size_t)n * sizeof *order);
        if (!order)
            goto done;
        for (uint32_t i = 0; i < n; i++) {
            order[i].total = total[i];
            order[i].id = i;
        }
        qsort(order, n, sizeof *order, by_total_then_id);
        memset(keep, 0, n);
        for (uint64_t i = 0; i < max_nodes; i++)
            keep[order[i].id] = 1;
        keep[0] = 1;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint32_t p = t->parent[i];
        if (!keep[i] && keep[p]) {
            other[p] += total[i];
            has_other[p] = 1;
        }
    }
    /* Children of kept nodes, grouped by parent (counting sort), each group sorted by name. */
    for (uint32_t i = 1; i < n; i++)
        if (keep[i])
            kid_start[t->parent[i] + 1]++;
    for (uint32_t i = 0; i < n; i++)
        kid_start[i + 1] += kid_start[i];
    {
        uint32_t *fill = malloc((size_t)n * sizeof *fill);
        if (!fill)
            goto done;
        memcpy(fill, kid_start, (size_t)n * sizeof *fill);
        for (uint32_t i = 1; i < n; i++) {
            if (keep[i]) {
                child_key *k = &kids[fill[t->parent[i]]++];
                k->rank = name_rank[t->name[i]];
                k->id = i;
            }
        }
        free(fill);
    }
    for (uint32_t i = 0; i < n; i++)
        if (kid_start[i + 1] - kid_start[i] > 1)
            qsort(&kids[kid_start[i]], kid_start[i + 1] - kid_start[i], sizeof *kids, by_rank);
    /* Depth-first, left to right, so each level's nodes come out in x order. */
    uint64_t sp = 0;
    stack[sp++] = (dfs_item){0, 0, 0};
    while (sp) {
        dfs_item it = stack[--sp];
        int64_t tv, sv;
        uint32_t nm;
        if (it.node < 0) {
            tv = sv = other[-it.node - 1];
            nm = other_name;
        } else {
            tv = total[it.node];
            sv = t->self[(size_t)it.node * sides];
            nm = it.node == 0 ? root_name : t->name[it.node];
        }
        if (tv == 0 && it.node != 0)
            continue;
        if (name_out[nm] < 0) {
            name_out[nm] = (int64_t)out->n_names;
            out->names[out->n_names++] = nm;
        }
        int64_t *row = &out->rows[5 * out->n_rows++];
        row[0] = it.depth;
        row[1] = it.x - level_end[it.depth];
        row[2] = tv;
        row[3] = sv;
        row[4] = name_out[nm];
        level_end[it.depth] = it.x + tv;
        if (sv > out->max_self)
            out->max_self = sv;
        if (it.node < 0)
            continue;
        /* Push in reverse so the leftmost child pops first. */
        uint32_t node = (uint32_t)it.node;
        int64_t child_x = it.x;
        for (uint32_t k = kid_start[node]; k < kid_start[node + 1]; k++)
            if (total[kids[k].id])
                child_x += total[kids[k].id];
        if (has_other[node])
            stack[sp++] = (dfs_item){-(int64_t)node - 1, it.depth + 1, child_x};
        for (uint32_t k = kid_start[node + 1]; k > kid_start[node]; k--) {
            uint32_t c = kids[k - 1].id;
            if (!total[c])
                continue;
            child_x -= total[c];
            stack[sp++] = (dfs_item){c, it.depth + 1, child_x};
        }
    }
    out->total = total[0];
    rc = 0;
done:
    free(total);
    free(keep);
    free(other);
    free(has_other);
    free(kid_start);
    free(kids);
    free(stack);
    free(level_end);
    free(name_out);
    free(order);
    if (rc)
        hp_flame_layout_free(out);
    return rc;
}
