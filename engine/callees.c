/*
 * callees.c: naming the C function a thread is in, from the object being called.
 *
 * A thread whose innermost Python frame stands on a call instruction is inside what
 * that call called. opcodes.c places the callable on the caller's value stack; here it
 * is read and named as sys.setprofile's c_call names it (the __qualname__ of the
 * builtin): `sorted`, `compress` (a module's function), `list.sort` (a method
 * descriptor, named after the type of the object it is called on), `epoll.poll` (a
 * bound builtin method: the type of its __self__). Anything else being called (a
 * Python function, a bound method of one, a class, functools.partial...) is no C
 * function: the sample gets no C leaf. What cannot be read or confirmed is
 * `[unknown C call]`, never a guess.
 *
 * Everything read is untrusted. The callable is read together with the frame and the
 * stack slots again, after it: a frame still on the same instruction with the same
 * slots means the call was still under way when the callable was read, so the object
 * was alive (the value stack holds a reference to it). A call that ended meanwhile
 * (short calls in a loop: `time.perf_counter()`, `line.split()`) is still named when
 * its slots were copied with the frame (3.11+) and the object outlives calls to it, so
 * its address cannot have been reused within microseconds: a module's function (or a
 * builtin) lives in its module, a method descriptor in its type. A descriptor is then
 * named only when the argument read is of the descriptor's own type, the one name both
 * give (an argument freed and reused by another type's object, or a subclass's
 * instance, is unknown); anything else is unknown. Names are cached by what determines
 * them: the method def and the type's address and name pointers.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI_MAX_NAME 256

struct pi_callee_name {
    uintptr_t method_def, type, type_name, type_qualname; /* type 0: a module's function */
    int64_t identity;
};

enum {
    STAGE_RECHECK,  /* the call named last tick: read the callable (and argument) again */
    STAGE_SLOTS,    /* read the call's value-stack slots */
    STAGE_CALLABLE, /* read the callable, its self argument, and confirm the frame */
    STAGE_OWNER,    /* read a builtin's __self__ (and the same memory as a type) */
    STAGE_TYPE,     /* read the type that names the method */
    STAGE_DONE,
};

int pi_callees_init(pi_callee_table *t)
{
    t->slot_count = 256;
    t->used = 0;
    t->unknown = -1;
    t->names = calloc(t->slot_count, sizeof *t->names);
    return t->names ? 0 : -1;
}

void pi_callees_free(pi_callee_table *t)
{
    free(t->names);
    memset(t, 0, sizeof *t);
}

static uint64_t hash_key(const pi_callee_name *k)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    uintptr_t parts[4] = {k->method_def, k->type, k->type_name, k->type_qualname};
    for (int i = 0; i < 4; i++) {
        h ^= (uint64_t)parts[i];
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
    }
    return h;
}

static bool same_key(const pi_callee_name *a, const pi_callee_name *b)
{
    return a->method_def == b->method_def && a->type == b->type && a->type_name == b->type_name &&
           a->type_qualname == b->type_qualname;
}

static pi_callee_name *name_slot(pi_callee_table *t, const pi_callee_name *key)
{
    size_t mask = t->slot_count - 1;
    size_t s = hash_key(key) & mask;
    while (t->names[s].method_def && !same_key(&t->names[s], key))
        s = (s + 1) & mask;
    return &t->names[s];
}

static int names_grow(pi_callee_table *t)
{
    pi_callee_table bigger = {calloc(t->slot_count * 2, sizeof *t->names), t->slot_count * 2, t->used, t->unknown};
    if (!bigger.names)
        return -1;
    for (size_t i = 0; i < t->slot_count; i++)
        if (t->names[i].method_def)
            *name_slot(&bigger, &t->names[i]) = t->names[i];
    free(t->names);
    *t = bigger;
    return 0;
}

/* ---- strings of C functions and types ---- */

/* A NUL-terminated C string of at most PI_MAX_NAME bytes, read in small pieces (it may
 * end just before unmapped memory); NULL if unreadable, too long or not printable. */
