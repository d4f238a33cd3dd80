/*
 * module.c: the Python module pyinstrument._engine.
 *
 * One type, Sampler: start() and stop() run the sampling thread; snapshot() turns
 * the aggregated tries into plain Python data for the Python layer to build the
 * session from; guard_sigterm serves profiled child processes (sigterm.c).
 * Everything here runs with the GIL held, in the calling thread; on a free-threaded
 * build, where threads call in at once, each call into a Sampler holds the Sampler's
 * critical section, and the engine's one-time setup a lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <frameobject.h>

#include "sampler.h"
#include "tick.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    pi_sampler sampler;
    bool initialised;
} SamplerObject;

#if PY_VERSION_HEX < 0x030D0000
/* before 3.13 there is a GIL, which serialises calls already */
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* Whether the layout was set up (the process's own, or an attached one's) */
static bool layout_ready = false;
#if PY_VERSION_HEX >= 0x030D0000
static PyMutex setup_lock;
#define SETUP_LOCK() PyMutex_Lock(&setup_lock)
#define SETUP_UNLOCK() PyMutex_Unlock(&setup_lock)
#else
#define SETUP_LOCK() ((void)0)
#define SETUP_UNLOCK() ((void)0)
#endif
/* Raised when the system refuses process_vm_readv; the Python layer falls back. */
static PyObject *ReadRefused;

static int Sampler_init(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"interval", "thread_id", "timeline_budget", "skip_threads", "thread_labels", NULL};
    double interval = 0.001;
    unsigned long thread_id = 0, skip[PI_MAX_SKIPPED] = {0};
    Py_ssize_t timeline_budget = 4 * 1000 * 1000;
    PyObject *skip_threads = NULL;
    int thread_labels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|dknOp", kwlist, &interval, &thread_id, &timeline_budget,
                                     &skip_threads, &thread_labels))
        return -1;
    if (skip_threads && skip_threads != Py_None) {
        PyObject *items = PySequence_Fast(skip_threads, "skip_threads must be a sequence of thread idents");
        if (!items)
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
        for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++) {
            unsigned long ident = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(items, i));
            if (!PyErr_Occurred() && (i >= PI_MAX_SKIPPED || ident == 0))
                PyErr_Format(PyExc_ValueError, "skip_threads takes at most %d non-zero idents", PI_MAX_SKIPPED);
            else if (!PyErr_Occurred())
                skip[i] = ident;
        }
        Py_DECREF(items);
        if (PyErr_Occurred())
            return -1;
    }
    if (!(interval > 0) || interval > 3600) {
        PyErr_SetString(PyExc_ValueError, "interval must be a positive number of seconds");
        return -1;
    }
    if (timeline_budget < 0) {
        PyErr_SetString(PyExc_ValueError, "timeline_budget must not be negative");
        return -1;
    }
    if (self->initialised) {
        pi_sampler_free(&self->sampler);
        self->initialised = false;
    }
    if (pi_sampler_init(&self->sampler, interval, thread_id, (size_t)timeline_budget) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->sampler.state.skip_threads, skip, sizeof skip);
    self->sampler.state.thread_labels = thread_labels;
    self->initialised = true;
    return 0;
}

