/*
 * context.c: async mode. Which contextvars.Context a thread is running in, and what
 * a suspended coroutine is waiting for, read from another thread's memory.
 *
 * A profiler started with async_mode "enabled" or "strict" sets a ContextVar in its
 * context; tasks started from there inherit it. On each tick the sampler looks that
 * variable up in the profiled thread's current Context: a contextvars HAMT, walked
 * here node by node. While the thread runs elsewhere (the event loop, other tasks),
 * the profiled task is suspended in an await, and its chain of awaited coroutines
 * tells where: each coroutine's value-stack top is the object it awaits. Where that
 * is an asyncio Future or Task, the chain goes on into the task(s) it stands for
 * (await task, gather, shield, wait_for, TaskGroup), with the private struct offsets
 * the Python layer learned and checked (pi_task_layout).
 *
 * The HAMT's node structs are private to CPython's Python/hamt.c; they are mirrored
 * below, unchanged since 3.7, and the Python layer checks this code against real
 * Contexts (pi_context_get) before it enables async mode. Node types are learned in
 * that check, not assumed.
 */
#include <Python.h>

#include "engine.h"

#include <string.h>

#define HAMT_MAX_LEVELS 8  /* 32-bit hashes, 5 bits a level: 7 levels, then collisions */
#define HAMT_BITMAP_MAX 32 /* key/value pairs a bitmap node can hold */
#define PI_LOOKUP_BATCH 128 /* lookups sharing one vectored read */

/* The mirrored node headers (PyObject_VAR_HEAD / PyObject_HEAD, then the node), in this
 * build's object header (32 bytes on a free-threaded build, 16 on others). */
typedef struct {
    PyVarObject base; /* bitmap nodes: ob_size counts the items in b_array (two per entry) */
    uint32_t bitmap;
} hamt_bitmap_head;
#define HAMT_BITMAP_ITEMS sizeof(hamt_bitmap_head)
_Static_assert(sizeof(hamt_bitmap_head) == sizeof(PyVarObject) + sizeof(void *), "b_array follows the bitmap");
#define HAMT_ARRAY_ITEMS sizeof(PyObject) /* after PyObject_HEAD */

int32_t pi_hamt_hash(int64_t hash)
{
    /* CPython's hamt_hash(): fold a 64-bit hash into 32 bits; -1 is reserved */
    uint32_t folded = (uint32_t)((uint64_t)hash & 0xffffffffu) ^ (uint32_t)((uint64_t)hash >> 32);
    int32_t xored;
    memcpy(&xored, &folded, sizeof xored);
    return xored == -1 ? -2 : xored;
}

/* One lookup of a variable in a Context, advanced one read at a time so that many
 * (one per thread) share each vectored read. */
enum { LOOK_CONTEXT, LOOK_HAMT, LOOK_NODE, LOOK_ARRAY_SLOT, LOOK_BITMAP_SLOT, LOOK_DONE };

typedef struct {
    int stage;
    uintptr_t addr; /* what the stage reads */
    unsigned shift; /* hash bits consumed by the nodes above */
    int found;      /* when done: 1 found, 0 absent, -1 unreadable */
    uintptr_t value;
    union {
        uint8_t bytes[128]; /* the largest read: a Context (64 bytes free-threaded) */
        hamt_bitmap_head head;
        uintptr_t pair[2]; /* bitmap slot: key (NULL for a sub-node), value or sub-node */
        uintptr_t child;   /* array slot */
    } buf;
} lookup;

static void lookup_end(lookup *l, int found, uintptr_t value)
{
    l->stage = LOOK_DONE;
    l->found = found;
    l->value = value;
}

static void lookup_start(lookup *l, uintptr_t context)
{
    memset(l, 0, sizeof *l);
    l->addr = context;
    if (pi_context_read_size() > sizeof l->buf || pi_hamt_read_size() > sizeof l->buf)
        lookup_end(l, -1, 0);
    else if (!context)
        lookup_end(l, 0, 0); /* the thread has never entered a Context */
}

