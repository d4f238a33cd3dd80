/*
 * stacks.c: one tick of the sampler.
 *
 * Reads the interpreter's list of thread states, then walks every sampled thread's
 * frame chain in lock-step: each round makes one vectored read carrying, for every
 * thread still walking, the next thing it needs (a data-stack chunk, a frame outside
 * the chunks, or a 3.11/3.12 _PyCFrame). Frames inside copied chunks are parsed with
 * no syscall at all. Then the code objects on all stacks are validated in one more
 * batched read (codes.c), and each complete stack is added to the trie.
 * Frames that had to be read one by one (3.9/3.10 frames, generators, older chunks)
 * are remembered and read speculatively in the first round of the next tick: a
 * stack that did not change much costs a few syscalls whatever its depth.
 * A thread whose stack fails any check is dropped from this tick and counted.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define PI_MAX_THREADS 4096
#define PI_MAX_CHUNKS 256 /* 4 MB of data stack: ~30,000 small frames */
#define PI_CHUNK_READ (16 * 1024)        /* CPython's DATA_STACK_CHUNK_SIZE */
#define PI_MAX_CHUNK_BYTES (8u << 20)    /* larger "used" sizes are corrupt */
#define PI_RETRIES 3 /* fresh walks of a thread whose chain changed under the read */
#define PI_SPEC_BIT ((size_t)1 << (sizeof(size_t) * 8 - 1))
#define PI_CHUNK_BIT ((size_t)1 << (sizeof(size_t) * 8 - 2))
#define PI_CFRAME_BIT ((size_t)1 << (sizeof(size_t) * 8 - 3))
#define PI_LONG_LIVED 256 /* a direct-mapped cache, emptied every 1024 ticks */
#define PI_MAX_LEAF_READ (32 * 1024) /* a 3.9/3.10 frame object with its value stack */

/* Grows *array to at least n items of `size` bytes; 0, or -1 when out of memory. */
static int grow(void **array, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *p = realloc(*array, c * size);
    if (!p)
        return -1;
    *array = p;
    *cap = c;
    return 0;
}
#define GROW(array, cap, n) grow((void **)&(array), &(cap), (n), sizeof *(array))

/* WALK_RETRY: the chain changed under us; the thread state is read again and the
 * walk restarts once, which turns most torn reads into good samples. */
enum walk_state { WALK_CFRAME, WALK_FRAMES, WALK_RETRY, WALK_DONE, WALK_FAILED, WALK_LEFT };
/* WALK_LEFT: a thread followed into the profiled async context left it while sampled */

typedef struct {
    uintptr_t addr;
    size_t len;
    uint8_t *data;
    size_t cap;
} region;

