/*
 * layout.c: the interpreter's struct layouts, and parsing copies of its structs.
 *
 * The structs a stack walk reads (thread states, frames, code objects, strings) are
 * parsed through a pi_offsets (layout_offsets.h): the layout compiled in from this
 * interpreter's own headers, or, for a process attached to that runs another CPython
 * version, that version's entry of layouts_table.h. What only the walk of this same
 * build needs (async mode's coroutines and containers, the C functions being called)
 * is parsed with the compiled structs directly. Remote structs are copied (memread.c)
 * into buffers and parsed here; the sampler thread never dereferences an interpreter
 * pointer. On 3.13+ the layout is checked against the runtime's own _Py_DebugOffsets.
 */
#include "cpython_internal.h"

#include "engine.h"
#include "layout_compiled.h"
#include "layouts_table.h"

#include <stdio.h>
#include <string.h>

pi_layout pi_runtime_layout;

/* The layout of the process read, and where its static objects lie. */
static pi_offsets compiled_layout;
static const pi_offsets *L = &compiled_layout;
static pi_statics statics;

/* Where this interpreter's static objects lie in the process read, less where they lie
 * in ours: 0 in-process; for a process running this same interpreter binary mapped
 * elsewhere, the distance between the two (attach.c). */
static uintptr_t static_reloc;
#define STATIC_ADDR(p) ((uintptr_t)(p) + static_reloc)

/* Copies a struct out of a buffer (which may be unaligned). */
#define PI_LOAD(type, var, buf) type var; memcpy(&var, (buf), sizeof var)
/* Header fields of a copied object, read directly: CPython's Py_TYPE/Py_SIZE may
 * assert on the contents, and a copy is untrusted until checked. */
#define COPY_TYPE(obj) ((uintptr_t)((PyObject *)&(obj))->ob_type)
#define COPY_SIZE(obj) (((PyVarObject *)&(obj))->ob_size)
#define TYPE_AT offsetof(PyObject, ob_type)
#define SIZE_AT offsetof(PyVarObject, ob_size)

#define AT_LEAST(minor) (L->version >= (0x03000000 | ((minor) << 16)))

/* Fields of a copied struct, at an offset of the layout. */
static uintptr_t word_at(const void *buf, int64_t offset)
{
    uintptr_t v;
    memcpy(&v, (const uint8_t *)buf + offset, sizeof v);
    return v;
}

static int32_t int_at(const void *buf, int64_t offset)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)buf + offset, sizeof v);
    return v;
}

static int8_t char_at(const void *buf, int64_t offset)
{
    return (int8_t)((const uint8_t *)buf)[offset];
}

#if PY_VERSION_HEX >= 0x030B0000
/* A frame of this build, copied: its code object and current instruction. */
static void frame_position(const pi_iframe_t *f, uintptr_t *code, uintptr_t *instr)
{
#if PY_VERSION_HEX >= 0x030E0000
    *code = (uintptr_t)(f->f_executable.bits & ~(uintptr_t)7);
#elif PY_VERSION_HEX >= 0x030D0000
    *code = (uintptr_t)f->f_executable;
#else
    *code = (uintptr_t)f->f_code;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    *instr = (uintptr_t)f->instr_ptr;
#else
    *instr = (uintptr_t)f->prev_instr;
#endif
}
#endif

/* The same, from a copy of a frame of the process read (3.11+). */
static void copied_frame_position(const void *buf, uintptr_t *code, uintptr_t *instr)
{
    *code = word_at(buf, L->iframe_code);
    if (AT_LEAST(14))
        *code &= ~(uintptr_t)7; /* a tagged reference */
    *instr = word_at(buf, L->iframe_instr);
}

/* The references counted in an object's first word (3.14+ keep flags in its top bits). */
static uint64_t reference_count(const void *buf)
{
#if defined(Py_GIL_DISABLED)
    uint32_t local;
    int64_t shared;
    memcpy(&local, (const uint8_t *)buf + offsetof(PyObject, ob_ref_local), sizeof local);
    memcpy(&shared, (const uint8_t *)buf + offsetof(PyObject, ob_ref_shared), sizeof shared);
    if (local == UINT32_MAX)
        return 1; /* immortal */
    int64_t total = (int64_t)local + (shared >> 2);
    return total > 0 ? (uint64_t)total : 0;
#endif
    uint64_t word;
    memcpy(&word, buf, sizeof word);
    return L->refcnt_bits >= 64 ? word : word & ((UINT64_C(1) << L->refcnt_bits) - 1);
}

/* Whether a copied object header belongs to a live object. Freed memory keeps its old
 * contents except the first word, where both pymalloc and glibc's malloc store a
 * (large, or mangled) free-list pointer: a live object has a small reference count
 * there. */
static bool object_alive(const void *buf)
{
    uint64_t refcnt = reference_count(buf);
    return refcnt > 0 && refcnt < (UINT64_C(1) << 40);
}

/* Reads the interpreter's runtime or interpreter state at start, with the GIL held: our
 * own directly (they live as long as the interpreter, and a sandbox may refuse
 * process_vm_readv), another process's through the kernel. */
static int read_at_start(uintptr_t addr, void *dst, size_t len)
{
    if (pi_attached_pid())
        return pi_read_exact(addr, dst, len);
    memcpy(dst, (const void *)addr, len);
    return 0;
}

static uintptr_t read_pointer(uintptr_t addr)
{
    uintptr_t value = 0;
    return read_at_start(addr, &value, sizeof value) == 0 ? value : 0;
}

