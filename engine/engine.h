/*
 * engine.h: the one header shared by the C engine's files.
 *
 * The engine samples the Python stacks of every thread of its own process from a
 * native thread that never takes the GIL and never calls the C API. Every read of
 * interpreter memory goes through process_vm_readv (memread.c), so reading a frame
 * that died meanwhile yields an error, not a crash. The files, by concern:
 *
 *   memread.c    safe reads of our own memory, batched into vectored reads
 *   attach.c     reading another process: its interpreter, and the kernel's consent
 *   symbols.c    where another process's interpreter file keeps its exported symbols
 *   layout.c     the interpreter's struct layouts (compiled in, or another version's
 *                from layouts_table.h): parses copied structs
 *   linetable.c  line numbers from copied line tables (every format 3.9-3.15)
 *   codes.c      code identity: which function a code address means, validated
 *   tick.c       one tick, for one profiler or several (tick.h: what its files share):
 *   threads.c      the thread list, a thread's tid and CPU clock
 *   walk.c         every thread's frame chain walked in lock-step, the read-ahead
 *   validate.c     the code objects on the stacks, torn calls, doubtful walks
 *   leaves.c       which threads stand on a call (named by callees.c)
 *   record.c       a walked stack made a sample and added to a profiler's tree
 *   asyncmode.c    which profiler a stack belongs to, await chains, async ticks
 *   callees.c    the C function a thread is in, from the object being called
 *   opcodes.c    where a call keeps what it calls: stack depths over the bytecode, with
 *                each version's opcodes and stack effects from opcodes_table.h
 *   context.c    async mode: which context a thread runs in, what a task awaits
 *   aggregate.c  per-thread call tries with wall/CPU time, and the timeline
 *   sampler.c    the sampling pthread: deadlines, timing, fork safety
 *   sigterm.c    profiled child processes still die of SIGTERM (--subprocesses)
 *   module.c     the Python module pyinstrument._engine
 */
#ifndef PI_ENGINE_H
#define PI_ENGINE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---------------------------------------------------------------- memread.c */

/* One pending read of `len` bytes at `addr` into `dst`; `ok` is set by pi_read_batch. */
typedef struct {
    uintptr_t addr;
    void *dst;
    size_t len;
    bool ok;
} pi_read;

/* A read of our own memory that cannot fault and needs no process_vm_readv (refused
 * where the Python sampler runs): the kernel copies through a pipe. At most PIPE_BUF
 * bytes; callers hold the GIL. */
int pi_read_via_pipe(uintptr_t addr, void *dst, size_t len);
/* Reads every request with as few syscalls as possible. A request that faults is
 * marked !ok; the others still complete. Returns the number of syscalls made. */
int pi_read_batch(pi_read *reads, size_t count);
/* Reads exactly len bytes; returns 0 on success, -1 if any byte could not be read. */
int pi_read_exact(uintptr_t addr, void *dst, size_t len);
/* Checks that process_vm_readv works here; on failure writes why into err. */
int pi_read_probe(char *err, size_t errlen);
/* The pid read: this process's (a forked child's own, without a syscall each time), or
 * the one attached to. */
pid_t pi_own_pid(void);
void pi_set_attached_pid(pid_t pid);
pid_t pi_attached_pid(void); /* 0: none */

/* ----------------------------------------------------------------- attach.c */

/* What a process attached to runs. */
typedef struct {
    uint32_t version;      /* its CPython version, as 0x030C01F0 for 3.12.1 (3.9/3.10: minor only) */
    bool same_build;       /* this same interpreter file: read as this process is (else stacks only) */
    char interpreter[512]; /* the interpreter's file */
} pi_attached;

/* Points every read at process `pid`, which must run CPython 3.9-3.15, and learns its
 * layout. -1 with one line in err: no such process, reading refused (why, and how to
 * allow it), not Python, or a version or build the engine cannot read. */
int pi_attach(pid_t pid, pi_attached *out, char *err, size_t errlen);
/* The address of a static object of this interpreter (&PyCode_Type) in our process,
 * and the version compiled for (PY_VERSION_HEX). */
uintptr_t pi_interpreter_anchor(void);
uint32_t pi_compiled_version(void);

/* ---------------------------------------------------------------- symbols.c */

/* One line of /proc/PID/maps: a file's bytes from offset mapped at [start, end). */
typedef struct {
    uintptr_t start, end, offset;
    unsigned dev_major, dev_minor;
    unsigned long long inode; /* 0: anonymous memory */
    const char *path;         /* into the line read; "" for anonymous memory */
} pi_mapping;

/* Reads the next line of an open maps file into *line (getline's buffer, freed by the
 * caller) and parses it into m; false at the end. */
bool pi_next_mapping(FILE *maps, char **line, size_t *cap, pi_mapping *m);

typedef struct {
    const char *name; /* an exported symbol of the interpreter: "_PyRuntime", "Py_Version" */
    uintptr_t addr;   /* set: where it lies in the process, 0 when the file has none */
} pi_symbol;

/* Finds, in process pid's open maps file (read from its start), the file holding its
 * interpreter: the first whose dynamic symbols define _PyRuntime of its executable, a
 * libpython*, a python*. Resolves each of syms in that process and copies the file's path
 * (as maps names it) into path. 0; or -1 with one line in err (not Python, a file that
 * cannot be read). */
int pi_find_interpreter_symbols(pid_t pid, FILE *maps, pi_symbol *syms, size_t count, char *path, size_t pathlen,
                                char *err, size_t errlen);

/* ----------------------------------------------------------------- layout.c */

