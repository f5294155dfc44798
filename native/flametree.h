/* Merging of (stack id, value) pairs into a call tree for flamegraphs.
 *
 * Why C: a query over a busy service merges tens of thousands of distinct stacks of ~15-60
 * frames; walking them into a tree with Python dicts takes seconds. Here each frame costs one
 * hash probe on (parent node, name id), with no Python objects.
 *
 * Node 0 is the root. A child's id is always greater than its parent's. Each node keeps one
 * self value per side (one side for a flamegraph, two for a diff).
 */
#ifndef HOSTPROF_FLAMETREE_H
#define HOSTPROF_FLAMETREE_H

#include <stdint.h>

typedef struct hp_flame_tree {
    uint32_t sides;
    uint32_t n_nodes;
    uint32_t cap;
    uint32_t *parent; /* parent[0] == UINT32_MAX */
    uint32_t *name;   /* name id per node (root: UINT32_MAX) */
    int64_t *self;    /* sides values per node: self[node * sides + side] */
    uint32_t *slots;  /* node id + 1 per slot, 0 = empty; keyed by (parent, name) */
    uint64_t n_slots; /* power of two */
} hp_flame_tree;

/* Returns 0, or -1 when out of memory. sides is 1..8. */
int hp_flame_tree_init(hp_flame_tree *t, uint32_t sides);
void hp_flame_tree_free(hp_flame_tree *t);

/* Adds n stacks to one side: stack ids[i] (frames[offsets[id] .. offsets[id + 1]), leaf first,
 * name ids) gets values[i]. Zero values are skipped. An id >= n_stacks goes under the name
 * unknown_name (one frame). Returns 0, -1 when out of memory, -2 on an offset out of range. */
int hp_flame_tree_add(hp_flame_tree *t, const uint32_t *frames, uint64_t n_frames,
                      const int64_t *offsets, uint64_t n_stacks, const uint32_t *ids,
                      const int64_t *values, uint64_t n, uint32_t side, uint32_t unknown_name);



/* A flamegraph layout (Pyroscope's flamebearer) of side 0 of a tree. */
typedef struct hp_flame_layout {
    int64_t *rows;   /* 5 per node drawn, depth-first left to right:
                        depth, x offset from the previous node of its level, total, self, name */
    uint64_t n_rows;
    int64_t *names;  /* name ids in order of first use (rows' name column indexes this) */
    uint64_t n_names;
    int64_t max_self;
    int64_t total;
} hp_flame_layout;

/* Lays out side 0. name_rank[id] orders the children of a node (by name); n_ranks covers
 * every name id in the tree plus other_name and root_name, the ids drawn for cut subtrees and
 * the root. At most max_nodes nodes (0 = all) are kept, the largest totals first; each kept
 * node's cut children become one "other" child. Returns 0, -1 when out of memory, -2 when a
 * name id has no rank. Free the result with hp_flame_layout_free. */
int hp_flame_tree_layout(const hp_flame_tree *t, const int64_t *name_rank, uint64_t n_ranks,
                         uint32_t other_name, uint32_t root_name, uint64_t max_nodes,
                         hp_flame_layout *out);
void hp_flame_layout_free(hp_flame_layout *out);
#endif
