/*
 * layout.c: the interpreter's struct layouts, from its own internal headers.
 *
 * The extension is compiled once per Python minor version, so the real C types of
 * CPython's thread states, frames and code objects are used directly: no offset
 * tables. Remote structs are copied (memread.c) into buffers and parsed here; the
 * sampler thread never dereferences an interpreter pointer. On 3.13+ the compiled
 * layout is checked against the runtime's own _Py_DebugOffsets at start.
 */
#ifndef Py_BUILD_CORE_MODULE
#define Py_BUILD_CORE_MODULE 1
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "engine.h"

#include <stdio.h>
#include <string.h>

#if PY_VERSION_HEX < 0x03090000
#error "pyinstrument's engine supports CPython 3.9 and newer"
#endif

/* CPython's internal headers are not written for -Wextra */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#if PY_VERSION_HEX >= 0x030E0000
#include "internal/pycore_interpframe_structs.h"
#include "internal/pycore_stackref.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include "frameobject.h"
#endif
#include "internal/pycore_interp.h"
#include "internal/pycore_context.h"
#include "internal/pycore_hamt.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_dict.h"
#endif
#include "internal/pycore_runtime.h"
#include "internal/pycore_gil.h"
#pragma GCC diagnostic pop

pi_layout pi_runtime_layout;

/* Where this interpreter's static objects (its types, None, _PyRuntime) lie in the
 * process read, less where they lie in ours: 0 in-process; for a process attached to,
 * which runs the same interpreter binary mapped elsewhere (attach.c). */
static uintptr_t static_reloc;
#define STATIC_ADDR(p) ((uintptr_t)(p) + static_reloc)

/* Copies a struct out of a buffer (which may be unaligned). */
#define PI_LOAD(type, var, buf) type var; memcpy(&var, (buf), sizeof var)
/* Header fields of a copied object, read directly: CPython's Py_TYPE/Py_SIZE may
 * assert on the contents, and a copy is untrusted until checked. */
#define COPY_TYPE(obj) ((uintptr_t)((PyObject *)&(obj))->ob_type)
#define COPY_SIZE(obj) (((PyVarObject *)&(obj))->ob_size)

#if PY_VERSION_HEX >= 0x030B0000
typedef _PyInterpreterFrame pi_iframe_t;

/* A copied frame's code object and current instruction. */
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

#if PY_VERSION_HEX >= 0x030D0000
static int check_offset(char *err, size_t errlen, const char *what, uint64_t runtime, size_t compiled)
{
    if (runtime == (uint64_t)compiled)
        return 0;
    snprintf(err, errlen,
             "this Python's %s layout differs from the one pyinstrument was built for "
             "(offset %llu, expected %zu); reinstall pyinstrument for this interpreter",
             what, (unsigned long long)runtime, compiled);
    return -1;
}

static int check_debug_offsets(char *err, size_t errlen)
{
    const _Py_DebugOffsets *d = &_PyRuntime.debug_offsets;
    if (memcmp(d->cookie, "xdebugpy", 8) != 0) {
        snprintf(err, errlen, "this Python has no debug offsets (cookie missing); unsupported build");
        return -1;
    }
    if (d->free_threaded) {
        snprintf(err, errlen, "free-threaded Python builds are not supported yet");
        return -1;
    }
    if (check_offset(err, errlen, "thread state", d->thread_state.next, offsetof(PyThreadState, next)) ||
        check_offset(err, errlen, "thread state", d->thread_state.current_frame, offsetof(PyThreadState, current_frame)) ||
        check_offset(err, errlen, "thread state", d->thread_state.native_thread_id, offsetof(PyThreadState, native_thread_id)) ||
        check_offset(err, errlen, "interpreter", d->interpreter_state.threads_head, offsetof(PyInterpreterState, threads.head)) ||
        check_offset(err, errlen, "frame", d->interpreter_frame.previous, offsetof(pi_iframe_t, previous)) ||
        check_offset(err, errlen, "frame", d->interpreter_frame.executable, offsetof(pi_iframe_t, f_executable)) ||
        check_offset(err, errlen, "frame", d->interpreter_frame.instr_ptr, offsetof(pi_iframe_t, instr_ptr)) ||
        check_offset(err, errlen, "frame", d->interpreter_frame.owner, offsetof(pi_iframe_t, owner)) ||
        check_offset(err, errlen, "code object", d->code_object.filename, offsetof(PyCodeObject, co_filename)) ||
        check_offset(err, errlen, "code object", d->code_object.qualname, offsetof(PyCodeObject, co_qualname)) ||
        check_offset(err, errlen, "code object", d->code_object.linetable, offsetof(PyCodeObject, co_linetable)) ||
        check_offset(err, errlen, "code object", d->code_object.firstlineno, offsetof(PyCodeObject, co_firstlineno)) ||
        check_offset(err, errlen, "code object", d->code_object.co_code_adaptive, offsetof(PyCodeObject, co_code_adaptive)) ||
        check_offset(err, errlen, "unicode", d->unicode_object.asciiobject_size, sizeof(PyASCIIObject)))
        return -1;
    return 0;
}
#endif