/* Facts about the running interpreter, found once at start with the GIL held. */
typedef struct {
    bool compiled;              /* the layout compiled in: this process, or one running this
                                   same interpreter binary; else another version's, from the
                                   table, and only stacks are read (no async mode, no C calls) */
    uint32_t version;           /* its minor version, as 0x030C0000 for 3.12 */
    uintptr_t thread_head_addr; /* address of the interpreter's first-thread-state pointer */
    uintptr_t code_type_addr;   /* &PyCode_Type */
    size_t tstate_read_size;    /* bytes of a thread state we copy */
    size_t frame_read_size;     /* bytes of a frame we copy */
    size_t code_read_size;      /* bytes of a code object header we copy */
    bool frames_in_chunks;      /* 3.11+: frames live in per-thread data-stack chunks */
    bool has_native_thread_id;  /* 3.11+: the thread state records the kernel tid */
    bool chains_end_in_shim;    /* 3.12+: a thread's outermost frame is an entry shim */
    bool clears_popped_frames;  /* 3.14+: a popped frame's code slot is emptied */
    uintptr_t shim_code;        /* 3.12+: what a shim frame's code slot holds */
    uintptr_t gil_addr;         /* the main interpreter's GIL (0 on free-threaded builds) */
} pi_layout;

extern pi_layout pi_runtime_layout;

/* Upper bounds of the copies the walker keeps in fixed buffers. */
#define PI_MAX_FRAME_READ 1024
#define PI_MAX_CFRAME_READ 64
#define PI_MAX_GIL_READ 256

/* The minor version of the process read (0x030C0000 for 3.12). */
uint32_t pi_layout_version(void);
/* Parses with the layout compiled in until pi_layout_init: at module import. */
void pi_layout_prepare(void);
/* Fills pi_runtime_layout with the layout compiled in, for this process or (reloc != 0)
 * one attached to that runs this same interpreter binary; on 3.13+ checks it against
 * _Py_DebugOffsets. GIL held. */
int pi_layout_init(uintptr_t reloc, char *err, size_t errlen);
/* The addresses of a process's static objects that its stacks are read with. */
typedef struct {
    uintptr_t runtime; /* _PyRuntime */
    uintptr_t code_type, frame_type, unicode_type, bytes_type, tuple_type, none;
    /* what the C function a thread calls is told by */
    uintptr_t function_type, type_type, module_type, cfunction_type, cmethod_type, method_descr_type;
} pi_statics;
/* The same for a process attached to that runs CPython `version` (0x030C01F0 for
 * 3.12.1) from another binary: its layout comes from the table (layouts_table.h). */
int pi_layout_init_other(uint32_t version, const pi_statics *statics, char *err, size_t errlen);
/* Whether the table has a layout for that version. */
bool pi_layout_known(uint32_t version);
/* The fields (up to max) in which the layout compiled in differs from the table's entry
 * for its version ("version" when the table has none): the test suite's check that
 * layouts_table.h was regenerated after layout_compiled.h changed. */
size_t pi_layout_table_differences(const char **fields, size_t max);

typedef struct {
    uintptr_t next;
    uintptr_t frame;         /* current frame, if known directly (else 0) */
    uintptr_t cframe;        /* 3.11/3.12: the _PyCFrame holding the current frame */
    unsigned long thread_id; /* pthread_t, as threading.get_ident() */
    unsigned long native_id; /* kernel tid, 0 if the layout has none */
    uintptr_t chunk;         /* 3.11+: current data-stack chunk */
    uintptr_t chunk_top;     /* 3.11+: end of the used part of that chunk */
    uintptr_t chunk_limit;   /* 3.11+: end of that chunk */
    uintptr_t context;       /* the contextvars.Context it runs in, or 0 */
} pi_tstate;

int pi_parse_tstate(const void *buf, uintptr_t addr, pi_tstate *out);
/* The GIL's last holder (a thread state) and its count of changes of holder: a thread
 * takes the GIL only by becoming its holder, which counts a switch unless it was the
 * last holder already. */
size_t pi_gil_read_size(void);
/* The GIL struct's whole size: a thread blocked on any word in it waits for the GIL. */
size_t pi_gil_struct_size(void);
/* Where a sampled thread stands with the GIL (gilstate.c): no GIL (free-threaded), not
 * known, holding it, waiting for it, outside it (in C code that let it go). */
enum { PI_GIL_NONE, PI_GIL_UNKNOWN, PI_GIL_HELD, PI_GIL_WAITING, PI_GIL_OUTSIDE, PI_GIL_STATES };
void pi_parse_gil(const void *buf, uintptr_t *last_holder, uint64_t *switches);
/* Whether the GIL read into buf is held now (its last holder holds it). */
bool pi_gil_locked(const void *buf);
/* 3.11+: a data-stack chunk's header: the older chunk, and how many bytes are used
 * (header included) as saved when a newer chunk was pushed. */
int pi_parse_chunk(const void *buf, uintptr_t *previous, size_t *used);
size_t pi_chunk_header_size(void);
/* 3.11/3.12: the current frame from a copied _PyCFrame. */
size_t pi_cframe_read_size(void);
uintptr_t pi_parse_cframe(const void *buf);

enum { PI_FRAME_PYTHON, PI_FRAME_SKIP };
typedef struct {
    uintptr_t code;      /* code object address (may be anything: validate) */
    uintptr_t previous;
    uintptr_t instr;     /* 3.11+: address of the current/previous code unit */
    int lasti;           /* 3.9/3.10: instruction index */
    int kind;            /* PI_FRAME_PYTHON, or PI_FRAME_SKIP for shim/C-stack frames */
    uintptr_t valuestack; /* 3.9/3.10: the bottom of its value stack */
    uintptr_t func;       /* 3.11+: the function object it runs */
} pi_frame;

