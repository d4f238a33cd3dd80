/*
 * codes.c: code identity.
 *
 * Code objects die and their addresses are reused, so an address alone does not
 * say which function a frame runs. At first sight of an address we copy the code
 * object's name, file, first line and line table; on every later tick its header
 * is re-read (one batched read for all code on all stacks) and compared with what
 * we saw. A changed header means a different code object: a new entry. Entries map
 * to interned identities (function, file, first line), the nodes of the call tree.
 * On 3.12+ the interpreter tells us of every code object's death (a code watcher):
 * an entry whose address has not died since it was last confirmed is still the same
 * code object and is not read at all.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PI_MAX_STRING_CHARS 4096
#define PI_MAX_LINETABLE (1u << 20)
#define PI_MAX_VARNAMES 4096
#define PI_LINE_CACHE 4

/* The first bytes of the name and file objects, past the reference count: a freed
 * code object's strings are often replaced by new ones at the very same addresses,
 * so pointers alone cannot tell an old function from its successor. */
#define PI_FINGERPRINT 96
#define PI_REFCNT_SIZE sizeof(intptr_t)

typedef struct {
    uint8_t bytes[PI_FINGERPRINT];
    size_t len;
} fingerprint;

struct pi_code_entry {
    uintptr_t addr;
    pi_code header;
    fingerprint name_fp, file_fp;
    bool stale; /* changed while being copied, or died: never used again */
    uint64_t confirmed; /* the table's trust epoch when last read or made */
    bool fresh; /* made by this tick's resolve */
    uint32_t identity;
    uint8_t *linetable;
    size_t linetable_len;
    int cache_index[PI_LINE_CACHE];
    int cache_line[PI_LINE_CACHE];
    unsigned cache_next;
    /* decoded bytecode and the stack depth before each instruction (NULL when it
     * could not be computed), made at the first sample standing on a call */
    pi_instr *instrs;
    int32_t *depths;
    size_t instr_count;
    bool bytecode_tried;
};

