/*
 * leaves.c: which walked threads stand on a call, and the queries that name what they
 * call (callees.c), all threads' reads batched together.
 */
#define _GNU_SOURCE
#include "tick.h"

/* 3.9/3.10: when this innermost frame is still the innermost next tick, it is read
 * whole with its value stack (which lies inside the frame object, after the locals). */
static void plan_leaf_whole(pi_walker *w, const pi_code_entry *e)
{
    size_t len = 0;
    uintptr_t stack = w->leaf_valuestack, end = stack + (size_t)pi_code_stack_size(e) * sizeof(uintptr_t);
    if (!pi_runtime_layout.frames_in_chunks && stack > w->leaf_frame && end > stack &&
        end - w->leaf_frame <= PI_MAX_LEAF_READ)
        len = end - w->leaf_frame;
    if (len && region_fill_prepare(&w->leaf_whole, w->leaf_frame, len) != 0)
        len = 0;
    w->leaf_whole.len = len;
}

void name_leaves(pi_state *s, size_t walker_count)
{
    pi_scratch *x = s->scratch;
    size_t n = 0;
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->reused && w->state == WALK_DONE)
            continue; /* still in the call named when its stack was copied */
        w->leaf_callee = -1;
        w->leaf_ended = false;
        if (w->state != WALK_DONE || w->depth == 0 || w->async_leaf != UINT32_MAX)
            continue;
        pi_code_entry *e = code_entry(&x->codes, w->codes[0]);
        pi_call call;
        if (!e || pi_code_stale(e) || !pi_code_instr_traceable(e, w->instrs[0]))
            continue;
        int site = pi_code_call_site(e, w->instrs[0], w->lastis[0], &call);
        if (site < 0)
            continue;
        if (site > 0 || GROW(x->queries, x->queries_cap, n + 1) != 0 ||
            GROW(x->query_walker, x->query_walker_cap, n + 1) != 0) {
            w->leaf_callee = pi_callees_unknown(&s->callees, &s->codes);
            continue;
        }
        pi_callee_query *q = &x->queries[n];
        q->frame = w->leaf_frame;
        q->seen = (pi_frame){.code = w->codes[0], .instr = w->instrs[0], .lasti = w->lastis[0]};
        q->call = call;
        size_t word = sizeof(uintptr_t);
        if (pi_runtime_layout.frames_in_chunks)
            q->slots_addr = w->leaf_frame + pi_frame_locals_offset() +
                            ((size_t)pi_code_stack_offset(e) + (size_t)call.bottom) * word;
        else
            q->slots_addr = w->leaf_valuestack + (size_t)call.bottom * word;
        /* usually copied with the frame, in the same read */
        size_t slots_len = pi_call_slot_count(&call) * word;
        const uint8_t *copy = w->leaf_copied ? region_find(&w->leaf_whole, q->slots_addr, slots_len)
                                             : find_in_chunks(w, q->slots_addr, slots_len);
        q->have_slots = copy != NULL;
        memset(q->slots, 0, sizeof q->slots);
        if (copy)
            memcpy(q->slots, copy, slots_len);
        bool same_call = w->memo_frame == q->frame && w->memo_seen.code == q->seen.code &&
                         w->memo_seen.instr == q->seen.instr && w->memo_seen.lasti == q->seen.lasti &&
                         memcmp(w->memo_slots, q->slots, sizeof q->slots) == 0;
        q->memo = w->leaf_memo;
        if (!same_call)
            q->memo.kind = PI_MEMO_NONE;
        x->query_walker[n++] = i;
    }
    for (size_t i = 0; i < walker_count; i++)
        if (!s->walkers[i].reused)
            s->walkers[i].leaf_memo.kind = PI_MEMO_NONE; /* kept below for the calls named now */
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        pi_code_entry *e = w->state == WALK_DONE && w->depth && !w->reused ? code_entry(&x->codes, w->codes[0])
                                                                           : NULL;
        if (e && !pi_code_stale(e))
            plan_leaf_whole(w, e);
    }
    if (n == 0)
        return;
    pi_callees_resolve(&s->callees, &s->codes, x->queries, n, &s->stats.syscalls);
    for (size_t k = 0; k < n; k++) {
        pi_walker *w = &s->walkers[x->query_walker[k]];
        const pi_callee_query *q = &x->queries[k];
        w->leaf_callee = q->identity;
        w->leaf_ended = q->ended;
        w->leaf_memo = q->memo;
        w->memo_frame = q->frame;
        w->memo_seen = q->seen;
        memcpy(w->memo_slots, q->slots, sizeof w->memo_slots);
    }
}
