/*
 * tick.c: one tick of the sampler, for one profiler or for several at once.
 *
 * Reads the interpreter's list of thread states (threads.c), then walks every sampled
 * thread's frame chain in lock-step (walk.c): each round makes one vectored read
 * carrying, for every thread still walking, the next thing it needs. Then the code
 * objects on all stacks are validated in one more batched read (validate.c), the C
 * function each thread is in is named (leaves.c, callees.c), and each complete stack
 * is recorded (record.c). A thread whose stack fails any check is dropped from this
 * tick and counted. Async mode's share of a tick is in asyncmode.c.
 */
#define _GNU_SOURCE
#include "tick.h"

int pi_state_init(pi_state *s, unsigned long only_thread, int64_t interval_ns, size_t timeline_budget)
{
    memset(s, 0, sizeof *s);
    s->only_thread = only_thread;
    s->truncated_identity = -1;
    s->phase_identity = -1;
    s->gil_wait_identity = -1;
    s->interval_ns = interval_ns;
    s->scratch = calloc(1, sizeof *s->scratch);
    if (!s->scratch)
        return -1;
    if (pi_codes_init(&s->codes) != 0) {
        free(s->scratch);
        return -1;
    }
    if (pi_tree_init(&s->tree, timeline_budget) != 0 || pi_callees_init(&s->callees) != 0) {
        pi_tree_free(&s->tree);
        pi_codes_free(&s->codes);
        free(s->scratch);
        return -1;
    }
    return 0;
}

static void walker_free(pi_walker *w)
{
    for (size_t i = 0; i < PI_MAX_CHUNKS; i++) {
        free(w->chunks[i].data);
        free(w->spec_chunks[i].data);
    }
    free(w->leaf_whole.data);
    free(w->chunk_again.data);
    free(w->tstate_again);
    free(w->frames);
    free(w->codes);
    free(w->instrs);
    free(w->funcs);
    free(w->lastis);
    free(w->tstate_buf);
    free(w->solo);
    free(w->spec);
    free(w->spec_data);
    free(w->spec_ok);
    free(w->spec_slots);
    free(w->kept_identities);
    free(w->kept_lines);
}

void pi_state_free(pi_state *s)
{
    for (size_t i = 0; i < s->walker_cap; i++)
        walker_free(&s->walkers[i]);
    free(s->walkers);
    pi_scratch *x = s->scratch;
    if (x) {
        free(x->cache);
        free(x->tstate_bufs);
        free(x->addrs);
        free(x->states);
        free(x->list_reads);
        free(x->reads);
        free(x->next_reads);
        free(x->owner);
        free(x->next_owner);
        free(x->codes.addrs);
        free(x->codes.index);
        free(x->codes.distinct);
        free(x->codes.entries);
        free(x->queries);
        free(x->query_walker);
        free(x->contexts);
        free(x->context_states);
        free(x->confirm_reads);
        free(x->confirm_owner);
        free(x->headers);
        pi_gil_states_sweep(x, 0, true);
        free(x->syscall_files);
        free(x->group_walls);
        free(x->list_found);
        free(x->list_values);
        free(x->walked);
        free(x->ahead_reads);
        free(x->ahead_first);
        free(x->ahead_count);
        free(x->kept_chain);
        free(x->kept_chain_ids);
        free(x->kept_chain_lines);
        free(x);
    }
    pi_codes_free(&s->codes);
    pi_callees_free(&s->callees);
    pi_tree_free(&s->tree);
    free(s->async.prefix_codes);
    free(s->async.prefix_lines);
    free(s->identity_map);
    memset(s, 0, sizeof *s);
}

int ensure_walkers(pi_state *s, size_t n)
{
    size_t old = s->walker_cap;
    if (GROW(s->walkers, s->walker_cap, n) != 0)
        return -1;
    memset(s->walkers + old, 0, (s->walker_cap - old) * sizeof *s->walkers);
    return 0;
}

