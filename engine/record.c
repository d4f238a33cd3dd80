/*
 * record.c: a walked stack made into a sample (identities and lines, root first) and
 * added to a profiler's call tree (aggregate.c); in a shared tick, handed to every
 * profiler that samples that thread, in each one's own identities; and the labels threads
 * give themselves (the route of the request they run), which some profilers take as phases.
 */
#define _GNU_SOURCE
#include "tick.h"

#include <pthread.h>

/* The sample of a walked thread, root first, in x->identities and x->lines: its depth,
 * or BUILD_DROPPED(_CODE). `truncated`: it was deeper than a sample keeps. */
static long build_sample(pi_state *s, pi_walker *w, bool *truncated)
{
    pi_scratch *x = s->scratch;
    size_t depth = 0;
    bool awaiting = w->async_leaf != UINT32_MAX;
    size_t given_lines = awaiting ? s->async.prefix_len : 0; /* the start prefix's lines */
    /* frames [cut_from, cut_to) from the root give way to one marker, leaving room for
     * the marker and a leaf (the C callee or [await]) */
    size_t cut_from = SIZE_MAX, cut_to = 0;
    *truncated = w->depth > PI_MAX_DEPTH - 2;
    if (*truncated) {
        cut_from = (PI_MAX_DEPTH - 2) / 2;
        cut_to = w->depth - (PI_MAX_DEPTH - 3 - cut_from);
        if (s->truncated_identity < 0)
            s->truncated_identity = pi_codes_synthetic(&s->codes, "[frames truncated]");
        if (s->truncated_identity < 0)
            return BUILD_DROPPED;
    }
    /* root first: the walker holds the leaf first */
    for (size_t k = w->depth; k-- > 0;) {
        size_t from_root = w->depth - 1 - k;
        if (from_root >= cut_from && from_root < cut_to) {
            if (from_root == cut_from) {
                x->identities[depth] = (uint32_t)s->truncated_identity;
                x->lines[depth++] = (int32_t)(cut_to - cut_from); /* the marker's count */
            }
            continue;
        }
        pi_code_entry *e = code_entry(&x->codes, w->codes[k]);
        if (!e || pi_code_stale(e))
            return BUILD_DROPPED_CODE;
        if (from_root < given_lines) {
            x->identities[depth] = pi_code_identity(e);
            x->lines[depth++] = s->async.prefix_lines[from_root];
            continue;
        }
        if (!pi_code_instr_traceable(e, w->instrs[k]))
            continue; /* a frame still being set up */
        x->identities[depth] = pi_code_identity(e);
        x->lines[depth] = pi_code_line(e, w->instrs[k], w->lastis[k]);
        depth++;
        if (k == 0 && !awaiting) {
            /* the innermost frame stands on a call: the thread is in C code */
            if (w->leaf_callee >= 0) {
                x->identities[depth] = (uint32_t)w->leaf_callee;
                x->lines[depth] = 0;
                depth++;
            }
        }
    }
    if (awaiting) {
        x->identities[depth] = w->async_leaf;
        x->lines[depth++] = 0;
    }
    return (long)depth;
}

void count_drop(pi_state *t, long why)
{
    t->stats.dropped++;
    if (why == BUILD_DROPPED_CODE)
        t->stats.dropped_code++;
}

/* Threads' labels, one word each: the thread's pthread id (a user-space address, under
 * 2^48) shifted above its 16-bit label, so a reader never pairs one thread with another's
 * label. Written by each thread for itself (with the GIL, or under its own slot), read
 * by the tick. */
static uint64_t thread_labels[PI_MAX_LABELED_THREADS];

/* In a forked child only the forking thread lives on: another's slot would label a new
 * thread given the same pthread id. */
static void keep_only_own_label(void)
{
    uint64_t own = (uint64_t)pthread_self();
    for (int i = 0; i < PI_MAX_LABELED_THREADS; i++)
        if (thread_labels[i] >> 16 != own)
            thread_labels[i] = 0;
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, keep_only_own_label);
}