struct pi_walker {
    uintptr_t tstate_addr;
    pi_tstate ts;
    enum walk_state state;
    uintptr_t cur;
    region chunks[PI_MAX_CHUNKS];
    size_t chunk_count;
    uintptr_t older_chunk;      /* next chunk to copy when a frame is not in those we have */
    bool chunk_pending;         /* this round reads older_chunk */
    bool current_chunk_pending; /* this round reads the current chunk */
    bool want_current_chunk;    /* the next read is the current chunk */
    int attempts;
    /* the outermost frame of this thread's chain, once known, and where the first
     * attempt of this tick ended */
    uintptr_t bottom, first_end;
    /* 3.11/3.12: the _PyCFrame, read ahead with the current chunk */
    uint8_t cframe_buf[PI_MAX_CFRAME_READ];
    bool cframe_read_ahead, cframe_ok;
    uint8_t *tstate_buf;
    size_t tstate_buf_cap;
    uint8_t scratch[PI_MAX_FRAME_READ];
    /* frames found, leaf first: where each is, its code, instruction and function */
    uintptr_t *frames, *codes, *instrs, *funcs;
    int *lastis;
    size_t depth, frames_cap, codes_cap, instrs_cap, funcs_cap, lastis_cap;
    bool doubtful; /* a frame's code may have been another one's, or a call torn (rewalk_doubtful) */
    /* Brent's cycle detection over the frame chain */
    uintptr_t brent_mark;
    size_t brent_power, brent_steps;
    /* frames read one by one: `solo` this tick, `spec` (read ahead) from last tick */
    uintptr_t *solo, *spec;
    size_t solo_count, solo_cap, spec_count, spec_cap;
    uint8_t *spec_data;
    size_t spec_data_cap;
    bool *spec_ok;
    size_t spec_ok_cap;
    uint32_t *spec_slots;
    size_t spec_slot_count, spec_slots_cap, spec_hint;
    bool respec; /* the next round reads the spec list again */
    /* older data-stack chunks copied last tick, read ahead the same way */
    uintptr_t solo_chunk[PI_MAX_CHUNKS], spec_chunk[PI_MAX_CHUNKS];
    size_t solo_chunk_len[PI_MAX_CHUNKS], spec_chunk_len[PI_MAX_CHUNKS];
    size_t solo_chunk_count, spec_chunk_count;
    region spec_chunks[PI_MAX_CHUNKS];
    bool spec_chunk_ok[PI_MAX_CHUNKS];
    /* the innermost Python frame, and what it calls if it stands on a call (the
     * identity of a C function's leaf, or -1) */
    uintptr_t leaf_frame, leaf_valuestack;
    int64_t leaf_callee;
    bool leaf_ended; /* leaf_callee is unknown because the call ended while being read */
    /* the call it stood on last tick (frame, code, instruction, slots) and how that
     * was named, taken again while it stands on the same one */
    uintptr_t memo_frame;
    pi_frame memo_seen;
    uint8_t memo_slots[PI_SLOTS_READ];
    pi_callee_memo leaf_memo;
    /* 3.9/3.10: when the innermost frame is last tick's, its frame object is read whole,
     * value stack included, so that a call's slots are copied in the same read as the
     * frame standing on it, as 3.11+ copies them with the data stack (`leaf_copied`:
     * this tick's innermost frame is that copy) */
    region leaf_whole;
    bool leaf_pending, leaf_copied;
    /* async mode: the stack was replaced by the profiled task's await chain under the
     * start prefix, ending in this synthetic leaf (UINT32_MAX: the stack is real) */
    uint32_t async_leaf;
    bool followed;  /* recorded only while it runs in the profiled async context */
    /* the last sample built from a copied stack (kept_sample: there is one), with the
     * GIL's switch count read before that copy, whether this thread was not the GIL's
     * last holder then, and the process it was made in (see stack_unmoved) */
    uint32_t *kept_identities;
    int32_t *kept_lines;
    size_t kept_depth, kept_identities_cap, kept_lines_cap;
    bool kept_sample, kept_truncated, kept_unheld;
    uint64_t kept_switches;
    pid_t kept_pid;
    bool reused; /* this tick's sample is that one */
    int in_context; /* async mode: PI_IN_CONTEXT... of its Context, before and after the walk */
    uintptr_t context_before; /* the Context that was looked up, read before the walk */
};

typedef struct {
    uintptr_t *addrs; /* open-addressing set of code addresses (0 = empty) */
    uint32_t *index;  /* slot -> index into distinct/entries */
    size_t size, addrs_cap, index_cap;
    uintptr_t *distinct;
    pi_code_entry **entries;
    size_t count, distinct_cap, entries_cap;
} code_set;

typedef struct {
    int found, found_after; /* pi_context_values' found */
    uintptr_t value, value_after;
    bool lost; /* its Context could not be read again */
} walked_context;

