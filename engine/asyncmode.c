/*
 * asyncmode.c: async mode in the tick. Which profiler a thread's stack belongs to (the
 * context variable in its Context, context.c), the await chain that stands for a
 * profiled task while it waits, and the shared tick of the async profilers of one
 * event loop.
 */
#define _GNU_SOURCE
#include "tick.h"

/* Async mode: while the profiled thread runs outside the profiler's context, its
 * sample becomes the start prefix + the profiled task's await chain + [await]; in
 * strict mode, without a suspended task, the prefix + [out-of-context]. For the
 * stack `real` walked in context state `state`: ASYNC_REAL (the sample is that
 * stack), ASYNC_LOST, or the length of the chain in s's scratch (chain_codes...) that
 * replaces it, with its leaf. */
enum { ASYNC_REAL = -1, ASYNC_LOST = -2 };

/* Whether a stack `depth` deep walked in context state `state` is the sample as it
 * is: when the state could not be told, or in the context, where the thread runs the
 * task's code or its children's (a stack no deeper than the start prefix is the event
 * loop about to resume the task). */
static bool async_real(const pi_async *a, int state, size_t depth)
{
    return state == PI_CONTEXT_UNKNOWN || (state == PI_IN_CONTEXT && (!a->task_coro || depth > a->prefix_len));
}

static long async_chain(pi_state *s, const pi_walker *real, int state, uint32_t *leaf)
{
    pi_scratch *x = s->scratch;
    const pi_async *a = &s->async;
    if (async_real(a, state, real->depth))
        return ASYNC_REAL;
    long chain = -1;
    if (a->task_coro) {
        chain = pi_await_chain(&a->tasks, a->task_coro, s->stats.ticks, x->chain_codes, x->chain_instrs,
                               x->chain_lastis, PI_MAX_AWAIT_DEPTH, &x->chain_cache, &s->stats.syscalls);
        /* the task's own frame right under the prefix: it runs, in another context
         * (by the frame, not its code: other tasks may run the same coroutine function) */
        bool task_runs = real->depth > a->prefix_len && a->task_frame &&
                         real->frames[real->depth - 1 - a->prefix_len] == a->task_frame;
        if (chain > 0) {
            x->chain_len = chain;
        } else if (!task_runs) {
            /* caught being resumed or suspended: it awaited where it last did */
            chain = x->chain_len;
            if (chain <= 0)
                return ASYNC_LOST; /* nowhere known yet: not the task's time to guess */
        }
    }
    if (chain > 0) {
        *leaf = s->await_identity;
        return chain;
    }
    if (a->strict) {
        *leaf = s->out_of_context_identity;
        return 0;
    }
    return ASYNC_REAL;
}

/* Replaces w's frames with the prefix and the chain async_chain found. */
static int push_chain(pi_state *s, pi_walker *w, long chain, uint32_t leaf)
{
    pi_scratch *x = s->scratch;
    const pi_async *a = &s->async;
    w->depth = 0;
    for (long k = chain; k-- > 0;) {
        pi_frame f = {.code = x->chain_codes[k], .instr = x->chain_instrs[k], .lasti = x->chain_lastis[k]};
        if (push_frame(w, 0, &f) != 0)
            return -1;
    }
    for (size_t k = a->prefix_len; k-- > 0;) {
        pi_frame f = {.code = a->prefix_codes[k]};
        if (push_frame(w, 0, &f) != 0)
            return -1;
    }
    w->async_leaf = leaf;
    return 0;
}

void attribute_async(pi_state *s, pi_walker *w)
{
    uint32_t leaf = 0;
    long chain = async_chain(s, w, w->in_context, &leaf);
    if (chain == ASYNC_LOST)
        w->state = WALK_CROSSED;
    else if (chain >= 0 && push_chain(s, w, chain, leaf) != 0) {
        w->state = WALK_FAILED;
        w->fail_cause = PI_FAIL_MEMORY;
    }
}

