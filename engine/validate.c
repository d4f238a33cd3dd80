/*
 * validate.c: whether a walked stack is what the thread ran: its code objects resolved
 * and validated in one batched read (codes.c), calls torn by a racing return found,
 * and doubtful stacks walked again or dropped.
 */
#define _GNU_SOURCE
#include "tick.h"

static size_t code_slot(const code_set *set, uintptr_t code)
{
    size_t slot = (size_t)(((uint64_t)code >> 4) * 0x9E3779B97F4A7C15ULL >> 20) & (set->size - 1);
    while (set->addrs[slot] && set->addrs[slot] != code)
        slot = (slot + 1) & (set->size - 1);
    return slot;
}

/* Collects the distinct code addresses of all walked threads and resolves them in
 * one batch, then confirms the entries made meanwhile. */
static int resolve_codes(pi_state *s, size_t walker_count, code_set *set)
{
    size_t total = 0;
    for (size_t i = 0; i < walker_count; i++)
        if (s->walkers[i].state == WALK_DONE && !s->walkers[i].reused)
            total += s->walkers[i].depth;
    size_t size = 64;
    while (size < total * 2)
        size *= 2;
    if (GROW(set->addrs, set->addrs_cap, size) != 0 || GROW(set->index, set->index_cap, size) != 0 ||
        GROW(set->distinct, set->distinct_cap, total + 1) != 0 || GROW(set->entries, set->entries_cap, total + 1) != 0)
        return -1;
    set->size = size;
    memset(set->addrs, 0, size * sizeof *set->addrs);
    set->count = 0;
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state != WALK_DONE || w->reused) /* a reused stack's sample is built already */
            continue;
        for (size_t d = 0; d < w->depth; d++) {
            size_t slot = code_slot(set, w->codes[d]);
            if (!set->addrs[slot]) {
                set->addrs[slot] = w->codes[d];
                set->index[slot] = (uint32_t)set->count;
                set->distinct[set->count++] = w->codes[d];
            }
        }
    }
    int syscalls = pi_codes_resolve(&s->codes, set->distinct, set->count, set->entries);
    if (syscalls < 0)
        return -1;
    s->stats.syscalls += (uint64_t)syscalls;
    int confirm = pi_codes_confirm_fresh(&s->codes);
    if (confirm > 0)
        s->stats.syscalls += (uint64_t)confirm;
    return 0;
}

pi_code_entry *code_entry(const code_set *set, uintptr_t code)
{
    size_t slot = code_slot(set, code);
    return set->addrs[slot] ? set->entries[set->index[slot]] : NULL;
}

/* 3.11+: calls torn by the copy. A caller's frame and its callee's are copied at
 * different moments when they came from different reads, or when the thread was
 * preempted between two pages of one read; the thread may have moved on to another
 * call in between, and the stack would join a caller to a callee it never called. A
 * caller standing on a call whose callable (on its value stack) is a Python function
 * must be the function its callee's frame runs. Sets `doubtful` on such stacks. */
static size_t long_lived_slot(uintptr_t object)
{
    return (size_t)(((uint64_t)object >> 4) * 0x9E3779B97F4A7C15ULL >> 56) % PI_LONG_LIVED;
}