/* 3.13+: the process's own _Py_DebugOffsets must agree with the layout used. */
static int check_debug_offsets(char *err, size_t errlen)
{
    uintptr_t at = statics.runtime + (uintptr_t)L->runtime_debug_offsets;
    struct {
        char cookie[8];
        uint64_t version, free_threaded;
    } head;
    if (read_at_start(at, &head, sizeof head) != 0 || memcmp(head.cookie, "xdebugpy", 8) != 0) {
        snprintf(err, errlen, "this Python has no debug offsets (cookie missing); unsupported build");
        return -1;
    }
#if defined(Py_GIL_DISABLED)
    bool ours_free_threaded = true;
#else
    bool ours_free_threaded = false;
#endif
    /* the object header, and every struct after it, differ between the two builds */
    if ((head.free_threaded != 0) != ours_free_threaded) {
        snprintf(err, errlen,
                 "it runs a %s build of Python %u.%u, which a pyinstrument installed for a %s build cannot read; "
                 "attach with the pyinstrument installed for its interpreter",
                 head.free_threaded ? "free-threaded" : "GIL", (unsigned)(head.version >> 24),
                 (unsigned)((head.version >> 16) & 0xFF), ours_free_threaded ? "free-threaded" : "GIL");
        return -1;
    }
    if ((head.version & 0xFFFF0000) != (uint64_t)L->version) {
        snprintf(err, errlen, "its runtime says Python %u.%u, not %d.%d", (unsigned)(head.version >> 24),
                 (unsigned)((head.version >> 16) & 0xFF), (int)(L->version >> 24), (int)((L->version >> 16) & 0xFF));
        return -1;
    }
    for (int i = 0; i < PI_DEBUG_CHECKS && L->debug_checks[i][0]; i++) {
        uint64_t offset = 0;
        if (read_at_start(at + (uintptr_t)L->debug_checks[i][0], &offset, sizeof offset) != 0 ||
            offset != (uint64_t)L->debug_checks[i][1]) {
            snprintf(err, errlen,
                     "this Python's layout differs from the one pyinstrument %s for %d.%d (debug offset %lld is "
                     "%llu, expected %lld); %s",
                     pi_runtime_layout.compiled ? "was built for" : "knows", (int)(L->version >> 24),
                     (int)((L->version >> 16) & 0xFF), (long long)L->debug_checks[i][0], (unsigned long long)offset,
                     (long long)L->debug_checks[i][1],
                     pi_runtime_layout.compiled ? "reinstall pyinstrument for this interpreter"
                                                : "attach with the pyinstrument installed for its interpreter");
            return -1;
        }
    }
    return 0;
}

/* The sizes the process's own type objects give code objects, tuples, bytes (and 3.9/3.10
 * frames) must be the layout's: a build or patch release laid out otherwise is refused
 * (3.9-3.12 have no debug offsets to tell). */
static int check_type_sizes(char *err, size_t errlen)
{
    const struct {
        const char *what;
        uintptr_t type;
        int64_t expected;
    } types[] = {
        {"code objects", statics.code_type, L->code_basicsize},
        {"tuples", statics.tuple_type, L->tuple_basicsize},
        {"bytes", statics.bytes_type, L->bytes_basicsize},
        {"frames", statics.frame_type, L->frame_basicsize},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t size = 0;
        if (types[i].expected < 0)
            continue;
        if (read_at_start(types[i].type + (uintptr_t)L->type_basicsize, &size, sizeof size) != 0 ||
            size != types[i].expected) {
            snprintf(err, errlen,
                     "this Python's layout differs from the one pyinstrument %s for %d.%d (%s are %lld bytes, "
                     "expected %lld); %s",
                     pi_runtime_layout.compiled ? "was built for" : "knows", (int)(L->version >> 24),
                     (int)((L->version >> 16) & 0xFF), types[i].what, (long long)size, (long long)types[i].expected,
                     pi_runtime_layout.compiled ? "reinstall pyinstrument for this interpreter"
                                                : "attach with the pyinstrument installed for its interpreter");
            return -1;
        }
    }
    return 0;
}

/* Fills pi_runtime_layout from L and statics, for the interpreter at interp. */
static int finish_layout(uintptr_t interp, bool compiled, char *err, size_t errlen)
{
    pi_layout *l = &pi_runtime_layout;
    memset(l, 0, sizeof *l);
    l->compiled = compiled;
    l->version = (uint32_t)L->version;
    if (!interp) {
        snprintf(err, errlen, "its interpreter is not running (not started, or finalizing)");
        return -1;
    }
    l->thread_head_addr = interp + (uintptr_t)L->interp_threads_head;
    l->frames_in_chunks = AT_LEAST(11);
    l->has_native_thread_id = AT_LEAST(11);
    l->frame_read_size = (size_t)(AT_LEAST(11) ? L->iframe_localsplus : L->frame_localsplus);
    l->code_read_size = (size_t)L->code_read_size;
    l->tstate_read_size = (size_t)L->tstate_size;
    l->clears_popped_frames = AT_LEAST(14);
    l->chains_end_in_shim = AT_LEAST(12);
    if (AT_LEAST(13))
        l->shim_code = statics.none;
    else if (AT_LEAST(12))
        l->shim_code = read_pointer(interp + (uintptr_t)L->interp_trampoline);
    l->code_type_addr = statics.code_type;
    if (AT_LEAST(12))
        l->gil_addr = read_pointer(interp + (uintptr_t)L->interp_gil);
    else
        l->gil_addr = statics.runtime + (uintptr_t)L->runtime_gil;
#if defined(Py_GIL_DISABLED)
    if (compiled)
        l->gil_addr = 0; /* no GIL: any thread may change its stack at any time */
#endif
    if (l->frame_read_size > PI_MAX_FRAME_READ || pi_cframe_read_size() > PI_MAX_CFRAME_READ ||
        pi_gil_read_size() > PI_MAX_GIL_READ) {
        snprintf(err, errlen, "this Python's frames are larger than pyinstrument's engine expects");
        return -1;
    }
    if (AT_LEAST(13) && check_debug_offsets(err, errlen) != 0)
        return -1;
    return check_type_sizes(err, errlen);
}

