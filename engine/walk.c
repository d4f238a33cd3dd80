/*
 * walk.c: walking threads' frame chains in lock-step, and the read-ahead cache.
 *
 * Each round makes one vectored read carrying, for every thread still walking, the
 * next thing it needs (a data-stack chunk, a frame outside the chunks, or a 3.11/3.12
 * _PyCFrame). Frames inside copied chunks are parsed with no syscall at all. Frames
 * that had to be read one by one (3.9/3.10 frames, generators, older chunks) are
 * remembered and read speculatively in the first round of the next tick: a stack that
 * did not change much costs a few syscalls whatever its depth. A thread that has not
 * moved since its stack was copied is not read at all (stack_unmoved). On 3.11+ the
 * current chunk is copied twice in one read, the thread state between, and the walk
 * starts from the frame current then (start_between_copies, frame_confirmed).
 */
#define _GNU_SOURCE
#include "tick.h"

int region_fill_prepare(region *r, uintptr_t addr, size_t len)
{
    if (GROW(r->data, r->cap, len) != 0)
        return -1;
    r->addr = addr;
    r->len = len;
    return 0;
}

int push_frame(pi_walker *w, uintptr_t addr, const pi_frame *f)
{
    size_t n = w->depth + 1;
    if (GROW(w->frames, w->frames_cap, n) != 0 || GROW(w->codes, w->codes_cap, n) != 0 ||
        GROW(w->instrs, w->instrs_cap, n) != 0 || GROW(w->funcs, w->funcs_cap, n) != 0 ||
        GROW(w->lastis, w->lastis_cap, n) != 0)
        return -1;
    w->frames[w->depth] = addr;
    w->funcs[w->depth] = f->func;
    w->codes[w->depth] = f->code;
    w->instrs[w->depth] = f->instr;
    w->lastis[w->depth] = f->lasti;
    w->depth++;
    return 0;
}

static size_t spec_hash(uintptr_t addr, size_t slots)
{
    return (size_t)(((uint64_t)addr >> 3) * 0x9E3779B97F4A7C15ULL >> 17) & (slots - 1);
}

/* Sizes the read-ahead buffers for the spec list and indexes it by address. */
static int spec_index(pi_walker *w)
{
    w->spec_hint = 0;
    w->spec_slot_count = 0;
    if (w->spec_count == 0)
        return 0;
    size_t frame_size = pi_runtime_layout.frame_read_size;
    size_t slots = 16;
    while (slots < w->spec_count * 2)
        slots *= 2;
    if (GROW(w->spec_data, w->spec_data_cap, w->spec_count * frame_size) != 0 ||
        GROW(w->spec_ok, w->spec_ok_cap, w->spec_count) != 0 || GROW(w->spec_slots, w->spec_slots_cap, slots) != 0) {
        w->spec_count = 0;
        return -1;
    }
    w->spec_slot_count = slots;
    memset(w->spec_slots, 0xff, slots * sizeof *w->spec_slots);
    for (size_t i = 0; i < w->spec_count; i++) {
        w->spec_ok[i] = false;
        size_t k = spec_hash(w->spec[i], slots);
        while (w->spec_slots[k] != UINT32_MAX)
            k = (k + 1) & (slots - 1);
        w->spec_slots[k] = (uint32_t)i;
    }
    return 0;
}

/* Makes last tick's solo frames and chunks this tick's speculative reads. */
static int spec_prepare(pi_walker *w, bool same_thread)
{
    uintptr_t *t = w->spec;
    size_t cap = w->spec_cap;
    w->spec = w->solo;
    w->spec_cap = w->solo_cap;
    w->spec_count = same_thread ? w->solo_count : 0;
    w->solo = t;
    w->solo_cap = cap;
    w->solo_count = 0;
    w->spec_chunk_count = 0;
    for (size_t i = 0; same_thread && i < w->solo_chunk_count; i++) {
        if (region_fill_prepare(&w->spec_chunks[i], w->solo_chunk[i], w->solo_chunk_len[i]) != 0)
            break;
        w->spec_chunk[i] = w->solo_chunk[i];
        w->spec_chunk_len[i] = w->solo_chunk_len[i];
        w->spec_chunk_ok[i] = false;
        w->spec_chunk_count = i + 1;
    }
    w->solo_chunk_count = 0;
    if (!same_thread)
        w->leaf_whole.len = 0;
    return spec_index(w);
}

/* Where addr is in the indexed part of the spec list, or SIZE_MAX. */
static size_t spec_lookup(const pi_walker *w, uintptr_t addr)
{
    if (!w->spec_slot_count)
        return SIZE_MAX;
    for (size_t k = spec_hash(addr, w->spec_slot_count); w->spec_slots[k] != UINT32_MAX;
         k = (k + 1) & (w->spec_slot_count - 1))
        if (w->spec[w->spec_slots[k]] == addr)
            return w->spec_slots[k];
    return SIZE_MAX;
}

/* Before a fresh walk: everything read ahead is older than the new thread state, so it
 * is read again, in the same round as the thread state, with the frames the failed
 * attempt found added. */