int pi_parse_frame(const void *buf, pi_frame *out);
/* 3.14+: a frame popped and cleared (its code and function slots emptied): its caller
 * and last instruction. -1 for anything else, and before 3.14. */
int pi_parse_cleared_frame(const void *buf, pi_frame *out);
/* Writes a code object's address into a copied frame's code slot. */
void pi_frame_set_code(void *buf, uintptr_t code);
/* Where a frame's link to the previous frame is, from the frame's start. */
size_t pi_frame_previous_offset(void);

/* What we keep of a code object's header, for identity checks and line lookup. */
typedef struct {
    uintptr_t type;
    uintptr_t name, qualname, filename, linetable, names;
    uintptr_t varnames; /* tuple of local variable names */
    int firstlineno;
    int first_traceable;  /* 3.11+: index of the first traceable code unit */
    uint32_t version;     /* 3.12+: co_version */
    int64_t code_units;   /* size of the bytecode, in code units */
    uintptr_t code_start; /* address of the first code unit (3.11+) */
    uintptr_t code_bytes; /* 3.9/3.10: the co_code bytes object */
    uintptr_t exceptiontable; /* 3.11+: the co_exceptiontable bytes object */
    int nlocalsplus;      /* 3.11+: slots before the value stack */
    int stacksize;        /* slots of its value stack */
} pi_code;

int pi_parse_code(const void *buf, uintptr_t addr, pi_code *out);
bool pi_code_same(const pi_code *a, const pi_code *b);

/* String and bytes objects: header sizes and parsing. */
size_t pi_unicode_header_size(void);
/* On success sets the character count, bytes per character (1, 2, 4), the
 * offset of the character data from the object start, and whether it is ASCII. */
int pi_parse_unicode(const void *buf, int64_t *length, int *kind, size_t *data_offset);
size_t pi_bytes_header_size(void);
int pi_parse_bytes(const void *buf, int64_t *length, size_t *data_offset);
size_t pi_tuple_header_size(void);
int pi_parse_tuple(const void *buf, int64_t *length, size_t *items_offset);

/* contextvars: where a thread state points at its Context; a Context's variables (a
 * HAMT) and a HAMT's root node. */
size_t pi_tstate_context_offset(void);
size_t pi_context_read_size(void);
int pi_parse_context(const void *buf, uintptr_t *vars);
size_t pi_hamt_read_size(void);
int pi_parse_hamt(const void *buf, uintptr_t *type, uintptr_t *root);

/* A coroutine or generator object, and where its frame stands while suspended. */
typedef struct {
    bool is_coroutine;      /* a coroutine (else a generator) */
    bool suspended;         /* started, not running, not finished */
    uintptr_t frame;        /* 3.9/3.10: its frame object, to read and parse next */
    uintptr_t code, instr;  /* where it stands (3.11+; 3.9/3.10 from the frame) */
    int lasti;
    uintptr_t locals;       /* its first local's slot (a method's self, a function's first argument) */
    uintptr_t stack_top;    /* just past its value stack's top: what it awaits is there */
    size_t stack_slots;     /* slots readable below stack_top */
} pi_coro;

size_t pi_coro_read_size(void);
/* Returns -1 unless buf holds a live coroutine or generator object. */
int pi_parse_coro(const void *buf, uintptr_t addr, pi_coro *out);
/* The frame a live coroutine or generator (of this process, as an address) runs in: the
 * frame a thread's walk finds while it runs. */
uintptr_t pi_coro_frame(uintptr_t coro);
/* 3.9/3.10: fills in the rest of `out` from a copy of its frame object. */
int pi_parse_coro_frame(const void *buf, uintptr_t addr, pi_coro *out);
/* The object pointer in a copied value-stack slot (3.14+ slots are tagged); 0 for a
 * slot holding no object. */
uintptr_t pi_stack_slot_object(uintptr_t slot);
/* Async mode: the containers a gather, a shield or a TaskGroup keeps what it waits on
 * in. Each parse returns -1 unless buf holds a live object of that type. */
size_t pi_container_read_size(void);
int pi_parse_list(const void *buf, int64_t *length, uintptr_t *items);
int pi_parse_set(const void *buf, uintptr_t *table, size_t *slots);
size_t pi_set_entry_size(void); /* an entry starts with its key (NULL: empty) */
int pi_parse_function(const void *buf, uintptr_t *code, uintptr_t *closure);
int pi_parse_cell(const void *buf, uintptr_t *contents);
/* A dict's keys object and, for a split table, its values (else 0). */
int pi_parse_dict(const void *buf, uintptr_t *keys, uintptr_t *values);
/* Where the values array's items begin in a split table's values. */
size_t pi_dict_values_offset(void);
/* Finds `key` (by identity) among the entries of a copied keys object of `len` bytes:
 * its entry index and, in a combined table, its value. */
int pi_dict_keys_find(const void *buf, size_t len, uintptr_t key, int64_t *index, uintptr_t *value);
/* Where instances of a type keep their attributes: a dict at dict_offset (0: a managed
 * dict, 3.11+) or, with no dict of its own yet, a values array keyed by the type's
 * shared keys (3.13+: inline after the object when inline_values). */
typedef struct {
    uintptr_t type;
    size_t dict_offset, basicsize, inline_values;
} pi_attr_place;
/* An instance's dict (0 if none) and its values array (0 if none), read from memory. */
int pi_instance_attributes(uintptr_t obj, const pi_attr_place *place, uintptr_t *dict, uintptr_t *values,
                           uint64_t *syscalls);