/* Whether a copied object header belongs to a live object. Freed memory keeps its old
 * contents except the first word, where both pymalloc and glibc's malloc store a
 * (large, or mangled) free-list pointer: a live object has a small reference count
 * there. 3.14+ keep flag bits in the top 16 bits of that word. */
static bool object_alive(const void *buf)
{
    uint64_t refcnt;
    memcpy(&refcnt, buf, sizeof refcnt);
#if PY_VERSION_HEX >= 0x030E0000
    refcnt &= 0x0000FFFFFFFFFFFFULL;
#endif
    return refcnt > 0 && refcnt < (1ULL << 40);
}

/* A pointer-sized field of the interpreter read (in-process or attached to). */
static uintptr_t read_pointer(uintptr_t addr)
{
    uintptr_t value = 0;
    return pi_read_exact(addr, &value, sizeof value) == 0 ? value : 0;
}

int pi_layout_init(uintptr_t reloc, char *err, size_t errlen)
{
    static_reloc = reloc;
    /* in-process: this thread's interpreter; attached: the main one, read from its runtime */
    uintptr_t interp = reloc ? read_pointer(STATIC_ADDR(&_PyRuntime.interpreters.main))
                             : (uintptr_t)PyInterpreterState_Get();
    pi_layout *l = &pi_runtime_layout;
    memset(l, 0, sizeof *l);
    if (!interp) {
        snprintf(err, errlen, "its interpreter is not running (not started, or finalizing)");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030B0000
    l->thread_head_addr = interp + offsetof(PyInterpreterState, threads.head);
    l->frames_in_chunks = true;
    l->has_native_thread_id = true;
    l->frame_read_size = offsetof(pi_iframe_t, localsplus);
    l->code_read_size = offsetof(PyCodeObject, co_code_adaptive);
#else
    l->thread_head_addr = interp + offsetof(PyInterpreterState, tstate_head);
    l->frame_read_size = offsetof(PyFrameObject, f_localsplus);
    l->code_read_size = sizeof(PyCodeObject);
#endif
#if PY_VERSION_HEX >= 0x030E0000
    l->clears_popped_frames = true;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    l->chains_end_in_shim = true;
    l->shim_code = STATIC_ADDR(Py_None);
#elif PY_VERSION_HEX >= 0x030C0000
    l->chains_end_in_shim = true;
    l->shim_code = read_pointer(interp + offsetof(PyInterpreterState, interpreter_trampoline));
#endif
    l->tstate_read_size = sizeof(PyThreadState);
    l->code_type_addr = STATIC_ADDR(&PyCode_Type);
#if defined(Py_GIL_DISABLED)
    l->gil_addr = 0; /* no GIL: any thread may change its stack at any time */
#elif PY_VERSION_HEX >= 0x030C0000
    l->gil_addr = read_pointer(interp + offsetof(PyInterpreterState, ceval.gil));
#else
    l->gil_addr = STATIC_ADDR(&_PyRuntime.ceval.gil);
#endif
    if (l->frame_read_size > PI_MAX_FRAME_READ || pi_cframe_read_size() > PI_MAX_CFRAME_READ) {
        snprintf(err, errlen, "this Python's frames are larger than pyinstrument's engine expects");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    if (check_debug_offsets(err, errlen) != 0)
        return -1;
#endif
    return 0;
}

int pi_parse_tstate(const void *buf, uintptr_t addr, pi_tstate *out)
{
    PI_LOAD(PyThreadState, ts, buf);
    memset(out, 0, sizeof *out);
    (void)addr;
    out->next = (uintptr_t)ts.next;
    out->thread_id = ts.thread_id;
#if PY_VERSION_HEX >= 0x030D0000
    out->frame = (uintptr_t)ts.current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
    /* the outermost _PyCFrame lives inside the thread state itself */
    if ((uintptr_t)ts.cframe == addr + offsetof(PyThreadState, root_cframe))
        out->frame = (uintptr_t)ts.root_cframe.current_frame;
    else
        out->cframe = (uintptr_t)ts.cframe;
#else
    out->frame = (uintptr_t)ts.frame;
#endif
#if PY_VERSION_HEX >= 0x030B0000
    out->native_id = ts.native_thread_id;
    out->chunk = (uintptr_t)ts.datastack_chunk;
    out->chunk_top = (uintptr_t)ts.datastack_top;
    out->chunk_limit = (uintptr_t)ts.datastack_limit;
#endif
    out->context = (uintptr_t)ts.context;
    return 0;
}

size_t pi_gil_read_size(void)
{
    return offsetof(struct _gil_runtime_state, switch_number) + sizeof(unsigned long);
}

void pi_parse_gil(const void *buf, uintptr_t *last_holder, uint64_t *switches)
{
    const uint8_t *b = buf;
    unsigned long count;
    /* 3.9-3.12: an _Py_atomic_address holding the pointer; 3.13+: the pointer */
    memcpy(last_holder, b + offsetof(struct _gil_runtime_state, last_holder), sizeof *last_holder);
    memcpy(&count, b + offsetof(struct _gil_runtime_state, switch_number), sizeof count);
    *switches = count;
}

bool pi_gil_locked(const void *buf)
{
    int locked; /* 3.9-3.12: an _Py_atomic_int holding it; 3.13+: the int */
    memcpy(&locked, (const uint8_t *)buf + offsetof(struct _gil_runtime_state, locked), sizeof locked);
    return locked == 1;
}

int pi_parse_chunk(const void *buf, uintptr_t *previous, size_t *used)
{
#if PY_VERSION_HEX >= 0x030B0000
    _PyStackChunk c;
    memcpy(&c, buf, offsetof(_PyStackChunk, data));
    *previous = (uintptr_t)c.previous;
    *used = 0;
    if (c.top > c.size / sizeof(PyObject *))
        return -1;
    *used = offsetof(_PyStackChunk, data) + c.top * sizeof(PyObject *);
    return 0;
#else
    (void)buf;
    *previous = 0;
    *used = 0;
    return -1;
#endif
}

size_t pi_chunk_header_size(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return offsetof(_PyStackChunk, data);
#else
    return 0;
#endif
}

size_t pi_cframe_read_size(void)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
    return sizeof(_PyCFrame);
#else
    return 0;
#endif
}

uintptr_t pi_parse_cframe(const void *buf)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
    PI_LOAD(_PyCFrame, cf, buf);
    return (uintptr_t)cf.current_frame;
#else
    (void)buf;
    return 0;
#endif
}

