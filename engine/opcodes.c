/*
 * opcodes.c: where a call instruction keeps the object it calls.
 *
 * When a thread's innermost Python frame stands on a call instruction, the thread is
 * inside what that instruction called. The callable sits on the caller's value stack,
 * at a slot that follows from the instruction and the stack depth at that point, and
 * that depth is static: the compiler guarantees the same depth at an instruction
 * whichever way it is reached. It is computed here from a copy of the bytecode
 * (specialised instructions mapped back to their base form) by forward data flow, with
 * the interpreter's own stack effects, from the entry and from every exception handler
 * (3.11+ exception table). What each version's bytecode is (its opcodes, inline caches
 * and stack effects) comes from opcodes_table.h, written from each version's own
 * headers and compiler, so that a process of another version is analysed the same way.
 */
#include "engine.h"
#include "opcodes_table.h"

#include <limits.h>
#include <stdlib.h>

/* The table of the version read (the layout's), found once per version. */
static const pi_opcode_table *table(void)
{
    static const pi_opcode_table *found;
    uint32_t version = pi_layout_version();
    if (!found || found->version != version) {
        found = &pi_known_opcodes[0];
        for (size_t i = 0; i < sizeof pi_known_opcodes / sizeof pi_known_opcodes[0]; i++)
            if (pi_known_opcodes[i].version == version)
                found = &pi_known_opcodes[i];
    }
    return found;
}

#define OP(name) (table()->ops[PI_OP_##name])
#define AT_LEAST(minor) (table()->version >= (0x03000000u | ((unsigned)(minor) << 16)))

static uint8_t base_opcode(uint8_t op)
{
    uint8_t base = table()->deopt[op];
    return base ? base : op;
}

static unsigned cache_units(uint8_t base)
{
    return table()->caches[base];
}

#define NO_EFFECT INT_MIN

/* A form of the table at oparg; NO_EFFECT where it has none. */
static int form_value(pi_effect_form form, uint32_t oparg)
{
    if (form.shift == PI_EFFECT_UNKNOWN || oparg >= (1u << 24)) /* past what the table was checked on */
        return NO_EFFECT;
    const int16_t *row = table()->pool + form.row;
    if (form.clamp)
        return row[oparg < form.clamp ? oparg : form.clamp - 1u];
    return row[oparg & ((1u << form.shift) - 1u)] + form.mul * (int)(oparg >> form.shift);
}