/* Where a heap type points at the keys its instances share. */
size_t pi_type_cached_keys_offset(void);
/* With the GIL held (the Python sampler): `count` of a live frame object's value-stack
 * slots from `first` (object addresses, 0 where empty); -1 when out of its stack's
 * bounds or (3.14+) above its saved stack pointer. Before 3.14 a slot may be left over
 * from a call that ended, its object freed: compare the addresses, never follow them. */
int pi_local_frame_slots(void *frame, size_t first, size_t count, uintptr_t *out);

/* The object a call instruction calls: where a frame's local slots begin (3.11+; the
 * value stack follows them), and what a copied callable or type is. */
size_t pi_frame_locals_offset(void);
enum { PI_CALLABLE_OTHER, PI_CALLABLE_CFUNCTION, PI_CALLABLE_METHOD_DESCRIPTOR };
typedef struct {
    int kind;             /* PI_CALLABLE_* */
    uintptr_t method_def; /* its PyMethodDef */
    uintptr_t self;       /* a C function's __self__ (0 if none) */
    uintptr_t type;       /* a method descriptor's type (the one it was defined in) */
} pi_callable;
size_t pi_callable_read_size(void);
/* -1 unless buf holds a live object; kinds other than C functions are PI_CALLABLE_OTHER. */
int pi_parse_callable(const void *buf, pi_callable *out);
/* An object whose reference count fell to 0 (being deallocated). */
bool pi_object_dying(const void *buf);
/* An object's type field, alive or not. */
uintptr_t pi_object_type(const void *buf);
/* Any live object's type (the first 16 bytes of it); -1 unless alive. */
int pi_parse_object_header(const void *buf, uintptr_t *type);
typedef struct {
    uintptr_t name;     /* tp_name (a C string) */
    uintptr_t qualname; /* heap types: ht_qualname (a str) */
    uintptr_t base;     /* tp_base */
    bool heap, is_metatype;
} pi_type;
size_t pi_type_read_size(void);
/* An object's header (PyObject): 16 bytes, 32 on a free-threaded build. */
#define PI_OBJECT_HEADER_MAX 32
size_t pi_object_header_size(void);
size_t pi_type_qualname_offset(void);
/* From a copy of pi_type_read_size() bytes and the word at pi_type_qualname_offset(). */
int pi_parse_type(const void *buf, uintptr_t qualname, pi_type *out);
uintptr_t pi_module_type(void);
uintptr_t pi_function_type(void);
uintptr_t pi_none_object(void);
/* Objects of this type usually live as long as the program (classes, builtins). */
bool pi_long_lived_type(uintptr_t type);
size_t pi_method_def_name_offset(void);

/* Line number for an instruction index, from a copied line table. -1 if unknown. */
int pi_line_for_instr(const uint8_t *table, size_t len, int firstlineno, int instr_index);

/* ----------------------------------------------------------------- opcodes.c */

typedef struct {
    uint8_t op;     /* base (unspecialised) opcode */
    uint32_t arg;   /* with EXTENDED_ARG folded in */
    uint32_t unit;  /* code-unit index of the instruction */
    uint32_t start; /* code-unit index of its first EXTENDED_ARG, else unit */
} pi_instr;

/* The stack effect of a base opcode along its jump or not, as the analysis counts it;
 * INT_MIN when unknown. For the test suite's check against dis.stack_effect. */
int pi_opcode_stack_effect(uint8_t op, uint32_t arg, bool jump);
/* Decodes a copy of `units` code units into at most `units` instructions. */
size_t pi_decode_bytecode(const uint8_t *code, size_t units, pi_instr *out);
/* The value-stack depth before each instruction (-1: unreachable), from the entry and
 * the exception handlers (3.11+: the co_exceptiontable bytes). -1 when the bytecode
 * cannot be analysed (instrumented, inconsistent, deeper than max_depth). */
int pi_stack_depths(const pi_instr *ins, size_t count, const uint8_t *exceptions, size_t exceptions_len,
                    int32_t max_depth, int32_t *depths);

/* Where a call instruction's callable is, as value-stack slots from `bottom`:
 *   PLAIN:      callable, first argument
 *   NULL_FIRST: method or NULL, then self or the callable, then the first argument
 *   SELF_AFTER: callable, self or NULL, then the first argument
 *   EX:         the callable (its arguments are in a tuple) */
enum { PI_CALL_PLAIN, PI_CALL_NULL_FIRST, PI_CALL_SELF_AFTER, PI_CALL_EX };
typedef struct {
    int layout;
    int32_t bottom;
    uint32_t argc; /* positional arguments after self (0 for EX) */
} pi_call;
/* Which of the slots from `bottom` hold the callable and its first argument (-1: none
 * to see), given whether the first two slots hold an object. */
void pi_call_place(const pi_call *call, bool first_slot_set, bool second_slot_set, int *callable, int *self);
/* How many slots from `bottom` hold the callable and its first argument. */
size_t pi_call_slot_count(const pi_call *call);
/* 0 when the instruction is a call and `depth` (-1: unknown) places its callable; 1 for
 * a call whose callable cannot be placed; -1 for an instruction that is no call. */
int pi_call_layout(const pi_instr *in, int32_t depth, pi_call *out);

/* ---------------------------------------------------------------- linetable.c */

int pi_line_lnotab(const uint8_t *table, size_t len, int firstlineno, int byte_offset);
int pi_line_linetable310(const uint8_t *table, size_t len, int firstlineno, int byte_offset);
int pi_line_locations311(const uint8_t *table, size_t len, int firstlineno, int unit_index);

/* ------------------------------------------------------------------ codes.c */

