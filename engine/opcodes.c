/*
 * opcodes.c: where a call instruction keeps the object it calls.
 *
 * When a thread's innermost Python frame stands on a call instruction, the thread is
 * inside what that instruction called. The callable sits on the caller's value stack,
 * at a slot that follows from the instruction and the stack depth at that point, and
 * that depth is static: the compiler guarantees the same depth at an instruction
 * whichever way it is reached. It is computed here from a copy of the bytecode
 * (specialised instructions mapped back to their base form with the interpreter's
 * own tables) by forward data flow, with the interpreter's own stack effects, from
 * the entry and from every exception handler (3.11+ exception table).
 */
#ifndef Py_BUILD_CORE_MODULE
#define Py_BUILD_CORE_MODULE 1
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#if PY_VERSION_HEX >= 0x030D0000
#define NEED_OPCODE_METADATA
#include "internal/pycore_opcode_metadata.h"
#elif PY_VERSION_HEX >= 0x030B0000
#define NEED_OPCODE_TABLES
#include "internal/pycore_opcode.h"
#else
#include "opcode.h"
#endif
#pragma GCC diagnostic pop

#include "engine.h"

#include <limits.h>
#include <stdlib.h>

static uint8_t base_opcode(uint8_t op)
{
#if PY_VERSION_HEX >= 0x030B0000
    return _PyOpcode_Deopt[op] ? _PyOpcode_Deopt[op] : op;
#else
    return op;
#endif
}

static unsigned cache_units(uint8_t base)
{
#if PY_VERSION_HEX >= 0x030B0000
    return _PyOpcode_Caches[base];
#else
    (void)base;
    return 0;
#endif
}

size_t pi_decode_bytecode(const uint8_t *code, size_t units, pi_instr *out)
{
    size_t count = 0;
    uint32_t extended = 0;
    uint32_t start = 0;
    for (size_t unit = 0; unit < units;) {
        uint8_t op = base_opcode(code[unit * 2]);
        uint32_t arg = extended | code[unit * 2 + 1];
        if (op == EXTENDED_ARG) {
            if (extended == 0)
                start = (uint32_t)unit;
            extended = arg << 8;
            unit++;
            continue;
        }
        if (extended == 0)
            start = (uint32_t)unit;
        extended = 0;
        out[count++] = (pi_instr){op, arg, (uint32_t)unit, start};
        unit += 1 + cache_units(op);
    }
    return count;
}

/* ---- static stack depth: forward data flow over the bytecode ---- */

#define NO_EFFECT INT_MIN

/* How much an instruction changes the stack depth, along its jump or its fall-through,
 * as the compiler counts it (the depth the compiler guarantees at each instruction).
 * PyCompile_OpcodeStackEffectWithJump is a pure function of its arguments on 3.9-3.12
 * (a switch in compile.c); 3.13+ use the interpreter's metadata tables compiled in here. */
static int stack_effect(const pi_instr *in, bool jump)
{
#if PY_VERSION_HEX >= 0x030D0000
    (void)jump;
    int popped = _PyOpcode_num_popped(in->op, (int)in->arg);
    int pushed = _PyOpcode_num_pushed(in->op, (int)in->arg);
    return popped < 0 || pushed < 0 ? NO_EFFECT : pushed - popped;
#else
#if PY_VERSION_HEX >= 0x030B0000
    /* counted as 0 by the compiler, yet the POP_TOP after it pops the value a resumed
     * generator receives */
    if (in->op == RETURN_GENERATOR)
        return 1;
#endif
    if (in->arg > INT_MAX)
        return NO_EFFECT;
    int effect = PyCompile_OpcodeStackEffectWithJump(in->op, (int)in->arg, jump);
    return effect == PY_INVALID_STACK_EFFECT ? NO_EFFECT : effect;
#endif
}

/* Whether the instruction can be followed by the next one. */
static bool falls_through(int op)
{
    switch (op) {
    case RETURN_VALUE:
    case RAISE_VARARGS:
    case RERAISE:
    case JUMP_FORWARD:
#ifdef RETURN_CONST
    case RETURN_CONST:
#endif
#if PY_VERSION_HEX >= 0x030B0000
    case JUMP_BACKWARD:
    case JUMP_BACKWARD_NO_INTERRUPT:
#else
    case JUMP_ABSOLUTE:
#endif
        return false;
    default:
        return true;
    }
}

/* The code unit a jump instruction jumps to (as the dis module computes it); false for
 * an instruction that does not jump. */