static uint64_t hash_ptr(uintptr_t p)
{
    uint64_t x = (uint64_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

int pi_codes_init(pi_code_table *t)
{
    memset(t, 0, sizeof *t);
    t->slot_count = 1024;
    t->slots = calloc(t->slot_count, sizeof *t->slots);
    t->identity_slot_count = 1024;
    t->identity_slots = malloc(t->identity_slot_count * sizeof *t->identity_slots);
    if (!t->slots || !t->identity_slots) {
        pi_codes_free(t);
        return -1;
    }
    memset(t->identity_slots, 0xff, t->identity_slot_count * sizeof *t->identity_slots);
    return 0;
}

void pi_codes_free(pi_code_table *t)
{
    for (size_t i = 0; i < t->entry_count; i++) {
        free(t->entries[i]->instrs);
        free(t->entries[i]->depths);
        free(t->entries[i]->linetable);
        free(t->entries[i]);
    }
    for (size_t i = 0; i < t->identity_count; i++) {
        free(t->identities[i].function);
        free(t->identities[i].filename);
    }
    free(t->entries);
    free(t->fresh);
    free(t->identities);
    free(t->slots);
    free(t->identity_slots);
    memset(t, 0, sizeof *t);
}

/* ---- copying strings out of unicode objects ---- */

static size_t utf8_put(char *out, uint32_t c)
{
    if (c >= 0xD800 && c <= 0xDFFF)
        c = 0xFFFD; /* lone surrogates cannot be UTF-8 */
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 63));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 63));
        out[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    if (c > 0x10FFFF)
        c = 0xFFFD;
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 63));
    out[2] = (char)(0x80 | ((c >> 6) & 63));
    out[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* Copies a str object as a new UTF-8 C string; NULL if it cannot be read. */
char *pi_read_unicode(uintptr_t addr)
{
    uint8_t header[256];
    size_t header_size = pi_unicode_header_size();
    if (header_size > sizeof header)
        return NULL;
    /* a short ASCII string can end before the compact header does: retry smaller */
    if (pi_read_exact(addr, header, header_size) != 0) {
        memset(header, 0, sizeof header);
        if (pi_read_exact(addr, header, header_size / 2 + 8) != 0)
            return NULL;
    }
    int64_t length;
    int kind;
    size_t data_offset;
    if (pi_parse_unicode(header, &length, &kind, &data_offset) != 0 || length > PI_MAX_STRING_CHARS)
        return NULL;
    size_t raw_len = (size_t)length * (size_t)kind;
    uint8_t *raw = malloc(raw_len + 1);
    char *out = malloc((size_t)length * 4 + 1);
    if (!raw || !out || pi_read_exact(addr + data_offset, raw, raw_len) != 0) {
        free(raw);
        free(out);
        return NULL;
    }
    size_t n = 0;
    for (int64_t i = 0; i < length; i++) {
        uint32_t c;
        if (kind == 1) {
            c = raw[i];
        } else if (kind == 2) {
            uint16_t v;
            memcpy(&v, raw + i * 2, 2);
            c = v;
        } else {
            memcpy(&c, raw + i * 4, 4);
        }
        n += utf8_put(out + n, c);
    }
    out[n] = '\0';
    free(raw);
    return out;
}

static uint8_t *read_bytes(uintptr_t addr, size_t *len_out)
{
    uint8_t header[64];
    size_t header_size = pi_bytes_header_size();
    if (header_size > sizeof header || pi_read_exact(addr, header, header_size) != 0)
        return NULL;
    int64_t length;
    size_t data_offset;
    if (pi_parse_bytes(header, &length, &data_offset) != 0 || length > PI_MAX_LINETABLE)
        return NULL;
    uint8_t *data = malloc((size_t)length + 1);
    if (!data || pi_read_exact(addr + data_offset, data, (size_t)length) != 0) {
        free(data);
        return NULL;
    }
    *len_out = (size_t)length;
    return data;
}

/* True when the tuple of local names holds "__tracebackhide__". */
static bool names_hide_traceback(uintptr_t tuple_addr)
{
    static const char marker[] = "__tracebackhide__";
    const size_t marker_len = sizeof marker - 1;
    uint8_t header[64];
    int64_t count;
    size_t items_offset;
    if (tuple_addr == 0 || pi_tuple_header_size() > sizeof header ||
        pi_read_exact(tuple_addr, header, pi_tuple_header_size()) != 0 ||
        pi_parse_tuple(header, &count, &items_offset) != 0 || count <= 0 || count > PI_MAX_VARNAMES)
        return false;
    uintptr_t *items = malloc((size_t)count * sizeof *items);
    if (!items)
        return false;
    bool found = false;
    if (pi_read_exact(tuple_addr + items_offset, items, (size_t)count * sizeof *items) == 0) {
        for (int64_t i = 0; i < count && !found; i++) {
            char *name = pi_read_unicode(items[i]);
            if (name && strlen(name) == marker_len && memcmp(name, marker, marker_len) == 0)
                found = true;
            free(name);
        }
    }
    free(items);
    return found;
}

/* ---- identities ---- */

static int identity_grow(pi_code_table *t)
{
    size_t count = t->identity_slot_count * 2;
    uint32_t *slots = malloc(count * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xff, count * sizeof *slots);
    for (size_t i = 0; i < t->identity_count; i++) {
        pi_frame_identity *id = &t->identities[i];
        uint64_t h = hash_str(hash_str(0xcbf29ce484222325ULL ^ (uint64_t)id->firstlineno, id->function), id->filename);
        size_t s = h & (count - 1);
        while (slots[s] != UINT32_MAX)
            s = (s + 1) & (count - 1);
        slots[s] = (uint32_t)i;
    }
    free(t->identity_slots);
    t->identity_slots = slots;
    t->identity_slot_count = count;
    return 0;
}

/* Interns (function, filename, firstlineno); takes ownership of the strings. */
static int64_t intern_identity(pi_code_table *t, char *function, char *filename, int firstlineno, bool hides)
{
    if ((t->identity_count + 1) * 2 > t->identity_slot_count && identity_grow(t) != 0)
        goto error;
    uint64_t h = hash_str(hash_str(0xcbf29ce484222325ULL ^ (uint64_t)firstlineno, function), filename);
    size_t mask = t->identity_slot_count - 1;
    size_t s = h & mask;
    for (; t->identity_slots[s] != UINT32_MAX; s = (s + 1) & mask) {
        pi_frame_identity *id = &t->identities[t->identity_slots[s]];
        if (id->firstlineno == firstlineno && strcmp(id->function, function) == 0 &&
            strcmp(id->filename, filename) == 0) {
            free(function);
            free(filename);
            return t->identity_slots[s];
        }
    }
    if (t->identity_count == t->identity_cap) {
        size_t cap = t->identity_cap ? t->identity_cap * 2 : 256;
        pi_frame_identity *grown = realloc(t->identities, cap * sizeof *grown);
        if (!grown)
            goto error;
        t->identities = grown;
        t->identity_cap = cap;
    }
    t->identities[t->identity_count] = (pi_frame_identity){function, filename, firstlineno, hides};
    t->identity_slots[s] = (uint32_t)t->identity_count;
    return (int64_t)t->identity_count++;
error:
    free(function);
    free(filename);
    return -1;
}

int64_t pi_codes_intern(pi_code_table *t, const pi_frame_identity *id)
{
    char *function = strdup(id->function), *filename = strdup(id->filename);
    if (!function || !filename) {
        free(function);
        free(filename);
        return -1;
    }
    return intern_identity(t, function, filename, id->firstlineno, id->hides_traceback);
}

/* An identity for a frame that is no code: its name, an empty file and first line -1. */
int64_t pi_codes_synthetic(pi_code_table *t, const char *name)
{
    char *function = strdup(name), *filename = strdup("");
    if (!function || !filename) {
        free(function);
        free(filename);
        return -1;
    }
    return intern_identity(t, function, filename, -1, false);
}

/* ---- deaths of code objects, told by the interpreter (3.12+) ---- */

/* The last PI_DEATH_LOG deaths; every table keeps how far it has looked. */
#define PI_DEATH_LOG 4096
static pthread_mutex_t death_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t death_log[PI_DEATH_LOG];
static uint64_t death_count;
static bool deaths_told;

void pi_codes_deaths_told(void)
{
    pthread_mutex_lock(&death_lock);
    deaths_told = true;
    pthread_mutex_unlock(&death_lock);
}

void pi_code_died(uintptr_t addr)
{
    pthread_mutex_lock(&death_lock);
    death_log[death_count++ % PI_DEATH_LOG] = addr;
    pthread_mutex_unlock(&death_lock);
}

bool pi_code_deaths(uint64_t *count)
{
    pthread_mutex_lock(&death_lock);
    bool told = deaths_told;
    *count = death_count;
    pthread_mutex_unlock(&death_lock);
    return told;
}

static pi_code_entry **slot_for(pi_code_table *t, uintptr_t addr);

/* Retires the entries whose code died since the table last looked; whether the
 * entries confirmed since can be trusted without a read. When more died than the log
 * keeps, none can: every entry is read again before it is trusted (a new epoch). */
static bool take_deaths(pi_code_table *t)
{
    pthread_mutex_lock(&death_lock);
    bool told = deaths_told && death_count - t->deaths_seen <= PI_DEATH_LOG;
    if (!told)
        t->trust_epoch++;
    for (uint64_t k = t->deaths_seen; told && k < death_count; k++) {
        pi_code_entry *e = *slot_for(t, death_log[k % PI_DEATH_LOG]);
        if (e)
            e->stale = true;
    }
    t->deaths_seen = death_count;
    pthread_mutex_unlock(&death_lock);
    return told;
}

/* ---- code entries ---- */

static pi_code_entry **slot_for(pi_code_table *t, uintptr_t addr)
{
    size_t mask = t->slot_count - 1;
    size_t s = hash_ptr(addr) & mask;
    while (t->slots[s] && t->slots[s]->addr != addr)
        s = (s + 1) & mask;
    return &t->slots[s];
}

static int slots_grow(pi_code_table *t)
{
    pi_code_entry **old = t->slots;
    size_t old_count = t->slot_count;
    t->slot_count *= 2;
    t->slots = calloc(t->slot_count, sizeof *t->slots);
    if (!t->slots) {
        t->slots = old;
        t->slot_count = old_count;
        return -1;
    }
    for (size_t i = 0; i < old_count; i++)
        if (old[i])
            *slot_for(t, old[i]->addr) = old[i];
    free(old);
    return 0;
}

static int take_fingerprint(uintptr_t addr, fingerprint *fp)
{
    fp->len = PI_FINGERPRINT;
    if (pi_read_exact(addr, fp->bytes, fp->len) == 0)
        return 0;
    /* a short string near the end of a mapping: read just the object */
    int64_t length;
    int kind;
    size_t data_offset;
    if (pi_read_exact(addr, fp->bytes, pi_unicode_header_size() / 2 + 8) != 0 ||
        pi_parse_unicode(fp->bytes, &length, &kind, &data_offset) != 0)
        return -1;
    size_t size = data_offset + (size_t)length * (size_t)kind;
    fp->len = size < PI_FINGERPRINT ? size : PI_FINGERPRINT;
    return pi_read_exact(addr, fp->bytes, fp->len);
}

static bool fingerprint_same(const fingerprint *fp, const uint8_t *now)
{
    return memcmp(fp->bytes + PI_REFCNT_SIZE, now + PI_REFCNT_SIZE, fp->len - PI_REFCNT_SIZE) == 0;
}

/* The fingerprints are taken before the strings are copied: a string freed and replaced
 * at its address meanwhile (the next function made by the same code, its name at the
 * same place) then no longer matches them when the entry is confirmed
 * (pi_codes_confirm_fresh). Taken after, they would vouch for the new string under the
 * old name, at every later tick. */
static pi_code_entry *load_entry(pi_code_table *t, uintptr_t addr, const pi_code *header)
{
    uintptr_t name = header->qualname ? header->qualname : header->name;
    char *function = NULL, *filename = NULL;
    uint8_t *linetable = NULL;
    size_t linetable_len = 0;
    pi_code_entry *e = calloc(1, sizeof *e);
    if (!e || take_fingerprint(name, &e->name_fp) != 0 || take_fingerprint(header->filename, &e->file_fp) != 0)
        goto error;
    function = pi_read_unicode(name);
    filename = pi_read_unicode(header->filename);
    linetable = header->linetable ? read_bytes(header->linetable, &linetable_len) : NULL;
    if (!function || !filename || (header->linetable && !linetable))
        goto error;
    bool hides = names_hide_traceback(header->varnames);
    int64_t identity = intern_identity(t, function, filename, header->firstlineno, hides);
    function = filename = NULL; /* owned by the table now */
    if (identity < 0)
        goto error;
    if (t->entry_count == t->entry_cap) {
        size_t cap = t->entry_cap ? t->entry_cap * 2 : 256;
        pi_code_entry **grown = realloc(t->entries, cap * sizeof *grown);
        if (!grown)
            goto error;
        t->entries = grown;
        t->entry_cap = cap;
    }
    if ((t->used + 1) * 2 > t->slot_count && slots_grow(t) != 0)
        goto error;
    e->addr = addr;
    e->header = *header;
    e->identity = (uint32_t)identity;
    e->linetable = linetable;
    e->linetable_len = linetable_len;
    for (int i = 0; i < PI_LINE_CACHE; i++)
        e->cache_index[i] = INT32_MIN;
    e->confirmed = t->trust_epoch;
    if (t->fresh_count == t->fresh_cap) {
        size_t cap = t->fresh_cap ? t->fresh_cap * 2 : 64;
        pi_code_entry **grown = realloc(t->fresh, cap * sizeof *grown);
        if (!grown)
            goto error;
        t->fresh = grown;
        t->fresh_cap = cap;
    }
    e->fresh = true;
    t->fresh[t->fresh_count++] = e;
    t->entries[t->entry_count++] = e;
    pi_code_entry **slot = slot_for(t, addr);
    if (!*slot)
        t->used++;
    *slot = e; /* an older entry at this address stays alive for nodes that used it */
    return e;
error:
    free(function);
    free(filename);
    free(linetable);
    free(e);
    return NULL;
}

int pi_codes_resolve(pi_code_table *t, const uintptr_t *addrs, size_t count, pi_code_entry **entries)
{
    /* per code: its header, and the fingerprints of the strings the entry we know
     * at this address had: all in one batch */
    size_t size = pi_runtime_layout.code_read_size;
    size_t stride = size + 2 * PI_FINGERPRINT;
    uint8_t *buffers = malloc(count * stride + 1);
    pi_read *reads = malloc((3 * count + 1) * sizeof *reads);
    pi_code_entry **known = malloc((count + 1) * sizeof *known);
    if (!buffers || !reads || !known) {
        free(buffers);
        free(reads);
        free(known);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->fresh_count; i++)
        t->fresh[i]->fresh = false;
    t->fresh_count = 0;
    bool told = take_deaths(t);
    for (size_t i = 0; i < count; i++) {
        uint8_t *buf = buffers + i * stride;
        known[i] = *slot_for(t, addrs[i]);
        if (known[i] && known[i]->stale)
            known[i] = NULL;
        if (told && known[i] && known[i]->confirmed == t->trust_epoch) {
            entries[i] = known[i]; /* not dead since it was confirmed: the same code object */
            known[i] = NULL;
            continue;
        }
        entries[i] = NULL;
        reads[n++] = (pi_read){addrs[i], buf, size, false};
        /* 3.12+ numbers every code object (co_version): then the strings need no check */
        if (known[i] && known[i]->header.version == 0) {
            const pi_code *h = &known[i]->header;
            reads[n++] = (pi_read){h->qualname ? h->qualname : h->name, buf + size, known[i]->name_fp.len, false};
            reads[n++] = (pi_read){h->filename, buf + size + PI_FINGERPRINT, known[i]->file_fp.len, false};
        }
    }
    int syscalls = pi_read_batch(reads, n);
    size_t r = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t *buf = buffers + i * stride;
        if (entries[i])
            continue; /* trusted above */
        const pi_read *code_read = &reads[r++];
        bool strings_same = known[i] && known[i]->header.version != 0;
        if (known[i] && known[i]->header.version == 0) {
            strings_same = reads[r].ok && reads[r + 1].ok && fingerprint_same(&known[i]->name_fp, buf + size) &&
                           fingerprint_same(&known[i]->file_fp, buf + size + PI_FINGERPRINT);
            r += 2;
        }
        pi_code header;
        if (!code_read->ok || pi_parse_code(buf, addrs[i], &header) != 0) {
            t->unreadable++;
            continue;
        }
        if (known[i] && strings_same && pi_code_same(&known[i]->header, &header)) {
            entries[i] = known[i];
            known[i]->confirmed = t->trust_epoch;
        } else
            entries[i] = load_entry(t, addrs[i], &header);
        if (!entries[i])
            t->unreadable++;
    }
    free(buffers);
    free(reads);
    free(known);
    return syscalls;
}