int pi_parse_cleared_frame(const void *buf, pi_frame *out)
{
    memset(out, 0, sizeof *out);
#if PY_VERSION_HEX >= 0x030E0000
    pi_iframe_t f;
    memcpy(&f, buf, offsetof(pi_iframe_t, localsplus));
    out->kind = PI_FRAME_PYTHON;
    out->previous = (uintptr_t)f.previous;
    frame_position(&f, &out->code, &out->instr);
    if (f.owner != FRAME_OWNED_BY_THREAD || out->code || !out->previous || !out->instr)
        return -1;
    return 0;
#else
    (void)buf;
    return -1;
#endif
}

void pi_frame_set_code(void *buf, uintptr_t code)
{
#if PY_VERSION_HEX >= 0x030D0000
    memcpy((uint8_t *)buf + offsetof(pi_iframe_t, f_executable), &code, sizeof code);
#elif PY_VERSION_HEX >= 0x030B0000
    memcpy((uint8_t *)buf + offsetof(pi_iframe_t, f_code), &code, sizeof code);
#else
    memcpy((uint8_t *)buf + offsetof(PyFrameObject, f_code), &code, sizeof code);
#endif
}

size_t pi_frame_previous_offset(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return offsetof(pi_iframe_t, previous);
#else
    return offsetof(PyFrameObject, f_back);
#endif
}