static bool jump_target(const pi_instr *in, int64_t *target)
{
    int64_t next = (int64_t)in->unit + 1 + cache_units(in->op);
    int64_t arg = in->arg;
    switch ((int)in->op) {
#if PY_VERSION_HEX < 0x030B0000
    case FOR_ITER:
    case JUMP_FORWARD:
    case SETUP_FINALLY:
    case SETUP_WITH:
    case SETUP_ASYNC_WITH:
        *target = next + (PY_VERSION_HEX >= 0x030A0000 ? arg : arg / 2);
        return true;
    case JUMP_ABSOLUTE:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case POP_JUMP_IF_FALSE:
    case POP_JUMP_IF_TRUE:
    case JUMP_IF_NOT_EXC_MATCH:
        *target = PY_VERSION_HEX >= 0x030A0000 ? arg : arg / 2;
        return true;
#else
    case JUMP_BACKWARD:
    case JUMP_BACKWARD_NO_INTERRUPT:
#if PY_VERSION_HEX < 0x030C0000
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_NONE:
    case POP_JUMP_BACKWARD_IF_NOT_NONE:
#endif
        *target = next - arg;
        return true;
    case FOR_ITER:
    case JUMP_FORWARD:
    case SEND:
#if PY_VERSION_HEX < 0x030C0000
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
#else
    case POP_JUMP_IF_FALSE:
    case POP_JUMP_IF_TRUE:
    case POP_JUMP_IF_NONE:
    case POP_JUMP_IF_NOT_NONE:
#endif
        *target = next + arg;
        return true;
#endif
    default:
        return false;
    }
}

/* Opcodes whose presence means the copy is not plain bytecode: instrumented code
 * (sys.monitoring keeps the real instruction elsewhere) or tier-2 executors. */
static bool analysable(int op)
{
#ifdef MIN_INSTRUMENTED_OPCODE
    if (op >= MIN_INSTRUMENTED_OPCODE)
        return false;
#endif
#ifdef ENTER_EXECUTOR
    if (op == ENTER_EXECUTOR)
        return false;
#endif
    (void)op;
    return true;
}

/* The instruction whose first code unit (EXTENDED_ARG prefix included) is `unit`. */
static size_t instr_at_start(const pi_instr *ins, size_t count, int64_t unit)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)ins[mid].start < unit)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < count && (int64_t)ins[lo].start == unit ? lo : SIZE_MAX;
}

typedef struct {
    int32_t *depths;
    size_t *work;
    size_t work_count, count;
    int32_t max_depth;
} flow;

static int flow_reach(flow *f, size_t index, int64_t depth)
{
    if (index >= f->count || depth < 0 || depth > f->max_depth)
        return -1;
    if (f->depths[index] >= 0)
        return f->depths[index] == depth ? 0 : -1; /* the compiler keeps depths consistent */
    f->depths[index] = (int32_t)depth;
    f->work[f->work_count++] = index;
    return 0;
}

/* 3.11+ exception table: 6-bit big-endian varints, continuation in bit 6. */
static bool read_varint(const uint8_t *table, size_t len, size_t *pos, int64_t *out)
{
    if (*pos >= len)
        return false;
    uint8_t b = table[(*pos)++];
    int64_t value = b & 63;
    while (b & 64) {
        if (*pos >= len || value > (INT64_C(1) << 40))
            return false;
        b = table[(*pos)++];
        value = (value << 6) | (b & 63);
    }
    *out = value;
    return true;
}

/* 3.10 generators begin with GEN_START, which pops the value the first resume sends. */
static int64_t first_depth(const pi_instr *first)
{
#ifdef GEN_START
    return first->op == GEN_START;
#else
    (void)first;
    return 0;
#endif
}

int pi_stack_depths(const pi_instr *ins, size_t count, const uint8_t *exceptions, size_t exceptions_len,
                    int32_t max_depth, int32_t *depths)
{
    flow f = {depths, malloc((count + 1) * sizeof(size_t)), 0, count, max_depth};
    if (!f.work)
        return -1;
    for (size_t i = 0; i < count; i++)
        depths[i] = -1;
    int result = -1;
    for (size_t i = 0; i < count; i++)
        if (!analysable(ins[i].op))
            goto done;
    if (count == 0 || flow_reach(&f, 0, first_depth(&ins[0])) != 0)
        goto done;
    /* a handler starts with the depth the table gives, plus the offset of the
     * instruction that raised (if it asks for it), plus the exception */
    for (size_t pos = 0; pos < exceptions_len;) {
        int64_t start, size, target, depth_lasti;
        if (!read_varint(exceptions, exceptions_len, &pos, &start) ||
            !read_varint(exceptions, exceptions_len, &pos, &size) ||
            !read_varint(exceptions, exceptions_len, &pos, &target) ||
            !read_varint(exceptions, exceptions_len, &pos, &depth_lasti))
            goto done;
        if (flow_reach(&f, instr_at_start(ins, count, target), (depth_lasti >> 1) + (depth_lasti & 1) + 1) != 0)
            goto done;
    }
    while (f.work_count > 0) {
        size_t i = f.work[--f.work_count];
        const pi_instr *in = &ins[i];
        int64_t target;
        if (jump_target(in, &target)) {
            int effect = stack_effect(in, true);
            if (effect == NO_EFFECT || flow_reach(&f, instr_at_start(ins, count, target), depths[i] + effect) != 0)
                goto done;
        }
        if (falls_through(in->op) && i + 1 < count) {
            int effect = stack_effect(in, false);
            if (effect == NO_EFFECT || flow_reach(&f, i + 1, depths[i] + effect) != 0)
                goto done;
        }
    }
    result = 0;
done:
    free(f.work);
    return result;
}