size_t pi_decode_bytecode(const uint8_t *code, size_t units, pi_instr *out)
{
    size_t count = 0;
    uint32_t extended = 0;
    uint32_t start = 0;
    for (size_t unit = 0; unit < units;) {
        uint8_t op = base_opcode(code[unit * 2]);
        uint32_t arg = extended | code[unit * 2 + 1];
        if (op == OP(EXTENDED_ARG)) {
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

/* How much an instruction changes the stack depth, along its jump or its fall-through,
 * as the compiler counts it (the depth the compiler guarantees at each instruction):
 * 3.9-3.12 the compiler's own stack effects, 3.13+ the interpreter's metadata. */
static int stack_effect(const pi_instr *in, bool jump)
{
    /* 3.11/3.12: counted as 0 by the compiler, yet the POP_TOP after it pops the value a
     * resumed generator receives */
    if (AT_LEAST(11) && !AT_LEAST(13) && in->op == OP(RETURN_GENERATOR))
        return 1;
    return form_value(table()->effect[AT_LEAST(13) ? 0 : jump][in->op], in->arg);
}

int pi_opcode_stack_effect(uint8_t op, uint32_t arg, bool jump)
{
    pi_instr in = {op, arg, 0, 0};
    return stack_effect(&in, jump);
}

/* Whether the instruction can be followed by the next one. */
static bool falls_through(int op)
{
    return op != OP(RETURN_VALUE) && op != OP(RAISE_VARARGS) && op != OP(RERAISE) && op != OP(JUMP_FORWARD) &&
           op != OP(RETURN_CONST) && op != OP(JUMP_BACKWARD) && op != OP(JUMP_BACKWARD_NO_INTERRUPT) &&
           op != OP(JUMP_ABSOLUTE);
}

/* The code unit a jump instruction jumps to (as the dis module computes it); false for
 * an instruction that does not jump. */
static bool jump_target(const pi_instr *in, int64_t *target)
{
    int64_t next = (int64_t)in->unit + 1 + cache_units(in->op);
    int64_t arg = in->arg;
    int op = in->op;
    if (!AT_LEAST(11)) {
        int64_t offset = AT_LEAST(10) ? arg : arg / 2; /* 3.9 counts bytes */
        if (op == OP(FOR_ITER) || op == OP(JUMP_FORWARD) || op == OP(SETUP_FINALLY) || op == OP(SETUP_WITH) ||
            op == OP(SETUP_ASYNC_WITH)) {
            *target = next + offset;
            return true;
        }
        if (op == OP(JUMP_ABSOLUTE) || op == OP(JUMP_IF_FALSE_OR_POP) || op == OP(JUMP_IF_TRUE_OR_POP) ||
            op == OP(POP_JUMP_IF_FALSE) || op == OP(POP_JUMP_IF_TRUE) || op == OP(JUMP_IF_NOT_EXC_MATCH)) {
            *target = offset;
            return true;
        }
        return false;
    }
    if (op == OP(JUMP_BACKWARD) || op == OP(JUMP_BACKWARD_NO_INTERRUPT) || op == OP(POP_JUMP_BACKWARD_IF_FALSE) ||
        op == OP(POP_JUMP_BACKWARD_IF_TRUE) || op == OP(POP_JUMP_BACKWARD_IF_NONE) ||
        op == OP(POP_JUMP_BACKWARD_IF_NOT_NONE)) {
        *target = next - arg;
        return true;
    }
    if (op == OP(FOR_ITER) || op == OP(JUMP_FORWARD) || op == OP(SEND) || op == OP(JUMP_IF_FALSE_OR_POP) ||
        op == OP(JUMP_IF_TRUE_OR_POP) || op == OP(POP_JUMP_FORWARD_IF_FALSE) || op == OP(POP_JUMP_FORWARD_IF_TRUE) ||
        op == OP(POP_JUMP_FORWARD_IF_NONE) || op == OP(POP_JUMP_FORWARD_IF_NOT_NONE) ||
        (AT_LEAST(12) && (op == OP(POP_JUMP_IF_FALSE) || op == OP(POP_JUMP_IF_TRUE) || op == OP(POP_JUMP_IF_NONE) ||
                          op == OP(POP_JUMP_IF_NOT_NONE)))) {
        *target = next + arg;
        return true;
    }
    return false;
}

/* Opcodes whose presence means the copy is not plain bytecode: instrumented code
 * (sys.monitoring keeps the real instruction elsewhere) or tier-2 executors. */
static bool analysable(int op)
{
    return !(OP(MIN_INSTRUMENTED_OPCODE) >= 0 && op >= OP(MIN_INSTRUMENTED_OPCODE)) && op != OP(ENTER_EXECUTOR);
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
    return first->op == OP(GEN_START);
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

/* 3.13+: how many slots a call pops (its callable, self or NULL, and arguments). */
static int call_popped(int which, const pi_instr *in)
{
    return form_value(table()->call_popped[which], in->arg);
}

int pi_call_layout(const pi_instr *in, int32_t depth, pi_call *out)
{
    int64_t argc = in->arg, bottom;
    int op = in->op;
    if (!AT_LEAST(11)) {
        if (op == OP(CALL_FUNCTION)) { /* callable, args */
            out->layout = PI_CALL_PLAIN;
            bottom = depth - 1 - argc;
        } else if (op == OP(CALL_FUNCTION_KW)) { /* callable, args, kwnames */
            out->layout = PI_CALL_PLAIN;
            bottom = depth - 2 - argc;
        } else if (op == OP(CALL_METHOD)) { /* method or NULL, self or callable, args */
            out->layout = PI_CALL_NULL_FIRST;
            bottom = depth - 2 - argc;
        } else if (op == OP(CALL_FUNCTION_EX)) { /* callable, args tuple, kwargs if flag 1 */
            out->layout = PI_CALL_EX;
            bottom = depth - 2 - (argc & 1);
            argc = 0;
        } else {
            return -1;
        }
    } else if (!AT_LEAST(13)) {
        if (op == OP(PRECALL)) { /* 3.11: method or NULL, self or callable, args */
            out->layout = PI_CALL_NULL_FIRST;
            bottom = depth - 2 - argc;
        } else if (op == OP(CALL)) {
            out->layout = PI_CALL_NULL_FIRST;
            /* 3.11's compiler counts the arguments as popped by PRECALL already */
            bottom = depth - 2 - (AT_LEAST(12) ? argc : 0);
        } else if (op == OP(CALL_FUNCTION_EX)) { /* NULL, callable, args tuple, kwargs if flag 1 */
            out->layout = PI_CALL_EX;
            bottom = depth - 2 - (argc & 1);
            argc = 0;
        } else {
            return -1;
        }
    } else {
        int popped;
        if (op == OP(CALL) || op == OP(CALL_KW)) { /* callable, self or NULL, args (, kwnames) */
            out->layout = PI_CALL_SELF_AFTER;
            popped = call_popped(op == OP(CALL) ? 0 : 1, in);
        } else if (op == OP(CALL_FUNCTION_EX)) { /* callable, NULL, args tuple, kwargs (3.14+ always) */
            out->layout = PI_CALL_EX;
            popped = call_popped(2, in);
            argc = 0;
        } else {
            return -1;
        }
        if (popped == NO_EFFECT)
            return 1;
        bottom = depth - popped;
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