static void Sampler_dealloc(SamplerObject *self)
{
    if (self->initialised) {
        Py_BEGIN_ALLOW_THREADS
        pi_sampler_stop(&self->sampler);
        Py_END_ALLOW_THREADS
        pi_sampler_free(&self->sampler);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* This process's layout, set up by the first Sampler that reads. */
static int set_up_layout(void)
{
    char err[512] = "";
    if (pi_layout_init(0, err, sizeof err) != 0) {
        PyErr_SetString(PyExc_RuntimeError, err);
        return -1;
    }
    if (pi_read_probe(err, sizeof err) != 0) {
        PyErr_SetString(ReadRefused, err);
        return -1;
    }
    layout_ready = true;
    return 0;
}

/* The interpreter's layouts learned and reading memory allowed; -1 with an exception. */
static int ready_to_read(SamplerObject *self)
{
    if (!self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler was not initialised");
        return -1;
    }
    SETUP_LOCK();
    int ready = layout_ready ? 0 : set_up_layout();
    SETUP_UNLOCK();
    return ready;
}

static PyObject *Sampler_start(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    char err[512] = "";
    if (ready_to_read(self) != 0)
        return NULL;
    if (pi_sampler_start(&self->sampler, err, sizeof err) != 0) {
        PyErr_SetString(PyExc_RuntimeError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A test hook: one tick now, from the calling thread, of a Sampler that is not running,
 * so that a test reads threads it parked at known points and asserts exact stacks and
 * counts. A Sampler's first tick starts its clock and records nothing. */
static PyObject *Sampler_tick(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ready_to_read(self) != 0)
        return NULL;
    if (self->sampler.running) {
        PyErr_SetString(PyExc_RuntimeError, "_tick() needs a Sampler that is not running");
        return NULL;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pi_tick(&self->sampler.state, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
    Py_RETURN_NONE;
}

/* (ident, kernel tid) of the thread holding the GIL now, or None: released, or no GIL. */
static PyObject *Sampler_gil_holder(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ready_to_read(self) != 0)
        return NULL;
    if (self->sampler.running) {
        PyErr_SetString(PyExc_RuntimeError, "_gil_holder() needs a Sampler that is not running");
        return NULL;
    }
    pi_state *s = &self->sampler.state;
    uintptr_t *addrs = NULL;
    pi_tstate *states = NULL;
    size_t count = read_threads(s, &addrs, &states);
    if (!s->scratch->gil_read || !pi_gil_locked(s->scratch->gil_buf))
        Py_RETURN_NONE;
    for (size_t i = 0; i < count; i++) {
        if (addrs[i] != s->scratch->gil_holder)
            continue;
        unsigned long native = states[i].native_id ? states[i].native_id : pi_native_id_of(states[i].thread_id);
        return Py_BuildValue("(kk)", states[i].thread_id, native);
    }
    Py_RETURN_NONE;
}

/* The run's current phase for the samples to come (0: none), from any thread. */
static PyObject *Sampler_set_phase(SamplerObject *self, PyObject *arg)
{
    long phase = PyLong_AsLong(arg);
    if (phase == -1 && PyErr_Occurred())
        return NULL;
    if (phase < 0 || phase > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a phase is a number from 0 to 2**31 - 1");
        return NULL;
    }
    if (!self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "the Sampler is not initialised");
        return NULL;
    }
    pi_set_phase(&self->sampler.state, (int32_t)phase);
    Py_RETURN_NONE;
}

static PyObject *Sampler_stop(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->initialised) {
        Py_BEGIN_ALLOW_THREADS
        pi_sampler_stop(&self->sampler);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *Sampler_running(SamplerObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->initialised && self->sampler.running);
}

static PyObject *identities_list(const pi_code_table *codes)
{
    PyObject *list = PyList_New((Py_ssize_t)codes->identity_count);
    if (!list)
        return NULL;
    for (size_t i = 0; i < codes->identity_count; i++) {
        const pi_frame_identity *id = &codes->identities[i];
        PyObject *item = Py_BuildValue("(s s i O)", id->function, id->filename, id->firstlineno,
                                       id->hides_traceback ? Py_True : Py_False);
        if (!item) {
            /* names are valid UTF-8 by construction; keep going with a marker if not */
            PyErr_Clear();
            item = Py_BuildValue("(s s i O)", "<unreadable>", "<unknown>", id->firstlineno, Py_False);
            if (!item) {
                Py_DECREF(list);
                return NULL;
            }
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* The nodes as one buffer of packed pi_node structs (40 bytes each, native byte
 * order; Python reads them with struct format "=IIiIqqQ"): a tuple per node would cost
 * five times as much at the moment the session is built. */
_Static_assert(sizeof(pi_node) == 40, "pi_node is read from Python as \"=IIiIqqQ\"");

static PyObject *nodes_buffer(const pi_tree *tree)
{
    return PyBytes_FromStringAndSize((const char *)tree->nodes, (Py_ssize_t)(tree->node_count * sizeof(pi_node)));
}

static PyObject *threads_list(const pi_tree *tree)
{
    PyObject *list = PyList_New((Py_ssize_t)tree->thread_count);
    if (!list)
        return NULL;
    for (size_t i = 0; i < tree->thread_count; i++) {
        const pi_thread_record *t = &tree->threads[i];
        /* the timeline as raw (uint32 node, uint32 wall_ns) pairs: compact to hand over */
        PyObject *item = Py_BuildValue("(k k I y# (L L L))", t->thread_id, t->native_id, t->root,
                                       (const char *)t->timeline,
                                       (Py_ssize_t)(t->timeline_len * sizeof *t->timeline),
                                       (long long)t->gil_wall_ns[PI_GIL_HELD], (long long)t->gil_wall_ns[PI_GIL_WAITING],
                                       (long long)t->gil_wall_ns[PI_GIL_OUTSIDE]);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* Counts by walk-failure cause, as {name: count} (the names Python's session uses). */
static PyObject *causes_dict(const uint64_t *counts)
{
    static const char *const names[PI_FAIL_CAUSES] = {
        [PI_FAIL_MOVED] = "moved", [PI_FAIL_TORN] = "torn",   [PI_FAIL_UNPARSABLE] = "unparsable",
        [PI_FAIL_LOOP] = "loop",   [PI_FAIL_END] = "end",     [PI_FAIL_SETUP] = "setup",
        [PI_FAIL_DEEP] = "deep",   [PI_FAIL_MEMORY] = "memory",
    };
    PyObject *dict = PyDict_New();
    for (int c = 0; dict && c < PI_FAIL_CAUSES; c++) {
        PyObject *count = PyLong_FromUnsignedLongLong((unsigned long long)counts[c]);
        if (!count || PyDict_SetItemString(dict, names[c], count) != 0)
            Py_CLEAR(dict);
        Py_XDECREF(count);
    }
    return dict;
}

static PyObject *Sampler_snapshot(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler was not initialised");
        return NULL;
    }
    if (self->sampler.running) {
        PyErr_SetString(PyExc_RuntimeError, "cannot take a snapshot while the sampler is running");
        return NULL;
    }
    const pi_state *st = &self->sampler.state;
    PyObject *identities = identities_list(&st->codes);
    PyObject *nodes = identities ? nodes_buffer(&st->tree) : NULL;
    PyObject *threads = nodes ? threads_list(&st->tree) : NULL;
    PyObject *failed = threads ? causes_dict(st->stats.walk_failed) : NULL;
    PyObject *retried = failed ? causes_dict(st->stats.walk_retried) : NULL;
    if (!retried) {
        Py_XDECREF(identities);
        Py_XDECREF(nodes);
        Py_XDECREF(threads);
        Py_XDECREF(failed);
        return NULL;
    }
    return Py_BuildValue(
        "{s N s N s N s N s N s K s K s K s K s K s K s K s K s K s K s K s K s K s O}", "identities", identities, "nodes", nodes, "threads",
        threads, "walk_failed", failed, "walk_retried", retried, "ticks", (unsigned long long)st->stats.ticks, "samples", (unsigned long long)st->stats.samples,
        "dropped", (unsigned long long)st->stats.dropped, "dropped_walk",
        (unsigned long long)st->stats.dropped_walk, "dropped_code", (unsigned long long)st->stats.dropped_code, "dropped_context",
        (unsigned long long)st->stats.dropped_context,
        "torn_copies", (unsigned long long)st->stats.torn_copies,
        "truncated", (unsigned long long)st->stats.truncated, "calls_ended",
        (unsigned long long)st->stats.calls_ended,
        "missed_ticks",
        (unsigned long long)st->stats.missed_ticks, "tick_ns_total", (unsigned long long)st->stats.tick_ns_total,
        "syscalls", (unsigned long long)st->stats.syscalls, "unreadable_codes",
        (unsigned long long)st->codes.unreadable, "timeline_truncated",
        st->tree.timeline_truncated ? Py_True : Py_False);
}

/* ---- async mode ---- */

static int parse_node_types(PyObject *types, pi_async *a)
{
    unsigned long long hamt, bitmap, array;
    if (!PyArg_ParseTuple(types, "KKK;types must be (hamt, bitmap node, array node)", &hamt, &bitmap, &array))
        return -1;
    a->hamt_type = (uintptr_t)hamt;
    a->bitmap_type = (uintptr_t)bitmap;
    a->array_type = (uintptr_t)array;
    return 0;
}

/* The word-sized fields of a pi_task_layout, by the names _async.py gives them. */
static const struct {
    const char *name;
    size_t offset;
    bool is_size;
} task_layout_fields[] = {
#define PI_ADDR_FIELD(f) {#f, offsetof(pi_task_layout, f), false}
#define PI_SIZE_FIELD(f) {#f, offsetof(pi_task_layout, f), true}
    PI_ADDR_FIELD(future_iter_type), PI_ADDR_FIELD(future_type), PI_ADDR_FIELD(task_type),
    PI_SIZE_FIELD(iter_future), PI_SIZE_FIELD(fut_state), PI_SIZE_FIELD(fut_callback0), PI_SIZE_FIELD(task_coro),
    PI_ADDR_FIELD(gathering.type), PI_SIZE_FIELD(gathering.dict_offset), PI_SIZE_FIELD(gathering.basicsize),
    PI_SIZE_FIELD(gathering.inline_values), PI_ADDR_FIELD(children_key), PI_ADDR_FIELD(shield_code),
    PI_SIZE_FIELD(shield_inner_cell), PI_ADDR_FIELD(wait_for_code), PI_ADDR_FIELD(taskgroup.type),
    PI_SIZE_FIELD(taskgroup.dict_offset), PI_SIZE_FIELD(taskgroup.basicsize), PI_SIZE_FIELD(taskgroup.inline_values),
    PI_ADDR_FIELD(tasks_key),
#undef PI_ADDR_FIELD
#undef PI_SIZE_FIELD
};

/* A dict of addresses and offsets (see _async.task_layout) into `out`; None: disabled. */
static int parse_task_layout(PyObject *layout, pi_task_layout *out)
{
    memset(out, 0, sizeof *out);
    if (layout == Py_None)
        return 0;
    if (!PyDict_Check(layout)) {
        PyErr_SetString(PyExc_TypeError, "the task layout must be a dict or None");
        return -1;
    }
    for (size_t i = 0; i < sizeof task_layout_fields / sizeof *task_layout_fields; i++) {
        PyObject *value = PyDict_GetItemString(layout, task_layout_fields[i].name); /* borrowed */
        unsigned long long number = value ? PyLong_AsUnsignedLongLong(value) : 0;
        if (!value || (number == (unsigned long long)-1 && PyErr_Occurred()) ||
            (task_layout_fields[i].is_size && number > PI_CHAIN_OBJECT)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "the task layout's %s is missing or out of range",
                             task_layout_fields[i].name);
            return -1;
        }
        uint8_t *field = (uint8_t *)out + task_layout_fields[i].offset;
        if (task_layout_fields[i].is_size) {
            size_t size = (size_t)number;
            memcpy(field, &size, sizeof size);
        } else {
            uintptr_t address = (uintptr_t)number;
            memcpy(field, &address, sizeof address);
        }
    }
    PyObject *codes = PyDict_GetItemString(layout, "taskgroup_codes");
    unsigned long long exit_code, inner_exit_code;
    if (!codes || !PyArg_ParseTuple(codes, "KK;taskgroup_codes must be two addresses", &exit_code, &inner_exit_code)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "the task layout's taskgroup_codes is missing");
        return -1;
    }
    out->taskgroup_codes[0] = (uintptr_t)exit_code;
    out->taskgroup_codes[1] = (uintptr_t)inner_exit_code;
    out->enabled = true;
    return 0;
}

/* bind_async(var, token, task_coro, prefix_codes, prefix_lines, strict, thread_id, types, tasks):
 * attribute the thread's time outside the Context where var is token (see context.c). */
/* bind_route_var(var, types): samples of a thread with no label of its own take the
 * label marked on its context's value of var (set_route_mark). */
static PyObject *Sampler_bind_route_var(SamplerObject *self, PyObject *args)
{
    PyObject *var, *types;
    if (!PyArg_ParseTuple(args, "O!O!", &PyContextVar_Type, &var, &PyTuple_Type, &types))
        return NULL;
    if (!self->initialised || self->sampler.running) {
        PyErr_SetString(PyExc_RuntimeError, "bind_route_var() needs an initialised, stopped Sampler");
        return NULL;
    }
    Py_hash_t hash = PyObject_Hash(var);
    if (hash == -1)
        return NULL;
    pi_async route = {.var = (uintptr_t)var, .var_hash = pi_hamt_hash((int64_t)hash)};
    if (parse_node_types(types, &route) != 0)
        return NULL;
    self->sampler.state.route_context = route;
    Py_RETURN_NONE;
}

static PyObject *Sampler_bind_async(SamplerObject *self, PyObject *args)
{
    PyObject *var, *token, *coro, *codes, *lines, *types, *tasks = Py_None;
    int strict;
    unsigned long thread_id;
    if (!PyArg_ParseTuple(args, "O!OOO!O!pkO!|O", &PyContextVar_Type, &var, &token, &coro, &PyList_Type, &codes,
                          &PyList_Type, &lines, &strict, &thread_id, &PyTuple_Type, &types, &tasks))
        return NULL;
    if (!self->initialised || self->sampler.running) {
        PyErr_SetString(PyExc_RuntimeError, "bind_async() needs an initialised, stopped Sampler");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(codes);
    if (PyList_GET_SIZE(lines) != n || n > PI_MAX_DEPTH / 2) {
        PyErr_SetString(PyExc_ValueError, "prefix_codes and prefix_lines must be lists of one length");
        return NULL;
    }
    Py_hash_t hash = PyObject_Hash(var);
    if (hash == -1)
        return NULL;
    pi_state *st = &self->sampler.state;
    pi_async a = {.enabled = true, .strict = strict != 0, .follow_threads = true, .var = (uintptr_t)var, .token = (uintptr_t)token,
                  .var_hash = pi_hamt_hash((int64_t)hash), .task_coro = coro == Py_None ? 0 : (uintptr_t)coro};
    if (parse_node_types(types, &a) != 0 || parse_task_layout(tasks, &a.tasks) != 0)
        return NULL;
    if (a.task_coro && (PyCoro_CheckExact(coro) || PyGen_CheckExact(coro)))
        a.task_frame = pi_coro_frame(a.task_coro);
    a.prefix_codes = malloc(((size_t)n + 1) * sizeof *a.prefix_codes);
    a.prefix_lines = malloc(((size_t)n + 1) * sizeof *a.prefix_lines);
    if (!a.prefix_codes || !a.prefix_lines)
        goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *code = PyList_GET_ITEM(codes, i);
        long line = PyLong_AsLong(PyList_GET_ITEM(lines, i));
        if (!PyCode_Check(code) || (line == -1 && PyErr_Occurred())) {
            PyErr_SetString(PyExc_TypeError, "prefix_codes must hold code objects, prefix_lines ints");
            goto error;
        }
        a.prefix_codes[i] = (uintptr_t)code;
        a.prefix_lines[i] = line < 0 || line > INT32_MAX ? 0 : (int32_t)line;
    }
    a.prefix_len = (size_t)n;
    int64_t await_identity = pi_codes_synthetic(&st->codes, "[await]");
    int64_t out_identity = pi_codes_synthetic(&st->codes, "[out-of-context]");
    if (await_identity < 0 || out_identity < 0) {
        PyErr_NoMemory();
        goto error;
    }
    free(st->async.prefix_codes);
    free(st->async.prefix_lines);
    st->async = a;
    st->async_thread = thread_id;
    st->await_identity = (uint32_t)await_identity;
    st->out_of_context_identity = (uint32_t)out_identity;
    Py_RETURN_NONE;
error:
    free(a.prefix_codes);
    free(a.prefix_lines);
    return NULL;
}

/* _hamt_types(context): (type of a Context's HAMT, type of its root node), read as the
 * sampler reads them: the Python layer learns the node types from known Contexts. */
static PyObject *hamt_types(PyObject *Py_UNUSED(module), PyObject *context)
{
    if (!PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "expected a contextvars.Context");
        return NULL;
    }
    uint8_t buf[256];
    uintptr_t vars, type, root;
    uint8_t root_head[PI_OBJECT_HEADER_MAX];
    if (pi_context_read_size() > sizeof buf || pi_hamt_read_size() > sizeof buf ||
        pi_read_exact((uintptr_t)context, buf, pi_context_read_size()) != 0 || pi_parse_context(buf, &vars) != 0 ||
        pi_read_exact(vars, buf, pi_hamt_read_size()) != 0 || pi_parse_hamt(buf, &type, &root) != 0 ||
        pi_read_exact(root, root_head, pi_object_header_size()) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "could not read the Context's variables");
        return NULL;
    }
    return Py_BuildValue("(KK)", (unsigned long long)type, (unsigned long long)pi_object_type(root_head));
}

/* _context_get(context, var, types): the sampler's lookup of var in context: the
 * address of its value, None when unset; RuntimeError when the lookup fails. */
static PyObject *context_get(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *context, *var, *types;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyContext_Type, &context, &PyContextVar_Type, &var, &PyTuple_Type, &types))
        return NULL;
    pi_async a = {0};
    if (parse_node_types(types, &a) != 0)
        return NULL;
    Py_hash_t hash = PyObject_Hash(var);
    if (hash == -1)
        return NULL;
    uintptr_t value = 0;
    int found = pi_context_get(&a, (uintptr_t)context, (uintptr_t)var, pi_hamt_hash((int64_t)hash), &value);
    if (found < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the Context's variables could not be walked");
        return NULL;
    }
    if (!found)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong((unsigned long long)value);
}

/* _read_memory(address, size): bytes read as the sampler reads them, for _async.py to
 * learn asyncio's private layouts from objects it made. */
static PyObject *read_memory(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long address;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "Kn", &address, &size))
        return NULL;
    if (size < 0 || size > PI_CHAIN_OBJECT) {
        PyErr_SetString(PyExc_ValueError, "size out of range");
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (!bytes)
        return NULL;
    if (pi_read_exact((uintptr_t)address, PyBytes_AS_STRING(bytes), (size_t)size) != 0) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_RuntimeError, "the memory could not be read");
        return NULL;
    }
    return bytes;
}

