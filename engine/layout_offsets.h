/*
 * layout_offsets.h: one CPython minor version's struct layout, as offsets and sizes.
 *
 * layout.c parses copied interpreter structs through one of these: in-process, the
 * layout the extension was compiled against (filled by layout_compiled.h); attached to
 * a process of another version, that version's entry of layouts_table.h, which
 * tools/gen_layouts.py writes by compiling layout_compiled.h against each version's own
 * headers. -1 marks what a version does not have. The width of every field read through
 * these is fixed (layout_compiled.h checks it at compile time).
 */
#ifndef PI_LAYOUT_OFFSETS_H
#define PI_LAYOUT_OFFSETS_H

#include <stdint.h>

#define PI_LAYOUT_FIELDS(X)                                                                                 \
    X(version) /* 0x030C0000 for 3.12: the minor version the layout belongs to */                           \
    /* _PyRuntimeState */                                                                                    \
    X(runtime_main_interp)   /* interpreters.main */                                                         \
    X(runtime_gil)           /* 3.9-3.11: ceval.gil (the GIL lives in the runtime) */                        \
    X(runtime_debug_offsets) /* 3.13+: debug_offsets (_Py_DebugOffsets) */                                   \
    /* PyInterpreterState */                                                                                 \
    X(interp_threads_head) /* threads.head (3.9/3.10: tstate_head) */                                        \
    X(interp_gil)          /* 3.12+: ceval.gil, a pointer */                                                 \
    X(interp_trampoline)   /* 3.12: interpreter_trampoline, the code of shim frames */                       \
    /* struct _gil_runtime_state: locked (int), last_holder (pointer), switch_number (unsigned long) */       \
    X(gil_locked) X(gil_last_holder) X(gil_switch_number)                                                    \
    /* PyThreadState; thread ids are unsigned longs */                                                       \
    X(tstate_size) X(tstate_next) X(tstate_thread_id) X(tstate_native_thread_id)                             \
    X(tstate_frame)       /* 3.9/3.10: frame; 3.13+: current_frame */                                        \
    X(tstate_cframe)      /* 3.11/3.12: cframe */                                                            \
    X(tstate_root_cframe) /* 3.11/3.12: root_cframe, inside the thread state */                              \
    X(tstate_chunk) X(tstate_chunk_top) X(tstate_chunk_limit) /* 3.11+: datastack_* */                       \
    X(tstate_context)                                                                                        \
    /* 3.11/3.12 _PyCFrame */                                                                                \
    X(cframe_size) X(cframe_current_frame)                                                                   \
    /* 3.11+ _PyStackChunk: previous, size, top (size_t), data */                                            \
    X(chunk_previous) X(chunk_size) X(chunk_top) X(chunk_data)                                               \
    /* 3.11+ _PyInterpreterFrame: owner is a char */                                                         \
    X(iframe_previous) X(iframe_code) X(iframe_instr) X(iframe_func) X(iframe_owner)                         \
    X(iframe_localsplus)                                                                                     \
    /* the owners; a frame owned by the C stack (3.12/3.13) or above the interpreter (3.14+) is a shim */    \
    X(owned_by_thread) X(owned_by_generator) X(owned_by_cstack) X(owned_by_interpreter)                      \
    /* 3.9/3.10 PyFrameObject: f_lasti is an int */                                                         \
    X(frame_back) X(frame_code) X(frame_valuestack) X(frame_lasti) X(frame_gen) X(frame_localsplus)          \
    X(frame_state)     /* a char: 3.10 f_state, 3.9 f_executing */                                           \
    X(frame_executing) /* 3.10: FRAME_EXECUTING */                                                           \
    /* PyCodeObject: the bytes copied, pointers, then ints (co_version: uint32_t) */                        \
    X(code_read_size)                                                                                        \
    X(code_name) X(code_qualname) X(code_filename) X(code_names) X(code_varnames)                            \
    X(code_linetable) /* 3.10+: co_linetable; 3.9: co_lnotab */                                              \
    X(code_exceptiontable) X(code_bytes) /* 3.11+; 3.9/3.10: co_code */                                      \
    X(code_firstlineno) X(code_stacksize)                                                                    \
    X(code_firsttraceable) X(code_nlocalsplus) X(code_adaptive) /* 3.11+ */                                  \
    X(code_version) /* 3.12+ */                                                                              \
    /* str: PyASCIIObject and PyCompactUnicodeObject; the state's bits in its first 32 */                    \
    X(ascii_size) X(compact_size) X(unicode_length) X(unicode_state)                                         \
    X(state_kind_shift) X(state_kind_mask) X(state_compact_bit) X(state_ascii_bit)                           \
    X(bytes_data) X(tuple_items)                                                                             \
    /* what a call calls: PyCFunctionObject, PyMethodDescrObject, PyMethodDef, PyTypeObject */             \
    X(cfunction_method_def) X(cfunction_self) X(cfunction_size)                                              \
    X(method_descr_method_def) X(method_descr_type) X(method_descr_size) X(method_def_name)                  \
    X(type_name) X(type_basicsize) X(type_flags) X(type_base) X(heap_type_qualname)                          \
    /* the sizes some types give their objects (tp_basicsize), checked in the process read */               \
    X(code_basicsize) X(tuple_basicsize) X(bytes_basicsize) X(frame_basicsize) /* frame: 3.9/3.10 */      \
    /* 3.14+ value-stack slots: tag bits (Py_TAG_BITS), and the tag of small ints (Py_INT_TAG) */            \
    X(stack_tag_bits) X(stack_int_tag)                                                                       \
    /* how many low bits of an object's first word count references (3.14+ keep flags above) */             \
    X(refcnt_bits)

#define PI_DEBUG_CHECKS 32

typedef struct {
#define PI_LAYOUT_FIELD(name) int64_t name;
    PI_LAYOUT_FIELDS(PI_LAYOUT_FIELD)
#undef PI_LAYOUT_FIELD
    /* 3.13+: offsets that _Py_DebugOffsets also holds, to check a process's own against:
     * {where in _Py_DebugOffsets, the offset expected}; unused pairs are {0, 0} */
    int64_t debug_checks[PI_DEBUG_CHECKS][2];
} pi_offsets;

#endif
