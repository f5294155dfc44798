/* Interning of stacks: variable-length sequences of uint32 frame ids -> dense uint32 stack ids.
 *
 * Why C: every sample of every collector goes through here, so one lookup must cost a hash of
 * the frame ids and one probe, with no Python objects. Callers hand over whole batches
 * (hp_stack_table_intern_many) so the loop runs without the GIL.
 *
 * Layout: the frames of all stacks sit end to end in one growing array; offsets[i]..offsets[i+1]
 * delimit stack i. An open-addressing table of (hash, id+1) slots finds existing stacks.
 */
#ifndef HOSTPROF_STACKTABLE_H
#define HOSTPROF_STACKTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hp_stack_table {
    uint32_t *frames;     /* all frame ids, stack after stack */
    uint64_t n_frames;
    uint64_t cap_frames;
    uint64_t *offsets;    /* n_stacks + 1 entries; offsets[0] == 0 */
    uint32_t n_stacks;
    uint32_t cap_stacks;
    uint64_t *hashes;     /* hash of each stack, so growing the slot table never rehashes frames */
    uint32_t *slots;      /* stack id + 1, 0 = empty */
    uint64_t n_slots;     /* power of two */
} hp_stack_table;

/* Returns 0, or -1 when out of memory. */
int hp_stack_table_init(hp_stack_table *t, uint32_t expected_stacks);
void hp_stack_table_free(hp_stack_table *t);

/* Returns the id of the stack frames[0..n), adding it if new; -1 when out of memory. */
int64_t hp_stack_table_intern(hp_stack_table *t, const uint32_t *frames, uint64_t n);

/* Interns n_stacks stacks given as one flat array and n_stacks + 1 offsets into it.
 * Writes one id per stack into out_ids. Returns 0, or -1 when out of memory (out_ids is then
 * only partly written). Holds no Python state: safe to call without the GIL. */
int hp_stack_table_intern_many(hp_stack_table *t, const uint32_t *frames, const int64_t *offsets,
                               uint64_t n_stacks, uint32_t *out_ids);

/* Interns stacks like hp_stack_table_intern_many, but first maps every frame id through
 * remap[] (remap_len entries). Returns -2 when a frame id is out of range. */
int hp_stack_table_intern_many_remapped(hp_stack_table *t, const uint32_t *frames,
                                        const int64_t *offsets, uint64_t n_stacks,
                                        const uint32_t *remap, uint64_t remap_len,
                                        uint32_t *out_ids);

#endif