int pi_parse_frame(const void *buf, pi_frame *out)
{
    memset(out, 0, sizeof *out);
    out->kind = PI_FRAME_PYTHON;
#if PY_VERSION_HEX >= 0x030B0000
    /* copy only the header: localsplus is not part of the read */
    pi_iframe_t f;
    memcpy(&f, buf, offsetof(pi_iframe_t, localsplus));
    out->previous = (uintptr_t)f.previous;
    frame_position(&f, &out->code, &out->instr);
#if PY_VERSION_HEX >= 0x030E0000
    out->func = pi_stack_slot_object(f.f_funcobj.bits);
#elif PY_VERSION_HEX >= 0x030C0000
    out->func = (uintptr_t)f.f_funcobj;
#else
    out->func = (uintptr_t)f.f_func;
#endif
#if PY_VERSION_HEX >= 0x030E0000
    if (f.owner >= FRAME_OWNED_BY_INTERPRETER)
        out->kind = PI_FRAME_SKIP;
#elif PY_VERSION_HEX >= 0x030C0000
    if (f.owner == FRAME_OWNED_BY_CSTACK)
        out->kind = PI_FRAME_SKIP;
#endif
    if (f.owner < 0 || f.owner > 4)
        return -1;
    /* a frame popped (and cleared) while we copied it */
    if (out->kind == PI_FRAME_PYTHON && !out->code)
        return -1;
    /* a shim frame holds a known sentinel where code would be: else it is stale C stack;
     * and only a shim holds it (3.12 writes the entry frame's code before its owner) */
    if ((out->kind == PI_FRAME_SKIP) != (out->code == pi_runtime_layout.shim_code))
        return -1;
    /* a running generator always has a caller: one without was suspended under us */
    if (f.owner == FRAME_OWNED_BY_GENERATOR && !f.previous)
        return -1;
#else
    PyFrameObject f;
    memcpy(&f, buf, offsetof(PyFrameObject, f_localsplus));
    out->previous = (uintptr_t)f.f_back;
    out->code = (uintptr_t)f.f_code;
    out->valuestack = (uintptr_t)f.f_valuestack;
#if PY_VERSION_HEX >= 0x030A0000
    out->lasti = f.f_lasti; /* instruction index */
#else
    out->lasti = f.f_lasti < 0 ? -1 : f.f_lasti / 2; /* byte offset -> index */
#endif
    if (COPY_TYPE(f) != STATIC_ADDR(&PyFrame_Type) || !object_alive(buf))
        return -1;
    /* a frame on a thread's chain is executing: anything else is a torn read */
#if PY_VERSION_HEX >= 0x030A0000
    if (f.f_state != FRAME_EXECUTING)
        return -1;
#else
    if (!f.f_executing)
        return -1;
#endif
    /* a running generator always has a caller: one without was resumed or suspended
     * while we copied it */
    if (f.f_gen && !f.f_back)
        return -1;
#endif
    return 0;
}

