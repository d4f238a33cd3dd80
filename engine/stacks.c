/*
 * stacks.c: one tick of the sampler.
 *
 * Reads the interpreter's list of thread states, then walks every sampled thread's
 * frame chain in lock-step: each round makes one vectored read carrying, for every
 * thread still walking, the next thing it needs (a data-stack chunk, a frame outside
 * the chunks, or a 3.11/3.12 _PyCFrame). Frames inside copied chunks are parsed with
 * no syscall at all. Then the code objects on all stacks are validated in one more
 * batched read (codes.c), and each complete stack is added to the trie.
 * A thread whose stack fails any check is dropped from this tick and counted.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define PI_MAX_THREADS 4096
#define PI_MAX_CHUNKS 64
#define PI_CHUNK_READ (16 * 1024)        /* CPython's DATA_STACK_CHUNK_SIZE */
#define PI_MAX_CHUNK_BYTES (8u << 20)    /* larger "used" sizes are corrupt */
#define PI_SCRATCH 1024

enum walk_state { WALK_CFRAME, WALK_FRAMES, WALK_DONE, WALK_FAILED };

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
    uintptr_t older_chunk; /* next chunk to copy when a frame is not in those we have */
    bool chunk_pending;    /* this round reads older_chunk */
    bool current_chunk_pending; /* this round reads the current chunk */
    uint8_t scratch[PI_SCRATCH];
    /* frames found, leaf first */
    uintptr_t *codes, *instrs;
    int *lastis;
    size_t depth, cap;
    /* Brent's cycle detection over the frame chain */
    uintptr_t brent_mark;
    size_t brent_power, brent_steps;
};

int pi_state_init(pi_state *s, unsigned long only_thread, size_t timeline_budget)
{
    memset(s, 0, sizeof *s);
    s->only_thread = only_thread;
    if (pi_codes_init(&s->codes) != 0)
        return -1;
    if (pi_tree_init(&s->tree, timeline_budget) != 0) {
        pi_codes_free(&s->codes);
        return -1;
    }
    return 0;
}

static void walker_free(pi_walker *w)
{
    for (size_t i = 0; i < PI_MAX_CHUNKS; i++)
        free(w->chunks[i].data);
    free(w->codes);
    free(w->instrs);
    free(w->lastis);
}

void pi_state_free(pi_state *s)
{
    for (size_t i = 0; i < s->walker_cap; i++)
        walker_free(&s->walkers[i]);
    free(s->walkers);
    free(s->tstate_cache);
    pi_codes_free(&s->codes);
    pi_tree_free(&s->tree);
    memset(s, 0, sizeof *s);
}

static int ensure_walkers(pi_state *s, size_t n)
{
    if (n <= s->walker_cap)
        return 0;
    size_t cap = s->walker_cap ? s->walker_cap : 8;
    while (cap < n)
        cap *= 2;
    pi_walker *grown = realloc(s->walkers, cap * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + s->walker_cap, 0, (cap - s->walker_cap) * sizeof *grown);
    s->walkers = grown;
    s->walker_cap = cap;
    return 0;
}

static int region_fill_prepare(region *r, uintptr_t addr, size_t len)
{
    if (r->cap < len) {
        uint8_t *grown = realloc(r->data, len);
        if (!grown)
            return -1;
        r->data = grown;
        r->cap = len;
    }
    r->addr = addr;
    r->len = len;
    return 0;
}

static int push_frame(pi_walker *w, const pi_frame *f)
{
    if (w->depth == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 128;
        uintptr_t *codes = realloc(w->codes, cap * sizeof *codes);
        if (codes)
            w->codes = codes;
        uintptr_t *instrs = realloc(w->instrs, cap * sizeof *instrs);
        if (instrs)
            w->instrs = instrs;
        int *lastis = realloc(w->lastis, cap * sizeof *lastis);
        if (lastis)
            w->lastis = lastis;
        if (!codes || !instrs || !lastis)
            return -1;
        w->cap = cap;
    }
    w->codes[w->depth] = f->code;
    w->instrs[w->depth] = f->instr;
    w->lastis[w->depth] = f->lasti;
    w->depth++;
    return 0;
}

/* The copy of `size` bytes at addr, if one of the copied chunks holds them. */
static const uint8_t *find_copied(const pi_walker *w, uintptr_t addr, size_t size)
{
    for (size_t i = 0; i < w->chunk_count; i++) {
        const region *r = &w->chunks[i];
        if (addr >= r->addr && r->len >= size && addr - r->addr <= r->len - size)
            return r->data + (addr - r->addr);
    }
    return NULL;
}