/* The layout compiled in, for this process or one running this same binary. */
static void use_compiled_layout(uintptr_t reloc)
{
    static_reloc = reloc;
    pi_compiled_offsets(&compiled_layout);
    L = &compiled_layout;
    statics = (pi_statics){
        .runtime = STATIC_ADDR(&_PyRuntime),
        .code_type = STATIC_ADDR(&PyCode_Type),
        .frame_type = STATIC_ADDR(&PyFrame_Type),
        .unicode_type = STATIC_ADDR(&PyUnicode_Type),
        .bytes_type = STATIC_ADDR(&PyBytes_Type),
        .tuple_type = STATIC_ADDR(&PyTuple_Type),
        .none = STATIC_ADDR(Py_None),
        .function_type = STATIC_ADDR(&PyFunction_Type),
        .type_type = STATIC_ADDR(&PyType_Type),
        .module_type = STATIC_ADDR(&PyModule_Type),
        .cfunction_type = STATIC_ADDR(&PyCFunction_Type),
        .cmethod_type = STATIC_ADDR(&PyCMethod_Type),
        .method_descr_type = STATIC_ADDR(&PyMethodDescr_Type),
    };
}

void pi_layout_prepare(void)
{
    use_compiled_layout(0);
}

int pi_layout_init(uintptr_t reloc, char *err, size_t errlen)
{
    use_compiled_layout(reloc);
    /* in-process: this thread's interpreter; attached: the main one, read from its runtime */
    uintptr_t interp = reloc ? read_pointer(statics.runtime + (uintptr_t)L->runtime_main_interp)
                             : (uintptr_t)PyInterpreterState_Get();
    return finish_layout(interp, true, err, errlen);
}

/* The table's layout of a minor version, or NULL. */
static const pi_offsets *known_layout(uint32_t version)
{
    for (size_t i = 0; i < sizeof pi_known_layouts / sizeof pi_known_layouts[0]; i++)
        if (pi_known_layouts[i].version == (version & 0xFFFF0000))
            return &pi_known_layouts[i];
    return NULL;
}

bool pi_layout_known(uint32_t version)
{
    return known_layout(version) != NULL;
}

int pi_layout_init_other(uint32_t version, const pi_statics *found, char *err, size_t errlen)
{
    const pi_offsets *layout = known_layout(version);
    if (!layout) {
        snprintf(err, errlen, "it runs Python %u.%u, which pyinstrument cannot read (it reads 3.9 to 3.15)",
                 version >> 24, (version >> 16) & 0xFF);
        return -1;
    }
#if defined(Py_GIL_DISABLED)
    /* the table holds the GIL builds' layouts */
    snprintf(err, errlen, "it runs Python %u.%u from another interpreter file, which a free-threaded pyinstrument "
             "cannot read; attach with the pyinstrument installed for its interpreter",
             version >> 24, (version >> 16) & 0xFF);
    return -1;
#endif
    L = layout;
    statics = *found;
    static_reloc = 0;
    uintptr_t interp = read_pointer(statics.runtime + (uintptr_t)L->runtime_main_interp);
    return finish_layout(interp, false, err, errlen);
}

size_t pi_layout_table_differences(const char **fields, size_t max)
{
    pi_offsets compiled;
    pi_compiled_offsets(&compiled);
    const pi_offsets *entry = known_layout((uint32_t)compiled.version);
    size_t n = 0;
    if (!entry) {
        if (max > 0)
            fields[n++] = "version";
        return n;
    }
#define PI_COMPARE(name)                  \
    if (compiled.name != entry->name && n < max) \
        fields[n++] = #name;
    PI_LAYOUT_FIELDS(PI_COMPARE)
#undef PI_COMPARE
    if (memcmp(compiled.debug_checks, entry->debug_checks, sizeof compiled.debug_checks) != 0 && n < max)
        fields[n++] = "debug_checks";
    return n;
}

int pi_parse_tstate(const void *buf, uintptr_t addr, pi_tstate *out)
{
    memset(out, 0, sizeof *out);
    out->next = word_at(buf, L->tstate_next);
    out->thread_id = word_at(buf, L->tstate_thread_id);
    if (L->tstate_cframe >= 0) {
        /* 3.11/3.12: the outermost _PyCFrame lives inside the thread state itself */
        uintptr_t cframe = word_at(buf, L->tstate_cframe);
        if (cframe == addr + (uintptr_t)L->tstate_root_cframe)
            out->frame = word_at(buf, L->tstate_root_cframe + L->cframe_current_frame);
        else
            out->cframe = cframe;
    } else {
        out->frame = word_at(buf, L->tstate_frame);
    }
    if (L->tstate_chunk >= 0) {
        out->native_id = word_at(buf, L->tstate_native_thread_id);
        out->chunk = word_at(buf, L->tstate_chunk);
        out->chunk_top = word_at(buf, L->tstate_chunk_top);
        out->chunk_limit = word_at(buf, L->tstate_chunk_limit);
    }
    out->context = word_at(buf, L->tstate_context);
    return 0;
}

size_t pi_gil_read_size(void)
{
    return (size_t)L->gil_switch_number + sizeof(uint64_t);
}

size_t pi_gil_struct_size(void)
{
    /* another version's: four words, two condition variables and two mutexes (glibc) */
    return pi_runtime_layout.compiled ? sizeof(struct _gil_runtime_state) : 208;
}