int classify_threads(pi_state *s, const pi_tstate *states, size_t thread_count)
{
    pi_scratch *x = s->scratch;
    if (GROW(x->contexts, x->contexts_cap, thread_count) != 0 ||
        GROW(x->context_states, x->context_states_cap, thread_count) != 0)
        return -1;
    for (size_t i = 0; i < thread_count; i++)
        x->contexts[i] = states[i].context;
    s->stats.syscalls += (uint64_t)pi_context_states(&s->async, x->contexts, thread_count, x->context_states);
    return 0;
}

void confirm_contexts(pi_state *s, size_t walker_count)
{
    pi_scratch *x = s->scratch;
    if (GROW(x->confirm_reads, x->confirm_reads_cap, walker_count) != 0 ||
        GROW(x->confirm_owner, x->confirm_owner_cap, walker_count) != 0 ||
        GROW(x->contexts, x->contexts_cap, walker_count) != 0 ||
        GROW(x->context_states, x->context_states_cap, walker_count) != 0)
        return;
    size_t n = 0;
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state != WALK_DONE || (!w->followed && w->ts.thread_id != s->async_thread))
            continue;
        x->confirm_reads[n] = (pi_read){w->tstate_addr + pi_tstate_context_offset(), &x->contexts[n],
                                        sizeof x->contexts[n], false};
        x->confirm_owner[n++] = i;
    }
    if (n == 0)
        return;
    s->stats.syscalls += (uint64_t)pi_read_batch(x->confirm_reads, n);
    /* the Contexts that changed, looked up together (moved to the front) */
    size_t changed = 0;
    for (size_t r = 0; r < n; r++) {
        pi_walker *w = &s->walkers[x->confirm_owner[r]];
        if (!x->confirm_reads[r].ok) {
            w->state = w->followed ? WALK_LEFT : WALK_FAILED;
            w->fail_cause = PI_FAIL_MOVED;
        } else if (x->contexts[r] != w->context_before) {
            x->contexts[changed] = x->contexts[r];
            x->confirm_owner[changed++] = x->confirm_owner[r];
        }
    }
    s->stats.syscalls += (uint64_t)pi_context_states(&s->async, x->contexts, changed, x->context_states);
    for (size_t r = 0; r < changed; r++) {
        pi_walker *w = &s->walkers[x->confirm_owner[r]];
        if (x->context_states[r] != w->in_context)
            w->state = w->followed ? WALK_LEFT : WALK_CROSSED;
    }
}

/* Whether `g` records a thread in context state `state`: its own thread, or one
 * running in its context (followed). */
static bool async_target_wants(const pi_state *g, int64_t wall_ns, unsigned long thread_id, int state)
{
    return wall_ns > 0 && (thread_id == g->async_thread || state == PI_IN_CONTEXT);
}

/* Each walked thread's Context read again after its walk (one vectored read for all),
 * and where it changed, the variable looked up in the new one (x->walked). */
static void confirm_walked_contexts(pi_state *r, size_t walker_count)
{
    pi_scratch *x = r->scratch;
    if (GROW(x->confirm_reads, x->confirm_reads_cap, walker_count) != 0 ||
        GROW(x->confirm_owner, x->confirm_owner_cap, walker_count) != 0 ||
        GROW(x->contexts, x->contexts_cap, walker_count) != 0 ||
        GROW(x->list_found, x->list_found_cap, walker_count) != 0 ||
        GROW(x->list_values, x->list_values_cap, walker_count) != 0) {
        for (size_t i = 0; i < walker_count; i++)
            x->walked[i].lost = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < walker_count; i++) {
        x->confirm_reads[n] = (pi_read){r->walkers[i].tstate_addr + pi_tstate_context_offset(), &x->contexts[n],
                                        sizeof x->contexts[n], false};
        x->confirm_owner[n++] = i;
    }
    r->stats.syscalls += (uint64_t)pi_read_batch(x->confirm_reads, n);
    size_t changed = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = x->confirm_owner[k];
        x->walked[i].lost = !x->confirm_reads[k].ok;
        if (x->confirm_reads[k].ok && x->contexts[k] != r->walkers[i].context_before) {
            x->contexts[changed] = x->contexts[k];
            x->confirm_owner[changed++] = i;
        }
    }
    r->stats.syscalls += (uint64_t)pi_context_values(&r->async, x->contexts, changed, x->list_found, x->list_values);
    for (size_t k = 0; k < changed; k++) {
        walked_context *c = &x->walked[x->confirm_owner[k]];
        c->found_after = x->list_found[k];
        c->value_after = x->list_values[k];
    }
}

