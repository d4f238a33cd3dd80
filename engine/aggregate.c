/*
 * aggregate.c: per-thread call tries and the timeline.
 *
 * Each sample walks its thread's trie from the root, one node per (identity, line)
 * pair, creating nodes on first sight, and adds its wall and CPU time to the leaf.
 * Memory grows with the number of distinct stacks, not with the run's length. The
 * timeline keeps, per thread, the leaf node of each sample in order, merging runs
 * of the same leaf, within a fixed budget of entries for all threads together.
 * A sample taken in a phase of the run (Profiler.phase) goes below a marker node for
 * that phase under its thread's root, so each phase has a trie of its own.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static uint64_t child_hash(uint32_t parent, uint32_t identity, int32_t line)
{
    uint64_t x = ((uint64_t)parent << 32) ^ ((uint64_t)identity * 0x9E3779B97F4A7C15ULL) ^ (uint32_t)line;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return x;
}

int pi_tree_init(pi_tree *tree, size_t timeline_budget)
{
    memset(tree, 0, sizeof *tree);
    tree->child_slot_count = 4096;
    tree->child_slots = malloc(tree->child_slot_count * sizeof *tree->child_slots);
    if (!tree->child_slots)
        return -1;
    memset(tree->child_slots, 0xff, tree->child_slot_count * sizeof *tree->child_slots);
    tree->timeline_budget = timeline_budget;
    return 0;
}

void pi_tree_free(pi_tree *tree)
{
    for (size_t i = 0; i < tree->thread_count; i++) {
        free(tree->threads[i].timeline);
        free(tree->threads[i].last_identities);
        free(tree->threads[i].last_lines);
    }
    free(tree->threads);
    free(tree->nodes);
    free(tree->child_slots);
    memset(tree, 0, sizeof *tree);
}

static int64_t new_node(pi_tree *tree, uint32_t parent, uint32_t identity, int32_t line, uint32_t thread)
{
    if (tree->node_count >= UINT32_MAX - 1)
        return -1;
    if (tree->node_count == tree->node_cap) {
        size_t cap = tree->node_cap ? tree->node_cap * 2 : 1024;
        pi_node *grown = realloc(tree->nodes, cap * sizeof *grown);
        if (!grown)
            return -1;
        tree->nodes = grown;
        tree->node_cap = cap;
    }
    tree->nodes[tree->node_count] = (pi_node){parent, identity, line, thread, 0, 0, 0};
    return (int64_t)tree->node_count++;
}

static int grow_child_slots(pi_tree *tree)
{
    size_t count = tree->child_slot_count * 2;
    uint32_t *slots = malloc(count * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xff, count * sizeof *slots);
    for (size_t i = 0; i < tree->node_count; i++) {
        pi_node *n = &tree->nodes[i];
        if (n->parent == PI_NO_NODE)
            continue;
        size_t s = child_hash(n->parent, n->identity, n->line) & (count - 1);
        while (slots[s] != UINT32_MAX)
            s = (s + 1) & (count - 1);
        slots[s] = (uint32_t)i;
    }
    free(tree->child_slots);
    tree->child_slots = slots;
    tree->child_slot_count = count;
    return 0;
}

static int64_t child_of(pi_tree *tree, uint32_t parent, uint32_t identity, int32_t line, uint32_t thread)
{
    if ((tree->node_count + 1) * 2 > tree->child_slot_count && grow_child_slots(tree) != 0)
        return -1;
    size_t mask = tree->child_slot_count - 1;
    size_t s = child_hash(parent, identity, line) & mask;
    for (; tree->child_slots[s] != UINT32_MAX; s = (s + 1) & mask) {
        pi_node *n = &tree->nodes[tree->child_slots[s]];
        if (n->parent == parent && n->identity == identity && n->line == line)
            return tree->child_slots[s];
    }
    int64_t node = new_node(tree, parent, identity, line, thread);
    if (node >= 0)
        tree->child_slots[s] = (uint32_t)node;
    return node;
}

pi_thread_record *pi_tree_thread(pi_tree *tree, unsigned long thread_id, unsigned long native_id)
{
    /* pthread ids are reused at once by new threads; kernel tids much later. A kernel
     * tid of 0 is one that could not be read this time (3.9/3.10 read it from the
     * pthread struct): it matches the same pthread, so one thread keeps one record. */
    for (size_t i = 0; i < tree->thread_count; i++) {
        pi_thread_record *t = &tree->threads[i];
        if (t->thread_id != thread_id)
            continue;
        if (t->native_id == native_id || native_id == 0)
            return t;
        if (t->native_id == 0) {
            t->native_id = native_id;
            return t;
        }
    }
    if (tree->thread_count == tree->thread_cap) {
        size_t cap = tree->thread_cap ? tree->thread_cap * 2 : 16;
        pi_thread_record *grown = realloc(tree->threads, cap * sizeof *grown);
        if (!grown)
            return NULL;
        tree->threads = grown;
        tree->thread_cap = cap;
    }
    int64_t root = new_node(tree, PI_NO_NODE, UINT32_MAX, 0, (uint32_t)tree->thread_count);
    if (root < 0)
        return NULL;
    pi_thread_record *t = &tree->threads[tree->thread_count++];
    memset(t, 0, sizeof *t);
    t->thread_id = thread_id;
    t->native_id = native_id;
    t->root = (uint32_t)root;
    t->last_cpu_ns = -1;
    t->last_leaf = PI_NO_NODE;
    return t;
}