static char *read_c_string(uintptr_t addr)
{
    enum { PIECE = 32 };
    char *out = malloc(PI_MAX_NAME + PIECE + 1);
    if (!out || !addr)
        goto fail;
    for (size_t n = 0; n <= PI_MAX_NAME; n += PIECE) {
        if (pi_read_exact(addr + n, out + n, PIECE) != 0)
            goto fail;
        for (size_t i = n; i < n + PIECE; i++) {
            if (out[i] == '\0')
                return i > 0 ? out : (free(out), NULL);
            if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
                goto fail;
        }
    }
fail:
    free(out);
    return NULL;
}

/* A type's __qualname__: a heap type's ht_qualname, else tp_name after its last dot. */
static char *type_qualname(const pi_type *type)
{
    if (type->heap) {
        char *name = pi_read_unicode(type->qualname);
        if (name && (name[0] == '\0' || strlen(name) > PI_MAX_NAME)) {
            free(name);
            return NULL;
        }
        return name;
    }
    char *full = read_c_string(type->name);
    if (!full)
        return NULL;
    char *dot = strrchr(full, '.');
    if (!dot)
        return full;
    char *last = strdup(dot + 1);
    free(full);
    return last && last[0] ? last : (free(last), NULL);
}

/* The function's name from its PyMethodDef: an identifier. */
static char *method_name(uintptr_t method_def)
{
    uintptr_t name_addr;
    if (pi_read_exact(method_def + pi_method_def_name_offset(), &name_addr, sizeof name_addr) != 0)
        return NULL;
    char *name = read_c_string(name_addr);
    for (char *c = name; c && *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_')) {
            free(name);
            return NULL;
        }
    }
    return name;
}

int64_t pi_callees_unknown(pi_callee_table *t, pi_code_table *codes)
{
    if (t->unknown < 0)
        t->unknown = pi_codes_builtin(codes, "[unknown C call]");
    return t->unknown;
}

/* The identity of method_def's function named after `type` (NULL: a module's). */
static int64_t callee_identity(pi_callee_table *t, pi_code_table *codes, uintptr_t method_def, uintptr_t type_addr,
                               const pi_type *type)
{
    pi_callee_name key = {method_def, type_addr, type ? type->name : 0, type ? type->qualname : 0, -1};
    pi_callee_name *slot = name_slot(t, &key);
    if (slot->method_def)
        return slot->identity;
    char *function = method_name(method_def);
    char *owner = type ? type_qualname(type) : NULL;
    if (!function || (type && !owner)) {
        free(function);
        free(owner);
        return pi_callees_unknown(t, codes); /* not cached: a torn read should not stick */
    }
    int64_t identity;
    if (owner) {
        size_t len = strlen(owner) + 1 + strlen(function) + 1;
        char *qualified = malloc(len);
        if (qualified)
            snprintf(qualified, len, "%s.%s", owner, function);
        identity = qualified ? pi_codes_builtin(codes, qualified) : -1;
        free(qualified);
    } else {
        identity = pi_codes_builtin(codes, function);
    }
    free(function);
    free(owner);
    if (identity < 0)
        return pi_callees_unknown(t, codes);
    if ((t->used + 1) * 2 > t->slot_count) {
        if (names_grow(t) != 0)
            return identity;
        slot = name_slot(t, &key);
    }
    key.identity = identity;
    *slot = key;
    t->used++;
    return identity;
}

/* ---- the steps, each one vectored read for all queries ---- */

static uintptr_t slot_object(const uint8_t *slots, int index)
{
    uintptr_t raw;
    memcpy(&raw, slots + (size_t)index * sizeof raw, sizeof raw);
    return pi_stack_slot_object(raw);
}

static void place_call(const pi_callee_query *q, int *callable, int *self)
{
    pi_call_place(&q->call, slot_object(q->slots, 0) != 0, slot_object(q->slots, 1) != 0, callable, self);
}

typedef struct {
    pi_read *reads;
    size_t count, cap;
} read_list;

static void add_read(read_list *list, uintptr_t addr, void *dst, size_t len)
{
    if (list->count < list->cap)
        list->reads[list->count++] = (pi_read){addr, dst, len, false};
}

/* The reads a query needs for its stage; returns how many it added. */
/* A method descriptor's first argument, in the callable's round (NULL slot: none). */
static uintptr_t argument_to_read(const pi_callee_query *q)
{
    int callable, self;
    place_call(q, &callable, &self);
    return q->call.layout != PI_CALL_EX && self >= 0 ? slot_object(q->slots, self) : 0;
}

