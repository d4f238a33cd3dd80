/*
 * opcodes_probe.c: prints what the engine's bytecode analysis (engine/opcodes.c) needs of
 * the CPython it is built against, as one entry of engine/opcodes_table.h
 * (tools/gen_layouts.py builds it once per version, linked with that version's libpython
 * before 3.13, whose stack effects live in its compiler).
 */
#ifndef Py_BUILD_CORE_MODULE
#define Py_BUILD_CORE_MODULE 1
#endif
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

#include "opcodes_table_types.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#define INVALID 100000 /* no stack effect: no such opcode, or not for this oparg */

/* The compiler's stack effect (3.9-3.12) or the interpreter's metadata (3.13+). */
static int effect(int op, int oparg, int jump)
{
#if PY_VERSION_HEX >= 0x030D0000
    (void)jump;
    int popped = _PyOpcode_num_popped(op, oparg), pushed = _PyOpcode_num_pushed(op, oparg);
    return popped < 0 || pushed < 0 ? INVALID : pushed - popped;
#else
    int e = PyCompile_OpcodeStackEffectWithJump(op, oparg, jump);
    return e == PY_INVALID_STACK_EFFECT ? INVALID : e;
#endif
}

static int popped(int op, int oparg, int jump)
{
    (void)jump;
#if PY_VERSION_HEX >= 0x030D0000
    int n = _PyOpcode_num_popped(op, oparg);
    return n < 0 ? INVALID : n;
#else
    (void)op;
    (void)oparg;
    return INVALID;
#endif
}

static int16_t pool[8192];
static size_t pool_len;

/* The opargs a form must agree with: all below 1024, then larger ones. */
static bool sampled(int i, int *oparg)
{
    static const int large[] = {1 << 11, 4095, 4096, 65535, 65536, 1 << 20, (1 << 24) - 1};
    if (i < 1024)
        *oparg = i;
    else if (i - 1024 < (int)(sizeof large / sizeof large[0]))
        *oparg = large[i - 1024];
    else
        return false;
    return true;
}

/* The first form row[oparg & mask] + mul * (oparg >> shift) that gives f everywhere sampled. */
static pi_effect_form fit(int (*f)(int, int, int), int op, int jump)
{
    static const int shifts[] = {0, 1, 2, 3, 4, 8};
    pi_effect_form unknown = {PI_EFFECT_UNKNOWN, 0, 0, 0};
    if (op < 0 || f(op, 0, jump) == INVALID)
        return unknown;
    for (size_t s = 0; s < sizeof shifts / sizeof shifts[0]; s++) {
        int shift = shifts[s], mask = (1 << shift) - 1;
        int mul = f(op, 1 << shift, jump) - f(op, 0, jump);
        if (mul < INT8_MIN || mul > INT8_MAX || pool_len + (size_t)mask + 1 > sizeof pool / sizeof pool[0])
            continue;
        bool fits = true;
        int oparg;
        for (int i = 0; fits && sampled(i, &oparg); i++) {
            int want = f(op, oparg, jump);
            int row = f(op, oparg & mask, jump);
            fits = want != INVALID && row != INVALID && want == row + mul * (oparg >> shift);
        }
        if (!fits)
            continue;
        pi_effect_form form = {(uint8_t)shift, (int8_t)mul, (uint16_t)pool_len, 0};
        for (int k = 0; k <= mask; k++)
            pool[pool_len++] = (int16_t)f(op, k, jump);
        return form;
    }
    for (int clamp = 2; clamp <= 16; clamp *= 2) {
        bool fits = true;
        int oparg;
        for (int i = 0; fits && sampled(i, &oparg); i++)
            fits = f(op, oparg, jump) != INVALID && f(op, oparg, jump) == f(op, oparg < clamp ? oparg : clamp - 1, jump);
        if (!fits || pool_len + (size_t)clamp > sizeof pool / sizeof pool[0])
            continue;
        pi_effect_form form = {0, 0, (uint16_t)pool_len, (uint8_t)clamp};
        for (int k = 0; k < clamp; k++)
            pool[pool_len++] = (int16_t)f(op, k, jump);
        return form;
    }
    fprintf(stderr, "opcode %d (jump %d): no form fits its stack effect; code using it is not analysed\n", op, jump);
    return unknown;
}

static int base_of(int op)
{
#if PY_VERSION_HEX >= 0x030B0000
    return _PyOpcode_Deopt[op];
#else
    return op;
#endif
}