/* _await_chain(coro, tasks, pick): the sampler's await chain of a suspended coroutine,
 * as a list of code object addresses, outermost first. */
static PyObject *await_chain(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *coro, *layout;
    unsigned long long pick;
    if (!PyArg_ParseTuple(args, "OOK", &coro, &layout, &pick))
        return NULL;
    pi_task_layout tasks;
    if (parse_task_layout(layout, &tasks) != 0)
        return NULL;
    pi_chain_cache *cache = calloc(1, sizeof *cache);
    uintptr_t codes[PI_MAX_AWAIT_DEPTH], instrs[PI_MAX_AWAIT_DEPTH];
    int lastis[PI_MAX_AWAIT_DEPTH];
    uint64_t syscalls = 0;
    if (!cache)
        return PyErr_NoMemory();
    long depth = pi_await_chain(&tasks, (uintptr_t)coro, (uint64_t)pick, codes, instrs, lastis, PI_MAX_AWAIT_DEPTH,
                                cache, &syscalls);
    free(cache);
    PyObject *list = PyList_New(0);
    for (long k = 0; list && k < depth; k++) {
        PyObject *code = PyLong_FromUnsignedLongLong((unsigned long long)codes[k]);
        if (!code || PyList_Append(list, code) != 0)
            Py_CLEAR(list);
        Py_XDECREF(code);
    }
    return list;
}