int pi_set_thread_label(unsigned long thread_id, int32_t label)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watch_forks);
    if (label < 0 || label > PI_MAX_THREAD_LABEL || thread_id == 0 || thread_id >> 48)
        return -1;
    uint64_t entry = label ? ((uint64_t)thread_id << 16) | (uint64_t)label : 0;
    int free_slot = -1;
    for (int i = 0; i < PI_MAX_LABELED_THREADS; i++) {
        uint64_t current = __atomic_load_n(&thread_labels[i], __ATOMIC_ACQUIRE);
        if (current >> 16 == thread_id) {
            __atomic_store_n(&thread_labels[i], entry, __ATOMIC_RELEASE);
            return 0;
        }
        if (!current && free_slot < 0)
            free_slot = i;
    }
    if (!label)
        return 0;
    /* a free slot is claimed atomically: two threads may label themselves at once */
    for (int i = free_slot < 0 ? PI_MAX_LABELED_THREADS : free_slot; i < PI_MAX_LABELED_THREADS; i++) {
        uint64_t expected = 0;
        if (__atomic_compare_exchange_n(&thread_labels[i], &expected, entry, false, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
            return 0;
    }
    return -1;
}

/* Objects standing for labels: an open-addressed table of (address << 16 | label), one
 * word each, so that a reader never sees one without the other; a slot is claimed by
 * compare-and-swap, for writers may run at once (a free-threaded build has no GIL). */
static uint64_t mark_entries[PI_MAX_ROUTE_MARKS];

static size_t mark_slot(uintptr_t object)
{
    return (size_t)(((uint64_t)object >> 4) * 0x9E3779B97F4A7C15ULL >> 40) % PI_MAX_ROUTE_MARKS;
}

int pi_set_route_mark(uintptr_t object, int32_t label)
{
    if (!object || (uint64_t)object >> 48 || label <= 0 || label > PI_MAX_THREAD_LABEL)
        return -1;
    uint64_t entry = (uint64_t)object << 16 | (uint64_t)label;
    for (size_t probe = 0, i = mark_slot(object); probe < PI_MAX_ROUTE_MARKS; probe++, i = (i + 1) % PI_MAX_ROUTE_MARKS) {
        uint64_t current = __atomic_load_n(&mark_entries[i], __ATOMIC_ACQUIRE);
        if (current >> 16 == object) {
            __atomic_store_n(&mark_entries[i], entry, __ATOMIC_RELEASE);
            return 0;
        }
        if (!current && __atomic_compare_exchange_n(&mark_entries[i], &current, entry, false, __ATOMIC_RELEASE,
                                                    __ATOMIC_ACQUIRE))
            return 0;
        if (current >> 16 == object) { /* another thread marked the same object just now */
            __atomic_store_n(&mark_entries[i], entry, __ATOMIC_RELEASE);
            return 0;
        }
    }
    return -1;
}

static int32_t route_mark(uintptr_t object)
{
    for (size_t probe = 0, i = mark_slot(object); probe < PI_MAX_ROUTE_MARKS; probe++, i = (i + 1) % PI_MAX_ROUTE_MARKS) {
        uint64_t current = __atomic_load_n(&mark_entries[i], __ATOMIC_ACQUIRE);
        if (!current)
            return 0;
        if (current >> 16 == object)
            return (int32_t)(current & PI_MAX_THREAD_LABEL);
    }
    return 0;
}

/* The label of a thread's current context: what its route ContextVar holds there. */
static int32_t context_label(const pi_state *t, uintptr_t context)
{
    uintptr_t value = 0;
    if (!context || pi_context_get(&t->route_context, context, t->route_context.var, t->route_context.var_hash,
                                   &value) != 1)
        return 0;
    return route_mark(value);
}

static int32_t thread_label(unsigned long thread_id)
{
    for (int i = 0; i < PI_MAX_LABELED_THREADS; i++) {
        uint64_t entry = __atomic_load_n(&thread_labels[i], __ATOMIC_ACQUIRE);
        if (entry && entry >> 16 == thread_id)
            return (int32_t)(entry & PI_MAX_THREAD_LABEL);
    }
    return 0;
}

void pi_set_phase(pi_state *s, int32_t phase)
{
    /* counted first: a tick that reads the new phase sees the count changed too */
    if (__atomic_load_n(&s->phase, __ATOMIC_SEQ_CST) != phase) {
        __atomic_fetch_add(&s->phase_changes, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&s->phase, phase, __ATOMIC_SEQ_CST);
    }
}

void phase_tick_start(pi_state *s)
{
    uint32_t changes = __atomic_load_n(&s->phase_changes, __ATOMIC_SEQ_CST);
    s->phase_steady = changes == s->phase_changes_seen;
    s->phase_changes_seen = changes;
}

/* The run's phase for a sample of this tick: none when it changed since the last tick
 * began, for the sample's time is partly the old phase's, nor while the stack was read,
 * for the stack may be from before the change. */
static int32_t run_phase(const pi_state *t)
{
    int32_t phase = __atomic_load_n(&t->phase, __ATOMIC_SEQ_CST);
    bool changed = __atomic_load_n(&t->phase_changes, __ATOMIC_SEQ_CST) != t->phase_changes_seen;
    return t->phase_steady && !changed ? phase : 0;
}

void add_sample(pi_state *t, const pi_walker *w, unsigned long native_id, const uint32_t *identities,
                const int32_t *lines, size_t depth, int64_t wall_ns, int64_t now_ns, int64_t cpu_now)
{
    size_t known_threads = t->tree.thread_count;
    pi_thread_record *r = pi_tree_thread(&t->tree, w->ts.thread_id, native_id);
    if (!r) {
        t->stats.dropped++;
        return;
    }
    /* a thread seen first after the first tick did not exist for the whole gap (one seen
     * at the first tick existed when profiling started, however late that tick came) */
    if (t->tree.thread_count > known_threads && t->stats.ticks > 1 && t->interval_ns > 0 && wall_ns > t->interval_ns)
        wall_ns = t->interval_ns;
    /* CPU used since a sample before a gap was not all this sample's */
    bool continuous = r->clock_ns >= now_ns - t->first_tick_ns - wall_ns;
    /* the time before this sample that the thread's timeline lacks (it did not exist,
     * or earlier samples were dropped) becomes a gap, so its clock stays true */
    pi_tree_catch_up(&t->tree, r, now_ns - t->first_tick_ns - wall_ns);
    int64_t cpu_ns = 0;
    if (continuous && cpu_now >= 0 && r->last_cpu_ns >= 0 && cpu_now > r->last_cpu_ns)
        cpu_ns = cpu_now - r->last_cpu_ns;
    r->last_cpu_ns = cpu_now;
    if (w->async_leaf != UINT32_MAX)
        cpu_ns = 0; /* the thread ran other contexts' code while the task waited */
    int32_t phase = t->thread_labels ? thread_label(w->ts.thread_id) : 0;
    if (!phase && t->route_context.var)
        phase = context_label(t, w->ts.context);
    if (!phase)
        phase = run_phase(t);
    if (phase > 0 && t->phase_identity < 0)
        t->phase_identity = pi_codes_synthetic(&t->codes, "[phase]");
    if (phase > 0 && t->phase_identity < 0) {
        t->stats.dropped++;
        return;
    }
    /* a suspended task's sample (async mode) is not where its thread stands with the GIL */
    int gil_state = w->async_leaf == UINT32_MAX ? w->gil_state : PI_GIL_UNKNOWN;
    if (gil_state == PI_GIL_WAITING && t->gil_wait_identity < 0)
        t->gil_wait_identity = pi_codes_synthetic(&t->codes, "[GIL wait]");
    uint32_t gil_wait = gil_state == PI_GIL_WAITING && t->gil_wait_identity >= 0 ? (uint32_t)t->gil_wait_identity
                                                                                 : PI_NO_NODE;
    if (pi_tree_add(&t->tree, r, identities, lines, depth, wall_ns, cpu_ns, (uint32_t)t->phase_identity, phase,
                    gil_wait) != 0) {
        t->stats.dropped++;
        return;
    }
    r->gil_wall_ns[gil_state] += wall_ns;
    t->stats.samples++;
}

long sample_of(pi_state *s, pi_walker *w, bool *truncated)
{
    pi_scratch *x = s->scratch;
    if (w->reused) { /* kept_sample: the arrays exist, if only for depth 0 */
        memcpy(x->identities, w->kept_identities, w->kept_depth * sizeof *x->identities);
        memcpy(x->lines, w->kept_lines, w->kept_depth * sizeof *x->lines);
        *truncated = w->kept_truncated;
        return (long)w->kept_depth;
    }
    long depth = build_sample(s, w, truncated);
    w->kept_sample = depth >= 0 && !s->async.enabled &&
                     GROW(w->kept_identities, w->kept_identities_cap, (size_t)depth + 1) == 0 &&
                     GROW(w->kept_lines, w->kept_lines_cap, (size_t)depth + 1) == 0;
    if (w->kept_sample) { /* its stack was copied after this tick's read of the GIL */
        memcpy(w->kept_identities, x->identities, (size_t)depth * sizeof *x->identities);
        memcpy(w->kept_lines, x->lines, (size_t)depth * sizeof *x->lines);
        w->kept_depth = (size_t)depth;
        w->kept_truncated = *truncated;
        w->kept_unheld = x->gil_read && x->gil_holder != w->tstate_addr;
        w->kept_switches = x->gil_switches;
        w->kept_pid = pi_own_pid();
    }
    return depth;
}

void record_thread(pi_state *s, pi_walker *w, int64_t wall_ns, int64_t now_ns)
{
    bool truncated;
    long depth = sample_of(s, w, &truncated);
    if (depth < 0) {
        count_drop(s, depth);
        return;
    }
    s->stats.truncated += truncated;
    s->stats.calls_ended += w->leaf_ended;
    unsigned long native_id = walked_native_id(w);
    int64_t cpu_now = native_id ? pi_thread_cpu_ns(native_id) : -1;
    w->gil_state = pi_gil_state(s, w, native_id, cpu_now);
    add_sample(s, w, native_id, s->scratch->identities, s->scratch->lines, (size_t)depth, wall_ns, now_ns, cpu_now);
}

bool target_wants(const pi_state *g, int64_t wall_ns, unsigned long thread_id)
{
    return wall_ns > 0 && (g->only_thread == 0 || g->only_thread == thread_id) &&
           !pi_thread_skipped(g, thread_id);
}

int translate_identities(pi_state *g, const pi_state *r, const uint32_t *from, uint32_t *to, size_t depth)
{
    size_t known = r->codes.identity_count;
    if (g->identity_map_generation != r->generation) {
        if (g->identity_map)
            memset(g->identity_map, 0xff, g->identity_map_cap * sizeof *g->identity_map);
        g->identity_map_generation = r->generation;
    }
    if (known > g->identity_map_cap) {
        size_t old = g->identity_map_cap;
        if (GROW(g->identity_map, g->identity_map_cap, known) != 0)
            return -1;
        memset(g->identity_map + old, 0xff, (g->identity_map_cap - old) * sizeof *g->identity_map);
    }
    for (size_t k = 0; k < depth; k++) {
        if (from[k] >= known)
            return -1;
        uint32_t *own = &g->identity_map[from[k]];
        if (*own == UINT32_MAX) {
            int64_t interned = pi_codes_intern(&g->codes, &r->codes.identities[from[k]]);
            if (interned < 0)
                return -1;
            *own = (uint32_t)interned;
        }
        to[k] = *own;
    }
    return 0;
}

void hand_out(pi_state *r, pi_walker *w, pi_state **targets, size_t count, int64_t now_ns)
{
    int64_t *walls = r->scratch->group_walls;
    long depth = BUILD_DROPPED;
    bool truncated = false, walk_failed = w->state != WALK_DONE;
    if (w->state == WALK_DONE)
        depth = w->doubtful ? BUILD_DROPPED_CODE : sample_of(r, w, &truncated);
    unsigned long native_id = 0;
    int64_t cpu_now = -1;
    bool cpu_read = false;
    for (size_t t = 0; t < count; t++) {
        pi_state *g = targets[t];
        if (!target_wants(g, walls[t], w->ts.thread_id))
            continue;
        if (depth < 0) {
            count_drop(g, depth);
            if (walk_failed) {
                g->stats.dropped_walk++;
                g->stats.walk_failed[w->fail_cause]++;
            }
            continue;
        }
        if (!cpu_read) {
            native_id = walked_native_id(w);
            cpu_now = native_id ? pi_thread_cpu_ns(native_id) : -1;
            w->gil_state = pi_gil_state(r, w, native_id, cpu_now);
            cpu_read = true;
        }
        if (translate_identities(g, r, r->scratch->identities, g->scratch->identities, (size_t)depth) != 0) {
            g->stats.dropped++;
            continue;
        }
        g->stats.truncated += truncated;
        g->stats.calls_ended += w->leaf_ended;
        add_sample(g, w, native_id, g->scratch->identities, r->scratch->lines, (size_t)depth, walls[t], now_ns,
                   cpu_now);
    }
}

int start_targets(pi_scratch *x, pi_state **targets, size_t count, int64_t now_ns)
{
    if (GROW(x->group_walls, x->group_walls_cap, count) != 0)
        return -1;
    for (size_t t = 0; t < count; t++) {
        pi_state *g = targets[t];
        x->group_walls[t] = g->last_tick_ns ? now_ns - g->last_tick_ns : 0;
        if (!g->first_tick_ns)
            g->first_tick_ns = g->last_tick_ns ? g->last_tick_ns : now_ns;
        g->last_tick_ns = now_ns;
        g->stats.ticks++;
        phase_tick_start(g);
    }
    return 0;
}
