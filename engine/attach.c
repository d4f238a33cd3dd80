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
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One line of /proc/PID/maps: a file's bytes mapped at [start, end). */
typedef struct {
    uintptr_t start, end, offset;
    unsigned long long inode;
    unsigned dev_major, dev_minor;
    char path[512];
} mapping;

static bool parse_mapping(const char *line, mapping *m)
{
    int path_at = 0;
    m->path[0] = '\0';
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %" SCNxPTR " %x:%x %llu %n", &m->start, &m->end, &m->offset,
               &m->dev_major, &m->dev_minor, &m->inode, &path_at) < 6)
        return false;
    if (path_at > 0) {
        snprintf(m->path, sizeof m->path, "%s", line + path_at);
        m->path[strcspn(m->path, "\n")] = '\0';
    }
    return true;
}

/* Our own mapping of the interpreter file holding addr. */
static int own_mapping(uintptr_t addr, mapping *out)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[1024];
    int found = -1;
    while (f && found != 0 && fgets(line, sizeof line, f))
        if (parse_mapping(line, out) && out->start <= addr && addr < out->end && out->inode)
            found = 0;
    if (f)
        fclose(f);
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

int pi_attach(pid_t pid, char *err, size_t errlen)
{
    mapping own, theirs;
    char path[64], line[1024];
    if (pid <= 0) {
        snprintf(err, errlen, "%d is not a process id", (int)pid);
        return -1;
    }
    if (own_mapping(pi_interpreter_anchor(), &own) != 0) {
        snprintf(err, errlen, "cannot find this interpreter's own file in /proc/self/maps");
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            snprintf(err, errlen, "no process %d is running", (int)pid);
        else
            explain_refusal(pid, errno, err, errlen);
        return -1;
    }
    bool found = false, some_python = false;
    while (!found && fgets(line, sizeof line, f)) {
        found = parse_mapping(line, &theirs) && theirs.inode == own.inode && theirs.dev_major == own.dev_major &&
                theirs.dev_minor == own.dev_minor && theirs.offset == own.offset;
        const char *name = strrchr(theirs.path, '/');
        some_python = some_python || (name && (strncmp(name, "/python", 7) == 0 || strncmp(name, "/libpython", 10) == 0));
    }
    fclose(f);
    if (!found) {
        char exe[512] = "";
        snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        if (some_python)
            snprintf(err, errlen,
                     "process %d does not run this Python (%s) but %s; attach with the pyinstrument installed "
                     "for its interpreter: that interpreter's `-m pyinstrument --pid %d`",
                     (int)pid, own.path, n > 0 ? exe : "another one", (int)pid);
        else
            snprintf(err, errlen, "process %d does not run Python (it runs %s)", (int)pid, n > 0 ? exe : "?");
        return -1;
    }
    pi_set_attached_pid(pid);
    uintptr_t reloc = theirs.start - own.start;
    uint64_t probe;
    if (pi_read_exact(pi_interpreter_anchor() + reloc, &probe, sizeof probe) != 0) {
        int error = errno;
        pi_set_attached_pid(0);
        if (error == ESRCH)
            snprintf(err, errlen, "process %d ended", (int)pid);
        else
            explain_refusal(pid, error, err, errlen);
        return -1;
    }
    /* 3.9/3.10 keep no kernel tid in a thread state: it is read from glibc's thread
     * descriptor, at an offset learned in ours, before any tick (a dump ticks at once) */
    pthread_t discoverer;
    if (pthread_create(&discoverer, NULL, discover_native_ids, NULL) == 0)
        pthread_join(discoverer, NULL);
    char why[400] = "";
    if (pi_layout_init(reloc, why, sizeof why) != 0) {
        pi_set_attached_pid(0);
        snprintf(err, errlen, "process %d: %s", (int)pid, why);
        return -1;
    }
    return 0;
}