void pi_parse_gil(const void *buf, uintptr_t *last_holder, uint64_t *switches)
{
    /* 3.9-3.12: an _Py_atomic_address holding the pointer; 3.13+: the pointer */
    *last_holder = word_at(buf, L->gil_last_holder);
    memcpy(switches, (const uint8_t *)buf + L->gil_switch_number, sizeof *switches);
}

bool pi_gil_locked(const void *buf)
{
    return int_at(buf, L->gil_locked) == 1; /* 3.9-3.12: an _Py_atomic_int holding it; 3.13+: the int */
}

int pi_parse_chunk(const void *buf, uintptr_t *previous, size_t *used)
{
    *previous = 0;
    *used = 0;
    if (L->chunk_data < 0)
        return -1;
    uint64_t size, top;
    memcpy(&size, (const uint8_t *)buf + L->chunk_size, sizeof size);
    memcpy(&top, (const uint8_t *)buf + L->chunk_top, sizeof top);
    *previous = word_at(buf, L->chunk_previous);
    if (top > size / sizeof(uintptr_t))
        return -1;
    *used = (size_t)L->chunk_data + (size_t)top * sizeof(uintptr_t);
    return 0;
}

size_t pi_chunk_header_size(void)
{
    return L->chunk_data < 0 ? 0 : (size_t)L->chunk_data;
}

size_t pi_cframe_read_size(void)
{
    return L->cframe_size < 0 ? 0 : (size_t)L->cframe_size;
}

uintptr_t pi_parse_cframe(const void *buf)
{
    return L->cframe_size < 0 ? 0 : word_at(buf, L->cframe_current_frame);
}

int pi_parse_cleared_frame(const void *buf, pi_frame *out)
{
    memset(out, 0, sizeof *out);
    if (!AT_LEAST(14))
        return -1;
    out->kind = PI_FRAME_PYTHON;
    out->previous = word_at(buf, L->iframe_previous);
    copied_frame_position(buf, &out->code, &out->instr);
    if (char_at(buf, L->iframe_owner) != L->owned_by_thread || out->code || !out->previous || !out->instr)
        return -1;
    return 0;
}

void pi_frame_set_code(void *buf, uintptr_t code)
{
    memcpy((uint8_t *)buf + (AT_LEAST(11) ? L->iframe_code : L->frame_code), &code, sizeof code);
}

size_t pi_frame_previous_offset(void)
{
    return (size_t)(AT_LEAST(11) ? L->iframe_previous : L->frame_back);
}

/* 3.11+: a frame in a data-stack chunk or inside a generator. */
static int parse_interpreter_frame(const void *buf, pi_frame *out)
{
    out->previous = word_at(buf, L->iframe_previous);
    copied_frame_position(buf, &out->code, &out->instr);
    out->func = pi_stack_slot_object(word_at(buf, L->iframe_func));
    int owner = char_at(buf, L->iframe_owner);
    if (L->owned_by_interpreter >= 0 ? owner >= L->owned_by_interpreter : owner == L->owned_by_cstack)
        out->kind = PI_FRAME_SKIP;
    if (owner < 0 || owner > 4)
        return -1;
    /* a frame popped (and cleared) while we copied it */
    if (out->kind == PI_FRAME_PYTHON && !out->code)
        return -1;
    /* a shim frame holds a known sentinel where code would be: else it is stale C stack;
     * and only a shim holds it (3.12 writes the entry frame's code before its owner) */
    if ((out->kind == PI_FRAME_SKIP) != (out->code == pi_runtime_layout.shim_code))
        return -1;
    /* a running generator always has a caller: one without was suspended under us */
    if (owner == L->owned_by_generator && !out->previous)
        return -1;
    return 0;
}

/* 3.9/3.10: a frame object. */
static int parse_frame_object(const void *buf, pi_frame *out)
{
    out->previous = word_at(buf, L->frame_back);
    out->code = word_at(buf, L->frame_code);
    out->valuestack = word_at(buf, L->frame_valuestack);
    int lasti = int_at(buf, L->frame_lasti);
    if (AT_LEAST(10))
        out->lasti = lasti; /* instruction index */
    else
        out->lasti = lasti < 0 ? -1 : lasti / 2; /* byte offset -> index */
    if (word_at(buf, TYPE_AT) != statics.frame_type || !object_alive(buf))
        return -1;
    /* a frame on a thread's chain is executing: anything else is a torn read */
    int state = char_at(buf, L->frame_state);
    if (AT_LEAST(10) ? state != L->frame_executing : state == 0)
        return -1;
    /* a running generator always has a caller: one without was resumed or suspended
     * while we copied it */
    if (word_at(buf, L->frame_gen) && !out->previous)
        return -1;
    return 0;
}

int pi_parse_frame(const void *buf, pi_frame *out)
{
    memset(out, 0, sizeof *out);
    out->kind = PI_FRAME_PYTHON;
    return AT_LEAST(11) ? parse_interpreter_frame(buf, out) : parse_frame_object(buf, out);
}

int pi_parse_code(const void *buf, uintptr_t addr, pi_code *out)
{
    memset(out, 0, sizeof *out);
    out->type = word_at(buf, TYPE_AT);
    out->name = word_at(buf, L->code_name);
    out->filename = word_at(buf, L->code_filename);
    out->names = word_at(buf, L->code_names);
    out->varnames = word_at(buf, L->code_varnames);
    out->linetable = word_at(buf, L->code_linetable);
    out->firstlineno = int_at(buf, L->code_firstlineno);
    out->stacksize = int_at(buf, L->code_stacksize);
    if (AT_LEAST(11)) {
        out->qualname = word_at(buf, L->code_qualname);
        out->first_traceable = int_at(buf, L->code_firsttraceable);
        out->exceptiontable = word_at(buf, L->code_exceptiontable);
        out->nlocalsplus = int_at(buf, L->code_nlocalsplus);
        memcpy(&out->code_units, (const uint8_t *)buf + SIZE_AT, sizeof out->code_units);
        out->code_start = addr + (uintptr_t)L->code_adaptive;
    } else {
        out->code_bytes = word_at(buf, L->code_bytes);
        out->code_units = -1;
    }
    if (L->code_version >= 0)
        out->version = (uint32_t)int_at(buf, L->code_version);
    if (out->type != pi_runtime_layout.code_type_addr || out->name == 0 || out->filename == 0 ||
        !object_alive(buf))
        return -1;
    return 0;
}

