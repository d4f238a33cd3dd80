/*
 * linetable.c: line numbers from copied line tables.
 *
 * Three formats, all decoded from our own copy of the table (never a live object),
 * so every read is bounds-checked against the copy's length:
 *   3.9    co_lnotab: (byte-offset delta, signed line delta) pairs
 *   3.10   co_linetable: (byte-length, signed line delta) pairs, -128 = no line
 *   3.11+  location table: variable-length entries, one per run of code units
 */
#include "engine.h"

int pi_line_lnotab(const uint8_t *table, size_t len, int firstlineno, int byte_offset)
{
    int line = firstlineno;
    int addr = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        addr += table[i];
        if (addr > byte_offset)
            break;
        line += (int8_t)table[i + 1];
    }
    return line;
}

int pi_line_linetable310(const uint8_t *table, size_t len, int firstlineno, int byte_offset)
{
    int line = firstlineno;
    int start = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        int end = start + table[i];
        int delta = (int8_t)table[i + 1];
        if (delta != -128)
            line += delta;
        if (byte_offset >= start && byte_offset < end)
            return delta == -128 ? -1 : line;
        start = end;
    }
    return -1;
}

/* 6-bit little-endian varint chunks, bit 6 = more follow. */
static int read_varint(const uint8_t *table, size_t len, size_t *pos, uint32_t *value)
{
    uint32_t result = 0;
    unsigned shift = 0;
    for (;;) {
        if (*pos >= len || shift > 30)
            return -1;
        uint8_t b = table[(*pos)++];
        result |= (uint32_t)(b & 63) << shift;
        shift += 6;
        if (!(b & 64))
            break;
    }
    *value = result;
    return 0;
}

static int read_signed_varint(const uint8_t *table, size_t len, size_t *pos, int *value)
{
    uint32_t raw;
    if (read_varint(table, len, pos, &raw) != 0)
        return -1;
    *value = (raw & 1) ? -(int)(raw >> 1) : (int)(raw >> 1);
    return 0;
}

enum { LOC_ONE_LINE0 = 10, LOC_NO_COLUMNS = 13, LOC_LONG = 14, LOC_NONE = 15 };

int pi_line_locations311(const uint8_t *table, size_t len, int firstlineno, int unit_index)
{
    int line = firstlineno;
    int unit = 0;
    size_t pos = 0;
    while (pos < len) {
        uint8_t first = table[pos++];
        if (!(first & 128))
            return -1; /* not at an entry start: corrupt copy */
        int code = (first >> 3) & 15;
        int length = (first & 7) + 1;
        int delta = 0;
        bool has_line = true;
        if (code == LOC_NONE) {
            has_line = false;
        } else if (code == LOC_LONG || code == LOC_NO_COLUMNS) {
            if (read_signed_varint(table, len, &pos, &delta) != 0)
                return -1;
        } else if (code >= LOC_ONE_LINE0) {
            delta = code - LOC_ONE_LINE0;
        }
        line += delta;
        if (unit_index >= unit && unit_index < unit + length)
            return has_line ? line : -1;
        unit += length;
        /* skip the rest of this entry: the next one starts at a byte with bit 7 set */
        while (pos < len && !(table[pos] & 128))
            pos++;
    }
    return -1;
}