/* g's own walker, made to hold the await chain that replaces thread `real`'s stack. */
static pi_walker *chain_walker(pi_state *g, const pi_walker *real)
{
    if (ensure_walkers(g, 1) != 0)
        return NULL;
    pi_walker *w = &g->walkers[0];
    w->ts = real->ts;
    w->tstate_addr = real->tstate_addr;
    w->state = WALK_DONE;
    w->reused = w->doubtful = w->followed = w->kept_sample = false;
    w->depth = 0;
    w->async_leaf = UINT32_MAX;
    w->leaf_callee = -1;
    w->leaf_ended = false;
    return w;
}

/* Whether g's chain read now (in its scratch) is the one its kept sample was built
 * from, the same code objects still at its addresses. */
static bool chain_kept(const pi_scratch *x, long chain, uint32_t leaf, uint64_t *deaths)
{
    size_t n = (size_t)chain;
    bool told = pi_code_deaths(deaths);
    if (!told || !x->kept_chain_depth || x->kept_chain_len != chain || x->kept_chain_leaf != leaf ||
        *deaths != x->kept_chain_deaths)
        return false;
    for (size_t k = 0; k < n; k++)
        if (x->kept_chain[k] != x->chain_codes[k] || x->kept_chain[n + k] != x->chain_instrs[k] ||
            x->kept_chain[2 * n + k] != (uintptr_t)x->chain_lastis[k])
            return false;
    return true;
}

/* Keeps the sample just built from g's chain (in its scratch) for chain_kept. */
static void keep_chain(pi_scratch *x, long chain, uint32_t leaf, uint64_t deaths, size_t depth)
{
    size_t n = (size_t)chain;
    x->kept_chain_depth = 0;
    if (GROW(x->kept_chain, x->kept_chain_cap, 3 * n + 1) != 0 ||
        GROW(x->kept_chain_ids, x->kept_chain_ids_cap, depth + 1) != 0 ||
        GROW(x->kept_chain_lines, x->kept_chain_lines_cap, depth + 1) != 0)
        return;
    for (size_t k = 0; k < n; k++) {
        x->kept_chain[k] = x->chain_codes[k];
        x->kept_chain[n + k] = x->chain_instrs[k];
        x->kept_chain[2 * n + k] = (uintptr_t)x->chain_lastis[k];
    }
    memcpy(x->kept_chain_ids, x->identities, depth * sizeof *x->identities);
    memcpy(x->kept_chain_lines, x->lines, depth * sizeof *x->lines);
    x->kept_chain_depth = depth;
    x->kept_chain_leaf = leaf;
    x->kept_chain_deaths = deaths;
    x->kept_chain_len = chain;
}

/* Thread `real`'s sample for its own async profiler `g`, when g's task is elsewhere:
 * the prefix and the task's await chain, resolved in g's code table, or the sample
 * built last time from the same chain (a task left waiting costs no resolving). */
static void record_chain(pi_state *g, const pi_walker *real, long chain, uint32_t leaf, int64_t wall_ns,
                         int64_t now_ns, unsigned long native_id, int64_t cpu_now)
{
    pi_scratch *x = g->scratch;
    pi_walker *w = chain_walker(g, real);
    if (!w) {
        g->stats.dropped++;
        return;
    }
    uint64_t deaths = 0;
    if (chain_kept(x, chain, leaf, &deaths)) {
        w->async_leaf = leaf;
        add_sample(g, w, native_id, x->kept_chain_ids, x->kept_chain_lines, x->kept_chain_depth, wall_ns, now_ns,
                   cpu_now);
        return;
    }
    if (push_chain(g, w, chain, leaf) != 0 || !validate_walks(g, 1)) {
        g->stats.dropped++;
        return;
    }
    bool truncated;
    long depth = w->doubtful ? BUILD_DROPPED_CODE : sample_of(g, w, &truncated);
    if (depth < 0) {
        count_drop(g, depth);
        return;
    }
    g->stats.truncated += truncated;
    if (!truncated)
        keep_chain(x, chain, leaf, deaths, (size_t)depth);
    add_sample(g, w, native_id, x->identities, x->lines, (size_t)depth, wall_ns, now_ns, cpu_now);
}