/* Frame identity (function, file, first line): the unit of the call tree. */
typedef struct {
    char *function; /* UTF-8, qualified name where the interpreter has one */
    char *filename; /* UTF-8 */
    int firstlineno;
    bool hides_traceback; /* the function sets __tracebackhide__ */
} pi_frame_identity;

typedef struct pi_code_entry pi_code_entry;

typedef struct {
    /* code address -> entry (open addressing, linear probing) */
    pi_code_entry **slots;
    size_t slot_count, used;
    /* all entries ever made, owned here */
    pi_code_entry **entries;
    size_t entry_count, entry_cap;
    /* identities, interned */
    pi_frame_identity *identities;
    size_t identity_count, identity_cap;
    uint32_t *identity_slots;
    size_t identity_slot_count;
    uint64_t unreadable; /* code objects that failed validation */
    /* entries made by the last pi_codes_resolve, to confirm */
    pi_code_entry **fresh;
    size_t fresh_count, fresh_cap;
    /* code deaths looked at so far, and the epoch of entries that may be trusted
     * without a read (see pi_code_died) */
    uint64_t deaths_seen, trust_epoch;
} pi_code_table;

int pi_codes_init(pi_code_table *t);
void pi_codes_free(pi_code_table *t);

/* Validates the code objects in `addrs` (their headers re-read in one batch) and
 * resolves each to an entry; entries[i] is NULL where the address is not a live
 * code object. */
int pi_codes_resolve(pi_code_table *t, const uintptr_t *addrs, size_t count, pi_code_entry **entries);
/* The interpreter tells of every code object's death from now on (a code watcher,
 * module.c): pi_code_died(address) before its memory is freed. */
void pi_codes_deaths_told(void);
void pi_code_died(uintptr_t addr);
/* Whether deaths are told, and how many code objects died so far: while the count
 * stays, a code address read twice is the same code object. */
bool pi_code_deaths(uint64_t *count);
/* Re-checks the entries the last resolve created; marks stale those that changed
 * while being copied. Returns the syscalls made, or -1. */
int pi_codes_confirm_fresh(pi_code_table *t);
bool pi_code_stale(const pi_code_entry *e);
/* Made by the last resolve: a frame seen running it may have run the code object that
 * had its address before (see rewalk_doubtful in validate.c). */
bool pi_code_fresh(const pi_code_entry *e);
/* The entry's identity index, line for an instruction pointer, traceability. */
uint32_t pi_code_identity(const pi_code_entry *e);
int pi_code_line(pi_code_entry *e, uintptr_t instr, int lasti);
bool pi_code_instr_traceable(const pi_code_entry *e, uintptr_t instr);
/* When the frame stands on a call instruction: 0 and where its callable is (value-stack
 * slots, counted from the first slot after the frame's pi_code_stack_offset() local
 * slots), 1 when it is a call whose callable cannot be placed, -1 when it is no call. */
int pi_code_call_site(pi_code_entry *e, uintptr_t instr, int lasti, pi_call *out);
/* 3.11+: where the entry's bytecode lies (address of its first code unit, and how many). */
bool pi_code_range(const pi_code_entry *e, uintptr_t *start, int64_t *units);
/* 3.11+: how many local slots precede the frame's value stack. */
int pi_code_stack_offset(const pi_code_entry *e);
/* How many slots its frames' value stacks have. */
int pi_code_stack_size(const pi_code_entry *e);
/* The identity of a C function's frame, `name <built-in>`. */
int64_t pi_codes_builtin(pi_code_table *t, const char *name);

int64_t pi_codes_synthetic(pi_code_table *t, const char *name);
/* The identity in `t` of another table's identity (the same function, file and line). */
int64_t pi_codes_intern(pi_code_table *t, const pi_frame_identity *id);
/* Copies a str object as a new UTF-8 C string (capped length); NULL if unreadable. */
char *pi_read_unicode(uintptr_t addr);

/* ---------------------------------------------------------------- callees.c */

/* C functions' names, by what names them: (method def, type, its name pointers). */
typedef struct pi_callee_name pi_callee_name;
typedef struct {
    pi_callee_name *names; /* open addressing */
    size_t slot_count, used;
    int64_t unknown; /* identity of [unknown C call], -1 until made */
} pi_callee_table;

#define PI_SLOTS_READ (3 * sizeof(uintptr_t))
#define PI_TYPE_READ_MAX 512
/* How a call was named, kept for the next tick: a thread that stands on the same call
 * with the same slots (blocked in it, or calling it in a loop) is named again from
 * the callable alone (and, for a method descriptor, its argument's type). Only the
 * long-lived callables whose name those determine are kept: a module's function or
 * builtin, and a method descriptor called on an object of its own type. */
enum { PI_MEMO_NONE, PI_MEMO_FUNCTION, PI_MEMO_DESCRIPTOR };
typedef struct {
    int kind;             /* PI_MEMO_* */
    pi_callable callable; /* as read then */
    int64_t identity;
} pi_callee_memo;
/* One thread whose innermost frame stands on a call, and what it calls. */
typedef struct {
    /* in: the frame as walked, and where the call's value-stack slots are */
    uintptr_t frame;
    pi_frame seen;
    pi_call call;
    uintptr_t slots_addr;
    bool have_slots; /* `slots` holds them already (copied with the frame) */
    /* in: how this call was named last tick (kind NONE: not the same call); out: how
     * it was named this tick, if that can be kept */
    pi_callee_memo memo;
    /* out: the callee's identity, -1 for no C leaf */
    int64_t identity;
    /* working copies */
    int stage;
    uint8_t slots[PI_SLOTS_READ], slots_again[PI_SLOTS_READ];
    uint8_t callable[128], frame_again[PI_MAX_FRAME_READ];
    uint8_t owner[PI_OBJECT_HEADER_MAX], owner_as_type[PI_TYPE_READ_MAX], type[PI_TYPE_READ_MAX];
    uintptr_t owner_qualname, type_qualname;
    uintptr_t method_def, owner_addr, type_addr;
    pi_callable parsed; /* the callable as read */
    bool owner_as_type_ok;
    uintptr_t owner_must_be; /* the call ended before it was confirmed: the type its
                              * owner must have to be named (0: any) */
    bool ended; /* unknown because the call ended before what it called was read */
} pi_callee_query;