bool pi_code_same(const pi_code *a, const pi_code *b)
{
    return a->type == b->type && a->name == b->name && a->qualname == b->qualname &&
           a->filename == b->filename && a->linetable == b->linetable &&
           a->firstlineno == b->firstlineno && a->version == b->version &&
           a->code_units == b->code_units;
}

size_t pi_unicode_header_size(void)
{
    return (size_t)L->compact_size;
}

int pi_parse_unicode(const void *buf, int64_t *length, int *kind, size_t *data_offset)
{
    if (word_at(buf, TYPE_AT) != statics.unicode_type || !object_alive(buf))
        return -1;
    uint32_t state = (uint32_t)int_at(buf, L->unicode_state);
    if (!(state & L->state_compact_bit))
        return -1; /* legacy strings never name code; refuse rather than chase pointers */
    memcpy(length, (const uint8_t *)buf + L->unicode_length, sizeof *length);
    *kind = (int)((state & L->state_kind_mask) >> L->state_kind_shift);
    if (*kind != 1 && *kind != 2 && *kind != 4)
        return -1;
    *data_offset = (size_t)((state & L->state_ascii_bit) ? L->ascii_size : L->compact_size);
    return *length < 0 ? -1 : 0;
}

size_t pi_bytes_header_size(void)
{
    return (size_t)L->bytes_data;
}

int pi_parse_bytes(const void *buf, int64_t *length, size_t *data_offset)
{
    if (word_at(buf, TYPE_AT) != statics.bytes_type || !object_alive(buf))
        return -1;
    memcpy(length, (const uint8_t *)buf + SIZE_AT, sizeof *length);
    *data_offset = (size_t)L->bytes_data;
    return *length < 0 ? -1 : 0;
}

size_t pi_tuple_header_size(void)
{
    return (size_t)L->tuple_items;
}

int pi_parse_tuple(const void *buf, int64_t *length, size_t *items_offset)
{
    if (word_at(buf, TYPE_AT) != statics.tuple_type || !object_alive(buf))
        return -1;
    memcpy(length, (const uint8_t *)buf + SIZE_AT, sizeof *length);
    *items_offset = (size_t)L->tuple_items;
    return *length < 0 ? -1 : 0;
}

/* ---- async mode: contexts and suspended coroutines ---- */

size_t pi_tstate_context_offset(void)
{
    return (size_t)L->tstate_context;
}

size_t pi_context_read_size(void)
{
    _Static_assert(sizeof(PyContext) <= 128 && sizeof(PyHamtObject) <= 128, "context.c's lookup buffer");
    return sizeof(PyContext);
}

int pi_parse_context(const void *buf, uintptr_t *vars)
{
    PI_LOAD(PyContext, c, buf);
    if (COPY_TYPE(c) != STATIC_ADDR(&PyContext_Type) || !object_alive(buf))
        return -1;
    *vars = (uintptr_t)c.ctx_vars;
    return *vars ? 0 : -1;
}

size_t pi_hamt_read_size(void)
{
    return sizeof(PyHamtObject);
}

int pi_parse_hamt(const void *buf, uintptr_t *type, uintptr_t *root)
{
    PI_LOAD(PyHamtObject, h, buf);
    if (!object_alive(buf))
        return -1;
    *type = COPY_TYPE(h);
    *root = (uintptr_t)h.h_root;
    return 0;
}

#if PY_VERSION_HEX >= 0x030B0000
#define PI_CORO_READ (offsetof(PyCoroObject, cr_iframe) + offsetof(pi_iframe_t, localsplus))
#else
#define PI_CORO_READ sizeof(PyCoroObject)
#endif

size_t pi_coro_read_size(void)
{
    return PI_CORO_READ;
}

/* Generators and coroutines share one layout (_PyGenObject_HEAD). */
uintptr_t pi_coro_frame(uintptr_t coro)
{
#if PY_VERSION_HEX >= 0x030B0000
    return coro + offsetof(PyCoroObject, cr_iframe); /* run in place, inside the object */
#else
    return (uintptr_t)((PyCoroObject *)coro)->cr_frame; /* the same frame object until it ends */
#endif
}