void pi_tick(pi_state *s, int64_t now_ns)
{
    pi_scratch *x = s->scratch;
    uintptr_t *addrs = NULL;
    pi_tstate *states = NULL;
    phase_tick_start(s); /* before any stack is read */
    size_t thread_count = read_threads(s, &addrs, &states);
    int64_t wall_ns = s->last_tick_ns ? now_ns - s->last_tick_ns : 0;
    if (!s->first_tick_ns) /* the sampler's start when it set last_tick_ns, else this tick */
        s->first_tick_ns = s->last_tick_ns ? s->last_tick_ns : now_ns;
    s->last_tick_ns = now_ns;
    s->stats.ticks++;
    if (thread_count == 0 || wall_ns <= 0 || ensure_walkers(s, thread_count) != 0)
        return;

    /* the first round: each thread's first read, and last tick's solo frames */
    size_t walker_count = 0;
    round_list round = {&x->reads, &x->owner, &x->reads_cap, &x->owner_cap, 0};
    bool classified = s->async.enabled && classify_threads(s, states, thread_count) == 0;
    bool follow = classified && s->only_thread && s->async.follow_threads;
    for (size_t i = 0; i < thread_count; i++) {
        bool followed = false;
        if (pi_thread_skipped(s, states[i].thread_id))
            continue;
        if (s->only_thread && states[i].thread_id != s->only_thread) {
            followed = follow && x->context_states[i] == PI_IN_CONTEXT;
            if (!followed)
                continue;
        }
        begin_walk(s, &round, walker_count++, addrs[i], &states[i], followed,
                   classified ? x->context_states[i] : PI_CONTEXT_UNKNOWN);
    }
    run_rounds(s, round.count);

    if (s->async.enabled) {
        confirm_contexts(s, walker_count);
        for (size_t i = 0; i < walker_count; i++)
            if (s->walkers[i].state == WALK_DONE && s->walkers[i].ts.thread_id == s->async_thread)
                attribute_async(s, &s->walkers[i]);
    }

    if (!validate_walks(s, walker_count)) {
        s->stats.dropped += walker_count;
        return;
    }
    name_leaves(s, walker_count);
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state == WALK_DONE && w->doubtful) {
            s->stats.dropped++;
            s->stats.dropped_code++;
        } else if (w->state == WALK_DONE) {
            record_thread(s, w, wall_ns, now_ns);
        } else if (w->state == WALK_CROSSED) {
            s->stats.dropped++;
            s->stats.dropped_context++;
        } else if (w->state != WALK_LEFT) {
            s->stats.dropped++;
            s->stats.dropped_walk++;
            s->stats.walk_failed[w->fail_cause]++;
        }
    }
    pi_gil_states_sweep(x, s->stats.ticks, false);
}

void pi_tick_group(pi_state *r, pi_state **targets, size_t count, int64_t now_ns)
{
    pi_scratch *x = r->scratch;
    uint64_t syscalls_before = r->stats.syscalls, torn_before = r->stats.torn_copies;
    uint64_t retried_before[PI_FAIL_CAUSES];
    memcpy(retried_before, r->stats.walk_retried, sizeof retried_before);
    if (start_targets(x, targets, count, now_ns) != 0)
        return;
    uintptr_t *addrs = NULL;
    pi_tstate *states = NULL;
    size_t thread_count = read_threads(r, &addrs, &states);
    r->stats.ticks++;
    size_t walker_count = 0;
    if (thread_count > 0 && ensure_walkers(r, thread_count) == 0) {
        round_list round = {&x->reads, &x->owner, &x->reads_cap, &x->owner_cap, 0};
        for (size_t i = 0; i < thread_count; i++) {
            bool wanted = false;
            for (size_t t = 0; t < count && !wanted; t++)
                wanted = target_wants(targets[t], x->group_walls[t], states[i].thread_id);
            if (!wanted)
                continue;
            begin_walk(r, &round, walker_count++, addrs[i], &states[i], false, PI_CONTEXT_UNKNOWN);
        }
        run_rounds(r, round.count);
        bool resolved = validate_walks(r, walker_count);
        if (resolved)
            name_leaves(r, walker_count);
        for (size_t i = 0; i < walker_count; i++) {
            if (!resolved) {
                r->walkers[i].state = WALK_FAILED;
                r->walkers[i].fail_cause = PI_FAIL_MEMORY;
            }
            hand_out(r, &r->walkers[i], targets, count, now_ns);
        }
    }
    pi_gil_states_sweep(x, r->stats.ticks, false);
    for (size_t t = 0; t < count; t++) {
        targets[t]->stats.syscalls += r->stats.syscalls - syscalls_before;
        targets[t]->stats.torn_copies += r->stats.torn_copies - torn_before;
        for (int c = 0; c < PI_FAIL_CAUSES; c++)
            targets[t]->stats.walk_retried[c] += r->stats.walk_retried[c] - retried_before[c];
    }
}