static void spec_refresh(pi_walker *w)
{
    for (size_t i = 0; i < w->solo_count && w->spec_count < PI_MAX_WALK; i++) {
        if (spec_lookup(w, w->solo[i]) != SIZE_MAX || GROW(w->spec, w->spec_cap, w->spec_count + 1) != 0)
            continue;
        w->spec[w->spec_count++] = w->solo[i];
    }
    w->solo_count = 0;
    spec_index(w);
    for (size_t i = 0; i < w->spec_chunk_count; i++)
        w->spec_chunk_ok[i] = false;
    w->respec = true;
}

static const uint8_t *spec_find(pi_walker *w, uintptr_t addr)
{
    /* the usual case: the chain is walked in last tick's order */
    size_t index = w->spec_hint < w->spec_count && w->spec[w->spec_hint] == addr ? w->spec_hint
                                                                                 : spec_lookup(w, addr);
    if (index == SIZE_MAX || !w->spec_ok[index])
        return NULL;
    w->spec_hint = index + 1;
    return w->spec_data + index * pi_runtime_layout.frame_read_size;
}

static void remember_solo(pi_walker *w, uintptr_t addr)
{
    if (w->solo_count < PI_MAX_WALK && GROW(w->solo, w->solo_cap, w->solo_count + 1) == 0)
        w->solo[w->solo_count++] = addr;
}

const uint8_t *region_find(const region *r, uintptr_t addr, size_t size)
{
    return addr >= r->addr && r->len >= size && addr - r->addr <= r->len - size ? r->data + (addr - r->addr) : NULL;
}

const uint8_t *find_in_chunks(const pi_walker *w, uintptr_t addr, size_t size)
{
    for (size_t i = 0; i < w->chunk_count; i++) {
        const uint8_t *copy = region_find(&w->chunks[i], addr, size);
        if (copy)
            return copy;
    }
    return NULL;
}

/* A check failed: the walk is tried again from a fresh thread state, up to the retries. */
static void walker_fail(pi_walker *w, enum pi_walk_fail cause)
{
    w->fail_cause = cause;
    if (w->attempts++ < PI_RETRIES) {
        w->retried[cause]++;
        w->state = WALK_RETRY;
    } else {
        w->state = WALK_FAILED;
    }
}

/* A failure no retry can mend. */
static void walker_give_up(pi_walker *w, enum pi_walk_fail cause)
{
    w->fail_cause = cause;
    w->state = WALK_FAILED;
}

/* Whether two copies of a frame hold the same call: its code, function and caller. */
static bool same_call(const pi_frame *a, const pi_frame *b)
{
    return a->code == b->code && a->previous == b->previous && a->func == b->func && a->kind == b->kind;
}

/* Whether the frames a caller at `below` was called from, those in the current chunk
 * under it, read the same in both copies in everything a sample takes from them. */
static bool callers_read_same(const pi_walker *w, uintptr_t at, uintptr_t below)
{
    size_t size = pi_runtime_layout.frame_read_size;
    const region *first = &w->chunks[0];
    while (at >= first->addr && at < below) {
        const uint8_t *copy = region_find(first, at, size), *again = region_find(&w->chunk_again, at, size);
        pi_frame a, b;
        if (!copy || !again || pi_parse_frame(copy, &a) != 0 || pi_parse_frame(again, &b) != 0 ||
            !same_call(&a, &b) || a.instr != b.instr)
            return false;
        below = at;
        at = a.previous;
    }
    return true;
}

/* Whether the frame at addr reads as it was between the two copies of the current
 * chunk. A thread that returns and calls again while the chunk is copied leaves a copy
 * that joins the callers of one call chain to the callees of another. The innermost
 * frame is taken from the second copy (start_between_copies). Its caller may have gone
 * on and called again meanwhile (its own frame header unchanged: the same call), but
 * the frames under the caller are in calls in progress and do not change: they must
 * read the same in both copies in all a sample takes from them (callers_read_same).
 * Their arguments and value stacks may differ: a recursion that fell and rose again
 * between the copies holds other calls of the same functions at the same places, which
 * make the same stack (comparing them byte for byte dropped 60% of such a thread's
 * samples on 3.14). The caller must also have been below the thread's top between the
 * copies. */
static bool frame_confirmed(pi_walker *w, uintptr_t addr)
{
    size_t size = pi_runtime_layout.frame_read_size;
    region *first = &w->chunks[0];
    const uint8_t *copy = region_find(first, addr, size);
    if (!w->confirm_chain || w->chunk_confirmed || !copy || addr == w->start_frame)
        return true;
    w->chunk_confirmed = true;
    const uint8_t *again = region_find(&w->chunk_again, addr, size);
    pi_frame a, b;
    if (!again || addr >= w->top_again || pi_parse_frame(copy, &a) != 0 || pi_parse_frame(again, &b) != 0 ||
        !same_call(&a, &b) || !callers_read_same(w, a.previous, addr))
        return false;
    /* the same call in both: where it stands is taken from the second copy, as its callee is */
    memcpy(first->data + (addr - first->addr), again, size);
    return true;
}

/* Adds addr to what is read between the copies, in place of the entry used least lately. */
static void remember_c_stack(pi_walker *w, uintptr_t addr, size_t len)
{
    size_t k = 0, oldest = 0;
    for (; k < w->c_stack_count && w->c_stack[k] != addr; k++)
        if (w->c_stack_used[k] < w->c_stack_used[oldest])
            oldest = k;
    if (k == w->c_stack_count) {
        if (w->c_stack_count < PI_KNOWN_C_STACK)
            w->c_stack_count++;
        else
            k = oldest;
        w->c_stack[k] = addr;
        w->c_stack_copied[k] = false;
    }
    if (w->c_stack_len[k] != len)
        w->c_stack_copied[k] = false; /* what was copied there is not what is wanted now */
    w->c_stack_len[k] = len;
    w->c_stack_used[k] = ++w->c_stack_clock;
}