struct pi_scratch {
    /* the thread list */
    uintptr_t *cache; /* thread-state addresses seen last tick */
    size_t cache_len, cache_cap;
    uint8_t *tstate_bufs;
    size_t tstate_bufs_cap;
    uintptr_t *addrs;
    size_t addrs_cap;
    pi_tstate *states;
    size_t states_cap;
    pi_read *list_reads;
    size_t list_reads_cap;
    /* the GIL as read with the list this tick (gil_read: it was) */
    uint8_t gil_buf[256];
    bool gil_read;
    uintptr_t gil_holder;
    uint64_t gil_switches;
    /* the lock-step rounds */
    pi_read *reads, *next_reads;
    size_t reads_cap, next_reads_cap;
    size_t *owner, *next_owner;
    size_t owner_cap, next_owner_cap;
    /* recording */
    code_set codes;
    pi_callee_query *queries;
    size_t *query_walker;
    size_t queries_cap, query_walker_cap;
    uint32_t identities[PI_MAX_DEPTH + 1];
    int32_t lines[PI_MAX_DEPTH + 1];
    /* async mode: the profiled task's await chain as last read, outermost first */
    uintptr_t chain_codes[PI_MAX_AWAIT_DEPTH], chain_instrs[PI_MAX_AWAIT_DEPTH];
    int chain_lastis[PI_MAX_AWAIT_DEPTH];
    long chain_len; /* 0: not read yet */
    pi_chain_cache chain_cache;
    /* ...and the sample last built from it in a shared tick (kept_chain_depth 0: none),
     * taken again while the chain reads the same and no code object died */
    uintptr_t *kept_chain;   /* codes, then instrs, then lastis, of kept_chain_len frames */
    uint32_t *kept_chain_ids;
    int32_t *kept_chain_lines;
    size_t kept_chain_cap, kept_chain_ids_cap, kept_chain_lines_cap;
    long kept_chain_len;
    size_t kept_chain_depth;
    uint32_t kept_chain_leaf;
    uint64_t kept_chain_deaths;
    /* per thread of the list: in the async context?; per walker: its Context now */
    uintptr_t *contexts;
    int *context_states;
    size_t contexts_cap, context_states_cap;
    pi_read *confirm_reads;
    size_t *confirm_owner;
    size_t confirm_reads_cap, confirm_owner_cap;
    uint8_t (*headers)[16]; /* object headers read by find_torn_calls */
    size_t headers_cap;
    /* pi_tick_group: each target's wall time since its previous tick */
    int64_t *group_walls;
    size_t group_walls_cap;
    /* pi_tick_async_group: the shared variable in each listed thread's Context, and in
     * each walked thread's before and after its walk */
    int *list_found;
    uintptr_t *list_values;
    walked_context *walked;
    size_t list_found_cap, list_values_cap, walked_cap;
    /* ...and the targets' await-chain read-aheads, read together */
    pi_read *ahead_reads;
    size_t *ahead_first, *ahead_count;
    size_t ahead_reads_cap, ahead_first_cap, ahead_count_cap;
    /* callables of calls through C seen lately that live long (classes, builtins):
     * no need to read their type again (find_torn_calls) */
    uintptr_t long_lived[PI_LONG_LIVED];
};

int pi_state_init(pi_state *s, unsigned long only_thread, int64_t interval_ns, size_t timeline_budget)
{
    memset(s, 0, sizeof *s);
    s->only_thread = only_thread;
    s->truncated_identity = -1;
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

static int ensure_walkers(pi_state *s, size_t n)
{
    size_t old = s->walker_cap;
    if (GROW(s->walkers, s->walker_cap, n) != 0)
        return -1;
    memset(s->walkers + old, 0, (s->walker_cap - old) * sizeof *s->walkers);
    return 0;
}

static int region_fill_prepare(region *r, uintptr_t addr, size_t len)
{
    if (GROW(r->data, r->cap, len) != 0)
        return -1;
    r->addr = addr;
    r->len = len;
    return 0;
}

/* Adds a frame found at `addr` (0: not read from a thread's chain). */
static int push_frame(pi_walker *w, uintptr_t addr, const pi_frame *f)
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

/* ---- speculative reads of frames that were read one by one last tick ---- */

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

/* ---- walking ---- */

/* The copy of `size` bytes at addr, if region r holds them. */
static const uint8_t *region_find(const region *r, uintptr_t addr, size_t size)
{
    return addr >= r->addr && r->len >= size && addr - r->addr <= r->len - size ? r->data + (addr - r->addr) : NULL;
}

/* The copy of `size` bytes at addr, if one of the copied chunks holds them. */
static const uint8_t *find_in_chunks(const pi_walker *w, uintptr_t addr, size_t size)
{
    for (size_t i = 0; i < w->chunk_count; i++) {
        const uint8_t *copy = region_find(&w->chunks[i], addr, size);
        if (copy)
            return copy;
    }
    return NULL;
}

static void walker_fail(pi_walker *w)
{
    w->state = w->attempts++ < PI_RETRIES ? WALK_RETRY : WALK_FAILED;
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
        walker_fail(w);
    } else if (!w->bottom || here == w->bottom || (w->attempts > 0 && here == w->first_end)) {
        w->bottom = here;
        w->state = WALK_DONE;
    } else {
        w->first_end = here;
        walker_fail(w);
    }
}