int pi_parse_code(const void *buf, uintptr_t addr, pi_code *out)
{
    PyCodeObject c;
    memcpy(&c, buf, pi_runtime_layout.code_read_size);
    memset(out, 0, sizeof *out);
    out->type = COPY_TYPE(c);
    out->name = (uintptr_t)c.co_name;
    out->filename = (uintptr_t)c.co_filename;
    out->names = (uintptr_t)c.co_names;
    out->firstlineno = c.co_firstlineno;
    out->stacksize = c.co_stacksize;
#if PY_VERSION_HEX >= 0x030B0000
    out->qualname = (uintptr_t)c.co_qualname;
    out->linetable = (uintptr_t)c.co_linetable;
    out->varnames = (uintptr_t)c.co_localsplusnames;
    out->first_traceable = c._co_firsttraceable;
    out->exceptiontable = (uintptr_t)c.co_exceptiontable;
    out->nlocalsplus = c.co_nlocalsplus;
    out->code_units = COPY_SIZE(c);
    out->code_start = addr + offsetof(PyCodeObject, co_code_adaptive);
#else
    out->qualname = 0;
#if PY_VERSION_HEX >= 0x030A0000
    out->linetable = (uintptr_t)c.co_linetable;
#else
    out->linetable = (uintptr_t)c.co_lnotab;
#endif
    out->varnames = (uintptr_t)c.co_varnames;
    out->code_bytes = (uintptr_t)c.co_code;
    out->code_units = -1;
    (void)addr;
#endif
#if PY_VERSION_HEX >= 0x030C0000
    out->version = c.co_version;
#endif
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
    return sizeof(PyCompactUnicodeObject);
}

int pi_parse_unicode(const void *buf, int64_t *length, int *kind, size_t *data_offset)
{
    PI_LOAD(PyCompactUnicodeObject, u, buf);
    if (COPY_TYPE(u) != STATIC_ADDR(&PyUnicode_Type) || !object_alive(buf))
        return -1;
    if (!u._base.state.compact)
        return -1; /* legacy strings never name code; refuse rather than chase pointers */
    *length = u._base.length;
    *kind = u._base.state.kind;
    if (*kind != 1 && *kind != 2 && *kind != 4)
        return -1;
    *data_offset = u._base.state.ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject);
    if (*length < 0)
        return -1;
    return 0;
}

size_t pi_bytes_header_size(void)
{
    return offsetof(PyBytesObject, ob_sval);
}

int pi_parse_bytes(const void *buf, int64_t *length, size_t *data_offset)
{
    PyBytesObject b;
    memcpy(&b, buf, offsetof(PyBytesObject, ob_sval));
    if (COPY_TYPE(b) != STATIC_ADDR(&PyBytes_Type) || !object_alive(buf))
        return -1;
    *length = COPY_SIZE(b);
    *data_offset = offsetof(PyBytesObject, ob_sval);
    return *length < 0 ? -1 : 0;
}

size_t pi_tuple_header_size(void)
{
    return offsetof(PyTupleObject, ob_item);
}

int pi_parse_tuple(const void *buf, int64_t *length, size_t *items_offset)
{
    PyTupleObject t;
    memcpy(&t, buf, offsetof(PyTupleObject, ob_item));
    if (COPY_TYPE(t) != STATIC_ADDR(&PyTuple_Type) || !object_alive(buf))
        return -1;
    *length = COPY_SIZE(t);
    *items_offset = offsetof(PyTupleObject, ob_item);
    return *length < 0 ? -1 : 0;
}

/* ---- async mode: contexts and suspended coroutines ---- */

size_t pi_tstate_context_offset(void)
{
    return offsetof(PyThreadState, context);
}

size_t pi_context_read_size(void)
{
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
    /* a managed dict: a pointer just before the object */
    ++*syscalls;
    if (pi_read_exact(obj - 3 * sizeof(uintptr_t), &word, sizeof word) != 0)
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
#if PY_VERSION_HEX >= 0x030E0000
#ifdef Py_INT_TAG
    if ((slot & Py_TAG_BITS) == Py_INT_TAG)
        return 0;
#endif
    return slot & ~(uintptr_t)Py_TAG_BITS;
#else
    return slot;
#endif
}

int pi_line_for_instr(const uint8_t *table, size_t len, int firstlineno, int instr_index)
{
    if (instr_index < 0)
        return -1;
#if PY_VERSION_HEX >= 0x030B0000
    return pi_line_locations311(table, len, firstlineno, instr_index);
#elif PY_VERSION_HEX >= 0x030A0000
    return pi_line_linetable310(table, len, firstlineno, instr_index * 2);
#else
    return pi_line_lnotab(table, len, firstlineno, instr_index * 2);
#endif
}

/* ---- the object a call instruction calls ---- */