/* The copy of `size` bytes the thread keeps at addr on its C stack, read between the copies. */
static const uint8_t *c_stack_find(pi_walker *w, uintptr_t addr, size_t size)
{
    for (size_t k = 0; w->confirm_chain && k < w->c_stack_count; k++) {
        if (w->c_stack[k] == addr && w->c_stack_copied[k] && w->c_stack_len[k] >= size) {
            w->c_stack_used[k] = ++w->c_stack_clock;
            return w->c_stack_copies[k];
        }
    }
    return NULL;
}

/* Where a thread's chain ends stays put: its outermost frame (3.12+: the entry shim
 * of its outermost evaluation loop, on its C stack; before: the frame of its first
 * Python function). A chain ending elsewhere went through memory that changed under
 * the read, so the walk is tried again; when the new attempt ends at the same new
 * place, the thread's outermost frame really moved there. On 3.12+ a chain cannot end
 * in a Python frame at all. */
static void end_chain(pi_walker *w, const pi_frame *f, uintptr_t here)
{
    if (pi_runtime_layout.chains_end_in_shim && f->kind == PI_FRAME_PYTHON) {
        walker_fail(w, PI_FAIL_END);
    } else if (!w->bottom || here == w->bottom || (w->attempts > 0 && here == w->first_end)) {
        w->bottom = here;
        w->state = !pi_runtime_layout.frames_in_chunks && w->depth > 1 ? WALK_CONFIRM : WALK_DONE;
    } else {
        w->first_end = here;
        walker_fail(w, PI_FAIL_END);
    }
}

/* 3.9/3.10: a frame object freed between two reads of one walk may be reused at once
 * for another call (CPython keeps one per code object and a free list), and the chain
 * read through it joins one call chain's callers to another's callees (0.2-0.6% of the
 * time in a program of short calls). So the chain walked is read again, whole, in one
 * round after the last, with the thread state first (chain_read_same says what must
 * match). When it does not, that round is the next attempt's first: the walk goes on
 * from the thread state read in it, with the frames read just after it. */
static void walker_restart(pi_walker *w, const pi_tstate *ts);

/* The thread state read again, with the spec list (this tick's frames added) after it. */
static bool read_thread_state_again(pi_walker *w, pi_read *read)
{
    size_t size = pi_runtime_layout.tstate_read_size;
    spec_refresh(w);
    if (GROW(w->tstate_buf, w->tstate_buf_cap, size) != 0) {
        walker_give_up(w, PI_FAIL_MEMORY);
        return false;
    }
    *read = (pi_read){w->tstate_addr, w->tstate_buf, size, false};
    return true;
}

/* A fresh walk from the thread state read again (read_thread_state_again). */
static void restart_from_thread_state(pi_walker *w, const pi_read *read)
{
    pi_tstate ts;
    if (!read->ok || pi_parse_tstate(w->tstate_buf, w->tstate_addr, &ts) != 0 || ts.thread_id != w->ts.thread_id)
        walker_give_up(w, PI_FAIL_MOVED);
    else
        walker_restart(w, &ts);
}

static bool confirm_chain_read(pi_walker *w, pi_read *read)
{
    w->confirm_pending = read_thread_state_again(w, read);
    return w->confirm_pending;
}

/* Whether the chain read the same in the second reading. Every frame under the
 * innermost one's caller, in a call in progress, reads the same in every field the walk
 * took. The caller may have gone on within the same call: its code and its own caller
 * unchanged. Then each of them held what was read from its first copy to the second
 * reading. When none was first copied after the innermost frame, they all held it when
 * that frame was copied, alive and called from there: the chain was the thread's then,
 * and the innermost frame, often a short call over by now, need not read the same
 * (requiring it would drop most samples of short functions). */
static bool chain_read_same(pi_walker *w)
{
    size_t first = w->outer_copied_at <= w->leaf_copied_at ? 1 : 0;
    for (size_t k = first; k < w->depth; k++) {
        size_t index = spec_lookup(w, w->frames[k]);
        uintptr_t caller = k + 1 < w->depth ? w->frames[k + 1] : 0;
        pi_frame f;
        if (index == SIZE_MAX || !w->spec_ok[index] ||
            pi_parse_frame(w->spec_data + index * pi_runtime_layout.frame_read_size, &f) != 0 ||
            f.code != w->codes[k] || f.previous != caller || (k > 1 && f.lasti != w->lastis[k]))
            return false;
    }
    return true;
}

static void take_confirmation(pi_walker *w, const pi_read *read)
{
    w->confirm_pending = false;
    if (chain_read_same(w)) {
        for (size_t k = 0; k < w->depth; k++)
            remember_solo(w, w->frames[k]); /* read ahead next tick */
        w->state = WALK_DONE;
        return;
    }
    w->torn_copies++;
    walker_fail(w, PI_FAIL_TORN);
    if (w->state == WALK_RETRY)
        restart_from_thread_state(w, read); /* the round just read is the next attempt's first */
}