static size_t lookup_read_size(const lookup *l)
{
    switch (l->stage) {
    case LOOK_CONTEXT:
        return pi_context_read_size();
    case LOOK_HAMT:
        return pi_hamt_read_size();
    case LOOK_NODE:
        return sizeof(hamt_bitmap_head);
    case LOOK_ARRAY_SLOT:
        return sizeof(uintptr_t);
    default:
        return 2 * sizeof(uintptr_t);
    }
}

/* Moves to the node at `node`, one level down. */
static void lookup_descend(lookup *l, uintptr_t node, bool first)
{
    if (!first)
        l->shift += 5;
    if (!node || l->shift >= 5 * HAMT_MAX_LEVELS) {
        lookup_end(l, -1, 0);
        return;
    }
    l->stage = LOOK_NODE;
    l->addr = node;
}

/* Takes the stage's read (ok: it succeeded) and sets up the next. */
static void lookup_step(const pi_async *a, lookup *l, bool ok, uintptr_t var, uint32_t hash)
{
    if (!ok) {
        lookup_end(l, -1, 0);
        return;
    }
    uintptr_t vars, type, root;
    uint32_t index = (hash >> l->shift) & 0x1f, bit = 1u << index;
    switch (l->stage) {
    case LOOK_CONTEXT:
        if (pi_parse_context(l->buf.bytes, &vars) != 0) {
            lookup_end(l, -1, 0);
            return;
        }
        l->stage = LOOK_HAMT;
        l->addr = vars;
        return;
    case LOOK_HAMT:
        if (pi_parse_hamt(l->buf.bytes, &type, &root) != 0 || type != a->hamt_type) {
            lookup_end(l, -1, 0);
            return;
        }
        lookup_descend(l, root, true);
        return;
    case LOOK_NODE:
        if ((uintptr_t)l->buf.head.base.ob_base.ob_type == a->array_type) {
            l->stage = LOOK_ARRAY_SLOT;
            l->addr += HAMT_ARRAY_ITEMS + index * sizeof(uintptr_t);
            return;
        }
        if ((uintptr_t)l->buf.head.base.ob_base.ob_type != a->bitmap_type) {
            lookup_end(l, -1, 0); /* a collision node: two variables with one 32-bit hash */
            return;
        }
        if (!(l->buf.head.bitmap & bit)) {
            lookup_end(l, 0, 0);
            return;
        }
        unsigned position = (unsigned)__builtin_popcount(l->buf.head.bitmap & (bit - 1));
        if (position >= HAMT_BITMAP_MAX || l->buf.head.base.ob_size < 0 || (intptr_t)(2 * position + 1) >= l->buf.head.base.ob_size) {
            lookup_end(l, -1, 0);
            return;
        }
        l->stage = LOOK_BITMAP_SLOT;
        l->addr += HAMT_BITMAP_ITEMS + 2 * position * sizeof(uintptr_t);
        return;
    case LOOK_ARRAY_SLOT:
        if (!l->buf.child)
            lookup_end(l, 0, 0);
        else
            lookup_descend(l, l->buf.child, false);
        return;
    case LOOK_BITMAP_SLOT:
        if (l->buf.pair[0] == 0)
            lookup_descend(l, l->buf.pair[1], false);
        else if (l->buf.pair[0] == var)
            lookup_end(l, 1, l->buf.pair[1]); /* ContextVars compare by identity */
        else
            lookup_end(l, 0, 0);
        return;
    default:
        return;
    }
}

/* Runs `count` lookups of one variable in lock-step: a vectored read per level.
 * Returns the syscalls made. */