static void timeline_append(pi_tree *tree, pi_thread_record *t, uint32_t node, uint32_t wall)
{
    if (t->timeline_len > 0) {
        pi_timeline_entry *last = &t->timeline[t->timeline_len - 1];
        if (last->node == node && (uint64_t)last->wall_ns + wall <= UINT32_MAX) {
            last->wall_ns += wall;
            return;
        }
    }
    if (tree->timeline_budget == 0) {
        tree->timeline_truncated = true;
        return;
    }
    if (t->timeline_len == t->timeline_cap) {
        size_t cap = t->timeline_cap ? t->timeline_cap * 2 : 256;
        pi_timeline_entry *grown = realloc(t->timeline, cap * sizeof *grown);
        if (!grown) {
            tree->timeline_truncated = true;
            return;
        }
        t->timeline = grown;
        t->timeline_cap = cap;
    }
    t->timeline[t->timeline_len++] = (pi_timeline_entry){node, wall};
    tree->timeline_budget--;
}

/* An entry holds at most UINT32_MAX ns (4.3 s): longer spans take several. */
static void timeline_add(pi_tree *tree, pi_thread_record *t, uint32_t node, int64_t wall_ns)
{
    if (wall_ns <= 0)
        return;
    t->clock_ns += wall_ns;
    while (wall_ns > (int64_t)UINT32_MAX && !tree->timeline_truncated) {
        timeline_append(tree, t, node, UINT32_MAX);
        wall_ns -= (int64_t)UINT32_MAX;
    }
    timeline_append(tree, t, node, (uint32_t)wall_ns);
}

void pi_tree_catch_up(pi_tree *tree, pi_thread_record *thread, int64_t clock_ns)
{
    if (clock_ns > thread->clock_ns)
        timeline_add(tree, thread, PI_NO_NODE, clock_ns - thread->clock_ns);
}

/* Whether this sample is the thread's last one again. */
static bool same_as_last(const pi_thread_record *t, const uint32_t *identities, const int32_t *lines, size_t depth)
{
    return t->last_leaf != PI_NO_NODE && t->last_depth == depth &&
           (depth == 0 || (memcmp(t->last_identities, identities, depth * sizeof *identities) == 0 &&
                           memcmp(t->last_lines, lines, depth * sizeof *lines) == 0));
}

/* Remembers the sample that ended at `leaf` (or nothing, when there is no memory). */
static void remember_last(pi_thread_record *t, const uint32_t *identities, const int32_t *lines, size_t depth,
                          uint32_t leaf)
{
    t->last_leaf = PI_NO_NODE;
    if (depth > t->last_cap) {
        size_t cap = depth > 2 * t->last_cap ? depth : 2 * t->last_cap;
        uint32_t *ids = realloc(t->last_identities, cap * sizeof *ids);
        if (!ids)
            return;
        t->last_identities = ids;
        int32_t *ls = realloc(t->last_lines, cap * sizeof *ls);
        if (!ls)
            return;
        t->last_lines = ls;
        t->last_cap = cap;
    }
    if (depth) {
        memcpy(t->last_identities, identities, depth * sizeof *identities);
        memcpy(t->last_lines, lines, depth * sizeof *lines);
    }
    t->last_depth = depth;
    t->last_leaf = leaf;
}

int pi_tree_add(pi_tree *tree, pi_thread_record *thread, const uint32_t *identities, const int32_t *lines,
                size_t depth, int64_t wall_ns, int64_t cpu_ns, uint32_t phase_identity, int32_t phase,
                uint32_t gil_wait_identity)
{
    uint32_t node = thread->root;
    uint32_t thread_index = tree->nodes[node].thread;
    if (thread->last_phase == phase && same_as_last(thread, identities, lines, depth)) {
        node = thread->last_leaf;
    } else {
        if (phase > 0) {
            int64_t marker = child_of(tree, node, phase_identity, phase, thread_index);
            if (marker < 0)
                return -1;
            node = (uint32_t)marker;
        }
        for (size_t i = 0; i < depth; i++) {
            int64_t child = child_of(tree, node, identities[i], lines[i], thread_index);
            if (child < 0)
                return -1;
            node = (uint32_t)child;
        }
        thread->last_phase = phase;
        remember_last(thread, identities, lines, depth, node);
    }
    if (gil_wait_identity != PI_NO_NODE) { /* a leaf under the frame that waits for the GIL */
        int64_t wait = child_of(tree, node, gil_wait_identity, 0, thread_index);
        if (wait < 0)
            return -1;
        node = (uint32_t)wait;
    }
    pi_node *leaf = &tree->nodes[node];
    leaf->self_wall_ns += wall_ns;
    leaf->self_cpu_ns += cpu_ns;
    leaf->self_samples++;
    timeline_add(tree, thread, node, wall_ns);
    return 0;
}