/* When a copy was made, in the order of the walker's reads: its round, then its place
 * in the round (the walker's own read first, then the spec list's, last first). */
static uint64_t main_copied_at(const pi_walker *w)
{
    return (uint64_t)w->main_round << 32;
}

static uint64_t spec_copied_at(const pi_walker *w, const uint8_t *copy)
{
    size_t k = (size_t)(copy - w->spec_data) / pi_runtime_layout.frame_read_size;
    return ((uint64_t)w->spec_round << 32) + (w->spec_count - k);
}

/* Takes one frame from `buf` and moves to the previous one. */
static void step_frame(pi_walker *w, const uint8_t *buf, uint64_t copied_at)
{
    pi_frame f;
    if (w->depth == 0)
        w->leaf_copied_at = copied_at;
    else if (copied_at > w->outer_copied_at)
        w->outer_copied_at = copied_at;
    if (w->depth >= PI_MAX_WALK) {
        walker_fail(w, PI_FAIL_DEEP);
        return;
    }
    if (pi_parse_frame(buf, &f) != 0) {
        walker_fail(w, PI_FAIL_UNPARSABLE);
        return;
    }
    if (f.kind == PI_FRAME_SKIP && !find_in_chunks(w, w->cur, pi_runtime_layout.frame_read_size))
        remember_c_stack(w, w->cur, pi_runtime_layout.frame_read_size);
    if (f.kind == PI_FRAME_PYTHON && w->depth == 0) {
        w->leaf_frame = w->cur;
        w->leaf_valuestack = f.valuestack;
    }
    if (f.kind == PI_FRAME_PYTHON && push_frame(w, w->cur, &f) != 0) {
        walker_fail(w, PI_FAIL_MEMORY);
        return;
    }
    uintptr_t next = f.previous;
    if (next != 0 && next == w->brent_mark) {
        walker_fail(w, PI_FAIL_LOOP); /* a torn read */
        return;
    }
    if (++w->brent_steps == w->brent_power) {
        w->brent_mark = next;
        w->brent_power *= 2;
        w->brent_steps = 0;
    }
    uintptr_t here = w->cur;
    w->cur = next;
    if (next == 0) {
        end_chain(w, &f, here);
    }
}

static bool older_chunk_from_spec(pi_walker *w);

/* 3.11/3.12: the current frame from a copied _PyCFrame. One without a frame, in a
 * thread seen with frames before, is usually being set up (the evaluation loop made
 * it current and has not filled it in yet): the walk is tried again, up to the
 * retries, before the thread is taken to be out of Python code. */
static void take_cframe(pi_walker *w, const uint8_t *buf)
{
    w->cur = pi_parse_cframe(buf);
    if (w->cur)
        w->state = WALK_FRAMES;
    else if (w->bottom && w->attempts < PI_RETRIES)
        walker_fail(w, PI_FAIL_SETUP);
    else
        w->state = WALK_DONE;
}

/* Advances through copied memory; returns the read this walker needs next, if any. */
static bool walker_need(pi_walker *w, pi_read *read)
{
    size_t frame_size = pi_runtime_layout.frame_read_size;
    if (w->state == WALK_RETRY)
        return read_thread_state_again(w, read);
    if (w->want_current_chunk) {
        w->want_current_chunk = false;
        w->current_chunk_pending = true;
        *read = (pi_read){w->chunks[0].addr, w->chunks[0].data, w->chunks[0].len, false};
        return true;
    }
    while (w->state == WALK_FRAMES) {
        if (w->depth == 0 && w->leaf_whole.len >= frame_size && w->cur == w->leaf_whole.addr) {
            remember_solo(w, w->cur);
            w->leaf_pending = true;
            *read = (pi_read){w->leaf_whole.addr, w->leaf_whole.data, w->leaf_whole.len, false};
            return true;
        }
        const uint8_t *copy = find_in_chunks(w, w->cur, frame_size);
        if (!copy)
            copy = c_stack_find(w, w->cur, frame_size);
        bool spec_copy = false;
        if (!copy && !(w->older_chunk && w->chunk_count < PI_MAX_CHUNKS)) {
            copy = spec_find(w, w->cur);
            spec_copy = copy != NULL;
            if (copy)
                remember_solo(w, w->cur);
        }
        if (copy && !frame_confirmed(w, w->cur)) {
            w->torn_copies++;
            walker_fail(w, PI_FAIL_TORN);
            break;
        }
        if (copy) {
            step_frame(w, copy, spec_copy ? spec_copied_at(w, copy) : main_copied_at(w));
            continue;
        }
        if (w->older_chunk && w->chunk_count < PI_MAX_CHUNKS && older_chunk_from_spec(w))
            continue;
        if (w->older_chunk && w->chunk_count < PI_MAX_CHUNKS) {
            region *r = &w->chunks[w->chunk_count];
            if (region_fill_prepare(r, w->older_chunk, PI_CHUNK_READ) != 0) {
                walker_fail(w, PI_FAIL_MEMORY);
                return false;
            }
            *read = (pi_read){r->addr, r->data, PI_CHUNK_READ, false};
            w->chunk_pending = true;
            return true;
        }
        remember_solo(w, w->cur);
        *read = (pi_read){w->cur, w->scratch, frame_size, false};
        return true;
    }
    if (w->state == WALK_CONFIRM)
        return confirm_chain_read(w, read);
    if (w->state == WALK_CFRAME) {
        if (w->cframe_read_ahead && w->cframe_ok) {
            w->cframe_read_ahead = false;
            take_cframe(w, w->cframe_buf);
            return walker_need(w, read);
        }
        *read = (pi_read){w->ts.cframe, w->scratch, pi_cframe_read_size(), false};
        return true;
    }
    if (w->state == WALK_RETRY)
        return walker_need(w, read); /* failed in copied memory: start over */
    return false;
}