int pi_codes_confirm_fresh(pi_code_table *t)
{
    /* An entry is copied in several reads; the code object may have been freed and its
     * memory (and its strings') reused in between. Re-reading the header and the strings
     * once all copies are done shows whether they still belong together. */
    if (t->fresh_count == 0)
        return 0;
    size_t size = pi_runtime_layout.code_read_size;
    size_t stride = size + 2 * PI_FINGERPRINT;
    size_t count = t->fresh_count;
    uint8_t *buffers = malloc(count * stride);
    pi_read *reads = malloc(3 * count * sizeof *reads);
    if (!buffers || !reads) {
        free(buffers);
        free(reads);
        for (size_t i = 0; i < count; i++)
            t->fresh[i]->stale = true;
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const pi_code_entry *e = t->fresh[i];
        uint8_t *buf = buffers + i * stride;
        reads[3 * i] = (pi_read){e->addr, buf, size, false};
        reads[3 * i + 1] = (pi_read){e->header.qualname ? e->header.qualname : e->header.name, buf + size,
                                     e->name_fp.len, false};
        reads[3 * i + 2] = (pi_read){e->header.filename, buf + size + PI_FINGERPRINT, e->file_fp.len, false};
    }
    int syscalls = pi_read_batch(reads, 3 * count);
    for (size_t i = 0; i < count; i++) {
        pi_code_entry *e = t->fresh[i];
        uint8_t *buf = buffers + i * stride;
        pi_code header;
        bool same = reads[3 * i].ok && reads[3 * i + 1].ok && reads[3 * i + 2].ok &&
                    pi_parse_code(buf, e->addr, &header) == 0 && pi_code_same(&e->header, &header) &&
                    fingerprint_same(&e->name_fp, buf + size) &&
                    fingerprint_same(&e->file_fp, buf + size + PI_FINGERPRINT);
        if (!same) {
            e->stale = true;
            t->unreadable++;
        }
    }
    free(buffers);
    free(reads);
    return syscalls;
}