/* ---- checks of the decoders on local data, for the test suite ---- */

static PyObject *debug_line(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer table;
    int firstlineno, index;
    if (!PyArg_ParseTuple(args, "y*ii", &table, &firstlineno, &index))
        return NULL;
    int line = pi_line_for_instr(table.buf, (size_t)table.len, firstlineno, index);
    PyBuffer_Release(&table);
    return PyLong_FromLong(line);
}

static PyObject *opcode_stack_effect(PyObject *Py_UNUSED(module), PyObject *args)
{
    int op, jump;
    unsigned long arg;
    if (!PyArg_ParseTuple(args, "ikp", &op, &arg, &jump))
        return NULL;
    if (op < 0 || op > 255 || arg > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "an opcode is 0-255, an oparg 32 bits");
        return NULL;
    }
    int effect = pi_opcode_stack_effect((uint8_t)op, (uint32_t)arg, jump != 0);
    if (effect == INT_MIN)
        Py_RETURN_NONE;
    return PyLong_FromLong(effect);
}

static PyObject *layout_table_differences(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    const char *fields[128];
    size_t n = pi_layout_table_differences(fields, sizeof fields / sizeof fields[0]);
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *name = PyUnicode_FromString(fields[i]);
        if (!name || PyList_Append(list, name) != 0)
            Py_CLEAR(list);
        Py_XDECREF(name);
    }
    return list;
}