int pi_parse_coro(const void *buf, uintptr_t addr, pi_coro *out)
{
    PyCoroObject c;
#if PY_VERSION_HEX >= 0x030B0000
    memcpy(&c, buf, offsetof(PyCoroObject, cr_iframe)); /* the frame is copied below */
#else
    memcpy(&c, buf, sizeof c);
#endif
    memset(out, 0, sizeof *out);
    uintptr_t type = COPY_TYPE(c);
    if ((type != STATIC_ADDR(&PyCoro_Type) && type != STATIC_ADDR(&PyGen_Type)) || !object_alive(buf))
        return -1;
    out->is_coroutine = type == STATIC_ADDR(&PyCoro_Type);
#if PY_VERSION_HEX >= 0x030B0000
    int8_t state = c.cr_frame_state;
    uintptr_t frame = addr + offsetof(PyCoroObject, cr_iframe);
    pi_iframe_t f;
    memcpy(&f, (const uint8_t *)buf + offsetof(PyCoroObject, cr_iframe), offsetof(pi_iframe_t, localsplus));
#if PY_VERSION_HEX >= 0x030D0000
    out->suspended = FRAME_STATE_SUSPENDED(state);
#else
    out->suspended = state == FRAME_SUSPENDED;
#endif
    if (!out->suspended)
        return 0;
    frame_position(&f, &out->code, &out->instr);
    out->locals = frame + offsetof(pi_iframe_t, localsplus);
#if PY_VERSION_HEX >= 0x030E0000
    uintptr_t base = frame + offsetof(pi_iframe_t, localsplus);
    uintptr_t top = (uintptr_t)f.stackpointer;
    if (top <= base || top - base > ((uintptr_t)1 << 20))
        return -1;
    out->stack_top = top;
    out->stack_slots = (top - base) / sizeof(_PyStackRef);
#else
    if (f.stacktop <= 0 || f.stacktop > (1 << 17))
        return -1;
    out->stack_top = frame + offsetof(pi_iframe_t, localsplus) + (uintptr_t)f.stacktop * sizeof(PyObject *);
    out->stack_slots = (size_t)f.stacktop;
#endif
    if (!out->code)
        return -1;
#else
    (void)addr;
    out->frame = (uintptr_t)c.cr_frame;
#if PY_VERSION_HEX < 0x030A0000
    if (c.cr_running)
        return 0;
#endif
    out->suspended = out->frame != 0; /* confirmed by its frame */
#endif
    return 0;
}

int pi_parse_coro_frame(const void *buf, uintptr_t addr, pi_coro *out)
{
#if PY_VERSION_HEX >= 0x030B0000
    (void)buf;
    (void)addr;
    (void)out;
    return -1;
#else
    PyFrameObject f;
    memcpy(&f, buf, offsetof(PyFrameObject, f_localsplus));
    if (COPY_TYPE(f) != STATIC_ADDR(&PyFrame_Type) || !object_alive(buf) || !f.f_code)
        return -1;
    out->code = (uintptr_t)f.f_code;
    out->locals = addr + offsetof(PyFrameObject, f_localsplus);
    uintptr_t stack = (uintptr_t)f.f_valuestack;
#if PY_VERSION_HEX >= 0x030A0000
    out->lasti = f.f_lasti;
    out->suspended = f.f_state == FRAME_SUSPENDED;
    if (!out->suspended)
        return 0;
    if (f.f_stackdepth <= 0 || f.f_stackdepth > (1 << 17))
        return -1;
    out->stack_top = stack + (uintptr_t)f.f_stackdepth * sizeof(PyObject *);
    out->stack_slots = (size_t)f.f_stackdepth;
#else
    out->lasti = f.f_lasti < 0 ? -1 : f.f_lasti / 2;
    uintptr_t top = (uintptr_t)f.f_stacktop;
    /* a suspended frame keeps its stack top; a running one has none */
    out->suspended = !f.f_executing && top != 0 && f.f_lasti >= 0;
    if (!out->suspended)
        return 0;
    if (top <= stack || top - stack > ((uintptr_t)1 << 20))
        return -1;
    out->stack_top = top;
    out->stack_slots = (top - stack) / sizeof(PyObject *);
#endif
    (void)addr;
    return 0;
#endif
}

/* ---- async mode: what a gather, a shield or a TaskGroup waits on ---- */

size_t pi_container_read_size(void)
{
    size_t size = sizeof(PyListObject);
    size = size < sizeof(PySetObject) ? sizeof(PySetObject) : size;
    size = size < sizeof(PyFunctionObject) ? sizeof(PyFunctionObject) : size;
    size = size < sizeof(PyCellObject) ? sizeof(PyCellObject) : size;
    size = size < sizeof(PyDictObject) ? sizeof(PyDictObject) : size;
    return size < sizeof(PyTupleObject) ? sizeof(PyTupleObject) : size;
}

int pi_parse_list(const void *buf, int64_t *length, uintptr_t *items)
{
    PI_LOAD(PyListObject, l, buf);
    if (COPY_TYPE(l) != STATIC_ADDR(&PyList_Type) || !object_alive(buf))
        return -1;
    *length = COPY_SIZE(l);
    *items = (uintptr_t)l.ob_item;
    return *length < 0 || (*length > 0 && !*items) ? -1 : 0;
}

int pi_parse_set(const void *buf, uintptr_t *table, size_t *slots)
{
    PI_LOAD(PySetObject, s, buf);
    if (COPY_TYPE(s) != STATIC_ADDR(&PySet_Type) || !object_alive(buf) || s.mask < 0 || !s.table)
        return -1;
    *table = (uintptr_t)s.table;
    *slots = (size_t)s.mask + 1;
    return 0;
}

size_t pi_set_entry_size(void)
{
    _Static_assert(offsetof(setentry, key) == 0, "a set entry starts with its key");
    return sizeof(setentry);
}

int pi_parse_function(const void *buf, uintptr_t *code, uintptr_t *closure)
{
    PI_LOAD(PyFunctionObject, f, buf);
    if (COPY_TYPE(f) != STATIC_ADDR(&PyFunction_Type) || !object_alive(buf))
        return -1;
    *code = (uintptr_t)f.func_code;
    *closure = (uintptr_t)f.func_closure;
    return 0;
}

int pi_parse_cell(const void *buf, uintptr_t *contents)
{
    PI_LOAD(PyCellObject, c, buf);
    if (COPY_TYPE(c) != STATIC_ADDR(&PyCell_Type) || !object_alive(buf))
        return -1;
    *contents = (uintptr_t)c.ob_ref;
    return 0;
}