int pi_callees_init(pi_callee_table *t);
void pi_callees_free(pi_callee_table *t);
/* The identity of `[unknown C call]`. */
int64_t pi_callees_unknown(pi_callee_table *t, pi_code_table *codes);
/* Names what each query's call calls, with one vectored read per step for all of
 * them; adds the syscalls made to *syscalls. */
void pi_callees_resolve(pi_callee_table *t, pi_code_table *codes, pi_callee_query *queries, size_t count,
                        uint64_t *syscalls);

/* ---------------------------------------------------------------- context.c */

/* What asyncio's private Future and Task objects look like, learned and checked by the
 * Python layer (_async.py) at bind time; with it the await chain continues from an
 * awaited Future or Task into the coroutines of the tasks it waits for. */
typedef struct {
    bool enabled;
    uintptr_t future_iter_type, future_type, task_type; /* exact types */
    size_t iter_future;   /* a Future's __await__ iterator: the Future */
    size_t fut_state;     /* int: 0 while pending */
    size_t fut_callback0; /* its first done callback */
    size_t task_coro;
    pi_attr_place gathering;      /* gather()'s Future, a Python subclass... */
    uintptr_t children_key;       /* ...its tasks in the attribute "_children" (this str) */
    uintptr_t shield_code;        /* shield()'s callback on the outer Future... */
    size_t shield_inner_cell;     /* ...and the cell of its closure holding the inner one */
    uintptr_t wait_for_code;      /* before 3.12: wait_for() awaits a plain Future, its task in local 0 */
    uintptr_t taskgroup_codes[2]; /* TaskGroup.__aexit__ (and _aexit): self in local 0... */
    pi_attr_place taskgroup;
    uintptr_t tasks_key;          /* ...its tasks in the attribute "_tasks" */
} pi_task_layout;

/* A profiler bound to an async context (async_mode "enabled" or "strict"): its
 * thread's samples are checked against a context variable, and while the thread runs
 * outside that context the time goes to what the profiled task awaits. */
typedef struct {
    bool enabled;
    bool strict;               /* time in other contexts: [out-of-context] */
    bool follow_threads;       /* also record other threads while they run in the context */
    uintptr_t var;             /* the ContextVar marking profiled contexts */
    int32_t var_hash;          /* its hash in the HAMT */
    uintptr_t token;           /* its value in this profiler's contexts */
    uintptr_t task_coro;       /* the coroutine of the task that started it, or 0 */
    uintptr_t task_frame;      /* the frame it runs in (0: not a coroutine or generator) */
    uintptr_t hamt_type, bitmap_type, array_type; /* HAMT object and node types */
    pi_task_layout tasks;
    /* the stack outside the task (all of it without a task) at start, root first */
    uintptr_t *prefix_codes;
    int32_t *prefix_lines;
    size_t prefix_len;
} pi_async;

enum { PI_IN_CONTEXT, PI_OUT_OF_CONTEXT, PI_CONTEXT_UNKNOWN };
/* Whether each Context in `contexts` holds a->var == a->token (PI_IN_CONTEXT...), with a
 * vectored read per step of the lookups. Returns the syscalls made. */
int pi_context_states(const pi_async *a, const uintptr_t *contexts, size_t count, int *states);
/* a->var's value in each Context (found: 1 set, 0 not set, -1 unreadable), for
 * profilers that share the variable, each with its own token. Returns the syscalls made. */
int pi_context_values(const pi_async *a, const uintptr_t *contexts, size_t count, int *found, uintptr_t *values);
/* PI_IN_CONTEXT... for a value looked up by pi_context_values. */
int pi_context_state(const pi_async *a, int found, uintptr_t value);
/* Looks `var` up in a Context's variables: 1 and *value when set, 0 when not set,
 * -1 when the memory read is not a Context or a HAMT we understand. */
int pi_context_get(const pi_async *a, uintptr_t context, uintptr_t var, int32_t var_hash, uintptr_t *value);
/* The frames of a suspended coroutine and of everything it awaits, outermost first,
 * as (code, instr, lasti); returns how many, or -1 if `coro` is not suspended. Where
 * it awaits a Task, the chain continues in the task's coroutine; where it awaits
 * several (gather, TaskGroup), in one pending task's: `pick` chooses which (the tick
 * count: over many samples each pending task gets an equal share). Adds the syscalls
 * made to *syscalls. */
#define PI_MAX_AWAIT_DEPTH 512
#define PI_CHAIN_CACHE 64    /* objects of an await chain read ahead */
#define PI_CHAIN_OBJECT 2048 /* bytes read per object */
/* What the last await-chain walk copied, read again in one vectored read by the next. */
typedef struct {
    uintptr_t addrs[PI_CHAIN_CACHE], next_addrs[PI_CHAIN_CACHE];
    size_t lens[PI_CHAIN_CACHE], next_lens[PI_CHAIN_CACHE];
    bool ok[PI_CHAIN_CACHE];
    size_t count, used, next_count;
    bool ahead_read; /* the read-ahead is done (pi_chain_ahead_taken): the next walk uses it */
    uint8_t data[PI_CHAIN_CACHE * PI_CHAIN_OBJECT];
} pi_chain_cache;
/* The read-ahead of a cache, for a caller that reads several caches' in one batch:
 * fills `reads` (room for PI_CHAIN_CACHE) and returns how many; after the batch,
 * pi_chain_ahead_taken takes the results, for the next pi_await_chain with the cache. */