/* ---- where a call instruction keeps what it calls ---- */

int pi_call_layout(const pi_instr *in, int32_t depth, pi_call *out)
{
    int64_t argc = in->arg, bottom;
    switch ((int)in->op) {
#if PY_VERSION_HEX < 0x030B0000
    case CALL_FUNCTION: /* callable, args */
        out->layout = PI_CALL_PLAIN;
        bottom = depth - 1 - argc;
        break;
    case CALL_FUNCTION_KW: /* callable, args, kwnames */
        out->layout = PI_CALL_PLAIN;
        bottom = depth - 2 - argc;
        break;
    case CALL_METHOD: /* method or NULL, self or callable, args */
        out->layout = PI_CALL_NULL_FIRST;
        bottom = depth - 2 - argc;
        break;
    case CALL_FUNCTION_EX: /* callable, args tuple, kwargs if flag 1 */
        out->layout = PI_CALL_EX;
        bottom = depth - 2 - (argc & 1);
        argc = 0;
        break;
#elif PY_VERSION_HEX < 0x030D0000
#if PY_VERSION_HEX < 0x030C0000
    case PRECALL: /* method or NULL, self or callable, args */
        out->layout = PI_CALL_NULL_FIRST;
        bottom = depth - 2 - argc;
        break;
#endif
    case CALL:
        out->layout = PI_CALL_NULL_FIRST;
        /* 3.11's compiler counts the arguments as popped by PRECALL already */
        bottom = depth - 2 - (PY_VERSION_HEX >= 0x030C0000 ? argc : 0);
        break;
    case CALL_FUNCTION_EX: /* NULL, callable, args tuple, kwargs if flag 1 */
        out->layout = PI_CALL_EX;
        bottom = depth - 2 - (argc & 1);
        argc = 0;
        break;
#else
    case CALL:    /* callable, self or NULL, args */
    case CALL_KW: /* callable, self or NULL, args, kwnames */
        out->layout = PI_CALL_SELF_AFTER;
        bottom = depth - _PyOpcode_num_popped(in->op, (int)in->arg);
        break;
    case CALL_FUNCTION_EX: /* callable, NULL, args tuple, kwargs (3.14+ always) */
        out->layout = PI_CALL_EX;
        bottom = depth - _PyOpcode_num_popped(in->op, (int)in->arg);
        argc = 0;
        break;
#endif
    default:
        return -1;
    }
    if (depth < 0)
        return 1;
    bool two_slots = out->layout == PI_CALL_NULL_FIRST || out->layout == PI_CALL_SELF_AFTER;
    if (bottom < 0 || bottom + two_slots >= depth)
        return 1;
    out->bottom = (int32_t)bottom;
    out->argc = (uint32_t)argc;
    return 0;
}

size_t pi_call_slot_count(const pi_call *call)
{
    size_t fixed = call->layout == PI_CALL_NULL_FIRST || call->layout == PI_CALL_SELF_AFTER ? 2 : 1;
    return fixed + (call->layout != PI_CALL_EX && call->argc > 0);
}

void pi_call_place(const pi_call *call, bool first_slot_set, bool second_slot_set, int *callable, int *self)
{
    bool has_arg = call->argc > 0;
    *callable = 0;
    *self = -1;
    switch (call->layout) {
    case PI_CALL_PLAIN:
        *self = has_arg ? 1 : -1;
        break;
    case PI_CALL_NULL_FIRST:
        *callable = first_slot_set ? 0 : 1;
        *self = first_slot_set ? 1 : (has_arg ? 2 : -1);
        break;
    case PI_CALL_SELF_AFTER:
        *self = second_slot_set ? 1 : (has_arg ? 2 : -1);
        break;
    default:
        break;
    }
}
