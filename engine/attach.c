/*
 * attach.c: reading another process: finding this same interpreter binary mapped in
 * it, and checking that the kernel lets us read it.
 *
 * The engine is compiled for one interpreter (layout.c), so a process attached to must
 * run the same interpreter file (the same device and inode, mapped at the same file
 * offset). Its static objects then lie at one fixed distance from ours; that distance
 * is all layout.c needs to find its runtime, types and None. Everything else is read.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Our own mapping of the interpreter file holding addr (without its path). */
static int own_mapping(uintptr_t addr, pi_mapping *out)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char *line = NULL;
    size_t cap = 0;
    int found = -1;
    while (f && found != 0 && pi_next_mapping(f, &line, &cap, out))
        if (out->start <= addr && addr < out->end && out->inode)
            found = 0;
    if (f)
        fclose(f);
    free(line);
    out->path = NULL; /* it pointed into the line */
    return found;
}

/* Why the kernel refuses to let us read pid's memory, and what allows it. */
static void explain_refusal(pid_t pid, int error, char *err, size_t errlen)
{
    int scope = -1;
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
    if (f) {
        if (fscanf(f, "%d", &scope) != 1)
            scope = -1;
        fclose(f);
    }
    if (geteuid() != 0 && scope >= 1)
        snprintf(err, errlen,
                 "permission denied reading process %d: kernel.yama.ptrace_scope is %d; run as root, grant "
                 "CAP_SYS_PTRACE, or allow it with `sysctl kernel.yama.ptrace_scope=0` (or use the agent: "
                 "docs/attach.md)",
                 (int)pid, scope);
    else
        snprintf(err, errlen,
                 "permission denied reading process %d (%s): it belongs to another user, or a container lacks "
                 "CAP_SYS_PTRACE; run as its user or as root (docs/attach.md)",
                 (int)pid, strerror(error));
}

static void *discover_native_ids(void *unused)
{
    (void)unused;
    pi_native_id_discover(); /* from a thread that is not the main one (threads.c) */
    return NULL;
}

/* Whether the kernel lets us read process pid (at addr, in its interpreter). */
static int check_readable(pid_t pid, uintptr_t addr, char *err, size_t errlen)
{
    uint64_t probe;
    if (pi_read_exact(addr, &probe, sizeof probe) == 0)
        return 0;
    if (errno == ESRCH)
        snprintf(err, errlen, "process %d ended", (int)pid);
    else
        explain_refusal(pid, errno, err, errlen);
    return -1;
}

/* 3.9/3.10 keep no kernel tid in a thread state: it is read from glibc's thread
 * descriptor, at an offset learned in ours, before any tick (a dump ticks at once) */
static void discover_native_ids_now(void)
{
    pthread_t discoverer;
    if (pthread_create(&discoverer, NULL, discover_native_ids, NULL) == 0)
        pthread_join(discoverer, NULL);
}

/* A process running our own interpreter file: its static objects lie at one distance
 * from ours, and our compiled layout is its layout. */
static int learn_same_interpreter(pid_t pid, const pi_mapping *own, const pi_mapping *theirs, pi_attached *out,
                                  char *err, size_t errlen)
{
    uintptr_t reloc = theirs->start - own->start;
    out->version = pi_compiled_version();
    out->same_build = true;
    snprintf(out->interpreter, sizeof out->interpreter, "%s", theirs->path);
    pi_set_attached_pid(pid);
    if (check_readable(pid, pi_interpreter_anchor() + reloc, err, errlen) != 0)
        return -1;
    discover_native_ids_now();
    char why[400] = "";
    if (pi_layout_init(reloc, why, sizeof why) != 0) {
        snprintf(err, errlen, "process %d: %s", (int)pid, why);
        return -1;
    }
    return 0;
}

/* The version of the interpreter defining these symbols: Py_Version (3.11+), read from
 * the process, else the newest function it has of those 3.9 and 3.10 added. */
static uint32_t interpreter_version(const pi_symbol *version, const pi_symbol *added_in_310,
                                    const pi_symbol *added_in_39)
{
    uint32_t hex = 0;
    if (version->addr)
        return pi_read_exact(version->addr, &hex, sizeof hex) == 0 ? hex : 0;
    if (added_in_310->addr)
        return 0x030A0000;
    return added_in_39->addr ? 0x03090000 : 0x03080000;
}

/* A process running another interpreter file: its version's layout from the table, its
 * static objects from the file's symbols. */