/* 3.12: a _PyCFrame read just after its loop's function returned names the loop's
 * entry frame (on the C stack) as current. The thread state, read a moment before, had
 * the thread in that loop: in the function, called back from C, whose frame is the one
 * just above its caller's in the second copy, linked to the entry frame. Returns that
 * frame, or 0. */
static uintptr_t returning_callback(pi_walker *w, uintptr_t entry)
{
    size_t size = pi_runtime_layout.frame_read_size, link = pi_frame_previous_offset();
    const uint8_t *copy = c_stack_find(w, entry, size);
    pi_frame e, f;
    if (!copy || pi_parse_frame(copy, &e) != 0 || e.kind != PI_FRAME_SKIP || !region_find(&w->chunk_again, e.previous, size))
        return 0;
    for (uintptr_t at = e.previous + size; at - e.previous <= PI_MAX_CALLER_FRAME; at += sizeof(uintptr_t)) {
        const uint8_t *buf = region_find(&w->chunk_again, at, size);
        uintptr_t previous;
        if (!buf)
            return 0;
        memcpy(&previous, buf + link, sizeof previous);
        if (previous == entry && pi_parse_frame(buf, &f) == 0 && f.kind == PI_FRAME_PYTHON)
            return at;
    }
    return 0;
}

/* 3.14+: the innermost frame popped and cleared before the second copy reached it (a
 * callback from C runs for ~50 ns): code and function slots empty, caller and last
 * instruction kept. Its code is the one of those lately innermost on this thread whose
 * bytecode holds that instruction; it is written back into the copy (and validated with
 * the others). */
static bool name_cleared_frame(const pi_walker *w, uint8_t *buf)
{
    pi_frame f;
    if (pi_parse_cleared_frame(buf, &f) != 0)
        return false;
    for (size_t k = 0; k < PI_LEAF_CODES; k++) {
        uintptr_t start = w->leaf_code_starts[k];
        if (w->leaf_codes[k] && f.instr >= start && (f.instr - start) / 2 < (uintptr_t)w->leaf_code_units[k]) {
            pi_frame_set_code(buf, w->leaf_codes[k]);
            return true;
        }
    }
    return false;
}

void remember_leaf_code(pi_walker *w, uintptr_t code, uintptr_t start, int64_t units)
{
    for (size_t k = 0; k < PI_LEAF_CODES; k++)
        if (w->leaf_codes[k] == code && w->leaf_code_starts[k] == start)
            return;
    size_t k = w->leaf_code_next++ % PI_LEAF_CODES;
    w->leaf_codes[k] = code;
    w->leaf_code_starts[k] = start;
    w->leaf_code_units[k] = units;
}

/* 3.11+: where the walk starts, from the thread state (3.11/3.12: or its _PyCFrame)
 * read between the two copies of the current chunk. */
static void start_between_copies(pi_walker *w)
{
    pi_tstate ts;
    if (!w->again_ok || !w->tstate_again_ok || pi_parse_tstate(w->tstate_again, w->tstate_addr, &ts) != 0 ||
        ts.thread_id != w->ts.thread_id || ts.chunk != w->ts.chunk) {
        walker_fail(w, PI_FAIL_MOVED); /* the thread ended or moved to another chunk meanwhile */
        return;
    }
    w->confirm_chain = true;
    w->top_again = ts.chunk_top;
    if (ts.frame) {
        w->cur = ts.frame;
        w->state = WALK_FRAMES;
    } else if (ts.cframe) {
        const uint8_t *cframe = c_stack_find(w, ts.cframe, pi_cframe_read_size());
        if (!cframe) {
            remember_c_stack(w, ts.cframe, pi_cframe_read_size()); /* read with the next attempt */
            walker_fail(w, PI_FAIL_SETUP);
            return;
        }
        take_cframe(w, cframe);
        uintptr_t callback = w->state == WALK_FRAMES ? returning_callback(w, w->cur) : 0;
        if (callback)
            w->cur = callback;
    } else {
        w->state = WALK_DONE; /* out of Python code */
    }
    if (w->state != WALK_FRAMES || w->cur < ts.chunk || w->cur >= ts.chunk_limit)
        return;
    /* a frame of the chunk pushed above what was copied cannot be confirmed */
    region *first = &w->chunks[0];
    if (!region_find(first, w->cur, pi_runtime_layout.frame_read_size)) {
        if (w->top_margin < PI_MAX_CHUNK_BYTES)
            w->top_margin *= 2;
        walker_fail(w, PI_FAIL_TORN);
        return;
    }
    /* The innermost frame is taken from the second copy, made after it was current:
     * the first may predate its call. Whatever the second holds there was called by
     * the frame below it, which both copies must show unchanged. A frame popped before
     * the second copy reached it is cleared there (3.14+): it is named from its last
     * instruction when it can be, else the first copy holds it, if anything does. */
    size_t at = w->cur - first->addr;
    uint8_t *again = w->chunk_again.data + at;
    pi_frame f;
    if (pi_parse_frame(again, &f) == 0 || name_cleared_frame(w, again))
        memcpy(first->data + at, again, first->len - at);
    w->start_frame = w->cur;
}