/* What async target `g` takes of walked thread i: nothing (neither its thread nor in
 * its context), a loss (LOST: it crossed g's context while read; DROPPED: its walk
 * failed), the walked stack, or (ASYNC) what async_chain makes of it. */
enum { TAKE_NONE, TAKE_LOST, TAKE_DROPPED, TAKE_STACK, TAKE_ASYNC };

static int async_take(const pi_state *r, size_t i, bool resolved, const pi_state *g, int64_t wall_ns, int *state)
{
    const pi_walker *w = &r->walkers[i];
    const walked_context *c = &r->scratch->walked[i];
    bool own = w->ts.thread_id == g->async_thread;
    *state = pi_context_state(&g->async, c->found, c->value);
    if (!async_target_wants(g, wall_ns, w->ts.thread_id, *state))
        return TAKE_NONE;
    if (c->lost || pi_context_state(&g->async, c->found_after, c->value_after) != *state)
        return own ? TAKE_LOST : TAKE_NONE; /* a followed thread's is left out */
    if (w->state != WALK_DONE || !resolved)
        return TAKE_DROPPED;
    return own && !async_real(&g->async, *state, w->depth) ? TAKE_ASYNC : TAKE_STACK;
}

/* The read-aheads of the await chains the targets read this tick, in one batch (each
 * would be a syscall of its own: 200 waiting tasks, 200 syscalls). */
static void read_chains_ahead(pi_state *r, size_t walker_count, bool resolved, pi_state **targets, size_t count)
{
    pi_scratch *x = r->scratch;
    if (GROW(x->ahead_first, x->ahead_first_cap, count) != 0 || GROW(x->ahead_count, x->ahead_count_cap, count) != 0)
        return;
    size_t n = 0;
    for (size_t t = 0; t < count; t++) {
        pi_state *g = targets[t];
        x->ahead_count[t] = 0;
        int state;
        for (size_t i = 0; i < walker_count && g->async.task_coro; i++) {
            if (async_take(r, i, resolved, g, x->group_walls[t], &state) != TAKE_ASYNC ||
                GROW(x->ahead_reads, x->ahead_reads_cap, n + PI_CHAIN_CACHE) != 0)
                continue;
            x->ahead_first[t] = n;
            x->ahead_count[t] = pi_chain_ahead_reads(&g->scratch->chain_cache, x->ahead_reads + n);
            n += x->ahead_count[t];
            break;
        }
    }
    if (n)
        r->stats.syscalls += (uint64_t)pi_read_batch(x->ahead_reads, n);
    for (size_t t = 0; t < count; t++)
        if (x->ahead_count[t])
            pi_chain_ahead_taken(&targets[t]->scratch->chain_cache, x->ahead_reads + x->ahead_first[t],
                                 x->ahead_count[t]);
}

