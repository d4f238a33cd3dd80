/*
 * opcodes.c: naming the C function a thread is in, from the calling bytecode.
 *
 * When a thread's innermost Python frame stands on a call instruction and no newer
 * Python frame exists, the thread is inside a function written in C (time.sleep,
 * lock.acquire, sock.recv, sorted...). Which one is read from a copy of the caller's
 * bytecode: the call instruction is matched, backwards, with the instruction that
 * began that call (the one that loads a method or pushes the NULL placeholder),
 * and that instruction's operand names the callee. No extra read of live memory
 * is needed per sample. Specialised instructions are mapped back to their base
 * form with the interpreter's own tables.
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
    for (size_t unit = 0; unit < units;) {
        uint8_t op = base_opcode(code[unit * 2]);
        uint32_t arg = extended | code[unit * 2 + 1];
        if (op == EXTENDED_ARG) {
            extended = arg << 8;
            unit++;
            continue;
        }
        extended = 0;
        out[count++] = (pi_instr){op, arg, (uint32_t)unit};
        unit += 1 + cache_units(op);
    }
    return count;
}

static bool is_call(uint8_t op)
{
#if PY_VERSION_HEX >= 0x030B0000
    if (op == CALL || op == CALL_FUNCTION_EX)
        return true;
#if PY_VERSION_HEX >= 0x030D0000
    if (op == CALL_KW)
        return true;
#endif
    return false;
#else
    return op == CALL_FUNCTION || op == CALL_FUNCTION_KW || op == CALL_FUNCTION_EX || op == CALL_METHOD;
#endif
}

/* The name an instruction loads, as (tuple, index); false if it loads no name. */
static bool loaded_name(const pi_instr *in, int *kind, uint32_t *index)
{
    switch (in->op) {
    case LOAD_FAST:
#ifdef LOAD_FAST_CHECK
    case LOAD_FAST_CHECK:
#endif
#ifdef LOAD_FAST_BORROW
    case LOAD_FAST_BORROW:
#endif
#if PY_VERSION_HEX >= 0x030B0000
    case LOAD_DEREF:
#endif
        *kind = PI_NAME_LOCALS;
        *index = in->arg;
        return true;
    case LOAD_NAME:
        *kind = PI_NAME_NAMES;
        *index = in->arg;
        return true;
    case LOAD_GLOBAL:
        *kind = PI_NAME_NAMES;
        *index = PY_VERSION_HEX >= 0x030B0000 ? in->arg >> 1 : in->arg;
        return true;
    case LOAD_ATTR:
        *kind = PI_NAME_NAMES;
        *index = PY_VERSION_HEX >= 0x030C0000 ? in->arg >> 1 : in->arg;
        return true;
#if PY_VERSION_HEX < 0x030C0000
    case LOAD_METHOD:
        *kind = PI_NAME_NAMES;
        *index = in->arg;
        return true;
#endif
#ifdef LOAD_SUPER_ATTR
    case LOAD_SUPER_ATTR:
        *kind = PI_NAME_NAMES;
        *index = in->arg >> 2;
        return true;
#endif
    default:
        return false;
    }
}

/* 3.11+: does this instruction begin a call (push the NULL/self slot)? */
static bool begins_call(const pi_instr *in)
{
#if PY_VERSION_HEX >= 0x030B0000
    switch (in->op) {
    case PUSH_NULL:
        return true;
    case LOAD_GLOBAL:
        return in->arg & 1;
#if PY_VERSION_HEX >= 0x030C0000
    case LOAD_ATTR:
        return in->arg & 1;
    case LOAD_SUPER_ATTR:
        return in->arg & 1;
#else
    case LOAD_METHOD:
        return true;
#endif
    default:
        return false;
    }
#else
    return in->op == LOAD_METHOD;
#endif
}

#if PY_VERSION_HEX < 0x030B0000
/* Pushes exactly one value and reads nothing from the stack (3.9/3.10 fallback). */
static bool simple_push(uint8_t op)
{
    return op == LOAD_CONST || op == LOAD_FAST || op == LOAD_GLOBAL || op == LOAD_NAME || op == LOAD_DEREF;
}
#endif

/* 3.14+: `f(*args)` pushes a NULL for the absent **kwargs right before the call;
 * that NULL begins nothing. True when the call at k has one. */
static bool has_kwargs_null(const pi_instr *ins, size_t k)
{
#if PY_VERSION_HEX >= 0x030E0000
    return ins[k].op == CALL_FUNCTION_EX && k > 0 && ins[k - 1].op == PUSH_NULL;
#else
    (void)ins;
    (void)k;
    return false;
#endif
}

/* The last of a chain of attribute loads starting at c (`time.sleep`: the `sleep`). */
static size_t follow_attributes(const pi_instr *ins, size_t c, size_t call)
{
#if PY_VERSION_HEX >= 0x030B0000
    while (c + 1 < call && ins[c + 1].op == LOAD_ATTR && !(PY_VERSION_HEX >= 0x030C0000 && (ins[c + 1].arg & 1)))
        c++;
#else
    (void)ins;
    (void)call;
#endif
    return c;
}

int pi_callee_name_ref(const pi_instr *ins, size_t count, size_t k, int *kind, uint32_t *index)
{
    if (k >= count || !is_call(ins[k].op))
        return -1;
#if PY_VERSION_HEX < 0x030B0000
    if (ins[k].op != CALL_METHOD) {
        /* f(a, b): only when every argument is a single load can we find f */
        size_t args = ins[k].op == CALL_FUNCTION_EX ? 1 + (ins[k].arg & 1) : ins[k].arg + (ins[k].op == CALL_FUNCTION_KW);
        if (args >= k)
            return -1;
        for (size_t a = 1; a <= args; a++)
            if (!simple_push(ins[k - a].op))
                return -1;
        return loaded_name(&ins[k - args - 1], kind, index) ? 0 : -1;
    }
#endif
    /* match calls and call-beginnings like brackets, backwards */
    size_t nested = 0;
    for (size_t j = has_kwargs_null(ins, k) ? k - 1 : k; j-- > 0;) {
        if (is_call(ins[j].op)
#if PY_VERSION_HEX < 0x030B0000
            && ins[j].op == CALL_METHOD
#endif
        ) {
            nested++;
            if (has_kwargs_null(ins, j))
                j--;
            continue;
        }
        if (!begins_call(&ins[j]))
            continue;
        if (nested > 0) {
            nested--;
            continue;
        }
#if PY_VERSION_HEX >= 0x030B0000
        if (ins[j].op == PUSH_NULL) {
            /* 3.11/3.12 push NULL before the callable, 3.13+ after it */
            size_t callable = PY_VERSION_HEX >= 0x030D0000 ? j - 1 : j + 1;
            if ((PY_VERSION_HEX >= 0x030D0000 && j == 0) || callable >= k)
                return -1;
            return loaded_name(&ins[follow_attributes(ins, callable, k)], kind, index) ? 0 : -1;
        }
#endif
        return loaded_name(&ins[follow_attributes(ins, j, k)], kind, index) ? 0 : -1;
    }
    return -1;
}