size_t pi_chain_ahead_reads(pi_chain_cache *cache, pi_read *reads);
void pi_chain_ahead_taken(pi_chain_cache *cache, const pi_read *reads, size_t count);
long pi_await_chain(const pi_task_layout *tasks, uintptr_t coro, uint64_t pick, uintptr_t *codes, uintptr_t *instrs,
                    int *lastis, size_t max, pi_chain_cache *cache, uint64_t *syscalls);
int32_t pi_hamt_hash(int64_t hash);

/* -------------------------------------------------------------- aggregate.c */

#define PI_NO_NODE UINT32_MAX

typedef struct {
    uint32_t parent;
    uint32_t identity; /* index into the code table's identities; UINT32_MAX for a thread root */
    int32_t line;
    uint32_t thread;   /* index into pi_tree.threads */
    int64_t self_wall_ns, self_cpu_ns;
    uint64_t self_samples;
} pi_node;

/* A timeline entry: `wall_ns` of consecutive samples of `node`, or, with node
 * PI_NO_NODE, wall time the thread spent without a recorded sample (it did not exist
 * yet, or its stack could not be read), so that each thread's entries add up to the
 * time since the first tick. */
typedef struct {
    uint32_t node;
    uint32_t wall_ns;
} pi_timeline_entry;

typedef struct {
    unsigned long thread_id;
    unsigned long native_id;
    uint32_t root;
    int64_t last_cpu_ns; /* -1 when unknown */
    int64_t clock_ns;    /* wall time its timeline covers, gaps included */
    pi_timeline_entry *timeline;
    size_t timeline_len, timeline_cap;
    /* its last sample, and the node it ended at: the same sample again (a thread that
     * waits) goes there without walking the trie */
    uint32_t *last_identities;
    int32_t *last_lines;
    size_t last_depth, last_cap;
    uint32_t last_leaf; /* PI_NO_NODE: none */
    int32_t last_phase;
    int64_t gil_wall_ns[PI_GIL_STATES]; /* its sampled time by where it stood with the GIL */
} pi_thread_record;

typedef struct {
    pi_node *nodes;
    size_t node_count, node_cap;
    uint32_t *child_slots; /* (parent, identity, line) -> node, open addressing */
    size_t child_slot_count;
    pi_thread_record *threads;
    size_t thread_count, thread_cap;
    size_t timeline_budget;   /* entries left for the timeline, all threads together */
    bool timeline_truncated;
} pi_tree;

int pi_tree_init(pi_tree *tree, size_t timeline_budget);
void pi_tree_free(pi_tree *tree);
/* The record of a thread, made on first sight; NULL when out of memory. */
pi_thread_record *pi_tree_thread(pi_tree *tree, unsigned long thread_id, unsigned long native_id);
/* Adds one sample; `identities` and `lines` are root-first. A `phase` above 0 puts it
 * under a node (phase_identity, phase) below the thread's root. Returns 0, or -1 when
 * out of memory. */
int pi_tree_add(pi_tree *tree, pi_thread_record *thread, const uint32_t *identities, const int32_t *lines,
                size_t depth, int64_t wall_ns, int64_t cpu_ns, uint32_t phase_identity, int32_t phase,
                uint32_t gil_wait_identity);
/* Brings the thread's timeline up to `clock_ns` (time since the first tick) with a gap. */
void pi_tree_catch_up(pi_tree *tree, pi_thread_record *thread, int64_t clock_ns);

/* ------------------------------------------------------------------- tick.c */

/* A sample keeps at most PI_MAX_DEPTH frames: deeper stacks keep their outermost and
 * innermost frames around a "[N frames truncated]" marker. Chains are walked up to
 * PI_MAX_WALK frames (deep recursion on 3.11+, where Python calls use no C stack). */
#define PI_MAX_DEPTH 8192
#define PI_MAX_WALK (1 << 17)

/* Why a walk of a thread's stack failed: each check of walk.c names its own. */
enum pi_walk_fail {
    PI_FAIL_MOVED,      /* the thread returned, ended or changed chunks between two reads */
    PI_FAIL_TORN,       /* a frame changed while it was copied (the two copies differ) */
    PI_FAIL_UNPARSABLE, /* a frame did not read as one (e.g. it had returned and was freed) */
    PI_FAIL_LOOP,       /* the chain of frames looped back on itself */
    PI_FAIL_END,        /* the chain ended somewhere else than the thread's outermost frame */
    PI_FAIL_SETUP,      /* the current frame was still being set up */
    PI_FAIL_DEEP,       /* deeper than PI_MAX_WALK frames */
    PI_FAIL_MEMORY,     /* memory for the walk could not be had */
    PI_FAIL_CAUSES
};