static void take_current_chunk(pi_walker *w, const pi_read *read)
{
    w->current_chunk_pending = false;
    region *r = &w->chunks[0];
    uintptr_t older = 0;
    size_t used = 0;
    /* the current chunk's saved "top" is stale; only its link to the older one counts */
    if (!read->ok || read->len < pi_chunk_header_size() || pi_parse_chunk(r->data, &older, &used) != 0) {
        walker_fail(w, PI_FAIL_MOVED);
        return;
    }
    w->chunk_count = 1;
    w->older_chunk = older;
    start_between_copies(w);
}

/* Adopts the older chunk copied into chunks[chunk_count] (`len` bytes of it). */
static void adopt_older_chunk(pi_walker *w, bool ok, size_t len)
{
    region *r = &w->chunks[w->chunk_count];
    uintptr_t older = 0;
    size_t used = 0;
    /* an unreadable or corrupt older chunk: fall back to reading frames one by one */
    w->older_chunk = 0;
    if (!ok || len < pi_chunk_header_size() || pi_parse_chunk(r->data, &older, &used) != 0 ||
        used > PI_MAX_CHUNK_BYTES)
        return;
    if (used > len) {
        if (region_fill_prepare(r, r->addr, used) != 0 || pi_read_exact(r->addr, r->data, used) != 0)
            return;
    }
    r->len = used;
    w->chunk_count++;
    w->older_chunk = older;
    if (w->solo_chunk_count < PI_MAX_CHUNKS) {
        w->solo_chunk[w->solo_chunk_count] = r->addr;
        w->solo_chunk_len[w->solo_chunk_count++] = used;
    }
}

static void take_older_chunk(pi_walker *w, const pi_read *read)
{
    w->chunk_pending = false;
    adopt_older_chunk(w, read->ok, read->len);
}

/* The older chunk, if it was read ahead this tick: swapped into place, no syscall. */
static bool older_chunk_from_spec(pi_walker *w)
{
    for (size_t i = 0; i < w->spec_chunk_count; i++) {
        if (w->spec_chunk[i] != w->older_chunk || !w->spec_chunk_ok[i])
            continue;
        region t = w->chunks[w->chunk_count];
        w->chunks[w->chunk_count] = w->spec_chunks[i];
        w->spec_chunks[i] = t;
        w->spec_chunk_ok[i] = false;
        adopt_older_chunk(w, true, w->chunks[w->chunk_count].len);
        return true;
    }
    return false;
}

static void walker_take(pi_walker *w, const pi_read *read)
{
    w->rounds_taken++;
    if (w->state == WALK_RETRY) {
        restart_from_thread_state(w, read);
    } else if (w->confirm_pending) {
        take_confirmation(w, read);
    } else if (w->current_chunk_pending) {
        take_current_chunk(w, read);
    } else if (w->chunk_pending) {
        take_older_chunk(w, read);
    } else if (w->leaf_pending) {
        w->leaf_pending = false;
        w->leaf_copied = read->ok;
        if (read->ok) {
            step_frame(w, w->leaf_whole.data, main_copied_at(w));
        } else {
            w->leaf_whole.len = 0; /* a smaller frame object now: read as any other frame */
            walker_fail(w, PI_FAIL_MOVED);
        }
    } else if (!read->ok) {
        walker_fail(w, PI_FAIL_MOVED);
    } else if (w->state == WALK_CFRAME) {
        take_cframe(w, w->scratch);
    } else {
        step_frame(w, w->scratch, main_copied_at(w));
    }
}

/* Points a walker at a thread's current frame, forgetting what it walked. */
static void walker_reset(pi_walker *w, const pi_tstate *ts)
{
    w->ts = *ts;
    w->chunk_count = 0;
    w->older_chunk = 0;
    w->chunk_pending = false;
    w->current_chunk_pending = false;
    w->want_current_chunk = false;
    w->cframe_read_ahead = false;
    w->depth = 0;
    w->outer_copied_at = 0;
    w->doubtful = false;
    w->leaf_pending = false;
    w->leaf_copied = false;
    w->confirm_pending = false;
    w->confirm_chain = false;
    w->chunk_confirmed = false;
    w->tstate_again_ok = false;
    w->start_frame = 0;
    w->brent_mark = 0;
    w->brent_power = 1;
    w->brent_steps = 0;
    w->cur = ts->frame;
    w->state = ts->cframe ? WALK_CFRAME : (ts->frame ? WALK_FRAMES : WALK_DONE);
    if (pi_runtime_layout.frames_in_chunks && ts->chunk && ts->chunk_top > ts->chunk &&
        ts->chunk_limit >= ts->chunk_top && ts->chunk_limit - ts->chunk <= PI_MAX_CHUNK_BYTES &&
        w->state != WALK_DONE) {
        /* the current chunk's used part, and the frames pushed on it while we read */
        size_t len = ts->chunk_top - ts->chunk + w->top_margin;
        if (len > ts->chunk_limit - ts->chunk)
            len = ts->chunk_limit - ts->chunk;
        if (region_fill_prepare(&w->chunks[0], ts->chunk, len) != 0)
            walker_give_up(w, PI_FAIL_MEMORY);
        else
            w->want_current_chunk = true;
    }
}