size_t pi_frame_locals_offset(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return offsetof(pi_iframe_t, localsplus);
#else
    return 0;
#endif
}

size_t pi_callable_read_size(void)
{
    size_t a = sizeof(PyCFunctionObject), b = sizeof(PyMethodDescrObject);
    return a > b ? a : b;
}

int pi_parse_object_header(const void *buf, uintptr_t *type)
{
    PI_LOAD(PyObject, o, buf);
    *type = (uintptr_t)o.ob_type;
    return object_alive(buf) && *type ? 0 : -1;
}

uintptr_t pi_object_type(const void *buf)
{
    PI_LOAD(PyObject, o, buf);
    return (uintptr_t)o.ob_type;
}

bool pi_object_dying(const void *buf)
{
    uint64_t refcnt;
    memcpy(&refcnt, buf, sizeof refcnt);
#if PY_VERSION_HEX >= 0x030E0000
    refcnt &= 0x0000FFFFFFFFFFFFULL;
#endif
    PI_LOAD(PyObject, o, buf);
    return refcnt == 0 && o.ob_type != NULL;
}

int pi_parse_callable(const void *buf, pi_callable *out)
{
    memset(out, 0, sizeof *out);
    uintptr_t type;
    if (pi_parse_object_header(buf, &type) != 0)
        return -1;
    /* the kinds of object sys.setprofile reports as c_call */
    if (type == STATIC_ADDR(&PyCFunction_Type) || type == STATIC_ADDR(&PyCMethod_Type)) {
        PI_LOAD(PyCFunctionObject, f, buf);
        out->kind = PI_CALLABLE_CFUNCTION;
        out->method_def = (uintptr_t)f.m_ml;
        out->self = (uintptr_t)f.m_self;
    } else if (type == STATIC_ADDR(&PyMethodDescr_Type)) {
        PI_LOAD(PyMethodDescrObject, d, buf);
        out->kind = PI_CALLABLE_METHOD_DESCRIPTOR;
        out->method_def = (uintptr_t)d.d_method;
        out->type = (uintptr_t)d.d_common.d_type;
    } else {
        out->kind = PI_CALLABLE_OTHER;
        return 0;
    }
    return out->method_def ? 0 : -1;
}

size_t pi_type_read_size(void)
{
    return offsetof(PyTypeObject, tp_base) + sizeof(PyTypeObject *);
}

size_t pi_type_qualname_offset(void)
{
    return offsetof(PyHeapTypeObject, ht_qualname);
}

int pi_parse_type(const void *buf, uintptr_t qualname, pi_type *out)
{
    memset(out, 0, sizeof *out);
    uintptr_t metatype;
    if (pi_parse_object_header(buf, &metatype) != 0)
        return -1;
    PyTypeObject t;
    memcpy(&t, buf, pi_type_read_size());
    out->name = (uintptr_t)t.tp_name;
    out->base = (uintptr_t)t.tp_base;
    out->is_metatype = (t.tp_flags & Py_TPFLAGS_TYPE_SUBCLASS) != 0;
    out->heap = (t.tp_flags & Py_TPFLAGS_HEAPTYPE) != 0;
    out->qualname = out->heap ? qualname : 0;
    if (!out->name || (out->heap && !out->qualname))
        return -1;
    return 0;
}

uintptr_t pi_module_type(void)
{
    return STATIC_ADDR(&PyModule_Type);
}

uintptr_t pi_none_object(void)
{
    return STATIC_ADDR(Py_None);
}

uintptr_t pi_function_type(void)
{
    return STATIC_ADDR(&PyFunction_Type);
}

bool pi_long_lived_type(uintptr_t type)
{
    return type == STATIC_ADDR(&PyType_Type) || type == STATIC_ADDR(&PyCFunction_Type) ||
           type == STATIC_ADDR(&PyCMethod_Type) || type == STATIC_ADDR(&PyMethodDescr_Type);
}

size_t pi_method_def_name_offset(void)
{
    return offsetof(PyMethodDef, ml_name);
}

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
        out[i] = pi_stack_slot_object(f->localsplus[code->co_nlocalsplus + first + i].bits);
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