static void add_owner_reads(read_list *list, pi_callee_query *q, uintptr_t owner)
{
    add_read(list, owner, q->owner, pi_object_header_size());
    add_read(list, owner, q->owner_as_type, pi_type_read_size());
    add_read(list, owner + pi_type_qualname_offset(), &q->owner_qualname, sizeof(uintptr_t));
}

/* The reads a query needs for its stage; returns how many it added. */
static size_t stage_reads(pi_callee_query *q, read_list *list)
{
    size_t before = list->count;
    int callable, self;
    switch (q->stage) {
    case STAGE_RECHECK:
        place_call(q, &callable, &self);
        add_read(list, slot_object(q->slots, callable), q->callable, pi_callable_read_size());
        if (q->memo.kind == PI_MEMO_DESCRIPTOR)
            add_read(list, argument_to_read(q), q->owner, pi_object_header_size());
        break;
    case STAGE_SLOTS:
        add_read(list, q->slots_addr, q->slots, pi_call_slot_count(&q->call) * sizeof(uintptr_t));
        break;
    case STAGE_CALLABLE:
        place_call(q, &callable, &self);
        add_read(list, slot_object(q->slots, callable), q->callable, pi_callable_read_size());
        /* the argument a method descriptor would run bound to: the stack holds it too */
        if (argument_to_read(q))
            add_owner_reads(list, q, argument_to_read(q));
        /* after them: the frame and its slots, unchanged if the call still runs */
        add_read(list, q->frame, q->frame_again, pi_runtime_layout.frame_read_size);
        add_read(list, q->slots_addr, q->slots_again, pi_call_slot_count(&q->call) * sizeof(uintptr_t));
        break;
    case STAGE_OWNER:
        add_owner_reads(list, q, q->owner_addr);
        break;
    case STAGE_TYPE:
        add_read(list, q->type_addr, q->type, pi_type_read_size());
        add_read(list, q->type_addr + pi_type_qualname_offset(), &q->type_qualname, sizeof(uintptr_t));
        break;
    default:
        break;
    }
    return list->count - before;
}

static void finish(pi_callee_query *q, int64_t identity)
{
    q->identity = identity;
    q->stage = STAGE_DONE;
}

/* Finishes with a name that the next tick may take again (see pi_callee_memo). */
static void finish_kept(pi_callee_table *t, pi_callee_query *q, int64_t identity, int kind)
{
    finish(q, identity);
    if (identity >= 0 && identity != t->unknown)
        q->memo = (pi_callee_memo){kind, q->parsed, identity};
}

/* The call named last tick, read again: the same live callable (a module's function,
 * or a method descriptor whose argument is still of its own type) has the same name.
 * Anything else is named from scratch, from the next round. */
static void take_recheck(pi_callee_query *q, const pi_read *reads, size_t count)
{
    pi_callable c;
    uintptr_t owner_type = 0;
    const pi_callable *m = &q->memo.callable;
    bool same = reads[0].ok && !pi_object_dying(q->callable) && pi_parse_callable(q->callable, &c) == 0 &&
                c.kind == m->kind && c.method_def == m->method_def && c.self == m->self && c.type == m->type;
    if (same && q->memo.kind == PI_MEMO_DESCRIPTOR)
        same = count == 2 && reads[1].ok && !pi_object_dying(q->owner) &&
               pi_parse_object_header(q->owner, &owner_type) == 0 && owner_type == c.type;
    if (same) {
        finish(q, q->memo.identity);
    } else {
        q->memo.kind = PI_MEMO_NONE;
        q->stage = STAGE_CALLABLE;
    }
}

static void finish_unknown(pi_callee_table *t, pi_code_table *codes, pi_callee_query *q)
{
    finish(q, pi_callees_unknown(t, codes));
}

/* Whether the frame, read again after the callable, still stands on the same call
 * with the same slots: then the call was under way when the callable was read. */