/* Takes one frame from `buf` and moves to the previous one. */
static void step_frame(pi_walker *w, const uint8_t *buf)
{
    pi_frame f;
    if (w->depth >= PI_MAX_DEPTH || pi_parse_frame(buf, &f) != 0) {
        w->state = WALK_FAILED;
        return;
    }
    if (f.kind == PI_FRAME_PYTHON && push_frame(w, &f) != 0) {
        w->state = WALK_FAILED;
        return;
    }
    uintptr_t next = f.previous;
    if (next == w->brent_mark) {
        w->state = WALK_FAILED; /* the chain loops: torn read */
        return;
    }
    if (++w->brent_steps == w->brent_power) {
        w->brent_mark = next;
        w->brent_power *= 2;
        w->brent_steps = 0;
    }
    w->cur = next;
    if (next == 0)
        w->state = WALK_DONE;
}

/* Advances through copied memory; returns the read this walker needs next, if any. */
static bool walker_need(pi_walker *w, pi_read *read)
{
    size_t frame_size = pi_runtime_layout.frame_read_size;
    while (w->state == WALK_FRAMES) {
        const uint8_t *copy = find_copied(w, w->cur, frame_size);
        if (copy) {
            step_frame(w, copy);
            continue;
        }
        if (w->older_chunk && w->chunk_count < PI_MAX_CHUNKS) {
            region *r = &w->chunks[w->chunk_count];
            if (region_fill_prepare(r, w->older_chunk, PI_CHUNK_READ) != 0) {
                w->state = WALK_FAILED;
                return false;
            }
            *read = (pi_read){r->addr, r->data, PI_CHUNK_READ, false};
            w->chunk_pending = true;
            return true;
        }
        *read = (pi_read){w->cur, w->scratch, frame_size, false};
        return true;
    }
    if (w->state == WALK_CFRAME) {
        *read = (pi_read){w->ts.cframe, w->scratch, pi_cframe_read_size(), false};
        return true;
    }
    return false;
}

static void walker_take_current_chunk(pi_walker *w, const pi_read *read);

static void walker_take(pi_walker *w, const pi_read *read)
{
    if (w->current_chunk_pending) {
        walker_take_current_chunk(w, read);
        return;
    }
    if (w->state == WALK_CFRAME) {
        if (!read->ok) {
            w->state = WALK_FAILED;
            return;
        }
        w->cur = pi_parse_cframe(w->scratch);
        w->state = w->cur ? WALK_FRAMES : WALK_DONE;
        return;
    }
    if (w->chunk_pending) {
        w->chunk_pending = false;
        region *r = &w->chunks[w->chunk_count];
        uintptr_t older = 0;
        size_t used = 0;
        /* an unreadable or corrupt older chunk: fall back to reading frames one by one */
        w->older_chunk = 0;
        if (!read->ok || pi_parse_chunk(r->data, &older, &used) != 0 || used > PI_MAX_CHUNK_BYTES)
            return;
        if (used > PI_CHUNK_READ) {
            if (region_fill_prepare(r, r->addr, used) != 0 || pi_read_exact(r->addr, r->data, used) != 0)
                return;
        }
        r->len = used;
        w->chunk_count++;
        w->older_chunk = older;
        return;
    }
    if (!read->ok) {
        w->state = WALK_FAILED;
        return;
    }
    step_frame(w, w->scratch);
}

/* Starts a walker on a thread: copies nothing yet, returns the first read. */
static bool walker_start(pi_walker *w, uintptr_t tstate_addr, const pi_tstate *ts, pi_read *read)
{
    w->tstate_addr = tstate_addr;
    w->ts = *ts;
    w->chunk_count = 0;
    w->older_chunk = 0;
    w->chunk_pending = false;
    w->current_chunk_pending = false;
    w->depth = 0;
    w->brent_mark = 0;
    w->brent_power = 1;
    w->brent_steps = 0;
    w->cur = ts->frame;
    w->state = ts->cframe ? WALK_CFRAME : (ts->frame ? WALK_FRAMES : WALK_DONE);
    if (pi_runtime_layout.frames_in_chunks && ts->chunk && ts->chunk_top > ts->chunk &&
        ts->chunk_top - ts->chunk <= PI_MAX_CHUNK_BYTES && w->state != WALK_DONE) {
        /* the current chunk's used part: most frames are in it */
        region *r = &w->chunks[0];
        size_t len = ts->chunk_top - ts->chunk;
        if (region_fill_prepare(r, ts->chunk, len) != 0) {
            w->state = WALK_FAILED;
            return false;
        }
        *read = (pi_read){ts->chunk, r->data, len, false};
        w->current_chunk_pending = true;
        return true;
    }
    return walker_need(w, read);
}

static void walker_take_current_chunk(pi_walker *w, const pi_read *read)
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

/* ---- the thread list ---- */

