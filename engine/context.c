/*
 * context.c: async mode. Which contextvars.Context a thread is running in, and what
 * a suspended coroutine is waiting for, read from another thread's memory.
 *
 * A profiler started with async_mode "enabled" or "strict" sets a ContextVar in its
 * context; tasks started from there inherit it. On each tick the sampler looks that
 * variable up in the profiled thread's current Context: a contextvars HAMT, walked
 * here node by node. While the thread runs elsewhere (the event loop, other tasks),
 * the profiled task is suspended in an await, and its chain of awaited coroutines
 * tells where: each coroutine's value-stack top is the object it awaits.
 *
 * The HAMT's node structs are private to CPython's Python/hamt.c; they are mirrored
 * below, unchanged since 3.7, and the Python layer checks this code against real
 * Contexts (pi_context_get) before it enables async mode. Node types are learned in
 * that check, not assumed.
 */
#include "engine.h"

#include <string.h>

#define HAMT_MAX_LEVELS 8  /* 32-bit hashes, 5 bits a level: 7 levels, then collisions */
#define HAMT_BITMAP_MAX 32 /* key/value pairs a bitmap node can hold */

/* The mirrored node headers (PyObject_VAR_HEAD / PyObject_HEAD, then the node). */
typedef struct {
    intptr_t refcnt;
    uintptr_t type;
    intptr_t size; /* bitmap nodes: items in b_array (two per entry) */
    uint32_t bitmap;
} hamt_bitmap_head;
#define HAMT_BITMAP_ITEMS sizeof(hamt_bitmap_head)
_Static_assert(sizeof(hamt_bitmap_head) == 32, "b_array follows the bitmap at offset 32");
#define HAMT_ARRAY_ITEMS (2 * sizeof(uintptr_t)) /* after PyObject_HEAD */

int32_t pi_hamt_hash(int64_t hash)
{
    /* CPython's hamt_hash(): fold a 64-bit hash into 32 bits; -1 is reserved */
    uint32_t folded = (uint32_t)((uint64_t)hash & 0xffffffffu) ^ (uint32_t)((uint64_t)hash >> 32);
    int32_t xored;
    memcpy(&xored, &folded, sizeof xored);
    return xored == -1 ? -2 : xored;
}

/* Looks var up in the node at `node`; 1 found, 0 absent, -1 unreadable. */
static int hamt_find(const pi_async *a, uintptr_t node, uint32_t hash, uintptr_t var, uintptr_t *value)
{
    for (unsigned shift = 0; shift < 5 * HAMT_MAX_LEVELS; shift += 5) {
        hamt_bitmap_head head;
        if (!node || pi_read_exact(node, &head, sizeof head) != 0)
            return -1;
        uint32_t index = (hash >> shift) & 0x1f;
        if (head.type == a->array_type) {
            uintptr_t child;
            if (pi_read_exact(node + HAMT_ARRAY_ITEMS + index * sizeof child, &child, sizeof child) != 0)
                return -1;
            if (!child)
                return 0;
            node = child;
            continue;
        }
        if (head.type != a->bitmap_type)
            return -1; /* a collision node: two variables with one 32-bit hash */
        uint32_t bit = 1u << index;
        if (!(head.bitmap & bit))
            return 0;
        unsigned position = (unsigned)__builtin_popcount(head.bitmap & (bit - 1));
        if (position >= HAMT_BITMAP_MAX || head.size < 0 || (intptr_t)(2 * position + 1) >= head.size)
            return -1;
        uintptr_t pair[2]; /* key (NULL for a sub-node), value or sub-node */
        if (pi_read_exact(node + HAMT_BITMAP_ITEMS + 2 * position * sizeof(uintptr_t), pair, sizeof pair) != 0)
            return -1;
        if (pair[0] == 0) {
            node = pair[1];
            continue;
        }
        if (pair[0] != var)
            return 0; /* ContextVars compare by identity */
        *value = pair[1];
        return 1;
    }
    return -1;
}

int pi_context_get(const pi_async *a, uintptr_t context, uintptr_t var, int32_t var_hash, uintptr_t *value)
{
    uint8_t buf[256];
    size_t context_size = pi_context_read_size(), hamt_size = pi_hamt_read_size();
    if (!context || context_size > sizeof buf || hamt_size > sizeof buf || pi_read_exact(context, buf, context_size) != 0)
        return -1;
    uintptr_t vars, type, root;
    if (pi_parse_context(buf, &vars) != 0 || pi_read_exact(vars, buf, hamt_size) != 0 ||
        pi_parse_hamt(buf, &type, &root) != 0 || type != a->hamt_type)
        return -1;
    uint32_t hash;
    memcpy(&hash, &var_hash, sizeof hash);
    return hamt_find(a, root, hash, var, value);
}

int pi_context_state(const pi_async *a, uintptr_t context)
{
    if (!context)
        return PI_OUT_OF_CONTEXT; /* the thread has never entered a Context */
    uintptr_t value = 0;
    int found = pi_context_get(a, context, a->var, a->var_hash, &value);
    if (found < 0)
        return PI_CONTEXT_UNKNOWN;
    return found && value == a->token ? PI_IN_CONTEXT : PI_OUT_OF_CONTEXT;
}

/* Reads one coroutine or generator and, before 3.11, its frame. */
static int read_coro(uintptr_t addr, pi_coro *coro)
{
    uint8_t buf[PI_MAX_FRAME_READ + 512];
    size_t size = pi_coro_read_size();
    if (size > sizeof buf || pi_read_exact(addr, buf, size) != 0 || pi_parse_coro(buf, addr, coro) != 0)
        return -1;
    if (coro->suspended && coro->frame) {
        size = pi_runtime_layout.frame_read_size;
        if (size > sizeof buf || pi_read_exact(coro->frame, buf, size) != 0 ||
            pi_parse_coro_frame(buf, coro->frame, coro) != 0)
            return -1;
    }
    return 0;
}

/* The object on top of a suspended coroutine's value stack: the awaitable. Since 3.15
 * an await keeps a slot holding no object above it, so the top two slots are read. */
static uintptr_t awaited_object(const pi_coro *coro)
{
    uintptr_t slots[2];
    size_t n = coro->stack_slots < 2 ? coro->stack_slots : 2;
    if (n == 0 || pi_read_exact(coro->stack_top - n * sizeof *slots, slots, n * sizeof *slots) != 0)
        return 0;
    for (size_t k = n; k-- > 0;) {
        uintptr_t object = pi_stack_slot_object(slots[k]);
        if (object)
            return object;
    }
    return 0;
}

long pi_await_chain(uintptr_t coro_addr, uintptr_t *codes, uintptr_t *instrs, int *lastis, size_t max)
{
    size_t depth = 0;
    for (uintptr_t addr = coro_addr; addr && depth < max && depth < PI_MAX_AWAIT_DEPTH;) {
        pi_coro coro;
        if (read_coro(addr, &coro) != 0)
            return depth ? (long)depth : -1;
        if (!coro.suspended)
            return depth ? (long)depth : -1; /* running, finished, or not started */
        codes[depth] = coro.code;
        instrs[depth] = coro.instr;
        lastis[depth] = coro.lasti;
        depth++;
        /* a suspended coroutine stands in an await, its awaitable on top of its stack;
         * a generator may stand in a plain yield, so the chain ends there */
        if (!coro.is_coroutine)
            break;
        addr = awaited_object(&coro);
    }
    return (long)depth;
}