static void find_torn_calls(pi_state *s, size_t walker_count)
{
    pi_scratch *x = s->scratch;
    size_t word = sizeof(uintptr_t), n = 0;
    if (!pi_runtime_layout.frames_in_chunks)
        return;
    if ((s->stats.ticks & 1023) == 0) /* an address cached long ago may hold anything now */
        memset(x->long_lived, 0, sizeof x->long_lived);
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        for (size_t d = 1; w->state == WALK_DONE && !w->doubtful && !w->reused && d < w->depth; d++) {
            pi_code_entry *e = code_entry(&x->codes, w->codes[d]);
            pi_call call;
            if (!w->frames[d] || !w->frames[d - 1] || !e || pi_code_stale(e) ||
                pi_code_call_site(e, w->instrs[d], w->lastis[d], &call) != 0)
                continue;
            uintptr_t slots_addr =
                w->frames[d] + pi_frame_locals_offset() + ((size_t)pi_code_stack_offset(e) + (size_t)call.bottom) * word;
            size_t count = pi_call_slot_count(&call);
            const uint8_t *slots = find_in_chunks(w, slots_addr, count * word);
            if (!slots || count == 0)
                continue;
            uintptr_t first, second = 0;
            memcpy(&first, slots, word);
            if (count > 1)
                memcpy(&second, slots + word, word);
            int callable, self;
            pi_call_place(&call, pi_stack_slot_object(first) != 0, pi_stack_slot_object(second) != 0, &callable,
                          &self);
            uintptr_t raw;
            if (callable < 0 || (size_t)callable >= count)
                continue;
            memcpy(&raw, slots + (size_t)callable * word, word);
            uintptr_t object = pi_stack_slot_object(raw);
            /* an interpreter shim between them (3.13+ runs __init__ under one that
             * holds None) is no function's frame */
            if (!object || object == w->funcs[d - 1] || w->funcs[d - 1] == pi_none_object() ||
                x->long_lived[long_lived_slot(object)] == object)
                continue;
            /* another object: a torn call if it is a function, else a call through C
             * (a class, a builtin calling back, a partial...) */
            if (GROW(x->confirm_reads, x->confirm_reads_cap, n + 1) != 0 ||
                GROW(x->confirm_owner, x->confirm_owner_cap, n + 1) != 0 ||
                GROW(x->headers, x->headers_cap, n + 1) != 0) {
                w->doubtful = true;
                break;
            }
            x->confirm_reads[n] = (pi_read){object, NULL, pi_object_header_size(), false};
            x->confirm_owner[n++] = i;
        }
    }
    for (size_t r = 0; r < n; r++) /* the buffer may have moved while it grew */
        x->confirm_reads[r].dst = x->headers[r];
    s->stats.syscalls += (uint64_t)pi_read_batch(x->confirm_reads, n);
    for (size_t r = 0; r < n; r++) {
        uintptr_t type, object = x->confirm_reads[r].addr;
        if (!x->confirm_reads[r].ok || pi_parse_object_header(x->headers[r], &type) != 0)
            continue;
        if (type == pi_function_type())
            s->walkers[x->confirm_owner[r]].doubtful = true;
        else if (pi_long_lived_type(type))
            x->long_lived[long_lived_slot(object)] = object;
    }
}

/* Stacks that may not be what the thread ran: a torn call (find_torn_calls), or a
 * code object seen at an address for the first time (or replacing the one seen
 * there), read after the frames: the frame that ran there may have ended, and its
 * code been freed and another made at the same address, in between (a sampler
 * preempted between the two reads makes that window long). Such a stack is walked
 * again: when the new walk finds only code entries known and still the same, and no
 * torn call, the code read is what the frames ran (in async mode, where the stack was
 * classified as walked, it is not walked again). Otherwise it is dropped, counted
 * with the code drops. Returns whether any stack was walked again. */
static bool rewalk_doubtful(pi_state *s, size_t walker_count, bool check_only)
{
    pi_scratch *x = s->scratch;
    round_list round = {&x->reads, &x->owner, &x->reads_cap, &x->owner_cap, 0};
    bool any = false;
    find_torn_calls(s, walker_count);
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state != WALK_DONE || w->async_leaf != UINT32_MAX || w->followed || w->reused)
            continue;
        for (size_t d = 0; d < w->depth && !w->doubtful; d++) {
            pi_code_entry *e = code_entry(&x->codes, w->codes[d]);
            w->doubtful = e && pi_code_fresh(e);
        }
        /* async mode classified the stack as walked: a new walk is dropped instead */
        if (!w->doubtful || check_only || s->async.enabled)
            continue;
        any = true;
        w->state = WALK_RETRY;
        round_add_walker(&round, w, i, false);
    }
    if (any)
        run_rounds(s, round.count);
    return any;
}

bool validate_walks(pi_state *s, size_t walker_count)
{
    code_set *codes = &s->scratch->codes;
    if (resolve_codes(s, walker_count, codes) != 0)
        return false;
    if (rewalk_doubtful(s, walker_count, false)) {
        if (resolve_codes(s, walker_count, codes) != 0)
            return false;
        rewalk_doubtful(s, walker_count, true);
    }
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        s->stats.torn_copies += w->torn_copies;
        w->torn_copies = 0;
        if (w->attempts) { /* only a walk tried again has retries to count */
            for (int c = 0; c < PI_FAIL_CAUSES; c++)
                s->stats.walk_retried[c] += w->retried[c];
            memset(w->retried, 0, sizeof w->retried);
        }
        /* only where popped frames are cleared is a leaf named from them (name_cleared_frame) */
        bool wanted = pi_runtime_layout.clears_popped_frames && w->state == WALK_DONE && w->depth && !w->reused;
        pi_code_entry *e = wanted ? code_entry(codes, w->codes[0]) : NULL;
        uintptr_t start;
        int64_t units;
        if (e && !pi_code_stale(e) && pi_code_range(e, &start, &units))
            remember_leaf_code(w, w->codes[0], start, units);
    }
    return true;
}