/* Takes one frame from `buf` and moves to the previous one. */
static void step_frame(pi_walker *w, const uint8_t *buf)
{
    pi_frame f;
    if (w->depth >= PI_MAX_WALK || pi_parse_frame(buf, &f) != 0) {
        walker_fail(w);
        return;
    }
    if (f.kind == PI_FRAME_PYTHON && w->depth == 0) {
        w->leaf_frame = w->cur;
        w->leaf_valuestack = f.valuestack;
    }
    if (f.kind == PI_FRAME_PYTHON && push_frame(w, w->cur, &f) != 0) {
        walker_fail(w);
        return;
    }
    uintptr_t next = f.previous;
    if (next != 0 && next == w->brent_mark) {
        walker_fail(w); /* the chain loops: torn read */
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
        walker_fail(w);
    else
        w->state = WALK_DONE;
}

/* Advances through copied memory; returns the read this walker needs next, if any. */
static bool walker_need(pi_walker *w, pi_read *read)
{
    size_t frame_size = pi_runtime_layout.frame_read_size;
    if (w->state == WALK_RETRY) {
        size_t size = pi_runtime_layout.tstate_read_size;
        spec_refresh(w);
        if (GROW(w->tstate_buf, w->tstate_buf_cap, size) != 0) {
            w->state = WALK_FAILED;
            return false;
        }
        *read = (pi_read){w->tstate_addr, w->tstate_buf, size, false};
        return true;
    }
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
        if (!copy && !(w->older_chunk && w->chunk_count < PI_MAX_CHUNKS)) {
            copy = spec_find(w, w->cur);
            if (copy)
                remember_solo(w, w->cur);
        }
        if (copy) {
            step_frame(w, copy);
            continue;
        }
        if (w->older_chunk && w->chunk_count < PI_MAX_CHUNKS && older_chunk_from_spec(w))
            continue;
        if (w->older_chunk && w->chunk_count < PI_MAX_CHUNKS) {
            region *r = &w->chunks[w->chunk_count];
            if (region_fill_prepare(r, w->older_chunk, PI_CHUNK_READ) != 0) {
                walker_fail(w);
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

static void take_current_chunk(pi_walker *w, const pi_read *read)
{
    w->current_chunk_pending = false;
    region *r = &w->chunks[0];
    uintptr_t older = 0;
    size_t used = 0;
    /* the current chunk's saved "top" is stale; only its link to the older one counts */
    if (read->ok && read->len >= pi_chunk_header_size()) {
        pi_parse_chunk(r->data, &older, &used);
        w->chunk_count = 1;
        w->older_chunk = older;
    }
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

static void walker_restart(pi_walker *w, const pi_tstate *ts);

static void walker_take(pi_walker *w, const pi_read *read)
{
    if (w->state == WALK_RETRY) {
        pi_tstate ts;
        if (!read->ok || pi_parse_tstate(w->tstate_buf, w->tstate_addr, &ts) != 0 || ts.thread_id != w->ts.thread_id)
            w->state = WALK_FAILED;
        else
            walker_restart(w, &ts);
    } else if (w->current_chunk_pending) {
        take_current_chunk(w, read);
    } else if (w->chunk_pending) {
        take_older_chunk(w, read);
    } else if (w->leaf_pending) {
        w->leaf_pending = false;
        w->leaf_copied = read->ok;
        if (read->ok) {
            step_frame(w, w->leaf_whole.data);
        } else {
            w->leaf_whole.len = 0; /* a smaller frame object now: read as any other frame */
            walker_fail(w);
        }
    } else if (!read->ok) {
        walker_fail(w);
    } else if (w->state == WALK_CFRAME) {
        take_cframe(w, w->scratch);
    } else {
        step_frame(w, w->scratch);
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
    w->doubtful = false;
    w->leaf_pending = false;
    w->leaf_copied = false;
    w->brent_mark = 0;
    w->brent_power = 1;
    w->brent_steps = 0;
    w->cur = ts->frame;
    w->state = ts->cframe ? WALK_CFRAME : (ts->frame ? WALK_FRAMES : WALK_DONE);
    if (pi_runtime_layout.frames_in_chunks && ts->chunk && ts->chunk_top > ts->chunk &&
        ts->chunk_top - ts->chunk <= PI_MAX_CHUNK_BYTES && w->state != WALK_DONE) {
        /* the current chunk's used part: most frames are in it */
        if (region_fill_prepare(&w->chunks[0], ts->chunk, ts->chunk_top - ts->chunk) != 0)
            w->state = WALK_FAILED;
        else
            w->want_current_chunk = true;
    }
}

/* Walks again from a fresh thread state (read with a fresh copy of the spec list). */
static void walker_restart(pi_walker *w, const pi_tstate *ts)
{
    walker_reset(w, ts);
}

/* Starts a walker on a thread; returns its first read. */
static bool walker_start(pi_walker *w, uintptr_t tstate_addr, const pi_tstate *ts, pi_read *read)
{
    bool same_thread = w->tstate_addr == tstate_addr && w->ts.thread_id == ts->thread_id;
    spec_prepare(w, same_thread);
    if (!same_thread) {
        w->bottom = 0;
        w->leaf_memo.kind = PI_MEMO_NONE;
    }
    w->first_end = 0;
    w->tstate_addr = tstate_addr;
    w->attempts = 0;
    w->async_leaf = UINT32_MAX;
    walker_reset(w, ts);
    return walker_need(w, read);
}

/* ---- the thread list ---- */

/* Reads the thread list: the states cached from last tick are read speculatively in
 * one batch with the list head; only a changed list costs a read per new thread. */
static size_t read_threads(pi_state *s, uintptr_t **addrs_out, pi_tstate **states_out)
{
    pi_scratch *x = s->scratch;
    size_t ts_size = pi_runtime_layout.tstate_read_size;
    size_t cached = x->cache_len < PI_MAX_THREADS ? x->cache_len : PI_MAX_THREADS;
    x->gil_read = false;
    if (GROW(x->tstate_bufs, x->tstate_bufs_cap, (cached + 1) * ts_size) != 0 ||
        GROW(x->list_reads, x->list_reads_cap, cached + 2) != 0)
        return 0;
    uintptr_t head = 0;
    pi_read *reads = x->list_reads;
    reads[0] = (pi_read){pi_runtime_layout.thread_head_addr, &head, sizeof head, false};
    for (size_t i = 0; i < cached; i++)
        reads[i + 1] = (pi_read){x->cache[i], x->tstate_bufs + i * ts_size, ts_size, false};
    /* and the GIL, read before any stack is copied (see stack_unmoved) */
    size_t gil_size = pi_gil_read_size();
    bool gil_wanted = pi_runtime_layout.gil_addr && gil_size <= sizeof x->gil_buf;
    reads[cached + 1] = (pi_read){pi_runtime_layout.gil_addr, x->gil_buf, gil_wanted ? gil_size : 0, false};
    s->stats.syscalls += (uint64_t)pi_read_batch(reads, cached + 2);
    x->gil_read = gil_wanted && reads[cached + 1].ok;
    if (x->gil_read)
        pi_parse_gil(x->gil_buf, &x->gil_holder, &x->gil_switches);
    if (!reads[0].ok)
        return 0;

    size_t n = 0;
    uint8_t *one = x->tstate_bufs + cached * ts_size;
    for (uintptr_t addr = head; addr && n < PI_MAX_THREADS; n++) {
        if (GROW(x->addrs, x->addrs_cap, n + 1) != 0 || GROW(x->states, x->states_cap, n + 1) != 0)
            break;
        const uint8_t *buf;
        if (n < cached && x->cache[n] == addr && reads[n + 1].ok) {
            buf = x->tstate_bufs + n * ts_size;
        } else {
            if (pi_read_exact(addr, one, ts_size) != 0)
                break; /* the thread ended while we read: the rest waits for next tick */
            s->stats.syscalls++;
            buf = one;
        }
        x->addrs[n] = addr;
        pi_parse_tstate(buf, addr, &x->states[n]);
        addr = x->states[n].next;
        /* a state pointing back into the list is a torn read */
        for (size_t k = 0; k <= n && addr; k++)
            if (x->addrs[k] == addr)
                addr = 0;
    }
    if (GROW(x->cache, x->cache_cap, n) == 0) {
        memcpy(x->cache, x->addrs, n * sizeof *x->addrs);
        x->cache_len = n;
    }
    *addrs_out = x->addrs;
    *states_out = x->states;
    return n;
}

/* ---- codes on the stacks ---- */

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

static pi_code_entry *code_entry(const code_set *set, uintptr_t code)
{
    size_t slot = code_slot(set, code);
    return set->addrs[slot] ? set->entries[set->index[slot]] : NULL;
}

/* ---- the C function a thread is in ---- */

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

/* For every thread whose innermost frame stands on a call: what it calls
 * (w->leaf_callee), all threads' reads batched together (callees.c). */
static void name_leaves(pi_state *s, size_t walker_count)
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

/* ---- the tick ---- */

/* Why a walked stack makes no sample. */
enum { BUILD_DROPPED = -1, BUILD_DROPPED_CODE = -2 };

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

static void count_drop(pi_state *t, long why)
{
    t->stats.dropped++;
    if (why == BUILD_DROPPED_CODE)
        t->stats.dropped_code++;
}

/* The kernel tid of a walked thread (3.9/3.10 thread states do not record it). */
static unsigned long walked_native_id(const pi_walker *w)
{
    return pi_runtime_layout.has_native_thread_id ? w->ts.native_id : pi_native_id_of(w->ts.thread_id);
}

/* Adds a built sample of thread `w` to `t`'s tree: `wall_ns` since t's previous tick,
 * the thread's CPU clock now `cpu_now` (-1: unknown). */
static void add_sample(pi_state *t, const pi_walker *w, unsigned long native_id, const uint32_t *identities,
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
    if (pi_tree_add(&t->tree, r, identities, lines, depth, wall_ns, cpu_ns) != 0) {
        t->stats.dropped++;
        return;
    }
    t->stats.samples++;
}

/* The sample of a walked thread in x->identities and x->lines (build_sample); for a
 * thread whose stack has not moved (stack_unmoved), the one built when it was copied. */
static long sample_of(pi_state *s, pi_walker *w, bool *truncated)
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

/* Records a walked thread's sample, its CPU clock read now `cpu_now` (-1: unknown). */
static void record_walked(pi_state *s, pi_walker *w, int64_t wall_ns, int64_t now_ns, unsigned long native_id,
                          int64_t cpu_now)
{
    bool truncated;
    long depth = sample_of(s, w, &truncated);
    if (depth < 0) {
        count_drop(s, depth);
        return;
    }
    s->stats.truncated += truncated;
    s->stats.calls_ended += w->leaf_ended;
    add_sample(s, w, native_id, s->scratch->identities, s->scratch->lines, (size_t)depth, wall_ns, now_ns, cpu_now);
}

static void record_thread(pi_state *s, pi_walker *w, int64_t wall_ns, int64_t now_ns)
{
    unsigned long native_id = walked_native_id(w);
    record_walked(s, w, wall_ns, now_ns, native_id, native_id ? pi_thread_cpu_ns(native_id) : -1);
}

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

static void attribute_async(pi_state *s, pi_walker *w)
{
    uint32_t leaf = 0;
    long chain = async_chain(s, w, w->in_context, &leaf);
    if (chain == ASYNC_LOST || (chain >= 0 && push_chain(s, w, chain, leaf) != 0))
        w->state = WALK_FAILED;
}

/* Async mode: which threads of the list run in the profiled context (x->context_states). */
static int classify_threads(pi_state *s, const pi_tstate *states, size_t thread_count)
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

/* Async mode: a thread's Context was read with its thread state, before the walk, and
 * the loop switches Contexts at every task step. It is read again after the walk (one
 * vectored read for all); where it changed, the new one is looked up, and a thread that
 * crossed into or out of the profiled context while its stack was read loses this
 * sample (the profiled thread's counted as dropped, a followed one's left out). */
static void confirm_contexts(pi_state *s, size_t walker_count)
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
        } else if (x->contexts[r] != w->context_before) {
            x->contexts[changed] = x->contexts[r];
            x->confirm_owner[changed++] = x->confirm_owner[r];
        }
    }
    s->stats.syscalls += (uint64_t)pi_context_states(&s->async, x->contexts, changed, x->context_states);
    for (size_t r = 0; r < changed; r++) {
        pi_walker *w = &s->walkers[x->confirm_owner[r]];
        if (x->context_states[r] != w->in_context)
            w->state = w->followed ? WALK_LEFT : WALK_FAILED;
    }
}

/* Adds a read to the round; `owner` is the walker index, with PI_SPEC_BIT for a
 * speculative frame read. */
typedef struct {
    pi_read **reads;
    size_t **owner;
    size_t *reads_cap, *owner_cap;
    size_t count;
} round_list;

static int round_add(round_list *round, const pi_read *read, size_t owner)
{
    if (grow((void **)round->reads, round->reads_cap, round->count + 1, sizeof **round->reads) != 0 ||
        grow((void **)round->owner, round->owner_cap, round->count + 1, sizeof **round->owner) != 0)
        return -1;
    (*round->reads)[round->count] = *read;
    (*round->owner)[round->count] = owner;
    round->count++;
    return 0;
}

/* The walker's read-ahead: the spec frames and chunks, and the 3.11/3.12 _PyCFrame. */
static void round_add_spec(round_list *round, pi_walker *w, size_t index)
{
    size_t frame_size = pi_runtime_layout.frame_read_size;
    if (w->state == WALK_CFRAME && pi_cframe_read_size() <= sizeof w->cframe_buf) {
        pi_read cframe = {w->ts.cframe, w->cframe_buf, pi_cframe_read_size(), false};
        w->cframe_read_ahead = round_add(round, &cframe, index | PI_SPEC_BIT | PI_CFRAME_BIT) == 0;
        w->cframe_ok = false;
    }
    for (size_t k = 0; k < w->spec_count; k++) {
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

/* The lock-step rounds from the first (in x->reads): one vectored read per round
 * serves every thread still walking. */
static void run_rounds(pi_state *s, size_t pending)
{
    pi_scratch *x = s->scratch;
    size_t frame_size = pi_runtime_layout.frame_read_size;
    while (pending > 0) {
        s->stats.syscalls += (uint64_t)pi_read_batch(x->reads, pending);
        for (size_t r = 0; r < pending; r++) {
            size_t owner = x->owner[r];
            if (owner & PI_CFRAME_BIT) {
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
            pi_read read;
            if (walker_need(w, &read) && round_add(&next, &read, index) != 0)
                w->state = WALK_FAILED;
            if (w->respec) {
                w->respec = false;
                round_add_spec(&next, w, index);
            }
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
            x->confirm_reads[n] = (pi_read){object, NULL, sizeof x->headers[0], false};
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
        pi_read read;
        w->state = WALK_RETRY;
        if (walker_need(w, &read) && round_add(&round, &read, i) != 0)
            w->state = WALK_FAILED;
        if (w->respec) {
            w->respec = false;
            round_add_spec(&round, w, i);
        }
    }
    if (any)
        run_rounds(s, round.count);
    return any;
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

/* Starts a walker on a thread of the list, its first reads added to the round. */
static void begin_walk(pi_state *s, round_list *round, size_t index, uintptr_t addr, const pi_tstate *ts,
                       bool followed, int in_context)
{
    pi_walker *w = &s->walkers[index];
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
    pi_read read;
    if (walker_start(w, addr, ts, &read) && round_add(round, &read, index) != 0)
        w->state = WALK_FAILED;
    round_add_spec(round, w, index);
}

/* Validates the code objects of every walked stack in one batch, walking doubtful ones
 * again (rewalk_doubtful); false when the codes could not be resolved at all. */
static bool validate_walks(pi_state *s, size_t walker_count)
{
    code_set *codes = &s->scratch->codes;
    if (resolve_codes(s, walker_count, codes) != 0)
        return false;
    if (rewalk_doubtful(s, walker_count, false)) {
        if (resolve_codes(s, walker_count, codes) != 0)
            return false;
        rewalk_doubtful(s, walker_count, true);
    }
    return true;
}

void pi_tick(pi_state *s, int64_t now_ns)
{
    pi_scratch *x = s->scratch;
    uintptr_t *addrs = NULL;
    pi_tstate *states = NULL;
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
        } else if (w->state != WALK_LEFT) {
            s->stats.dropped++;
            s->stats.dropped_walk++;
        }
    }
}

/* ---- one tick for several profilers ---- */

/* Whether `g` samples thread `thread_id` this tick (a target with no time since its
 * previous tick, as the tick that starts it, records nothing). */
static bool target_wants(const pi_state *g, int64_t wall_ns, unsigned long thread_id)
{
    return wall_ns > 0 && (g->only_thread == 0 || g->only_thread == thread_id);
}

/* The reader's identities as `g`'s, interned in g's table at first use and remembered
 * (g->identity_map, valid for the reader's generation). */
static int translate_identities(pi_state *g, const pi_state *r, const uint32_t *from, uint32_t *to, size_t depth)
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

/* Hands a walked thread's sample (or its loss) to every target that samples it. */
static void hand_out(pi_state *r, pi_walker *w, pi_state **targets, size_t count, int64_t now_ns)
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
            g->stats.dropped_walk += walk_failed;
            continue;
        }
        if (!cpu_read) {
            native_id = walked_native_id(w);
            cpu_now = native_id ? pi_thread_cpu_ns(native_id) : -1;
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

/* The tick begins for each target: its wall time since its previous tick in
 * x->group_walls. */
static int start_targets(pi_scratch *x, pi_state **targets, size_t count, int64_t now_ns)
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
    }
    return 0;
}

void pi_tick_group(pi_state *r, pi_state **targets, size_t count, int64_t now_ns)
{
    pi_scratch *x = r->scratch;
    uint64_t syscalls_before = r->stats.syscalls;
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
            if (!resolved)
                r->walkers[i].state = WALK_FAILED;
            hand_out(r, &r->walkers[i], targets, count, now_ns);
        }
    }
    for (size_t t = 0; t < count; t++)
        targets[t]->stats.syscalls += r->stats.syscalls - syscalls_before;
}

/* ---- one tick for several async profilers of one thread ---- */

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
            g->stats.dropped_walk += take == TAKE_LOST || w->state != WALK_DONE;
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
            g->stats.dropped_walk++;
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