static PyObject *debug_stack_depths(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer code, exceptions;
    if (!PyArg_ParseTuple(args, "y*y*", &code, &exceptions))
        return NULL;
    size_t units = (size_t)code.len / 2;
    pi_instr *instrs = PyMem_Malloc((units + 1) * sizeof *instrs);
    int32_t *depths = PyMem_Malloc((units + 1) * sizeof *depths);
    PyObject *result = NULL;
    if (!instrs || !depths) {
        PyErr_NoMemory();
        goto done;
    }
    size_t count = pi_decode_bytecode(code.buf, units, instrs);
    if (pi_stack_depths(instrs, count, exceptions.buf, (size_t)exceptions.len, 1 << 20, depths) != 0) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    result = PyDict_New();
    for (size_t k = 0; result && k < count; k++) {
        PyObject *key = PyLong_FromUnsignedLong(instrs[k].unit), *value = PyLong_FromLong(depths[k]);
        if (!key || !value || PyDict_SetItem(result, key, value) != 0)
            Py_CLEAR(result);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
done:
    PyMem_Free(instrs);
    PyMem_Free(depths);
    PyBuffer_Release(&code);
    PyBuffer_Release(&exceptions);
    return result;
}

/* ---- for the Python sampler, which holds the GIL ---- */

/* The value-stack depths of a code object's instructions, and the call at `unit`. */
static int call_at(PyCodeObject *code, int unit, pi_call *call)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *bytecode = PyCode_GetCode(code);
    PyObject *exceptions = code->co_exceptiontable;
#else
    PyObject *bytecode = code->co_code;
    Py_XINCREF(bytecode);
    PyObject *exceptions = NULL;
#endif
    if (!bytecode)
        return -1;
    size_t units = (size_t)PyBytes_GET_SIZE(bytecode) / 2;
    pi_instr *instrs = PyMem_Malloc((units + 1) * sizeof *instrs);
    int32_t *depths = PyMem_Malloc((units + 1) * sizeof *depths);
    int result = -1;
    if (instrs && depths) {
        size_t count = pi_decode_bytecode((const uint8_t *)PyBytes_AS_STRING(bytecode), units, instrs);
        const uint8_t *table = exceptions ? (const uint8_t *)PyBytes_AS_STRING(exceptions) : NULL;
        size_t table_len = exceptions ? (size_t)PyBytes_GET_SIZE(exceptions) : 0;
        if (pi_stack_depths(instrs, count, table, table_len, code->co_stacksize, depths) == 0) {
            for (size_t k = 0; k < count; k++)
                if (instrs[k].unit == (uint32_t)unit)
                    result = pi_call_layout(&instrs[k], depths[k], call);
        }
    }
    PyMem_Free(instrs);
    PyMem_Free(depths);
    Py_DECREF(bytecode);
    return result;
}

