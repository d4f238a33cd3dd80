/*
 * tick.h: what the files of one tick share (tick.c, walk.c, threads.c, validate.c,
 * leaves.c, record.c, asyncmode.c): a thread's walk, the tick's scratch memory, and
 * the steps one file hands to another. Private to the engine's tick.
 */
#ifndef PI_TICK_H
#define PI_TICK_H

#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define PI_MAX_THREADS 4096
#define PI_MAX_CHUNKS 256 /* 4 MB of data stack: ~30,000 small frames */
#define PI_CHUNK_READ (16 * 1024)        /* CPython's DATA_STACK_CHUNK_SIZE */
#define PI_MAX_CHUNK_BYTES (8u << 20)    /* larger "used" sizes are corrupt */
#define PI_RETRIES 6 /* fresh walks of a thread whose chain changed under the read */
#define PI_SPEC_BIT ((size_t)1 << (sizeof(size_t) * 8 - 1))
#define PI_CHUNK_BIT ((size_t)1 << (sizeof(size_t) * 8 - 2))
#define PI_CFRAME_BIT ((size_t)1 << (sizeof(size_t) * 8 - 3))
#define PI_AGAIN_BIT ((size_t)1 << (sizeof(size_t) * 8 - 4))
#define PI_TOP_MARGIN 1024 /* bytes copied above a data stack's top: frames pushed meanwhile */
#define PI_MAX_CALLER_FRAME 4096 /* bytes searched for a callback's frame (returning_callback) */
#define PI_KNOWN_C_STACK 6 /* _PyCFrames and entry frames read between the copies */
#define PI_LEAF_CODES 8 /* code objects lately innermost on a thread (name_cleared_frame) */
#define PI_LONG_LIVED 256 /* a direct-mapped cache, emptied every 1024 ticks */
#define PI_MAX_LEAF_READ (32 * 1024) /* a 3.9/3.10 frame object with its value stack */

/* Grows *array to at least n items of `size` bytes; 0, or -1 when out of memory. */
static inline int grow(void **array, size_t *cap, size_t n, size_t size)
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
 * walk restarts (up to PI_RETRIES times), which turns most torn reads into good samples. */
enum walk_state { WALK_CFRAME, WALK_FRAMES, WALK_CONFIRM, WALK_RETRY, WALK_DONE, WALK_FAILED, WALK_LEFT, WALK_CROSSED };
/* WALK_CONFIRM: 3.9/3.10, the chain walked is read again whole in one round
 * (confirm_chain_read) */