static int learn_other_interpreter(pid_t pid, FILE *maps, pi_attached *out, char *err, size_t errlen)
{
    enum { RUNTIME, CODE, FRAME, UNICODE, BYTES, TUPLE, NONE, FUNCTION, TYPE, MODULE, CFUNCTION, CMETHOD,
           METHOD_DESCR, VERSION, IS_NONE, FRAME_GET_CODE, COUNT };
    pi_symbol syms[COUNT] = {
        [RUNTIME] = {"_PyRuntime", 0},       [CODE] = {"PyCode_Type", 0},
        [FRAME] = {"PyFrame_Type", 0},       [UNICODE] = {"PyUnicode_Type", 0},
        [BYTES] = {"PyBytes_Type", 0},       [TUPLE] = {"PyTuple_Type", 0},
        [NONE] = {"_Py_NoneStruct", 0},      [FUNCTION] = {"PyFunction_Type", 0},
        [TYPE] = {"PyType_Type", 0},         [MODULE] = {"PyModule_Type", 0},
        [CFUNCTION] = {"PyCFunction_Type", 0}, [CMETHOD] = {"PyCMethod_Type", 0},
        [METHOD_DESCR] = {"PyMethodDescr_Type", 0}, [VERSION] = {"Py_Version", 0},
        [IS_NONE] = {"Py_IsNone", 0},        [FRAME_GET_CODE] = {"PyFrame_GetCode", 0},
    };
    if (pi_find_interpreter_symbols(pid, maps, syms, COUNT, out->interpreter, sizeof out->interpreter, err,
                                    errlen) != 0)
        return -1;
    pi_set_attached_pid(pid);
    if (check_readable(pid, syms[RUNTIME].addr, err, errlen) != 0)
        return -1;
    out->version = interpreter_version(&syms[VERSION], &syms[IS_NONE], &syms[FRAME_GET_CODE]);
    if (!out->version) {
        snprintf(err, errlen, "process %d: its Python version (Py_Version) could not be read", (int)pid);
        return -1;
    }
    for (int i = 0; i < VERSION && pi_layout_known(out->version); i++)
        if (!syms[i].addr) {
            snprintf(err, errlen, "process %d: its interpreter %s defines no %s", (int)pid, out->interpreter,
                     syms[i].name);
            return -1;
        }
    pi_statics statics = {
        .runtime = syms[RUNTIME].addr,       .code_type = syms[CODE].addr,
        .frame_type = syms[FRAME].addr,      .unicode_type = syms[UNICODE].addr,
        .bytes_type = syms[BYTES].addr,      .tuple_type = syms[TUPLE].addr,
        .none = syms[NONE].addr,             .function_type = syms[FUNCTION].addr,
        .type_type = syms[TYPE].addr,        .module_type = syms[MODULE].addr,
        .cfunction_type = syms[CFUNCTION].addr, .cmethod_type = syms[CMETHOD].addr,
        .method_descr_type = syms[METHOD_DESCR].addr,
    };
    char why[400] = "";
    discover_native_ids_now();
    if (pi_layout_init_other(out->version, &statics, why, sizeof why) != 0) {
        snprintf(err, errlen, "process %d: %s", (int)pid, why);
        return -1;
    }
    return 0;
}

int pi_attach(pid_t pid, pi_attached *out, char *err, size_t errlen)
{
    pi_mapping own, theirs;
    char path[64], *line = NULL;
    size_t cap = 0;
    memset(out, 0, sizeof *out);
    if (pid <= 0) {
        snprintf(err, errlen, "%d is not a process id", (int)pid);
        return -1;
    }
    if (own_mapping(pi_interpreter_anchor(), &own) != 0) {
        snprintf(err, errlen, "cannot find this interpreter's own file in /proc/self/maps");
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "re");
    if (!maps) {
        if (errno == ENOENT)
            snprintf(err, errlen, "no process %d is running", (int)pid);
        else
            explain_refusal(pid, errno, err, errlen);
        return -1;
    }
    bool found = false;
    while (!found && pi_next_mapping(maps, &line, &cap, &theirs))
        found = theirs.inode == own.inode && theirs.dev_major == own.dev_major && theirs.dev_minor == own.dev_minor &&
                theirs.offset == own.offset;
    int result = found ? learn_same_interpreter(pid, &own, &theirs, out, err, errlen)
                       : learn_other_interpreter(pid, maps, out, err, errlen);
    fclose(maps);
    free(line);
    if (result != 0) {
        pi_set_attached_pid(0);
        pi_layout_prepare(); /* this process's own layout again */
    }
    return result;
}