/* The call a frame of another thread stands on, as addresses: the Python sampler holds
   the GIL, but that thread may have let go of it just after a call ended (at the eval
   breaker), leaving freed objects in the slots. Nothing here follows a slot but the
   first argument's type field, read through a pipe; the caller names the call only
   from addresses of objects it holds itself. */
static PyObject *frame_call_site(PyObject *Py_UNUSED(module), PyObject *frame_arg)
{
    if (!PyFrame_Check(frame_arg)) {
        PyErr_SetString(PyExc_TypeError, "a frame object is needed");
        return NULL;
    }
    PyFrameObject *frame = (PyFrameObject *)frame_arg;
#if PY_VERSION_HEX >= 0x030B0000
    int lasti = PyFrame_GetLasti(frame);
    int unit = lasti < 0 ? -1 : lasti / 2;
#elif PY_VERSION_HEX >= 0x030A0000
    int unit = frame->f_lasti;
#else
    int unit = frame->f_lasti < 0 ? -1 : frame->f_lasti / 2;
#endif
    PyCodeObject *code = PyFrame_GetCode(frame);
    pi_call call;
    int found = unit < 0 ? -1 : call_at(code, unit, &call);
    Py_DECREF(code);
    if (found < 0 && PyErr_Occurred())
        return NULL;
    uintptr_t slots[3] = {0, 0, 0};
    if (found != 0 || pi_local_frame_slots(frame, (size_t)call.bottom, pi_call_slot_count(&call), slots) != 0)
        Py_RETURN_NONE;
    int callable, first;
    pi_call_place(&call, slots[0] != 0, slots[1] != 0, &callable, &first);
    uintptr_t first_addr = first >= 0 ? slots[first] : 0, first_type = 0;
    if (first_addr && pi_read_via_pipe(first_addr + offsetof(PyObject, ob_type), &first_type, sizeof first_type) != 0)
        first_type = 0;
    return Py_BuildValue("(KKK)", (unsigned long long)slots[callable], (unsigned long long)first_addr,
                         (unsigned long long)first_type);
}

/* ---- profiled child processes (pyinstrument._subprocesses) ---- */

static PyObject *guard_sigterm(PyObject *Py_UNUSED(module), PyObject *args)
{
    double nudge, deadline;
    if (!PyArg_ParseTuple(args, "dd", &nudge, &deadline))
        return NULL;
    if (!(nudge >= 0.001 && nudge <= deadline && deadline <= 3600)) {
        PyErr_SetString(PyExc_ValueError, "need 0.001 <= nudge <= deadline <= 3600 seconds");
        return NULL;
    }
    return PyBool_FromLong(pi_guard_sigterm(nudge, deadline) == 0);
}

static PyObject *pause_samplers(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pi_samplers_pause();
    Py_RETURN_NONE;
}

static PyObject *resume_samplers(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pi_samplers_resume();
    Py_RETURN_NONE;
}

static int resume_pending(void *Py_UNUSED(arg))
{
    pi_samplers_resume();
    return 0;
}

/* 3.13's os.fork() counts the process's threads after the at-fork hooks have run: the
 * threads start again from the interpreter's pending calls, once os.fork() returned */
static PyObject *resume_samplers_soon(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (Py_AddPendingCall(resume_pending, NULL) != 0)
        pi_samplers_resume();
    Py_RETURN_NONE;
}