/* WALK_LEFT: a thread followed into the profiled async context left it while sampled;
 * WALK_CROSSED: the profiled thread crossed into or out of it while read, or its task
 * could not be placed (async mode: a dropped sample, counted apart) */

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
    /* 3.11+: the current chunk is copied twice in one syscall, with the thread state
     * (and what it keeps on its C stack, below) read in between: the walk starts at the
     * frame current between the copies, and what lies under the innermost frame's caller
     * must read the same in both (start_between_copies, frame_confirmed; confirm_chain:
     * to be checked, chunk_confirmed: checked). */
    region chunk_again;
    uint8_t *tstate_again;
    size_t tstate_again_cap;
    bool again_ok, tstate_again_ok, confirm_chain, chunk_confirmed;
    uintptr_t top_again, start_frame;
    /* bytes copied above the current chunk's top: doubled each time the thread pushed
     * frames past them before the copies (a fast-rising recursion), up to the chunk;
     * PI_TOP_MARGIN again for another thread */
    size_t top_margin;
    /* 3.14+: the code objects lately innermost on this thread and their bytecode ranges */
    uintptr_t leaf_codes[PI_LEAF_CODES], leaf_code_starts[PI_LEAF_CODES];
    int64_t leaf_code_units[PI_LEAF_CODES];
    size_t leaf_code_next;
    /* what the thread keeps on its C stack and was seen using lately (c_stack_used):
     * the _PyCFrames of its evaluation loops (3.11/3.12; whichever the thread state
     * names between the copies gives the current frame) and their entry frames (3.12+,
     * linking a call back into Python to its caller), all read between the copies */
    uintptr_t c_stack[PI_KNOWN_C_STACK];
    size_t c_stack_len[PI_KNOWN_C_STACK];
    uint8_t c_stack_copies[PI_KNOWN_C_STACK][PI_MAX_FRAME_READ];
    bool c_stack_copied[PI_KNOWN_C_STACK];
    uint64_t c_stack_used[PI_KNOWN_C_STACK], c_stack_clock;
    size_t c_stack_count;
    unsigned torn_copies; /* this tick's walks tried again by frame_confirmed or take_confirmation */
    int attempts;
    enum pi_walk_fail fail_cause;           /* the check that failed last */
    unsigned retried[PI_FAIL_CAUSES];       /* this tick's attempts tried again, by cause */
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
    bool confirm_pending; /* 3.9/3.10: this round reads the chain again (WALK_CONFIRM) */
    /* the rounds this walker has taken this tick, the ones its own pending read and the
     * spec list's were made in, and when (main_copied_at) the innermost frame was copied
     * and the latest of the others */
    unsigned rounds_taken, main_round, spec_round;
    uint64_t leaf_copied_at, outer_copied_at;
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
    int gil_state; /* PI_GIL_*, as its sample is recorded (async mode's task samples: unknown) */
    /* the state last read from the kernel, the thread state and CPU time it was read at: a
     * thread that has not run since is where it was (gilstate.c) */
    int gil_state_read;
    uintptr_t gil_tstate;
    int64_t gil_cpu_ns;
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

/* A thread's /proc/PID/task/TID/syscall, kept open (gilstate.c). */
typedef struct {
    unsigned long native_id;
    int fd; /* -1: could not be opened, or closed after a failed read */
    uint64_t used_tick;
} pi_syscall_file;

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
    uint8_t gil_buf[PI_MAX_GIL_READ];
    bool gil_read;
    uintptr_t gil_holder;
    uint64_t gil_switches;
    /* each sampled thread's /proc syscall file (gilstate.c) */
    pi_syscall_file *syscall_files;
    size_t syscall_count, syscall_files_cap;
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
    uint8_t (*headers)[PI_OBJECT_HEADER_MAX]; /* object headers read by find_torn_calls */
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

/* Why a walked stack makes no sample. */
enum { BUILD_DROPPED = -1, BUILD_DROPPED_CODE = -2 };

/* Adds a read to the round; `owner` is the walker index, with PI_SPEC_BIT for a
 * speculative frame read. */
typedef struct {
    pi_read **reads;
    size_t **owner;
    size_t *reads_cap, *owner_cap;
    size_t count;
} round_list;

/* ---- tick.c ---- */

int ensure_walkers(pi_state *s, size_t n);

/* ---- walk.c ---- */

int region_fill_prepare(region *r, uintptr_t addr, size_t len);

/* Adds a frame found at `addr` (0: not read from a thread's chain). */
int push_frame(pi_walker *w, uintptr_t addr, const pi_frame *f);

/* The copy of `size` bytes at addr, if region r holds them. */
const uint8_t *region_find(const region *r, uintptr_t addr, size_t size);

/* The copy of `size` bytes at addr, if one of the copied chunks holds them. */
const uint8_t *find_in_chunks(const pi_walker *w, uintptr_t addr, size_t size);

int round_add(round_list *round, const pi_read *read, size_t owner);

/* Remembers a code object seen innermost on the walker's thread (name_cleared_frame). */
void remember_leaf_code(pi_walker *w, uintptr_t code, uintptr_t start, int64_t units);

/* Adds the walker's next read to the round, with what is read beside it (the second copy
 * of the current chunk, 3.11+) and, on a walk's first round (`spec`) or a fresh start,
 * its read-ahead: last tick's solo frames and chunks, and the 3.11/3.12 _PyCFrame. */
void round_add_walker(round_list *round, pi_walker *w, size_t index, bool spec);

/* The lock-step rounds from the first (in x->reads): one vectored read per round
 * serves every thread still walking. */
