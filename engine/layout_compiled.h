/*
 * layout_compiled.h: the layout of the CPython whose headers this is compiled against
 * (cpython_internal.h, included first), as a pi_offsets. layout.c uses it for its own
 * interpreter; tools/layout_probe.c compiles it against each supported version's
 * headers and prints the result into layouts_table.h.
 */
#ifndef PI_LAYOUT_COMPILED_H
#define PI_LAYOUT_COMPILED_H

#include "layout_offsets.h"

#include <stddef.h>
#include <string.h>

/* The width layout.c reads a field with. */
#define PI_WIDTH(type, member, bytes) \
    _Static_assert(sizeof(((type *)0)->member) == (bytes), #type "." #member " is not " #bytes " bytes")

/* Which bits of the first 32 of a str's state one of its bit-fields takes. */
#define PI_STATE_BITS(field, value, out)                                     \
    do {                                                                     \
        PyASCIIObject probe_;                                                \
        memset(&probe_, 0, sizeof probe_);                                   \
        probe_.state.field = (value);                                        \
        uint32_t bits_;                                                      \
        memcpy(&bits_, (const char *)&probe_.state, sizeof bits_);           \
        (out) = bits_;                                                       \
    } while (0)

static inline void pi_compiled_offsets(pi_offsets *o)
{
#define PI_ABSENT(name) o->name = -1;
    PI_LAYOUT_FIELDS(PI_ABSENT)
#undef PI_ABSENT
    memset(o->debug_checks, 0, sizeof o->debug_checks);
    o->version = PY_VERSION_HEX & 0xFFFF0000;

    o->runtime_main_interp = offsetof(_PyRuntimeState, interpreters.main);
#if PY_VERSION_HEX < 0x030C0000
    o->runtime_gil = offsetof(_PyRuntimeState, ceval.gil);
#else
    o->interp_gil = offsetof(PyInterpreterState, ceval.gil);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    o->runtime_debug_offsets = offsetof(_PyRuntimeState, debug_offsets);
#endif
#if PY_VERSION_HEX >= 0x030B0000
    o->interp_threads_head = offsetof(PyInterpreterState, threads.head);
#else
    o->interp_threads_head = offsetof(PyInterpreterState, tstate_head);
#endif
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    o->interp_trampoline = offsetof(PyInterpreterState, interpreter_trampoline);
#endif
    PI_WIDTH(struct _gil_runtime_state, locked, 4);
    PI_WIDTH(struct _gil_runtime_state, last_holder, 8);
    PI_WIDTH(struct _gil_runtime_state, switch_number, 8);
    o->gil_locked = offsetof(struct _gil_runtime_state, locked);
    o->gil_last_holder = offsetof(struct _gil_runtime_state, last_holder);
    o->gil_switch_number = offsetof(struct _gil_runtime_state, switch_number);

    PI_WIDTH(PyThreadState, thread_id, 8);
    o->tstate_size = sizeof(PyThreadState);
    o->tstate_next = offsetof(PyThreadState, next);
    o->tstate_thread_id = offsetof(PyThreadState, thread_id);
    o->tstate_context = offsetof(PyThreadState, context);
#if PY_VERSION_HEX >= 0x030D0000
    o->tstate_frame = offsetof(PyThreadState, current_frame);
#elif PY_VERSION_HEX >= 0x030B0000
    o->tstate_cframe = offsetof(PyThreadState, cframe);
    o->tstate_root_cframe = offsetof(PyThreadState, root_cframe);
    o->cframe_size = sizeof(_PyCFrame);
    o->cframe_current_frame = offsetof(_PyCFrame, current_frame);
#else
    o->tstate_frame = offsetof(PyThreadState, frame);
#endif
#if PY_VERSION_HEX >= 0x030B0000
    PI_WIDTH(PyThreadState, native_thread_id, 8);
    PI_WIDTH(_PyStackChunk, top, 8);
    PI_WIDTH(_PyStackChunk, size, 8);
    o->tstate_native_thread_id = offsetof(PyThreadState, native_thread_id);
    o->tstate_chunk = offsetof(PyThreadState, datastack_chunk);
    o->tstate_chunk_top = offsetof(PyThreadState, datastack_top);
    o->tstate_chunk_limit = offsetof(PyThreadState, datastack_limit);
    o->chunk_previous = offsetof(_PyStackChunk, previous);
    o->chunk_size = offsetof(_PyStackChunk, size);
    o->chunk_top = offsetof(_PyStackChunk, top);
    o->chunk_data = offsetof(_PyStackChunk, data);

    PI_WIDTH(pi_iframe_t, owner, 1);
    o->iframe_previous = offsetof(pi_iframe_t, previous);
    o->iframe_owner = offsetof(pi_iframe_t, owner);
    o->iframe_localsplus = offsetof(pi_iframe_t, localsplus);
    o->owned_by_thread = FRAME_OWNED_BY_THREAD;
    o->owned_by_generator = FRAME_OWNED_BY_GENERATOR;
#if PY_VERSION_HEX >= 0x030D0000
    o->iframe_code = offsetof(pi_iframe_t, f_executable);
    o->iframe_instr = offsetof(pi_iframe_t, instr_ptr);
#else
    o->iframe_code = offsetof(pi_iframe_t, f_code);
    o->iframe_instr = offsetof(pi_iframe_t, prev_instr);
#endif
#if PY_VERSION_HEX >= 0x030C0000
    o->iframe_func = offsetof(pi_iframe_t, f_funcobj);
#else
    o->iframe_func = offsetof(pi_iframe_t, f_func);
#endif
#if PY_VERSION_HEX >= 0x030E0000
    o->owned_by_interpreter = FRAME_OWNED_BY_INTERPRETER;
#elif PY_VERSION_HEX >= 0x030C0000
    o->owned_by_cstack = FRAME_OWNED_BY_CSTACK;
#endif
#else
    PI_WIDTH(PyFrameObject, f_lasti, 4);
    o->frame_back = offsetof(PyFrameObject, f_back);
    o->frame_code = offsetof(PyFrameObject, f_code);
    o->frame_valuestack = offsetof(PyFrameObject, f_valuestack);
    o->frame_lasti = offsetof(PyFrameObject, f_lasti);
    o->frame_gen = offsetof(PyFrameObject, f_gen);
    o->frame_localsplus = offsetof(PyFrameObject, f_localsplus);
#if PY_VERSION_HEX >= 0x030A0000
    PI_WIDTH(PyFrameObject, f_state, 1);
    o->frame_state = offsetof(PyFrameObject, f_state);
    o->frame_executing = FRAME_EXECUTING;
#else
    PI_WIDTH(PyFrameObject, f_executing, 1);
    o->frame_state = offsetof(PyFrameObject, f_executing);
#endif
#endif

    PI_WIDTH(PyCodeObject, co_firstlineno, 4);
    PI_WIDTH(PyCodeObject, co_stacksize, 4);
    o->code_name = offsetof(PyCodeObject, co_name);
    o->code_filename = offsetof(PyCodeObject, co_filename);
    o->code_names = offsetof(PyCodeObject, co_names);
    o->code_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    o->code_stacksize = offsetof(PyCodeObject, co_stacksize);
#if PY_VERSION_HEX >= 0x030B0000
    PI_WIDTH(PyCodeObject, _co_firsttraceable, 4);
    PI_WIDTH(PyCodeObject, co_nlocalsplus, 4);
    o->code_read_size = offsetof(PyCodeObject, co_code_adaptive);
    o->code_qualname = offsetof(PyCodeObject, co_qualname);
    o->code_linetable = offsetof(PyCodeObject, co_linetable);
    o->code_varnames = offsetof(PyCodeObject, co_localsplusnames);
    o->code_exceptiontable = offsetof(PyCodeObject, co_exceptiontable);
    o->code_firsttraceable = offsetof(PyCodeObject, _co_firsttraceable);
    o->code_nlocalsplus = offsetof(PyCodeObject, co_nlocalsplus);
    o->code_adaptive = offsetof(PyCodeObject, co_code_adaptive);
#else
    o->code_read_size = sizeof(PyCodeObject);
#if PY_VERSION_HEX >= 0x030A0000
    o->code_linetable = offsetof(PyCodeObject, co_linetable);
#else
    o->code_linetable = offsetof(PyCodeObject, co_lnotab);
#endif
    o->code_varnames = offsetof(PyCodeObject, co_varnames);
    o->code_bytes = offsetof(PyCodeObject, co_code);
#endif
#if PY_VERSION_HEX >= 0x030C0000
    PI_WIDTH(PyCodeObject, co_version, 4);
    o->code_version = offsetof(PyCodeObject, co_version);
#endif

    PI_WIDTH(PyASCIIObject, length, 8);
    o->ascii_size = sizeof(PyASCIIObject);
    o->compact_size = sizeof(PyCompactUnicodeObject);
    o->unicode_length = offsetof(PyASCIIObject, length);
    o->unicode_state = offsetof(PyASCIIObject, state);
    uint32_t kind_mask;
    PI_STATE_BITS(kind, 7, kind_mask);
    o->state_kind_mask = kind_mask;
    o->state_kind_shift = __builtin_ctz(kind_mask);
    PI_STATE_BITS(compact, 1, o->state_compact_bit);
    PI_STATE_BITS(ascii, 1, o->state_ascii_bit);
    o->bytes_data = offsetof(PyBytesObject, ob_sval);
    o->tuple_items = offsetof(PyTupleObject, ob_item);

    PI_WIDTH(PyTypeObject, tp_flags, 8);
    o->cfunction_method_def = offsetof(PyCFunctionObject, m_ml);
    o->cfunction_self = offsetof(PyCFunctionObject, m_self);
    o->cfunction_size = sizeof(PyCFunctionObject);
    o->method_descr_method_def = offsetof(PyMethodDescrObject, d_method);
    o->method_descr_type = offsetof(PyMethodDescrObject, d_common.d_type);
    o->method_descr_size = sizeof(PyMethodDescrObject);
    o->method_def_name = offsetof(PyMethodDef, ml_name);
    o->type_name = offsetof(PyTypeObject, tp_name);
    o->type_basicsize = offsetof(PyTypeObject, tp_basicsize);
    o->type_flags = offsetof(PyTypeObject, tp_flags);
    o->type_base = offsetof(PyTypeObject, tp_base);
    o->heap_type_qualname = offsetof(PyHeapTypeObject, ht_qualname);
    /* as each version's type objects declare them (Objects/codeobject.c, tupleobject.c...) */
#if PY_VERSION_HEX >= 0x030B0000
    o->code_basicsize = offsetof(PyCodeObject, co_code_adaptive);
#else
    o->code_basicsize = sizeof(PyCodeObject);
    o->frame_basicsize = sizeof(PyFrameObject);
#endif
    o->tuple_basicsize = sizeof(PyTupleObject) - sizeof(PyObject *);
    o->bytes_basicsize = offsetof(PyBytesObject, ob_sval) + 1;

#if PY_VERSION_HEX >= 0x030E0000
    o->stack_tag_bits = Py_TAG_BITS;
#ifdef Py_INT_TAG
    o->stack_int_tag = Py_INT_TAG;
#endif
    o->refcnt_bits = 48;
#else
    o->refcnt_bits = 64;
#endif

#if PY_VERSION_HEX >= 0x030D0000
    const int64_t checks[][2] = {
        {offsetof(_Py_DebugOffsets, thread_state.next), offsetof(PyThreadState, next)},
        {offsetof(_Py_DebugOffsets, thread_state.current_frame), offsetof(PyThreadState, current_frame)},
        {offsetof(_Py_DebugOffsets, thread_state.native_thread_id), offsetof(PyThreadState, native_thread_id)},
        {offsetof(_Py_DebugOffsets, interpreter_state.threads_head), offsetof(PyInterpreterState, threads.head)},
        {offsetof(_Py_DebugOffsets, interpreter_frame.previous), offsetof(pi_iframe_t, previous)},
        {offsetof(_Py_DebugOffsets, interpreter_frame.executable), offsetof(pi_iframe_t, f_executable)},
        {offsetof(_Py_DebugOffsets, interpreter_frame.instr_ptr), offsetof(pi_iframe_t, instr_ptr)},
        {offsetof(_Py_DebugOffsets, interpreter_frame.owner), offsetof(pi_iframe_t, owner)},
        {offsetof(_Py_DebugOffsets, code_object.filename), offsetof(PyCodeObject, co_filename)},
        {offsetof(_Py_DebugOffsets, code_object.qualname), offsetof(PyCodeObject, co_qualname)},
        {offsetof(_Py_DebugOffsets, code_object.linetable), offsetof(PyCodeObject, co_linetable)},
        {offsetof(_Py_DebugOffsets, code_object.firstlineno), offsetof(PyCodeObject, co_firstlineno)},
        {offsetof(_Py_DebugOffsets, code_object.co_code_adaptive), offsetof(PyCodeObject, co_code_adaptive)},
        {offsetof(_Py_DebugOffsets, unicode_object.asciiobject_size), sizeof(PyASCIIObject)},
        {offsetof(_Py_DebugOffsets, runtime_state.interpreters_head), offsetof(_PyRuntimeState, interpreters.head)},
        {offsetof(_Py_DebugOffsets, thread_state.thread_id), offsetof(PyThreadState, thread_id)},
        {offsetof(_Py_DebugOffsets, interpreter_frame.localsplus), offsetof(pi_iframe_t, localsplus)},
        {offsetof(_Py_DebugOffsets, code_object.name), offsetof(PyCodeObject, co_name)},
        {offsetof(_Py_DebugOffsets, code_object.localsplusnames), offsetof(PyCodeObject, co_localsplusnames)},
        {offsetof(_Py_DebugOffsets, pyobject.ob_type), offsetof(PyObject, ob_type)},
        {offsetof(_Py_DebugOffsets, type_object.tp_name), offsetof(PyTypeObject, tp_name)},
        {offsetof(_Py_DebugOffsets, type_object.tp_flags), offsetof(PyTypeObject, tp_flags)},
        {offsetof(_Py_DebugOffsets, tuple_object.ob_item), offsetof(PyTupleObject, ob_item)},
        {offsetof(_Py_DebugOffsets, bytes_object.ob_sval), offsetof(PyBytesObject, ob_sval)},
        {offsetof(_Py_DebugOffsets, unicode_object.length), offsetof(PyASCIIObject, length)},
        {offsetof(_Py_DebugOffsets, unicode_object.state), offsetof(PyASCIIObject, state)},
    };
    _Static_assert(sizeof checks / sizeof checks[0] <= PI_DEBUG_CHECKS, "room for every check");
    memcpy(o->debug_checks, checks, sizeof checks);
#endif
}

#undef PI_STATE_BITS
#undef PI_WIDTH

#endif