int pi_parse_dict(const void *buf, uintptr_t *keys, uintptr_t *values)
{
    PI_LOAD(PyDictObject, d, buf);
    if (COPY_TYPE(d) != STATIC_ADDR(&PyDict_Type) || !object_alive(buf) || !d.ma_keys)
        return -1;
    *keys = (uintptr_t)d.ma_keys;
    *values = (uintptr_t)d.ma_values;
    return 0;
}

#if PY_VERSION_HEX < 0x030B0000
/* 3.9/3.10's keys object (Objects/dict-common.h, not installed), then its indices, then its entries */
typedef struct {
    Py_ssize_t dk_refcnt, dk_size;
    void *dk_lookup;
    Py_ssize_t dk_usable, dk_nentries;
} pi_dict_keys_head;
typedef struct {
    Py_hash_t hash;
    PyObject *key, *value;
} pi_dict_entry;
#endif

size_t pi_dict_values_offset(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return offsetof(PyDictValues, values);
#else
    return 0; /* ma_values is the array itself */
#endif
}

int pi_dict_keys_find(const void *buf, size_t len, uintptr_t key, int64_t *index, uintptr_t *value)
{
    size_t entries, entry_size, key_at, value_at;
    int64_t count;
#if PY_VERSION_HEX >= 0x030B0000
    if (len < offsetof(PyDictKeysObject, dk_indices))
        return -1;
    PyDictKeysObject k;
    memcpy(&k, buf, offsetof(PyDictKeysObject, dk_indices));
    if (k.dk_log2_index_bytes > 40)
        return -1;
    entries = offsetof(PyDictKeysObject, dk_indices) + ((size_t)1 << k.dk_log2_index_bytes);
    count = k.dk_nentries;
    if (k.dk_kind == DICT_KEYS_GENERAL) {
        entry_size = sizeof(PyDictKeyEntry);
        key_at = offsetof(PyDictKeyEntry, me_key);
        value_at = offsetof(PyDictKeyEntry, me_value);
    } else {
        entry_size = sizeof(PyDictUnicodeEntry);
        key_at = offsetof(PyDictUnicodeEntry, me_key);
        value_at = offsetof(PyDictUnicodeEntry, me_value);
    }
#else
    if (len < sizeof(pi_dict_keys_head))
        return -1;
    PI_LOAD(pi_dict_keys_head, k, buf);
    if (k.dk_size <= 0 || k.dk_size > (1 << 24))
        return -1;
    size_t index_bytes = k.dk_size <= 0xff ? 1 : k.dk_size <= 0xffff ? 2 : 4;
    entries = sizeof(pi_dict_keys_head) + (size_t)k.dk_size * index_bytes;
    count = k.dk_nentries;
    entry_size = sizeof(pi_dict_entry);
    key_at = offsetof(pi_dict_entry, key);
    value_at = offsetof(pi_dict_entry, value);
#endif
    /* a linear scan of the entries that were copied: the key is a known object */
    for (int64_t i = 0; i < count; i++) {
        size_t at = entries + (size_t)i * entry_size;
        if (at + entry_size > len)
            return -1;
        uintptr_t entry_key;
        memcpy(&entry_key, (const uint8_t *)buf + at + key_at, sizeof entry_key);
        if (entry_key == key) {
            *index = i;
            memcpy(value, (const uint8_t *)buf + at + value_at, sizeof *value);
            return 0;
        }
    }
    return -1;
}

size_t pi_type_cached_keys_offset(void)
{
    return offsetof(PyHeapTypeObject, ht_cached_keys);
}

int pi_instance_attributes(uintptr_t obj, const pi_attr_place *place, uintptr_t *dict, uintptr_t *values,
                           uint64_t *syscalls)
{
    uintptr_t word;
    *dict = *values = 0;
    if (place->dict_offset) {
        ++*syscalls;
        return pi_read_exact(obj + place->dict_offset, dict, sizeof *dict);
    }
#if PY_VERSION_HEX >= 0x030B0000
    /* a managed dict: a pointer just before the object (before the GC links, which a
     * free-threaded build keeps elsewhere) */
#ifdef Py_GIL_DISABLED
    const size_t managed_dict_words = 1;
#else
    const size_t managed_dict_words = 3;
#endif
    ++*syscalls;
    if (pi_read_exact(obj - managed_dict_words * sizeof(uintptr_t), &word, sizeof word) != 0)
        return -1;
#if PY_VERSION_HEX >= 0x030D0000
    *dict = word;
    if (place->inline_values) {
        /* the values live after the object, valid until a combined dict took them over */
        PyDictValues head;
        ++*syscalls;
        if (pi_read_exact(obj + place->basicsize, &head, offsetof(PyDictValues, values)) == 0 && head.valid &&
            head.embedded)
            *values = obj + place->basicsize;
    }
#elif PY_VERSION_HEX >= 0x030C0000
    /* a dict, or values tagged by their address - 1 (odd) */
    if (word & 1)
        *values = word + 1;
    else
        *dict = word;
#else
    *dict = word;
    ++*syscalls;
    if (pi_read_exact(obj - 4 * sizeof(uintptr_t), values, sizeof *values) != 0)
        return -1;
#endif
    return 0;
#else
    (void)word;
    return -1; /* every dict has an offset before 3.11 */
#endif
}

uintptr_t pi_stack_slot_object(uintptr_t slot)
{
    if (L->stack_tag_bits <= 0)
        return slot;
    if (L->stack_int_tag >= 0 && (slot & (uintptr_t)L->stack_tag_bits) == (uintptr_t)L->stack_int_tag)
        return 0;
    return slot & ~(uintptr_t)L->stack_tag_bits;
}

int pi_line_for_instr(const uint8_t *table, size_t len, int firstlineno, int instr_index)
{
    if (instr_index < 0)
        return -1;
    if (AT_LEAST(11))
        return pi_line_locations311(table, len, firstlineno, instr_index);
    if (AT_LEAST(10))
        return pi_line_linetable310(table, len, firstlineno, instr_index * 2);
    return pi_line_lnotab(table, len, firstlineno, instr_index * 2);
}