static int lookup_all(const pi_async *a, lookup *lookups, size_t count, uintptr_t var, int32_t var_hash)
{
    pi_read reads[PI_LOOKUP_BATCH];
    size_t owner[PI_LOOKUP_BATCH];
    uint32_t hash;
    memcpy(&hash, &var_hash, sizeof hash);
    int syscalls = 0;
    for (;;) {
        size_t n = 0;
        for (size_t i = 0; i < count && n < PI_LOOKUP_BATCH; i++) {
            if (lookups[i].stage == LOOK_DONE)
                continue;
            reads[n] = (pi_read){lookups[i].addr, lookups[i].buf.bytes, lookup_read_size(&lookups[i]), false};
            owner[n++] = i;
        }
        if (n == 0)
            return syscalls;
        syscalls += pi_read_batch(reads, n);
        for (size_t r = 0; r < n; r++)
            lookup_step(a, &lookups[owner[r]], reads[r].ok, var, hash);
    }
}

int pi_context_get(const pi_async *a, uintptr_t context, uintptr_t var, int32_t var_hash, uintptr_t *value)
{
    lookup l;
    lookup_start(&l, context);
    if (!context)
        return -1;
    lookup_all(a, &l, 1, var, var_hash);
    *value = l.value;
    return l.found;
}

int pi_context_values(const pi_async *a, const uintptr_t *contexts, size_t count, int *found, uintptr_t *values)
{
    lookup lookups[PI_LOOKUP_BATCH];
    int syscalls = 0;
    for (size_t done = 0; done < count; done += PI_LOOKUP_BATCH) {
        size_t n = count - done < PI_LOOKUP_BATCH ? count - done : PI_LOOKUP_BATCH;
        for (size_t i = 0; i < n; i++)
            lookup_start(&lookups[i], contexts[done + i]);
        syscalls += lookup_all(a, lookups, n, a->var, a->var_hash);
        for (size_t i = 0; i < n; i++) {
            found[done + i] = lookups[i].found;
            values[done + i] = lookups[i].value;
        }
    }
    return syscalls;
}

int pi_context_state(const pi_async *a, int found, uintptr_t value)
{
    return found < 0 ? PI_CONTEXT_UNKNOWN : found && value == a->token ? PI_IN_CONTEXT : PI_OUT_OF_CONTEXT;
}

int pi_context_states(const pi_async *a, const uintptr_t *contexts, size_t count, int *states)
{
    int found[PI_LOOKUP_BATCH];
    uintptr_t values[PI_LOOKUP_BATCH];
    int syscalls = 0;
    for (size_t done = 0; done < count; done += PI_LOOKUP_BATCH) {
        size_t n = count - done < PI_LOOKUP_BATCH ? count - done : PI_LOOKUP_BATCH;
        syscalls += pi_context_values(a, contexts + done, n, found, values);
        for (size_t i = 0; i < n; i++)
            states[done + i] = pi_context_state(a, found[i], values[i]);
    }
    return syscalls;
}

/* ---- await chains ---- */

/* Bytes read past an object's header in the same read: a coroutine frame's locals and
 * value stack usually fit, which saves a read per coroutine. */
#define PI_READ_PAST 512

typedef struct {
    uint8_t bytes[PI_CHAIN_OBJECT];
    uintptr_t addr;
    size_t len;
} object_copy;

/* Copies `size` bytes at addr, and PI_READ_PAST more where that memory is readable:
 * from the read-ahead while the chain is the one of the last walk. */
static int copy_object(uintptr_t addr, size_t size, object_copy *copy, pi_chain_cache *cache, uint64_t *syscalls)
{
    if (size + PI_READ_PAST > sizeof copy->bytes)
        return -1;
    copy->addr = addr;
    size_t k = cache->used;
    if (k < cache->count && cache->addrs[k] == addr && cache->ok[k] && cache->lens[k] >= size) {
        copy->len = cache->lens[k];
        memcpy(copy->bytes, cache->data + k * PI_CHAIN_OBJECT, copy->len);
        cache->used++;
    } else {
        cache->used = cache->count; /* the chain changed: the rest of the read-ahead is stale */
        copy->len = size + PI_READ_PAST;
        ++*syscalls;
        if (pi_read_exact(addr, copy->bytes, copy->len) != 0) {
            copy->len = size; /* the object ends near the end of mapped memory */
            ++*syscalls;
            if (pi_read_exact(addr, copy->bytes, size) != 0)
                return -1;
        }
    }
    if (cache->next_count < PI_CHAIN_CACHE) {
        cache->next_addrs[cache->next_count] = addr;
        cache->next_lens[cache->next_count++] = copy->len;
    }
    return 0;
}