bool pi_code_fresh(const pi_code_entry *e)
{
    return e->fresh;
}

bool pi_code_stale(const pi_code_entry *e)
{
    return e->stale;
}

uint32_t pi_code_identity(const pi_code_entry *e)
{
    return e->identity;
}

static int instr_index(const pi_code_entry *e, uintptr_t instr, int lasti)
{
    if (e->header.code_units < 0)
        return lasti; /* 3.9/3.10: the frame holds the index */
    if (instr < e->header.code_start)
        return -1;
    uintptr_t index = (instr - e->header.code_start) / 2;
    return index < (uintptr_t)e->header.code_units ? (int)index : -1;
}

bool pi_code_instr_traceable(const pi_code_entry *e, uintptr_t instr)
{
    if (e->header.code_units < 0)
        return true;
    return instr >= e->header.code_start + (uintptr_t)e->header.first_traceable * 2;
}

int pi_code_line(pi_code_entry *e, uintptr_t instr, int lasti)
{
    int index = instr_index(e, instr, lasti);
    if (index < 0 || !e->linetable)
        return e->header.firstlineno;
    for (int i = 0; i < PI_LINE_CACHE; i++)
        if (e->cache_index[i] == index)
            return e->cache_line[i];
    int line = pi_line_for_instr(e->linetable, e->linetable_len, e->header.firstlineno, index);
    if (line < 0)
        line = e->header.firstlineno;
    unsigned k = e->cache_next++ % PI_LINE_CACHE;
    e->cache_index[k] = index;
    e->cache_line[k] = line;
    return line;
}