/* Walks again from a fresh thread state (read with a fresh copy of the spec list). */
static void walker_restart(pi_walker *w, const pi_tstate *ts)
{
    walker_reset(w, ts);
}

/* Starts a walker on a thread. */
static void walker_start(pi_walker *w, uintptr_t tstate_addr, const pi_tstate *ts)
{
    bool same_thread = w->tstate_addr == tstate_addr && w->ts.thread_id == ts->thread_id;
    spec_prepare(w, same_thread);
    if (!same_thread) {
        w->top_margin = PI_TOP_MARGIN;
        w->c_stack_count = 0;
        memset(w->leaf_codes, 0, sizeof w->leaf_codes);
        w->bottom = 0;
        w->leaf_memo.kind = PI_MEMO_NONE;
    }
    w->first_end = 0;
    w->tstate_addr = tstate_addr;
    w->attempts = 0;
    w->rounds_taken = 0;
    w->fail_cause = PI_FAIL_MOVED;
    memset(w->retried, 0, sizeof w->retried);
    w->async_leaf = UINT32_MAX;
    walker_reset(w, ts);
}

int round_add(round_list *round, const pi_read *read, size_t owner)
{
    if (grow((void **)round->reads, round->reads_cap, round->count + 1, sizeof **round->reads) != 0 ||
        grow((void **)round->owner, round->owner_cap, round->count + 1, sizeof **round->owner) != 0)
        return -1;
    (*round->reads)[round->count] = *read;
    (*round->owner)[round->count] = owner;
    round->count++;
    return 0;
}

static void round_add_cframe(round_list *round, pi_walker *w, size_t index)
{
    if (w->state != WALK_CFRAME || w->cframe_read_ahead || w->current_chunk_pending ||
        pi_cframe_read_size() > sizeof w->cframe_buf)
        return;
    pi_read cframe = {w->ts.cframe, w->cframe_buf, pi_cframe_read_size(), false};
    w->cframe_read_ahead = round_add(round, &cframe, index | PI_SPEC_BIT | PI_CFRAME_BIT) == 0;
    w->cframe_ok = false;
}

/* After the first copy of the current chunk: the thread state, what the thread was seen
 * using on its C stack (its _PyCFrames on 3.11/3.12, entry frames on 3.12+), and the
 * second copy (see start_between_copies and frame_confirmed). */
static void round_add_again(round_list *round, pi_walker *w, size_t index)
{
    size_t size = pi_runtime_layout.tstate_read_size;
    w->again_ok = w->tstate_again_ok = false;
    if (GROW(w->tstate_again, w->tstate_again_cap, size) != 0 ||
        region_fill_prepare(&w->chunk_again, w->chunks[0].addr, w->chunks[0].len) != 0)
        return; /* unread: the walk is tried again */
    pi_read ts = {w->tstate_addr, w->tstate_again, size, false};
    pi_read chunk = {w->chunk_again.addr, w->chunk_again.data, w->chunk_again.len, false};
    /* 3.13+: the thread state names the current frame, and the second copy follows it at
     * once: a caller in a short call has had less time to go on (see frame_confirmed).
     * 3.11/3.12: the _PyCFrame naming it is read first. */
    bool frame_in_tstate = !w->ts.cframe;
    if (round_add(round, &ts, index | PI_SPEC_BIT | PI_AGAIN_BIT) != 0 ||
        (frame_in_tstate && round_add(round, &chunk, index | PI_SPEC_BIT | PI_AGAIN_BIT | PI_CHUNK_BIT) != 0))
        return;
    if (w->ts.cframe && pi_cframe_read_size())
        remember_c_stack(w, w->ts.cframe, pi_cframe_read_size());
    for (size_t k = 0; k < w->c_stack_count; k++) {
        pi_read read = {w->c_stack[k], w->c_stack_copies[k], w->c_stack_len[k], false};
        w->c_stack_copied[k] = false;
        round_add(round, &read, index | PI_SPEC_BIT | PI_AGAIN_BIT | PI_CFRAME_BIT | (k << 16));
    }
    if (!frame_in_tstate)
        round_add(round, &chunk, index | PI_SPEC_BIT | PI_AGAIN_BIT | PI_CHUNK_BIT);
}

/* The walker's read-ahead: the spec frames and chunks, and the 3.11/3.12 _PyCFrame. */
static void round_add_spec(round_list *round, pi_walker *w, size_t index)
{
    size_t frame_size = pi_runtime_layout.frame_read_size;
    w->spec_round = w->rounds_taken;
    round_add_cframe(round, w, index);
    /* outermost first (the list is in walk order): a chain found in them was copied
     * callers before callees (see chain_read_same) */
    for (size_t k = w->spec_count; k-- > 0;) {
        pi_read spec = {w->spec[k], w->spec_data + k * frame_size, frame_size, false};
        if (round_add(round, &spec, index | PI_SPEC_BIT) != 0)
            break;
    }
    for (size_t k = 0; k < w->spec_chunk_count; k++) {
        pi_read spec = {w->spec_chunk[k], w->spec_chunks[k].data, w->spec_chunk_len[k], false};
        if (round_add(round, &spec, index | PI_SPEC_BIT | PI_CHUNK_BIT | (k << 16)) != 0)
            break;
    }
}