/* The word at addr: from the copy when it holds it, else read. */
static int copied_word(const object_copy *copy, uintptr_t addr, uintptr_t *word, uint64_t *syscalls)
{
    if (addr >= copy->addr && addr - copy->addr <= copy->len && copy->len - (addr - copy->addr) >= sizeof *word) {
        memcpy(word, copy->bytes + (addr - copy->addr), sizeof *word);
        return 0;
    }
    ++*syscalls;
    return pi_read_exact(addr, word, sizeof *word);
}

/* Finishes reading a coroutine whose object is in `copy`: before 3.11, its frame
 * object is read into `copy`, which then keeps the memory its value stack is in. */
static int read_coro_frame(pi_coro *coro, object_copy *copy, pi_chain_cache *cache, uint64_t *syscalls)
{
    if (coro->suspended && coro->frame &&
        (copy_object(coro->frame, pi_runtime_layout.frame_read_size, copy, cache, syscalls) != 0 ||
         pi_parse_coro_frame(copy->bytes, coro->frame, coro) != 0))
        return -1;
    return 0;
}

/* The object on top of a suspended coroutine's value stack: the awaitable. Since 3.15
 * an await keeps a slot holding no object above it, so the top two are read. */
static uintptr_t awaited_object(const pi_coro *coro, const object_copy *copy, uint64_t *syscalls)
{
    uintptr_t slots[2];
    size_t n = coro->stack_slots < 2 ? coro->stack_slots : 2;
    if (n == 0)
        return 0;
    uintptr_t start = coro->stack_top - n * sizeof *slots;
    if (start >= copy->addr && coro->stack_top <= copy->addr + copy->len) {
        memcpy(slots, copy->bytes + (start - copy->addr), n * sizeof *slots);
    } else {
        ++*syscalls;
        if (pi_read_exact(start, slots, n * sizeof *slots) != 0)
            return 0;
    }
    for (size_t k = n; k-- > 0;) {
        uintptr_t object = pi_stack_slot_object(slots[k]);
        if (object)
            return object;
    }
    return 0;
}

/* ---- from an awaited Future into the tasks it waits for ---- */

#define PI_MAX_FANOUT 64     /* tasks of one gather or TaskGroup looked at */
#define PI_SET_SLOTS 256     /* slots of a TaskGroup's set read for them */
#define PI_MAX_TASK_HOPS 64  /* Futures and Tasks passed in one chain */
#define PI_MAX_DICT_READ 1024 /* bytes of a dict's keys object read */

/* The coroutine that awaits the Future being followed: some wait in plain Futures
 * that say nothing of what they wait for (wait_for, TaskGroup), their frame does. */
typedef struct {
    uintptr_t code;
    uintptr_t first_local;
} pi_awaiter;

static bool is_future_type(const pi_task_layout *t, uintptr_t type)
{
    return type == t->future_type || type == t->task_type || type == t->gathering.type;
}

/* Of `count` awaited objects, the pending Futures and Tasks; returns one of them,
 * chosen by *pick (consumed), or 0 when none is pending. */