static int caches_of(int op)
{
#if PY_VERSION_HEX >= 0x030B0000
    return _PyOpcode_Caches[op];
#else
    (void)op;
    return 0;
#endif
}

static void print_form(pi_effect_form f)
{
    printf("{%u, %d, %u, %u}", f.shift, f.mul, f.row, f.clamp);
}

int main(void)
{
    int16_t ops[PI_OP_COUNT];
#define PI_OPCODE_VALUE(name) ops[PI_OP_##name] = -1;
    PI_OPCODE_NAMES(PI_OPCODE_VALUE)
#undef PI_OPCODE_VALUE
#ifdef EXTENDED_ARG
    ops[PI_OP_EXTENDED_ARG] = EXTENDED_ARG;
#endif
#ifdef RETURN_VALUE
    ops[PI_OP_RETURN_VALUE] = RETURN_VALUE;
#endif
#ifdef RETURN_CONST
    ops[PI_OP_RETURN_CONST] = RETURN_CONST;
#endif
#ifdef RAISE_VARARGS
    ops[PI_OP_RAISE_VARARGS] = RAISE_VARARGS;
#endif
#ifdef RERAISE
    ops[PI_OP_RERAISE] = RERAISE;
#endif
#ifdef JUMP_FORWARD
    ops[PI_OP_JUMP_FORWARD] = JUMP_FORWARD;
#endif
#ifdef JUMP_BACKWARD
    ops[PI_OP_JUMP_BACKWARD] = JUMP_BACKWARD;
#endif
#ifdef JUMP_BACKWARD_NO_INTERRUPT
    ops[PI_OP_JUMP_BACKWARD_NO_INTERRUPT] = JUMP_BACKWARD_NO_INTERRUPT;
#endif
#ifdef JUMP_ABSOLUTE
    ops[PI_OP_JUMP_ABSOLUTE] = JUMP_ABSOLUTE;
#endif
#ifdef FOR_ITER
    ops[PI_OP_FOR_ITER] = FOR_ITER;
#endif
#ifdef SETUP_FINALLY
    ops[PI_OP_SETUP_FINALLY] = SETUP_FINALLY;
#endif
#ifdef SETUP_WITH
    ops[PI_OP_SETUP_WITH] = SETUP_WITH;
#endif
#ifdef SETUP_ASYNC_WITH
    ops[PI_OP_SETUP_ASYNC_WITH] = SETUP_ASYNC_WITH;
#endif
#ifdef JUMP_IF_FALSE_OR_POP
    ops[PI_OP_JUMP_IF_FALSE_OR_POP] = JUMP_IF_FALSE_OR_POP;
#endif
#ifdef JUMP_IF_TRUE_OR_POP
    ops[PI_OP_JUMP_IF_TRUE_OR_POP] = JUMP_IF_TRUE_OR_POP;
#endif
#ifdef POP_JUMP_IF_FALSE
    ops[PI_OP_POP_JUMP_IF_FALSE] = POP_JUMP_IF_FALSE;
#endif
#ifdef POP_JUMP_IF_TRUE
    ops[PI_OP_POP_JUMP_IF_TRUE] = POP_JUMP_IF_TRUE;
#endif
#ifdef POP_JUMP_IF_NONE
    ops[PI_OP_POP_JUMP_IF_NONE] = POP_JUMP_IF_NONE;
#endif
#ifdef POP_JUMP_IF_NOT_NONE
    ops[PI_OP_POP_JUMP_IF_NOT_NONE] = POP_JUMP_IF_NOT_NONE;
#endif
#ifdef JUMP_IF_NOT_EXC_MATCH
    ops[PI_OP_JUMP_IF_NOT_EXC_MATCH] = JUMP_IF_NOT_EXC_MATCH;
#endif
#ifdef POP_JUMP_BACKWARD_IF_FALSE
    ops[PI_OP_POP_JUMP_BACKWARD_IF_FALSE] = POP_JUMP_BACKWARD_IF_FALSE;
#endif
#ifdef POP_JUMP_BACKWARD_IF_TRUE
    ops[PI_OP_POP_JUMP_BACKWARD_IF_TRUE] = POP_JUMP_BACKWARD_IF_TRUE;
#endif
#ifdef POP_JUMP_BACKWARD_IF_NONE
    ops[PI_OP_POP_JUMP_BACKWARD_IF_NONE] = POP_JUMP_BACKWARD_IF_NONE;
#endif
#ifdef POP_JUMP_BACKWARD_IF_NOT_NONE
    ops[PI_OP_POP_JUMP_BACKWARD_IF_NOT_NONE] = POP_JUMP_BACKWARD_IF_NOT_NONE;
#endif
#ifdef POP_JUMP_FORWARD_IF_FALSE
    ops[PI_OP_POP_JUMP_FORWARD_IF_FALSE] = POP_JUMP_FORWARD_IF_FALSE;
#endif
#ifdef POP_JUMP_FORWARD_IF_TRUE
    ops[PI_OP_POP_JUMP_FORWARD_IF_TRUE] = POP_JUMP_FORWARD_IF_TRUE;
#endif
#ifdef POP_JUMP_FORWARD_IF_NONE
    ops[PI_OP_POP_JUMP_FORWARD_IF_NONE] = POP_JUMP_FORWARD_IF_NONE;
#endif
#ifdef POP_JUMP_FORWARD_IF_NOT_NONE
    ops[PI_OP_POP_JUMP_FORWARD_IF_NOT_NONE] = POP_JUMP_FORWARD_IF_NOT_NONE;
#endif
#ifdef SEND
    ops[PI_OP_SEND] = SEND;
#endif
#ifdef GEN_START
    ops[PI_OP_GEN_START] = GEN_START;
#endif
#ifdef RETURN_GENERATOR
    ops[PI_OP_RETURN_GENERATOR] = RETURN_GENERATOR;
#endif
#ifdef ENTER_EXECUTOR
    ops[PI_OP_ENTER_EXECUTOR] = ENTER_EXECUTOR;
#endif
#ifdef MIN_INSTRUMENTED_OPCODE
    ops[PI_OP_MIN_INSTRUMENTED_OPCODE] = MIN_INSTRUMENTED_OPCODE;
#endif
#ifdef CALL_FUNCTION
    ops[PI_OP_CALL_FUNCTION] = CALL_FUNCTION;
#endif
#ifdef CALL_FUNCTION_KW
    ops[PI_OP_CALL_FUNCTION_KW] = CALL_FUNCTION_KW;
#endif
#ifdef CALL_METHOD
    ops[PI_OP_CALL_METHOD] = CALL_METHOD;
#endif
#ifdef CALL_FUNCTION_EX
    ops[PI_OP_CALL_FUNCTION_EX] = CALL_FUNCTION_EX;
#endif
#ifdef PRECALL
    ops[PI_OP_PRECALL] = PRECALL;
#endif
#ifdef CALL
    ops[PI_OP_CALL] = CALL;
#endif
#ifdef CALL_KW
    ops[PI_OP_CALL_KW] = CALL_KW;
#endif
    printf("    {\n        .version = 0x%08x,\n        .deopt = {", (unsigned)(PY_VERSION_HEX & 0xFFFF0000));
    for (int op = 0; op < 256; op++)
        printf("%s%d", op ? ", " : "", base_of(op) == op ? 0 : base_of(op));
    printf("},\n        .caches = {");
    for (int op = 0; op < 256; op++)
        printf("%s%d", op ? ", " : "", caches_of(op));
    printf("},\n        .effect = {");
    for (int jump = 0; jump < 2; jump++) {
        printf("%s{", jump ? ", " : "");
        for (int op = 0; op < 256; op++) {
            printf("%s", op ? ", " : "");
            print_form(base_of(op) == op ? fit(effect, op, jump) : (pi_effect_form){PI_EFFECT_UNKNOWN, 0, 0, 0});
        }
        printf("}");
    }
    printf("},\n        .call_popped = {");
    const int calls[] = {ops[PI_OP_CALL], ops[PI_OP_CALL_KW], ops[PI_OP_CALL_FUNCTION_EX]};
    for (int i = 0; i < 3; i++) {
        printf("%s", i ? ", " : "");
        print_form(fit(popped, calls[i], 0));
    }
    printf("},\n        .ops = {");
    for (int i = 0; i < PI_OP_COUNT; i++)
        printf("%s%d", i ? ", " : "", ops[i]);
    printf("},\n        .pool = (const int16_t[]){");
    for (size_t i = 0; i < pool_len; i++)
        printf("%s%d", i ? ", " : "", pool[i]);
    printf("},\n    },\n");
    return 0;
}