static int cache_tstates(pi_state *s, const uintptr_t *addrs, size_t n)
{
    if (n > s->tstate_cache_cap) {
        uintptr_t *grown = realloc(s->tstate_cache, n * sizeof *grown);
        if (!grown)
            return -1;
        s->tstate_cache = grown;
        s->tstate_cache_cap = n;
    }
    memcpy(s->tstate_cache, addrs, n * sizeof *addrs);
    s->tstate_cache_len = n;
    return 0;
}

/* Reads the thread list: the states cached from last tick are read speculatively in
 * one batch with the list head; only a changed list costs a read per new thread. */
static size_t read_threads(pi_state *s, uintptr_t **addrs_out, pi_tstate **states_out)
{
    static __thread uint8_t *bufs;
    static __thread size_t bufs_cap;
    static __thread uintptr_t *addrs;
    static __thread pi_tstate *states;
    static __thread size_t list_cap;
    size_t ts_size = pi_runtime_layout.tstate_read_size;
    size_t cached = s->tstate_cache_len;
    size_t want = cached + 1;

    if (bufs_cap < want) {
        uint8_t *grown = realloc(bufs, want * ts_size);
        if (!grown)
            return 0;
        bufs = grown;
        bufs_cap = want;
    }
    pi_read reads[PI_MAX_THREADS + 1];
    if (cached > PI_MAX_THREADS)
        cached = PI_MAX_THREADS;
    uintptr_t head = 0;
    reads[0] = (pi_read){pi_runtime_layout.thread_head_addr, &head, sizeof head, false};
    for (size_t i = 0; i < cached; i++)
        reads[i + 1] = (pi_read){s->tstate_cache[i], bufs + i * ts_size, ts_size, false};
    s->stats.syscalls += (uint64_t)pi_read_batch(reads, cached + 1);
    if (!reads[0].ok)
        return 0;

    size_t n = 0;
    uint8_t one[4096];
    if (ts_size > sizeof one)
        return 0;
    for (uintptr_t addr = head; addr && n < PI_MAX_THREADS; n++) {
        if (n >= list_cap) {
            size_t cap = list_cap ? list_cap * 2 : 16;
            uintptr_t *a = realloc(addrs, cap * sizeof *a);
            if (a)
                addrs = a;
            pi_tstate *st = realloc(states, cap * sizeof *st);
            if (st)
                states = st;
            if (!a || !st)
                break;
            list_cap = cap;
        }
        const uint8_t *buf;
        if (n < cached && s->tstate_cache[n] == addr && reads[n + 1].ok) {
            buf = bufs + n * ts_size;
        } else {
            if (pi_read_exact(addr, one, ts_size) != 0)
                break; /* the thread ended while we read: the rest waits for next tick */
            s->stats.syscalls++;
            buf = one;
        }
        addrs[n] = addr;
        pi_parse_tstate(buf, addr, &states[n]);
        addr = states[n].next;
        /* a state pointing back into the list is a torn read */
        for (size_t k = 0; k <= n && addr; k++)
            if (addrs[k] == addr)
                addr = 0;
    }
    cache_tstates(s, addrs, n);
    *addrs_out = addrs;
    *states_out = states;
    return n;
}

/* ---- codes on the stacks ---- */

typedef struct {
    uintptr_t *addrs;      /* open-addressing set of code addresses (0 = empty) */
    uint32_t *index;       /* slot -> index into distinct/entries */
    size_t size;
    uintptr_t *distinct;
    pi_code_entry **entries;
    size_t count, cap;
} code_set;

static size_t code_slot(const code_set *set, uintptr_t code)
{
    size_t slot = (size_t)(((uint64_t)code >> 4) * 0x9E3779B97F4A7C15ULL >> 20) & (set->size - 1);
    while (set->addrs[slot] && set->addrs[slot] != code)
        slot = (slot + 1) & (set->size - 1);
    return slot;
}

/* Collects the distinct code addresses of all walked threads and resolves them in
 * one batch. */
static int resolve_codes(pi_state *s, size_t walker_count, code_set *set)
{
    size_t total = 0;
    for (size_t i = 0; i < walker_count; i++)
        if (s->walkers[i].state == WALK_DONE)
            total += s->walkers[i].depth;
    size_t need = 64;
    while (need < total * 2)
        need *= 2;
    if (set->size < need) {
        uintptr_t *a = realloc(set->addrs, need * sizeof *a);
        if (a)
            set->addrs = a;
        uint32_t *ix = realloc(set->index, need * sizeof *ix);
        if (ix)
            set->index = ix;
        if (!a || !ix)
            return -1;
        set->size = need;
    }
    if (set->cap < total + 1) {
        uintptr_t *d = realloc(set->distinct, (total + 1) * sizeof *d);
        if (d)
            set->distinct = d;
        pi_code_entry **e = realloc(set->entries, (total + 1) * sizeof *e);
        if (e)
            set->entries = e;
        if (!d || !e)
            return -1;
        set->cap = total + 1;
    }
    memset(set->addrs, 0, set->size * sizeof *set->addrs);
    set->count = 0;
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state != WALK_DONE)
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
    return 0;
}