static uintptr_t pick_pending(const pi_task_layout *t, const uintptr_t *objects, size_t count, uint64_t *pick,
                              uint64_t *syscalls)
{
    uint8_t heads[PI_MAX_FANOUT][PI_OBJECT_HEADER_MAX];
    int states[PI_MAX_FANOUT];
    pi_read reads[2 * PI_MAX_FANOUT];
    size_t n = 0;
    for (size_t i = 0; i < count && i < PI_MAX_FANOUT; i++) {
        if (!objects[i])
            continue;
        reads[2 * n] = (pi_read){objects[i], heads[n], pi_object_header_size(), false};
        reads[2 * n + 1] = (pi_read){objects[i] + t->fut_state, &states[n], sizeof states[n], false};
        n++;
    }
    if (n == 0)
        return 0;
    *syscalls += (uint64_t)pi_read_batch(reads, 2 * n);
    uintptr_t pending[PI_MAX_FANOUT];
    size_t pending_count = 0;
    for (size_t i = 0, k = 0; i < count && i < PI_MAX_FANOUT; i++) {
        if (!objects[i])
            continue;
        uintptr_t type;
        if (reads[2 * k].ok && reads[2 * k + 1].ok && pi_parse_object_header(heads[k], &type) == 0 &&
            is_future_type(t, type) && states[k] == 0)
            pending[pending_count++] = objects[i];
        k++;
    }
    if (pending_count == 0)
        return 0;
    uintptr_t chosen = pending[*pick % pending_count];
    *pick /= pending_count; /* a gather inside a gather chooses independently */
    return chosen;
}

/* The value of attribute `key` (a str, compared by identity) of an instance of
 * place->type: from its dict, else from its values and its type's shared keys. */
static uintptr_t instance_attribute(const pi_attr_place *place, uintptr_t obj, uintptr_t key, uint64_t *syscalls)
{
    uint8_t buf[PI_MAX_DICT_READ];
    uintptr_t dict, values, keys, value;
    int64_t index;
    size_t size = pi_container_read_size();
    if (size > sizeof buf || pi_instance_attributes(obj, place, &dict, &values, syscalls) != 0)
        return 0;
    if (dict) {
        ++*syscalls;
        if (pi_read_exact(dict, buf, size) != 0 || pi_parse_dict(buf, &keys, &values) != 0)
            return 0;
    } else if (values) {
        ++*syscalls;
        if (pi_read_exact(place->type + pi_type_cached_keys_offset(), &keys, sizeof keys) != 0)
            return 0;
    } else {
        return 0;
    }
    /* the keys object: all of its entries usually fit in the read, which is halved
     * where the object ends near the end of mapped memory */
    size_t len = sizeof buf;
    if (!keys)
        return 0;
    for (++*syscalls; pi_read_exact(keys, buf, len) != 0; ++*syscalls) {
        len /= 2;
        if (len < 64)
            return 0;
    }
    if (pi_dict_keys_find(buf, len, key, &index, &value) != 0)
        return 0;
    ++*syscalls;
    if (values && pi_read_exact(values + pi_dict_values_offset() + (size_t)index * sizeof(uintptr_t), &value,
                                sizeof value) != 0)
        return 0;
    return value;
}

/* A gather's children: the list in its attribute "_children". */
static uintptr_t gather_child(const pi_task_layout *t, uintptr_t gathering, uint64_t *pick, uint64_t *syscalls)
{
    uint8_t buf[512];
    uintptr_t list = instance_attribute(&t->gathering, gathering, t->children_key, syscalls), items;
    int64_t length;
    size_t size = pi_container_read_size();
    ++*syscalls;
    if (!list || size > sizeof buf || pi_read_exact(list, buf, size) != 0 || pi_parse_list(buf, &length, &items) != 0)
        return 0;
    uintptr_t children[PI_MAX_FANOUT];
    size_t count = length < PI_MAX_FANOUT ? (size_t)length : PI_MAX_FANOUT;
    ++*syscalls;
    if (count == 0 || pi_read_exact(items, children, count * sizeof *children) != 0)
        return 0;
    return pick_pending(t, children, count, pick, syscalls);
}