void round_add_walker(round_list *round, pi_walker *w, size_t index, bool spec)
{
    pi_read read;
    w->main_round = w->rounds_taken;
    if (walker_need(w, &read) && round_add(round, &read, index) != 0)
        walker_give_up(w, PI_FAIL_MEMORY);
    if (w->current_chunk_pending)
        round_add_again(round, w, index);
    if (spec || w->respec) {
        w->respec = false;
        round_add_spec(round, w, index);
    }
}

void run_rounds(pi_state *s, size_t pending)
{
    pi_scratch *x = s->scratch;
    size_t frame_size = pi_runtime_layout.frame_read_size;
    while (pending > 0) {
        s->stats.syscalls += (uint64_t)pi_read_batch(x->reads, pending);
        for (size_t r = 0; r < pending; r++) {
            size_t owner = x->owner[r];
            if (owner & PI_AGAIN_BIT) {
                pi_walker *w = &s->walkers[owner & 0xffff];
                size_t k = (owner & ~(PI_SPEC_BIT | PI_AGAIN_BIT | PI_CFRAME_BIT)) >> 16;
                if (owner & PI_CFRAME_BIT)
                    w->c_stack_copied[k] = x->reads[r].ok;
                else
                    *(owner & PI_CHUNK_BIT ? &w->again_ok : &w->tstate_again_ok) = x->reads[r].ok;
            } else if (owner & PI_CFRAME_BIT) {
                s->walkers[owner & 0xffff].cframe_ok = x->reads[r].ok;
            } else if (owner & PI_CHUNK_BIT) {
                pi_walker *w = &s->walkers[owner & 0xffff];
                w->spec_chunk_ok[(owner & ~(PI_SPEC_BIT | PI_CHUNK_BIT)) >> 16] = x->reads[r].ok;
            } else if (owner & PI_SPEC_BIT) {
                pi_walker *w = &s->walkers[owner & ~PI_SPEC_BIT];
                w->spec_ok[((uint8_t *)x->reads[r].dst - w->spec_data) / frame_size] = x->reads[r].ok;
            }
        }
        round_list next = {&x->next_reads, &x->next_owner, &x->next_reads_cap, &x->next_owner_cap, 0};
        for (size_t r = 0; r < pending; r++) {
            if (x->owner[r] & PI_SPEC_BIT)
                continue;
            size_t index = x->owner[r];
            pi_walker *w = &s->walkers[index];
            walker_take(w, &x->reads[r]);
            round_add_walker(&next, w, index, false);
        }
        size_t next_pending = next.count;
        /* swap the rounds' arrays */
        pi_read *reads = x->reads;
        size_t reads_cap = x->reads_cap;
        x->reads = x->next_reads;
        x->reads_cap = x->next_reads_cap;
        x->next_reads = reads;
        x->next_reads_cap = reads_cap;
        size_t *owner = x->owner;
        size_t owner_cap = x->owner_cap;
        x->owner = x->next_owner;
        x->owner_cap = x->next_owner_cap;
        x->next_owner = owner;
        x->next_owner_cap = owner_cap;
        pending = next_pending;
    }
}

/* Whether the thread's stack is the one its walker holds, with no read at all: on a GIL
 * build a thread changes its frames only while it holds the GIL, and it can take the
 * GIL only by becoming its last holder, which counts a switch unless it was the last
 * holder already. Not the last holder when the walker's stack was copied, nor now, and
 * no switch in between: it never held the GIL in between (a thread blocked in C, waiting
 * for a lock or for I/O, or for the GIL itself). Async mode reads every stack (which task
 * runs decides what it records). In a forked child nothing kept in the parent holds: a new
 * thread there may get a parent thread's state address and id before it first runs, and
 * the child's GIL counts no switch for the thread that forked. */
static bool stack_unmoved(const pi_state *s, const pi_walker *w, uintptr_t addr, const pi_tstate *ts)
{
    const pi_scratch *x = s->scratch;
    return w->kept_sample && w->kept_unheld && !s->async.enabled && x->gil_read &&
           x->gil_holder != addr && x->gil_switches == w->kept_switches && w->tstate_addr == addr &&
           w->ts.thread_id == ts->thread_id && w->kept_pid == pi_own_pid();
}

void begin_walk(pi_state *s, round_list *round, size_t index, uintptr_t addr, const pi_tstate *ts,
                bool followed, int in_context)
{
    pi_walker *w = &s->walkers[index];
    w->gil_state = PI_GIL_UNKNOWN;
    w->followed = followed;
    w->in_context = in_context;
    w->context_before = ts->context;
    w->reused = stack_unmoved(s, w, addr, ts);
    if (w->reused) {
        w->ts = *ts;
        w->state = WALK_DONE;
        w->doubtful = false;
        return;
    }
    walker_start(w, addr, ts);
    /* 3.9/3.10: the thread state is read again in the round that reads ahead, just before
     * the frames: a short call named by the one read a moment ago has often returned
     * by the time its frame is read */
    if (!pi_runtime_layout.frames_in_chunks && w->state == WALK_FRAMES)
        w->state = WALK_RETRY;
    round_add_walker(round, w, index, true);
}