/* ---- the object a call instruction calls ---- */

size_t pi_frame_locals_offset(void)
{
    return AT_LEAST(11) ? (size_t)L->iframe_localsplus : 0;
}

size_t pi_callable_read_size(void)
{
    return (size_t)(L->cfunction_size > L->method_descr_size ? L->cfunction_size : L->method_descr_size);
}

int pi_parse_object_header(const void *buf, uintptr_t *type)
{
    *type = word_at(buf, TYPE_AT);
    return object_alive(buf) && *type ? 0 : -1;
}

uintptr_t pi_object_type(const void *buf)
{
    return word_at(buf, TYPE_AT);
}

bool pi_object_dying(const void *buf)
{
    return reference_count(buf) == 0 && word_at(buf, TYPE_AT) != 0;
}

int pi_parse_callable(const void *buf, pi_callable *out)
{
    memset(out, 0, sizeof *out);
    uintptr_t type;
    if (pi_parse_object_header(buf, &type) != 0)
        return -1;
    /* the kinds of object sys.setprofile reports as c_call */
    if (type == statics.cfunction_type || type == statics.cmethod_type) {
        out->kind = PI_CALLABLE_CFUNCTION;
        out->method_def = word_at(buf, L->cfunction_method_def);
        out->self = word_at(buf, L->cfunction_self);
    } else if (type == statics.method_descr_type) {
        out->kind = PI_CALLABLE_METHOD_DESCRIPTOR;
        out->method_def = word_at(buf, L->method_descr_method_def);
        out->type = word_at(buf, L->method_descr_type);
    } else {
        out->kind = PI_CALLABLE_OTHER;
        return 0;
    }
    return out->method_def ? 0 : -1;
}

size_t pi_object_header_size(void)
{
    _Static_assert(sizeof(PyObject) <= PI_OBJECT_HEADER_MAX, "room for an object header");
    return sizeof(PyObject); /* a free-threaded build reads only free-threaded processes */
}

size_t pi_type_read_size(void)
{
    return (size_t)L->type_base + sizeof(uintptr_t);
}

size_t pi_type_qualname_offset(void)
{
    return (size_t)L->heap_type_qualname;
}

int pi_parse_type(const void *buf, uintptr_t qualname, pi_type *out)
{
    memset(out, 0, sizeof *out);
    uintptr_t metatype;
    if (pi_parse_object_header(buf, &metatype) != 0)
        return -1;
    uint64_t flags;
    memcpy(&flags, (const uint8_t *)buf + L->type_flags, sizeof flags);
    out->name = word_at(buf, L->type_name);
    out->base = word_at(buf, L->type_base);
    out->is_metatype = (flags & Py_TPFLAGS_TYPE_SUBCLASS) != 0; /* the same bits in every version */
    out->heap = (flags & Py_TPFLAGS_HEAPTYPE) != 0;
    out->qualname = out->heap ? qualname : 0;
    if (!out->name || (out->heap && !out->qualname))
        return -1;
    return 0;
}

uintptr_t pi_module_type(void)
{
    return statics.module_type;
}

uintptr_t pi_none_object(void)
{
    return statics.none;
}

uintptr_t pi_function_type(void)
{
    return statics.function_type;
}

bool pi_long_lived_type(uintptr_t type)
{
    return type == statics.type_type || type == statics.cfunction_type || type == statics.cmethod_type ||
           type == statics.method_descr_type;
}

size_t pi_method_def_name_offset(void)
{
    return (size_t)L->method_def_name;
}

#if PY_VERSION_HEX >= 0x030E0000
/* A value-stack slot of this build's own frames: its object, untagged (0: a small int). */
static uintptr_t untagged(uintptr_t slot)
{
#ifdef Py_INT_TAG
    if ((slot & Py_TAG_BITS) == Py_INT_TAG)
        return 0;
#endif
    return slot & ~(uintptr_t)Py_TAG_BITS;
}
#endif

int pi_local_frame_slots(void *frame_object, size_t first, size_t count, uintptr_t *out)
{
    PyFrameObject *frame = frame_object;
#if PY_VERSION_HEX >= 0x030B0000
    _PyInterpreterFrame *f = frame->f_frame;
    uintptr_t code_addr = 0, instr;
    if (f)
        frame_position(f, &code_addr, &instr);
    PyCodeObject *code = (PyCodeObject *)code_addr;
    if (!code || (size_t)code->co_stacksize < first + count)
        return -1;
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14+ saves the stack pointer around every call that may let go of the GIL: slots
       above it are left over from a call that ended */
    if (!f->stackpointer || f->stackpointer < f->localsplus + code->co_nlocalsplus + first + count)
        return -1;
#endif
    for (size_t i = 0; i < count; i++) {
#if PY_VERSION_HEX >= 0x030E0000
        out[i] = untagged(f->localsplus[code->co_nlocalsplus + first + i].bits);
#else
        out[i] = (uintptr_t)f->localsplus[code->co_nlocalsplus + first + i];
#endif
    }
#else
    if (!frame->f_valuestack || (size_t)frame->f_code->co_stacksize < first + count)
        return -1;
    for (size_t i = 0; i < count; i++)
        out[i] = (uintptr_t)frame->f_valuestack[first + i];
#endif
    return 0;
}

uintptr_t pi_interpreter_anchor(void)
{
    return (uintptr_t)&PyCode_Type;
}

uint32_t pi_layout_version(void)
{
    return (uint32_t)L->version;
}

uint32_t pi_compiled_version(void)
{
    return PY_VERSION_HEX;
}