static bool call_unchanged(const pi_callee_query *q, const pi_read *frame_read, const pi_read *slots_read)
{
    pi_frame now;
    return frame_read->ok && slots_read->ok && pi_parse_frame(q->frame_again, &now) == 0 &&
           now.code == q->seen.code && now.instr == q->seen.instr && now.lasti == q->seen.lasti &&
           memcmp(q->slots, q->slots_again, pi_call_slot_count(&q->call) * sizeof(uintptr_t)) == 0;
}

/* The owner read (a builtin's __self__, a method descriptor's argument): a module names
 * the function alone, anything else by its type, read next. `must_be` (0: any) is the
 * only type of owner that may be named. */
static void take_owner(pi_callee_table *t, pi_code_table *codes, pi_callee_query *q, const pi_read *reads,
                       uintptr_t must_be)
{
    uintptr_t owner_type = 0;
    /* an owner of the required type may have died since the call ended: its type is
     * still the one the call ran on */
    bool readable = reads[0].ok && (must_be ? (owner_type = pi_object_type(q->owner)) == must_be
                                            : pi_parse_object_header(q->owner, &owner_type) == 0);
    if (!readable) {
        finish_unknown(t, codes, q);
        q->ended = must_be != 0; /* the argument died with the call: reused by another type */
    } else if (owner_type == pi_module_type()) {
        int64_t identity = callee_identity(t, codes, q->method_def, 0, NULL);
        if (q->parsed.kind == PI_CALLABLE_CFUNCTION)
            finish_kept(t, q, identity, PI_MEMO_FUNCTION);
        else
            finish(q, identity);
    } else {
        q->owner_as_type_ok = reads[1].ok && reads[2].ok;
        q->type_addr = owner_type;
        q->stage = STAGE_TYPE;
    }
}

static bool calls_python_function(const pi_callee_query *q)
{
    uintptr_t type;
    return pi_parse_object_header(q->callable, &type) == 0 && type == pi_function_type();
}

/* Whether the callable's slot, copied with the frame, holds None: the result of a call
 * that has returned (None is called by nobody). */
static bool holds_a_result(const pi_callee_query *q)
{
    int callable, self;
    place_call(q, &callable, &self);
    return callable >= 0 && slot_object(q->slots, callable) == pi_none_object();
}

static void take_callable(pi_callee_table *t, pi_code_table *codes, pi_callee_query *q, const pi_read *reads,
                          size_t count)
{
    bool unchanged = call_unchanged(q, &reads[count - 2], &reads[count - 1]);
    const pi_read *owner_reads = count == 6 ? &reads[1] : NULL;
    pi_callable c;
    bool parsed = reads[0].ok && pi_parse_callable(q->callable, &c) == 0;
    if (parsed)
        q->parsed = c;
    if (unchanged && reads[0].ok && (pi_object_dying(q->callable) || (owner_reads && owner_reads[0].ok &&
                                                                       pi_object_dying(q->owner)))) {
        /* the stack let go of them: the call returned, its cleanup runs in the caller */
        finish(q, -1);
    } else if (q->have_slots && ((parsed && calls_python_function(q)) || holds_a_result(q))) {
        /* the callable copied with the frame is a Python function, which outlives its
         * calls and is no size of C callable (whose memory it could not be): the thread
         * stood on a call into Python code, setting it up or just back from it; or the
         * slot holds the None a call returned */
        finish(q, -1);
    } else if (!parsed || (!unchanged && !(q->have_slots && c.kind != PI_CALLABLE_OTHER))) {
        /* unreadable, or the call ended meanwhile: the object read may be another one
         * by now (its slot may hold the call's result, copied after the frame) */
        finish_unknown(t, codes, q);
        q->ended = !unchanged;
    } else if (c.kind == PI_CALLABLE_OTHER) {
        finish(q, -1); /* a Python function, a class...: no C function */
    } else if (c.kind == PI_CALLABLE_CFUNCTION && !c.self) {
        finish_kept(t, q, callee_identity(t, codes, c.method_def, 0, NULL), PI_MEMO_FUNCTION);
    } else if (c.kind == PI_CALLABLE_CFUNCTION) {
        /* its __self__ lives as long as it does: read next */
        q->method_def = c.method_def;
        q->owner_addr = c.self;
        q->owner_must_be = unchanged ? 0 : pi_module_type();
        q->stage = STAGE_OWNER;
    } else if (q->call.layout == PI_CALL_EX) {
        finish_unknown(t, codes, q); /* its argument is inside the arguments tuple */
    } else if (!owner_reads) {
        finish(q, -1); /* a method descriptor without argument raises before running */
    } else {
        /* a method descriptor runs bound to its first argument, named as that bound
         * builtin is */
        q->method_def = c.method_def;
        q->owner_addr = argument_to_read(q);
        take_owner(t, codes, q, owner_reads, unchanged ? 0 : c.type);
    }
}