/* ---- call sites: where the callable is when a frame stands on a call ---- */

#define PI_MAX_CODE_UNITS (1u << 20)
#define PI_MAX_STACK_DEPTH (1 << 20)

/* Copies the bytecode and computes the stack depth at every instruction, once. */
static void analyse_bytecode(pi_code_entry *e)
{
    e->bytecode_tried = true;
    uint8_t *code = NULL, *exceptions = NULL;
    size_t units, exceptions_len = 0;
    if (e->header.code_units >= 0) {
        units = (size_t)e->header.code_units;
        if (units == 0 || units > PI_MAX_CODE_UNITS || !(code = malloc(units * 2)) ||
            pi_read_exact(e->header.code_start, code, units * 2) != 0) {
            free(code);
            return;
        }
        if (e->header.exceptiontable && !(exceptions = read_bytes(e->header.exceptiontable, &exceptions_len))) {
            free(code);
            return;
        }
    } else {
        size_t len = 0;
        code = e->header.code_bytes ? read_bytes(e->header.code_bytes, &len) : NULL;
        if (!code || len / 2 > PI_MAX_CODE_UNITS) {
            free(code);
            return;
        }
        units = len / 2;
    }
    e->instrs = malloc((units + 1) * sizeof *e->instrs);
    e->depths = malloc((units + 1) * sizeof *e->depths);
    if (e->instrs && e->depths) {
        e->instr_count = pi_decode_bytecode(code, units, e->instrs);
        if (pi_stack_depths(e->instrs, e->instr_count, exceptions, exceptions_len, PI_MAX_STACK_DEPTH, e->depths) != 0) {
            free(e->depths);
            e->depths = NULL; /* calls here keep an unknown callee */
        }
    }
    free(code);
    free(exceptions);
}