void run_rounds(pi_state *s, size_t pending);

/* Starts a walker on a thread of the list, its first reads added to the round. */
void begin_walk(pi_state *s, round_list *round, size_t index, uintptr_t addr, const pi_tstate *ts,
                bool followed, int in_context);

/* ---- threads.c ---- */

/* Reads the thread list: the states cached from last tick are read speculatively in
 * one batch with the list head; only a changed list costs a read per new thread. */
size_t read_threads(pi_state *s, uintptr_t **addrs_out, pi_tstate **states_out);

/* The kernel tid of a walked thread (3.9/3.10 thread states do not record it). */
unsigned long walked_native_id(const pi_walker *w);

/* ---- validate.c ---- */

pi_code_entry *code_entry(const code_set *set, uintptr_t code);

/* Validates the code objects of every walked stack in one batch, walking doubtful ones
 * again (rewalk_doubtful); false when the codes could not be resolved at all. */
bool validate_walks(pi_state *s, size_t walker_count);

/* ---- leaves.c ---- */

/* For every thread whose innermost frame stands on a call: what it calls
 * (w->leaf_callee), all threads' reads batched together (callees.c). */
void name_leaves(pi_state *s, size_t walker_count);

/* ---- record.c ---- */

void count_drop(pi_state *t, long why);

/* Adds a built sample of thread `w` to `t`'s tree: `wall_ns` since t's previous tick,
 * the thread's CPU clock now `cpu_now` (-1: unknown). */
void add_sample(pi_state *t, const pi_walker *w, unsigned long native_id, const uint32_t *identities,
                const int32_t *lines, size_t depth, int64_t wall_ns, int64_t now_ns, int64_t cpu_now);

/* The sample of a walked thread in x->identities and x->lines (build_sample); for a
 * thread whose stack has not moved (stack_unmoved), the one built when it was copied. */
long sample_of(pi_state *s, pi_walker *w, bool *truncated);

void record_thread(pi_state *s, pi_walker *w, int64_t wall_ns, int64_t now_ns);
/* gilstate.c: where the walked thread stands with the GIL now (PI_GIL_*); descriptors of
 * threads not asked of lately are closed by the sweep (all of them with `all`). */
int pi_gil_state(pi_state *s, pi_walker *w, unsigned long native_id, int64_t cpu_ns);
void pi_gil_states_sweep(pi_scratch *x, uint64_t tick, bool all);

/* Whether `g` samples thread `thread_id` this tick (a target with no time since its
 * previous tick, as the tick that starts it, records nothing). */
bool target_wants(const pi_state *g, int64_t wall_ns, unsigned long thread_id);

/* The reader's identities as `g`'s, interned in g's table at first use and remembered
 * (g->identity_map, valid for the reader's generation). */
int translate_identities(pi_state *g, const pi_state *r, const uint32_t *from, uint32_t *to, size_t depth);

/* Hands a walked thread's sample (or its loss) to every target that samples it. */
void hand_out(pi_state *r, pi_walker *w, pi_state **targets, size_t count, int64_t now_ns);

/* The tick begins for a run, before any stack is read: whether its phase held since the
 * last tick began (record.c). */
void phase_tick_start(pi_state *s);

/* The tick begins for each target: its wall time since its previous tick in
 * x->group_walls. */
int start_targets(pi_scratch *x, pi_state **targets, size_t count, int64_t now_ns);

/* ---- asyncmode.c ---- */

void attribute_async(pi_state *s, pi_walker *w);

/* Async mode: which threads of the list run in the profiled context (x->context_states). */
int classify_threads(pi_state *s, const pi_tstate *states, size_t thread_count);

/* Async mode: a thread's Context was read with its thread state, before the walk, and
 * the loop switches Contexts at every task step. It is read again after the walk (one
 * vectored read for all); where it changed, the new one is looked up, and a thread that
 * crossed into or out of the profiled context while its stack was read loses this
 * sample (the profiled thread's counted as dropped, a followed one's left out). */
void confirm_contexts(pi_state *s, size_t walker_count);

#endif