/* Hands walked thread i to every async target that records it. */
static void hand_out_async(pi_state *r, size_t i, bool resolved, pi_state **targets, size_t count, int64_t now_ns)
{
    pi_scratch *x = r->scratch;
    pi_walker *w = &r->walkers[i];
    long depth = BUILD_DROPPED;
    bool truncated = false, built = false;
    unsigned long native_id = 0;
    int64_t cpu_now = -1;
    bool cpu_read = false;
    for (size_t t = 0; t < count; t++) {
        pi_state *g = targets[t];
        int state, take = async_take(r, i, resolved, g, x->group_walls[t], &state);
        if (take == TAKE_NONE)
            continue;
        if (take == TAKE_LOST || take == TAKE_DROPPED) {
            g->stats.dropped++;
            g->stats.dropped_context += take == TAKE_LOST;
            if (take == TAKE_DROPPED && w->state != WALK_DONE) {
                g->stats.dropped_walk++;
                g->stats.walk_failed[w->fail_cause]++;
            }
            continue;
        }
        if (!cpu_read) {
            native_id = walked_native_id(w);
            cpu_now = native_id ? pi_thread_cpu_ns(native_id) : -1;
            cpu_read = true;
        }
        uint32_t leaf = 0;
        long chain = take == TAKE_ASYNC ? async_chain(g, w, state, &leaf) : ASYNC_REAL;
        if (chain == ASYNC_LOST) {
            g->stats.dropped++;
            g->stats.dropped_context++;
            continue;
        }
        if (chain >= 0) {
            record_chain(g, w, chain, leaf, x->group_walls[t], now_ns, native_id, cpu_now);
            continue;
        }
        if (!built) { /* the walked stack's sample, built once for all that take it */
            depth = w->doubtful ? BUILD_DROPPED_CODE : sample_of(r, w, &truncated);
            built = true;
        }
        if (depth < 0) {
            count_drop(g, depth);
            continue;
        }
        if (translate_identities(g, r, x->identities, g->scratch->identities, (size_t)depth) != 0) {
            g->stats.dropped++;
            continue;
        }
        g->stats.truncated += truncated;
        g->stats.calls_ended += w->leaf_ended;
        add_sample(g, w, native_id, g->scratch->identities, x->lines, (size_t)depth, x->group_walls[t], now_ns,
                   cpu_now);
    }
}

void pi_tick_async_group(pi_state *r, pi_state **targets, size_t count, int64_t now_ns)
{
    pi_scratch *x = r->scratch;
    uint64_t syscalls_before = r->stats.syscalls;
    if (start_targets(x, targets, count, now_ns) != 0)
        return;
    /* the profilers share one variable (each with its own value): looked up once */
    const pi_async *first = &targets[0]->async;
    r->async.enabled = true;
    r->async.var = first->var;
    r->async.var_hash = first->var_hash;
    r->async.hamt_type = first->hamt_type;
    r->async.bitmap_type = first->bitmap_type;
    r->async.array_type = first->array_type;
    uintptr_t *addrs = NULL;
    pi_tstate *states = NULL;
    size_t thread_count = read_threads(r, &addrs, &states);
    r->stats.ticks++;
    if (thread_count == 0 || ensure_walkers(r, thread_count) != 0 ||
        GROW(x->contexts, x->contexts_cap, thread_count) != 0 ||
        GROW(x->list_found, x->list_found_cap, thread_count) != 0 ||
        GROW(x->list_values, x->list_values_cap, thread_count) != 0 ||
        GROW(x->walked, x->walked_cap, thread_count) != 0)
        goto done;
    for (size_t i = 0; i < thread_count; i++)
        x->contexts[i] = states[i].context;
    r->stats.syscalls += (uint64_t)pi_context_values(&r->async, x->contexts, thread_count, x->list_found,
                                                     x->list_values);
    /* each thread some target records, walked once */
    size_t walker_count = 0;
    round_list round = {&x->reads, &x->owner, &x->reads_cap, &x->owner_cap, 0};
    for (size_t i = 0; i < thread_count; i++) {
        bool wanted = false;
        for (size_t t = 0; t < count && !wanted; t++)
            wanted = async_target_wants(targets[t], x->group_walls[t], states[i].thread_id,
                                        pi_context_state(&targets[t]->async, x->list_found[i], x->list_values[i]));
        if (!wanted)
            continue;
        x->walked[walker_count] = (walked_context){x->list_found[i], x->list_found[i], x->list_values[i],
                                                   x->list_values[i], false};
        begin_walk(r, &round, walker_count++, addrs[i], &states[i], false, PI_CONTEXT_UNKNOWN);
    }
    run_rounds(r, round.count);
    confirm_walked_contexts(r, walker_count);
    bool resolved = validate_walks(r, walker_count);
    if (resolved)
        name_leaves(r, walker_count);
    read_chains_ahead(r, walker_count, resolved, targets, count);
    for (size_t i = 0; i < walker_count; i++)
        hand_out_async(r, i, resolved, targets, count, now_ns);
    for (size_t t = 0; t < count; t++)
        targets[t]->scratch->chain_cache.ahead_read = false; /* read for this tick only */
done:
    for (size_t t = 0; t < count; t++)
        targets[t]->stats.syscalls += r->stats.syscalls - syscalls_before;
}