int pi_code_call_site(pi_code_entry *e, uintptr_t instr, int lasti, pi_call *out)
{
    int unit = instr_index(e, instr, lasti);
    if (unit < 0)
        return -1;
    if (!e->bytecode_tried)
        analyse_bytecode(e);
    if (!e->instr_count)
        return -1; /* whether it is a call at all is unknown */
    /* the instruction starting at this code unit (binary search) */
    size_t lo = 0, hi = e->instr_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->instrs[mid].unit < (uint32_t)unit)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= e->instr_count || e->instrs[lo].unit != (uint32_t)unit)
        return -1;
    return pi_call_layout(&e->instrs[lo], e->depths ? e->depths[lo] : -1, out);
}

bool pi_code_range(const pi_code_entry *e, uintptr_t *start, int64_t *units)
{
    *start = e->header.code_start;
    *units = e->header.code_units;
    return e->header.code_units > 0 && e->header.code_start != 0;
}

int pi_code_stack_size(const pi_code_entry *e)
{
    return e->header.stacksize;
}

int pi_code_stack_offset(const pi_code_entry *e)
{
    return e->header.nlocalsplus;
}

int64_t pi_codes_builtin(pi_code_table *t, const char *name)
{
    char *function = strdup(name), *filename = strdup("<built-in>");
    if (!function || !filename) {
        free(function);
        free(filename);
        return -1;
    }
    return intern_identity(t, function, filename, 0, false);
}