typedef struct {
    uint64_t ticks;
    uint64_t samples;        /* thread stacks recorded */
    uint64_t dropped;        /* thread stacks failing validation, of which: */
    uint64_t dropped_walk;   /*   the frame chain changed while being read (by cause: walk_failed) */
    uint64_t walk_failed[PI_FAIL_CAUSES];  /* walks given up, by the check that failed last */
    uint64_t walk_retried[PI_FAIL_CAUSES]; /* walks tried again, by the check that failed */
    uint64_t dropped_code;   /*   a code object on it could not be validated */
    uint64_t dropped_context; /*  async mode: it crossed the profiled context while read */
    uint64_t truncated;      /* stacks deeper than PI_MAX_DEPTH, recorded without their middle */
    uint64_t calls_ended;    /* C leaves unknown because the call ended while being read */
    uint64_t torn_copies;    /* walks tried again: a frame on the chain changed while copied */
    uint64_t missed_ticks;   /* deadlines skipped because a tick overran */
    uint64_t tick_ns_total;  /* time spent in ticks, for the cost-per-tick figure */
    uint64_t syscalls;
} pi_stats;

typedef struct pi_walker pi_walker;
typedef struct pi_scratch pi_scratch;

#define PI_MAX_SKIPPED 4 /* threads a profiler of every thread may leave out */
#define PI_MAX_LABELED_THREADS 256
#define PI_MAX_THREAD_LABEL 0xFFFF

/* A label of the calling thread (1 to PI_MAX_THREAD_LABEL; 0 takes it off) that profilers
 * made with thread_labels take as the phase of its samples: what a web request runs for.
 * Process-wide; from any thread, each setting its own. -1 when too many threads have one. */
int pi_set_thread_label(unsigned long thread_id, int32_t label);
/* Marks an object (kept alive by its owner for as long as the process runs) as standing
 * for a label, which a ContextVar holding it gives the samples of the context it is set
 * in. -1 when the marks are full. With the GIL. */
#define PI_MAX_ROUTE_MARKS 2048
int pi_set_route_mark(uintptr_t object, int32_t label);

typedef struct {
    pi_code_table codes;
    pi_callee_table callees;
    pi_tree tree;
    pi_stats stats;
    int64_t truncated_identity; /* the "[frames truncated]" marker's identity, -1 until needed */
    /* the run's current phase (0: none; Profiler.phase): written by Sampler.set_phase from
     * any thread, read by the tick, both with __atomic builtins */
    int32_t phase;
    /* how many times it changed (counted before each change), and the count at the last
     * tick's start: a sample whose time or stack spans a change has no phase */
    uint32_t phase_changes, phase_changes_seen;
    bool phase_steady; /* no change since the last tick's start until this one's */
    int64_t phase_identity; /* the "[phase]" marker's identity, -1 until needed */
    int64_t gil_wait_identity; /* the "[GIL wait]" leaf's identity, -1 until needed */
    bool thread_labels;     /* a thread's label (pi_set_thread_label), where set, is its phase; */
    pi_async route_context; /* else, with its var set, the label its context's value of that
                               ContextVar is marked with (pi_set_route_mark): a task's route */
    unsigned long only_thread; /* 0: every thread; else the pthread id to sample */
    unsigned long skip_threads[PI_MAX_SKIPPED]; /* with every thread: ones not to sample (the agent's); 0 ends */
    int64_t interval_ns;
    pi_walker *walkers;
    size_t walker_cap;
    pi_scratch *scratch; /* per-tick working buffers, kept between ticks */
    int64_t last_tick_ns;
    int64_t first_tick_ns; /* zero of the threads' timeline clocks */
    pi_async async;
    unsigned long async_thread; /* the thread whose samples async mode attributes */
    uint32_t await_identity, out_of_context_identity;
    /* ticks shared with other profilers (pi_tick_group): the reader's identities in this
     * state's table (UINT32_MAX: not yet), valid for the reader's generation */
    uint32_t *identity_map;
    size_t identity_map_cap;
    uint64_t identity_map_generation;
    uint64_t generation; /* as a reader: changes when it is reset */
} pi_state;

/* Whether a thread is one the profiler leaves out. */
static inline bool pi_thread_skipped(const pi_state *s, unsigned long thread_id)
{
    for (size_t i = 0; i < PI_MAX_SKIPPED && s->skip_threads[i]; i++)
        if (s->skip_threads[i] == thread_id)
            return true;
    return false;
}

int pi_state_init(pi_state *s, unsigned long only_thread, int64_t interval_ns, size_t timeline_budget);
void pi_state_free(pi_state *s);
/* Samples every thread once. now_ns: monotonic time of this tick. */
void pi_tick(pi_state *s, int64_t now_ns);
/* Makes `phase` the run's current phase (Sampler.set_phase), from any thread. */
void pi_set_phase(pi_state *s, int32_t phase);
/* One tick for several profilers (none in async mode): `reader` reads each thread any
 * of them samples once, and each records the samples it wants in its own tree. */
void pi_tick_group(pi_state *reader, pi_state **targets, size_t count, int64_t now_ns);
/* One tick for several async profilers of one thread: `reader` reads that thread and
 * the threads running in their contexts once, looks their shared variable up once per
 * Context, and each records its own thread's sample (or its task's await chain) and
 * the threads in its own context. */
void pi_tick_async_group(pi_state *reader, pi_state **targets, size_t count, int64_t now_ns);

/* Kernel tid of a pthread (3.9/3.10 thread states do not record it). */
unsigned long pi_native_id_of(unsigned long pthread_id);
void pi_native_id_discover(void);
int64_t pi_thread_cpu_ns(unsigned long native_id);

/* ---------------------------------------------------------------- sigterm.c */

/* Puts a C handler in front of the installed (Python) SIGTERM handler: from the first
 * SIGTERM on, SIGTERM again every `nudge` s, and death by it after `deadline` s (called
 * again: a new deadline from the next SIGTERM). Returns -1 if SIGTERM has no handler or
 * the timer cannot be made. */
int pi_guard_sigterm(double nudge, double deadline);

#endif