static pi_code_entry *code_entry(const code_set *set, uintptr_t code)
{
    size_t slot = code_slot(set, code);
    return set->addrs[slot] ? set->entries[set->index[slot]] : NULL;
}

/* ---- the tick ---- */

static void record_thread(pi_state *s, pi_walker *w, const code_set *set, int64_t wall_ns)
{
    static __thread uint32_t identities[PI_MAX_DEPTH];
    static __thread int32_t lines[PI_MAX_DEPTH];
    size_t depth = 0;
    /* root first: the walker holds the leaf first */
    for (size_t k = w->depth; k-- > 0;) {
        pi_code_entry *e = code_entry(set, w->codes[k]);
        if (!e) {
            s->stats.dropped++;
            return;
        }
        if (!pi_code_instr_traceable(e, w->instrs[k]))
            continue; /* a frame still being set up */
        identities[depth] = pi_code_identity(e);
        lines[depth] = pi_code_line(e, w->instrs[k], w->lastis[k]);
        depth++;
        if (k == 0 && depth < PI_MAX_DEPTH) {
            /* the innermost frame stands on a call: the thread is in C code */
            int64_t callee = pi_code_callee(&s->codes, e, w->instrs[0], w->lastis[0]);
            if (callee >= 0) {
                identities[depth] = (uint32_t)callee;
                lines[depth] = 0;
                depth++;
            }
        }
    }
    unsigned long native_id = w->ts.native_id;
    if (!pi_runtime_layout.has_native_thread_id)
        native_id = pi_native_id_of(w->ts.thread_id);
    pi_thread_record *t = pi_tree_thread(&s->tree, w->ts.thread_id, native_id, w->tstate_addr);
    if (!t) {
        s->stats.dropped++;
        return;
    }
    int64_t cpu_ns = 0;
    int64_t cpu_now = native_id ? pi_thread_cpu_ns(native_id) : -1;
    if (cpu_now >= 0 && t->last_cpu_ns >= 0 && cpu_now > t->last_cpu_ns)
        cpu_ns = cpu_now - t->last_cpu_ns;
    t->last_cpu_ns = cpu_now;
    if (pi_tree_add(&s->tree, t, identities, lines, depth, wall_ns, cpu_ns) != 0) {
        s->stats.dropped++;
        return;
    }
    s->stats.samples++;
}

void pi_tick(pi_state *s, int64_t now_ns)
{
    static __thread pi_read reads[PI_MAX_THREADS], next_reads[PI_MAX_THREADS];
    static __thread size_t owner[PI_MAX_THREADS], next_owner[PI_MAX_THREADS];
    static __thread code_set codes;
    uintptr_t *addrs;
    pi_tstate *states;
    size_t thread_count = read_threads(s, &addrs, &states);
    int64_t wall_ns = s->last_tick_ns ? now_ns - s->last_tick_ns : 0;
    s->last_tick_ns = now_ns;
    s->stats.ticks++;
    if (thread_count == 0 || wall_ns <= 0 || ensure_walkers(s, thread_count) != 0)
        return;

    size_t walker_count = 0, pending = 0;
    for (size_t i = 0; i < thread_count; i++) {
        if (s->only_thread && states[i].thread_id != s->only_thread)
            continue;
        pi_walker *w = &s->walkers[walker_count++];
        if (walker_start(w, addrs[i], &states[i], &reads[pending]))
            owner[pending++] = walker_count - 1;
    }

    /* lock-step rounds: one vectored read per round serves every thread */
    while (pending > 0) {
        s->stats.syscalls += (uint64_t)pi_read_batch(reads, pending);
        size_t next_pending = 0;
        for (size_t r = 0; r < pending; r++) {
            pi_walker *w = &s->walkers[owner[r]];
            walker_take(w, &reads[r]);
            if (walker_need(w, &next_reads[next_pending]))
                next_owner[next_pending++] = owner[r];
        }
        memcpy(reads, next_reads, next_pending * sizeof *reads);
        memcpy(owner, next_owner, next_pending * sizeof *owner);
        pending = next_pending;
    }

    /* validate the code objects of every stack in one batch, then record */
    if (resolve_codes(s, walker_count, &codes) != 0) {
        s->stats.dropped += walker_count;
        return;
    }
    for (size_t i = 0; i < walker_count; i++) {
        pi_walker *w = &s->walkers[i];
        if (w->state == WALK_DONE)
            record_thread(s, w, &codes, wall_ns);
        else
            s->stats.dropped++;
    }
}