/* shield(): the outer Future's first done callback holds the inner one in its closure. */
static uintptr_t shielded(const pi_task_layout *t, const object_copy *copy, uint64_t *syscalls)
{
    uint8_t buf[512];
    uintptr_t callback, code, closure, cell, inner;
    int64_t length;
    size_t items;
    size_t size = pi_container_read_size();
    if (!t->shield_code || size > sizeof buf ||
        copied_word(copy, copy->addr + t->fut_callback0, &callback, syscalls) != 0 || !callback)
        return 0;
    ++*syscalls;
    if (pi_read_exact(callback, buf, size) != 0 || pi_parse_function(buf, &code, &closure) != 0 ||
        code != t->shield_code || !closure)
        return 0;
    ++*syscalls;
    if (pi_read_exact(closure, buf, size) != 0 || pi_parse_tuple(buf, &length, &items) != 0 ||
        (int64_t)t->shield_inner_cell >= length)
        return 0;
    ++*syscalls;
    if (pi_read_exact(closure + items + t->shield_inner_cell * sizeof(uintptr_t), &cell, sizeof cell) != 0 || !cell)
        return 0;
    ++*syscalls;
    if (pi_read_exact(cell, buf, size) != 0 || pi_parse_cell(buf, &inner) != 0)
        return 0;
    return inner;
}

/* A TaskGroup's exit awaits a plain Future; its tasks are in the set self._tasks. */
static uintptr_t taskgroup_task(const pi_task_layout *t, uintptr_t group, uint64_t *pick, uint64_t *syscalls)
{
    uint8_t buf[512];
    uintptr_t type, tasks, table;
    size_t slots, size = pi_container_read_size();
    ++*syscalls;
    if (!group || size > sizeof buf || pi_read_exact(group, buf, pi_object_header_size()) != 0 ||
        pi_parse_object_header(buf, &type) != 0 || type != t->taskgroup.type)
        return 0;
    tasks = instance_attribute(&t->taskgroup, group, t->tasks_key, syscalls);
    ++*syscalls;
    if (!tasks || pi_read_exact(tasks, buf, size) != 0 || pi_parse_set(buf, &table, &slots) != 0)
        return 0;
    /* the set's table (keys and hashes, at most 3/5 full): its first members; deleted
     * entries' dummy key is no Future and is passed over with the rest */
    uintptr_t entries[PI_SET_SLOTS * 2], members[PI_MAX_FANOUT];
    size_t entry_words = pi_set_entry_size() / sizeof(uintptr_t), count = 0;
    size_t readable = slots < PI_SET_SLOTS ? slots : PI_SET_SLOTS;
    if (entry_words == 0 || entry_words > 2)
        return 0;
    ++*syscalls;
    if (pi_read_exact(table, entries, readable * entry_words * sizeof(uintptr_t)) != 0)
        return 0;
    for (size_t i = 0; i < readable && count < PI_MAX_FANOUT; i++)
        if (entries[i * entry_words])
            members[count++] = entries[i * entry_words];
    return pick_pending(t, members, count, pick, syscalls);
}

/* What a Future, a Task or a Future's iterator in `copy` (type `type`) waits for: the
 * next object of the chain, or 0 where the chain ends. */
static uintptr_t future_awaits(const pi_task_layout *t, uintptr_t type, const object_copy *copy,
                               const pi_awaiter *awaiter, uint64_t *pick, uint64_t *syscalls)
{
    uintptr_t next = 0;
    int state;
    if (type == t->future_iter_type) {
        copied_word(copy, copy->addr + t->iter_future, &next, syscalls);
        return next;
    }
    if (!is_future_type(t, type))
        return 0;
    if (copy->len < t->fut_state + sizeof state)
        return 0;
    memcpy(&state, copy->bytes + t->fut_state, sizeof state);
    if (state != 0)
        return 0; /* done: about to wake its awaiter */
    if (type == t->task_type) {
        copied_word(copy, copy->addr + t->task_coro, &next, syscalls);
        return next;
    }
    if (type == t->gathering.type)
        return gather_child(t, copy->addr, pick, syscalls);
    next = shielded(t, copy, syscalls);
    if (next)
        return next;
    if (awaiter->code && awaiter->code == t->wait_for_code)
        return awaiter->first_local; /* the task wait_for() waits for */
    if (awaiter->code && (awaiter->code == t->taskgroup_codes[0] || awaiter->code == t->taskgroup_codes[1]))
        return taskgroup_task(t, awaiter->first_local, pick, syscalls);
    return 0;
}