/* Takes the results of a query's stage (`count` reads, as added) and moves it on. */
static void stage_take(pi_callee_table *t, pi_code_table *codes, pi_callee_query *q, const pi_read *reads,
                       size_t count)
{
    if (q->stage == STAGE_RECHECK) {
        take_recheck(q, reads, count);
    } else if (q->stage == STAGE_SLOTS) {
        if (reads[0].ok)
            q->stage = STAGE_CALLABLE;
        else
            finish_unknown(t, codes, q);
    } else if (q->stage == STAGE_CALLABLE) {
        take_callable(t, codes, q, reads, count);
    } else if (q->stage == STAGE_OWNER) {
        take_owner(t, codes, q, reads, q->owner_must_be);
    } else if (q->stage == STAGE_TYPE) {
        /* __self__ a module (of a subclass): the function's own name; a class: named
         * after it; an instance: after its type */
        pi_type type, owner;
        if (!reads[0].ok || !reads[1].ok || pi_parse_type(q->type, q->type_qualname, &type) != 0)
            finish_unknown(t, codes, q);
        else if (type.base == pi_module_type())
            finish(q, callee_identity(t, codes, q->method_def, 0, NULL));
        else if (!type.is_metatype && q->parsed.kind == PI_CALLABLE_METHOD_DESCRIPTOR &&
                 q->type_addr == q->parsed.type)
            finish_kept(t, q, callee_identity(t, codes, q->method_def, q->type_addr, &type), PI_MEMO_DESCRIPTOR);
        else if (!type.is_metatype)
            finish(q, callee_identity(t, codes, q->method_def, q->type_addr, &type));
        else if (q->owner_as_type_ok && pi_parse_type(q->owner_as_type, q->owner_qualname, &owner) == 0)
            finish(q, callee_identity(t, codes, q->method_def, q->owner_addr, &owner));
        else
            finish_unknown(t, codes, q);
    }
}

void pi_callees_resolve(pi_callee_table *t, pi_code_table *codes, pi_callee_query *queries, size_t count,
                        uint64_t *syscalls)
{
    if (pi_callable_read_size() > sizeof queries->callable || pi_type_read_size() > PI_TYPE_READ_MAX) {
        for (size_t i = 0; i < count; i++)
            queries[i].identity = pi_callees_unknown(t, codes);
        return;
    }
    read_list list = {malloc(6 * count * sizeof(pi_read) + 1), 0, 6 * count};
    size_t *first = malloc(count * sizeof *first + 1), *added = malloc(count * sizeof *added + 1);
    for (size_t i = 0; i < count; i++) {
        pi_callee_query *q = &queries[i];
        q->identity = -1;
        q->ended = false;
        memset(&q->parsed, 0, sizeof q->parsed);
        if (!q->have_slots)
            q->memo.kind = PI_MEMO_NONE;
        q->stage = q->memo.kind != PI_MEMO_NONE ? STAGE_RECHECK : q->have_slots ? STAGE_CALLABLE : STAGE_SLOTS;
    }
    if (!list.reads || !first || !added) {
        for (size_t i = 0; i < count; i++)
            queries[i].identity = pi_callees_unknown(t, codes);
        goto done;
    }
    for (;;) {
        list.count = 0;
        for (size_t i = 0; i < count; i++) {
            first[i] = list.count;
            added[i] = stage_reads(&queries[i], &list);
        }
        if (list.count == 0)
            break;
        *syscalls += (uint64_t)pi_read_batch(list.reads, list.count);
        for (size_t i = 0; i < count; i++)
            if (added[i])
                stage_take(t, codes, &queries[i], list.reads + first[i], added[i]);
    }
done:
    free(list.reads);
    free(first);
    free(added);
}
