/*
 * opcodes_table_types.h: what opcodes.c needs of one CPython minor version's bytecode,
 * as data: opcodes_table.h holds it for every supported version (tools/gen_layouts.py
 * writes it by running tools/opcodes_probe.c built against each version), so that the
 * bytecode of a process running another version can be analysed too.
 */
#ifndef PI_OPCODES_TABLE_TYPES_H
#define PI_OPCODES_TABLE_TYPES_H

#include <stdint.h>

/* The opcodes opcodes.c names; -1 where a version has none. */
#define PI_OPCODE_NAMES(X)                                                                                    \
    X(EXTENDED_ARG) X(RETURN_VALUE) X(RETURN_CONST) X(RAISE_VARARGS) X(RERAISE) X(JUMP_FORWARD)              \
    X(JUMP_BACKWARD) X(JUMP_BACKWARD_NO_INTERRUPT) X(JUMP_ABSOLUTE) X(FOR_ITER) X(SETUP_FINALLY)              \
    X(SETUP_WITH) X(SETUP_ASYNC_WITH) X(JUMP_IF_FALSE_OR_POP) X(JUMP_IF_TRUE_OR_POP) X(POP_JUMP_IF_FALSE)     \
    X(POP_JUMP_IF_TRUE) X(POP_JUMP_IF_NONE) X(POP_JUMP_IF_NOT_NONE) X(JUMP_IF_NOT_EXC_MATCH)                 \
    X(POP_JUMP_BACKWARD_IF_FALSE) X(POP_JUMP_BACKWARD_IF_TRUE) X(POP_JUMP_BACKWARD_IF_NONE)                  \
    X(POP_JUMP_BACKWARD_IF_NOT_NONE) X(POP_JUMP_FORWARD_IF_FALSE) X(POP_JUMP_FORWARD_IF_TRUE)                \
    X(POP_JUMP_FORWARD_IF_NONE) X(POP_JUMP_FORWARD_IF_NOT_NONE) X(SEND) X(GEN_START) X(RETURN_GENERATOR)      \
    X(ENTER_EXECUTOR) X(MIN_INSTRUMENTED_OPCODE) X(CALL_FUNCTION) X(CALL_FUNCTION_KW) X(CALL_METHOD)         \
    X(CALL_FUNCTION_EX) X(PRECALL) X(CALL) X(CALL_KW)

enum {
#define PI_OPCODE_ENUM(name) PI_OP_##name,
    PI_OPCODE_NAMES(PI_OPCODE_ENUM)
#undef PI_OPCODE_ENUM
    PI_OP_COUNT
};

/* A stack effect (or count popped) as a function of oparg: row[oparg & (2^shift - 1)] +
 * mul * (oparg >> shift), row being `1 << shift` entries of the version's pool from
 * `row`; or, with `clamp`, row[min(oparg, clamp - 1)] (BUILD_SLICE: 3 is not 2).
 * PI_EFFECT_UNKNOWN: no such form fits (or no such opcode). */
#define PI_EFFECT_UNKNOWN 255
typedef struct {
    uint8_t shift;
    int8_t mul;
    uint16_t row;
    uint8_t clamp;
} pi_effect_form;

typedef struct {
    uint32_t version; /* 0x030C0000 for 3.12 */
    uint8_t deopt[256];  /* a specialised opcode's base (0: itself) */
    uint8_t caches[256]; /* inline cache entries after a base opcode */
    pi_effect_form effect[2][256]; /* [jump] net stack effect of each base opcode */
    pi_effect_form call_popped[3]; /* 3.13+: what CALL, CALL_KW and CALL_FUNCTION_EX pop */
    int16_t ops[PI_OP_COUNT];
    const int16_t *pool;
} pi_opcode_table;

#endif