/* set_thread_label(n): the calling thread's label (0: none), the phase of its samples in
 * Samplers made with thread_labels. False when it cannot have one (every slot taken):
 * its samples then go unlabelled, and the program on. */
static PyObject *set_thread_label(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long label = PyLong_AsLong(arg);
    if (label == -1 && PyErr_Occurred())
        return NULL;
    if (label < 0 || label > PI_MAX_THREAD_LABEL) {
        PyErr_Format(PyExc_ValueError, "a thread label is a number from 0 to %d", PI_MAX_THREAD_LABEL);
        return NULL;
    }
    return PyBool_FromLong(pi_set_thread_label((unsigned long)pthread_self(), (int32_t)label) == 0);
}

/* set_route_mark(obj, n): a ContextVar bound with Sampler.bind_route_var holding obj
 * labels its context's samples n. obj must live as long as the process. */
static PyObject *set_route_mark(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *object;
    int label;
    if (!PyArg_ParseTuple(args, "Oi", &object, &label))
        return NULL;
    if (label <= 0 || label > PI_MAX_THREAD_LABEL) {
        PyErr_Format(PyExc_ValueError, "a route mark's label is a number from 1 to %d", PI_MAX_THREAD_LABEL);
        return NULL;
    }
    if (pi_set_route_mark((uintptr_t)object, (int32_t)label) != 0) {
        PyErr_Format(PyExc_RuntimeError, "more than %d route marks", PI_MAX_ROUTE_MARKS);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* attach(pid): every Sampler of this process reads process pid from now on. */
static PyObject *attach(PyObject *Py_UNUSED(module), PyObject *arg)
{
    char err[768] = "";
    long pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    if (pid <= 0 || pid > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%ld is not a process id", pid);
        return NULL;
    }
    pi_attached target;
    SETUP_LOCK();
    bool already = layout_ready || pi_attached_pid();
    int attached = already ? -1 : pi_attach((pid_t)pid, &target, err, sizeof err);
    layout_ready = layout_ready || attached == 0;
    SETUP_UNLOCK();
    if (already) {
        PyErr_SetString(PyExc_RuntimeError, "this process already reads a process; attach from a fresh one");
        return NULL;
    }
    if (attached != 0) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    return Py_BuildValue("{sksOss}", "version", (unsigned long)target.version, "same_build",
                         target.same_build ? Py_True : Py_False, "interpreter", target.interpreter);
}

static PyMethodDef module_methods[] = {
    {"set_thread_label", set_thread_label, METH_O,
     "set_thread_label(n) -> bool: the calling thread's label (0: none), which Samplers made with "
     "thread_labels=True take as the phase of its samples; False when no label can be kept for it."},
    {"set_route_mark", set_route_mark, METH_VARARGS,
     "set_route_mark(obj, n): a route ContextVar (Sampler.bind_route_var) holding obj labels its context's "
     "samples n; obj must live as long as the process."},
    {"attach", attach, METH_O,
     "attach(pid) -> {version, same_build, interpreter}: Samplers read process pid (CPython 3.9-3.15) instead "
     "of this one; a process running another interpreter file is read for its stacks only."},
    {"resume_samplers_soon", resume_samplers_soon, METH_NOARGS,
     "Starts the paused sampling threads again once the running call (os.fork) has returned."},
    {"pause_samplers", pause_samplers, METH_NOARGS,
     "Joins every sampling thread (before os.fork: the process forks with the threads it would have unprofiled)."},
    {"resume_samplers", resume_samplers, METH_NOARGS, "Starts the paused sampling threads again (after os.fork, in the parent)."},
    {"guard_sigterm", guard_sigterm, METH_VARARGS,
     "guard_sigterm(nudge, deadline): after the first SIGTERM, SIGTERM again every nudge seconds (so the "
     "Python handler runs even if the main thread was about to block), and death by it after deadline "
     "seconds (called again: a new deadline, from the next SIGTERM). False if SIGTERM has no handler."},
    {"_debug_line", debug_line, METH_VARARGS,
     "_debug_line(linetable, firstlineno, instr_index): the engine's line decoder on a local table."},
    {"_hamt_types", hamt_types, METH_O, "_hamt_types(context): (HAMT type, root node type), as the sampler reads them."},
    {"_context_get", context_get, METH_VARARGS,
     "_context_get(context, var, (hamt, bitmap, array types)): the sampler's lookup: value address or None."},
    {"_read_memory", read_memory, METH_VARARGS, "_read_memory(address, size): bytes, read as the sampler reads."},
    {"_await_chain", await_chain, METH_VARARGS,
     "_await_chain(coro, task_layout, pick): the sampler's await chain of a suspended coroutine (code addresses)."},
    {"_frame_call_site", frame_call_site, METH_O,
     "_frame_call_site(frame): (callable, first argument, that argument's type) of the call a frame of "
     "another thread stands on, as addresses (0 where absent, never to be followed), or None."},
    {"_opcode_stack_effect", opcode_stack_effect, METH_VARARGS,
     "_opcode_stack_effect(op, oparg, jump): the stack effect the bytecode analysis uses (opcodes_table.h)."},
    {"_layout_table_differences", layout_table_differences, METH_NOARGS,
     "_layout_table_differences(): fields where the compiled layout and layouts_table.h's entry differ."},
    {"_debug_stack_depths", debug_stack_depths, METH_VARARGS,
     "_debug_stack_depths(bytecode, exceptiontable): {code unit: stack depth before it (-1 unreachable)}, "
     "or None when the engine cannot analyse the bytecode."},
    {NULL, NULL, 0, NULL},
};

/* Each call into a Sampler holds the Sampler's critical section: a free-threaded build
 * has no GIL to keep two threads' calls apart (before 3.13, and with a GIL, a no-op). */
#define LOCKED(method)                                                                                 \
    static PyObject *method##_locked(PyObject *self, PyObject *arg)                                    \
    {                                                                                                  \
        PyObject *result;                                                                              \
        Py_BEGIN_CRITICAL_SECTION(self);                                                               \
        result = method((SamplerObject *)self, arg);                                                   \
        Py_END_CRITICAL_SECTION();                                                                     \
        return result;                                                                                 \
    }
LOCKED(Sampler_start)
LOCKED(Sampler_stop)
LOCKED(Sampler_tick)
LOCKED(Sampler_bind_route_var)
LOCKED(Sampler_bind_async)
LOCKED(Sampler_gil_holder)
LOCKED(Sampler_snapshot)

static int Sampler_init_locked(PyObject *self, PyObject *args, PyObject *kwds)
{
    int result;
    Py_BEGIN_CRITICAL_SECTION(self);
    result = Sampler_init((SamplerObject *)self, args, kwds);
    Py_END_CRITICAL_SECTION();
    return result;
}

static PyMethodDef Sampler_methods[] = {
    {"start", (PyCFunction)Sampler_start_locked, METH_NOARGS, "Start the sampling thread."},
    {"stop", (PyCFunction)Sampler_stop_locked, METH_NOARGS, "Stop the sampling thread and wait for it."},
    {"set_phase", (PyCFunction)Sampler_set_phase, METH_O,
     "set_phase(n): the samples to come are of phase n (0: none), each phase a trie of its own below a "
     "[phase] marker node whose line is n."},
    {"_tick", (PyCFunction)Sampler_tick_locked, METH_NOARGS,
     "A test hook: one tick now, from the calling thread, of a Sampler that is not running."},
    {"bind_route_var", (PyCFunction)Sampler_bind_route_var_locked, METH_VARARGS,
     "bind_route_var(var, types): samples of a thread with no label take the label marked on its context's "
     "value of var (set_route_mark); types as bind_async's. The var must live as long as the Sampler."},
    {"bind_async", (PyCFunction)Sampler_bind_async_locked, METH_VARARGS,
     "bind_async(var, token, task_coro, prefix_codes, prefix_lines, strict, thread_id, types, tasks=None): "
     "async mode."},
    {"_gil_holder", (PyCFunction)Sampler_gil_holder_locked, METH_NOARGS,
     "(ident, kernel tid) of the thread that holds the GIL now, or None (released, or no GIL)."},
    {"snapshot", (PyCFunction)Sampler_snapshot_locked, METH_NOARGS,
     "The aggregated samples as plain data (only while stopped)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sampler_getset[] = {
    {"running", (getter)Sampler_running, NULL, "Whether the sampling thread runs.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pyinstrument._engine.Sampler",
    .tp_basicsize = sizeof(SamplerObject),
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Samples the Python stacks of this process's threads from a native thread.",
    .tp_methods = Sampler_methods,
    .tp_getset = Sampler_getset,
    .tp_init = Sampler_init_locked,
    .tp_new = PyType_GenericNew,
};

#if PY_VERSION_HEX >= 0x030C0000
/* A code object's death, told before its memory is freed (codes.c trusts an entry
 * whose code has not died instead of reading it every tick). */
static int code_event(PyCodeEvent event, PyCodeObject *code)
{
    if (event == PY_CODE_EVENT_DESTROY)
        pi_code_died((uintptr_t)code);
    return 0;
}
#endif

/* Without a watcher (before 3.12, or all watcher ids taken) every code is read again. */
static void watch_code_deaths(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyCode_AddWatcher(code_event) >= 0)
        pi_codes_deaths_told();
    else
        PyErr_Clear();
#endif
}

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT, .m_name = "pyinstrument._engine",
    .m_doc = "The sampling engine of pyinstrument, written in C.", .m_size = -1, .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__engine(void)
{
    if (PyType_Ready(&SamplerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (!m)
        return NULL;
#ifdef Py_GIL_DISABLED
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
#endif
    Py_INCREF(&SamplerType);
    if (PyModule_AddObject(m, "Sampler", (PyObject *)&SamplerType) < 0) {
        Py_DECREF(&SamplerType);
        Py_DECREF(m);
        return NULL;
    }
    ReadRefused = PyErr_NewExceptionWithDoc("pyinstrument._engine.ReadRefused",
                                            "The system refuses process_vm_readv, which the sampler needs.",
                                            PyExc_RuntimeError, NULL);
    if (!ReadRefused || PyModule_AddObject(m, "ReadRefused", ReadRefused) < 0) {
        Py_XDECREF(ReadRefused);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(ReadRefused); /* the module holds one reference, this file another */
    pi_layout_prepare();
    watch_code_deaths();
    return m;
}