/* The coroutines that wait in plain Futures whose frames say what for. */
static bool awaits_via_frame(const pi_task_layout *t, uintptr_t code)
{
    return code && (code == t->wait_for_code || code == t->taskgroup_codes[0] || code == t->taskgroup_codes[1]);
}

/* Reads every object the last walk copied, in one vectored read: a task waiting where
 * it waited a tick ago costs one syscall whatever its chain's length. */
size_t pi_chain_ahead_reads(pi_chain_cache *cache, pi_read *reads)
{
    cache->count = cache->next_count;
    for (size_t k = 0; k < cache->count; k++) {
        cache->addrs[k] = cache->next_addrs[k];
        cache->lens[k] = cache->next_lens[k];
        reads[k] = (pi_read){cache->addrs[k], cache->data + k * PI_CHAIN_OBJECT, cache->lens[k], false};
    }
    return cache->count;
}

void pi_chain_ahead_taken(pi_chain_cache *cache, const pi_read *reads, size_t count)
{
    for (size_t k = 0; k < count; k++)
        cache->ok[k] = reads[k].ok;
    cache->used = 0;
    cache->next_count = 0;
    cache->ahead_read = true;
}

static void read_ahead(pi_chain_cache *cache, uint64_t *syscalls)
{
    if (!cache->ahead_read) {
        pi_read reads[PI_CHAIN_CACHE];
        size_t count = pi_chain_ahead_reads(cache, reads);
        if (count)
            *syscalls += (uint64_t)pi_read_batch(reads, count);
        pi_chain_ahead_taken(cache, reads, count);
    }
    cache->ahead_read = false;
}

long pi_await_chain(const pi_task_layout *tasks, uintptr_t coro_addr, uint64_t pick, uintptr_t *codes,
                    uintptr_t *instrs, int *lastis, size_t max, pi_chain_cache *cache, uint64_t *syscalls)
{
    object_copy copy;
    size_t depth = 0, hops = 0;
    pi_awaiter awaiter = {0};
    read_ahead(cache, syscalls);
    for (uintptr_t addr = coro_addr; addr && depth < max && depth < PI_MAX_AWAIT_DEPTH;) {
        pi_coro coro;
        uintptr_t type;
        if (copy_object(addr, pi_coro_read_size(), &copy, cache, syscalls) != 0 ||
            pi_parse_object_header(copy.bytes, &type) != 0)
            break;
        if (pi_parse_coro(copy.bytes, addr, &coro) != 0) {
            /* not a coroutine: a Future or Task it awaits, or the chain's end */
            if (!tasks->enabled || ++hops > PI_MAX_TASK_HOPS)
                break;
            addr = future_awaits(tasks, type, &copy, &awaiter, &pick, syscalls);
            if (type != tasks->future_iter_type)
                awaiter = (pi_awaiter){0}; /* its frame told what its own Future waits for */
            continue;
        }
        if (read_coro_frame(&coro, &copy, cache, syscalls) != 0 || !coro.suspended)
            break; /* running, finished, not started */
        codes[depth] = coro.code;
        instrs[depth] = coro.instr;
        lastis[depth] = coro.lasti;
        depth++;
        /* a suspended coroutine stands in an await, its awaitable on top of its stack;
         * a generator may stand in a plain yield, so the chain ends there */
        if (!coro.is_coroutine)
            break;
        awaiter = (pi_awaiter){coro.code, 0};
        if (tasks->enabled && awaits_via_frame(tasks, coro.code) &&
            copied_word(&copy, coro.locals, &awaiter.first_local, syscalls) == 0)
            awaiter.first_local = pi_stack_slot_object(awaiter.first_local);
        addr = awaited_object(&coro, &copy, syscalls);
    }
    return depth ? (long)depth : -1;
}
