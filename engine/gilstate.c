/*
 * gilstate.c: where each sampled thread stands with the GIL: holding it, waiting for it,
 * or outside it (in C code that let it go: I/O, sleep, a lock, hashing).
 *
 * The holder is the GIL's last_holder while it is locked, read with the thread list
 * (threads.c). A thread waiting for the GIL is blocked in futex on a word of the GIL's own
 * struct (its condition variable or its mutex, take_gil in Python/ceval_gil.c): the kernel
 * tells where a thread is blocked in /proc/PID/task/TID/syscall ("202 0xADDR ..." on
 * x86-64), read with one pread on a descriptor kept per thread. Anything else is outside.
 */
#define _GNU_SOURCE
#include "tick.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A descriptor not used for this many ticks is closed (its thread ended, or holds the GIL);
 * a file that could not be opened is tried again after as long. */
#define PI_SYSCALL_FD_IDLE_TICKS 100

/* The slot of a thread's syscall file, opened on first use (fd -1 when it cannot be). */
static pi_syscall_file *syscall_file(pi_scratch *x, unsigned long native_id, uint64_t tick)
{
    for (size_t i = 0; i < x->syscall_count; i++)
        if (x->syscall_files[i].native_id == native_id) {
            x->syscall_files[i].used_tick = tick;
            return &x->syscall_files[i];
        }
    if (GROW(x->syscall_files, x->syscall_files_cap, x->syscall_count + 1) != 0)
        return NULL;
    char path[96];
    pid_t pid = pi_attached_pid() ? pi_attached_pid() : pi_own_pid();
    snprintf(path, sizeof path, "/proc/%d/task/%lu/syscall", (int)pid, native_id);
    pi_syscall_file *f = &x->syscall_files[x->syscall_count++];
    *f = (pi_syscall_file){native_id, open(path, O_RDONLY | O_CLOEXEC), tick};
    return f;
}

void pi_gil_states_sweep(pi_scratch *x, uint64_t tick, bool all)
{
    size_t kept = 0;
    for (size_t i = 0; i < x->syscall_count; i++) {
        pi_syscall_file f = x->syscall_files[i];
        if (!all && f.used_tick && f.used_tick + PI_SYSCALL_FD_IDLE_TICKS >= tick) /* 0: its read failed */
            x->syscall_files[kept++] = f;
        else if (f.fd >= 0)
            close(f.fd);
    }
    x->syscall_count = kept;
}

/* The futex word a thread is blocked on, or 0 (running, in another call, unreadable: a
 * file that cannot be read is dropped at the next sweep, for its thread ended and its id
 * may come back). */
static uintptr_t futex_word(pi_syscall_file *f)
{
    char text[160];
    ssize_t got = f && f->fd >= 0 ? pread(f->fd, text, sizeof text - 1, 0) : -1;
    if (got <= 0 && f && f->fd >= 0)
        f->used_tick = 0;
    if (got <= 0)
        return 0;
    text[got] = '\0';
    char *end;
    long number = strtol(text, &end, 10);
    if (end == text || number != SYS_futex)
        return 0;
    unsigned long long word = strtoull(end, NULL, 16);
    return (uintptr_t)word;
}

/* Where the thread stands, from the kernel: blocked on the GIL, on something else, or on a
 * CPU (see pi_gil_state). */
static int gil_state_now(pi_state *s, const pi_walker *w, unsigned long native_id)
{
    pi_scratch *x = s->scratch;
    uintptr_t gil = pi_runtime_layout.gil_addr;
    s->stats.syscalls++;
    uintptr_t word = futex_word(syscall_file(x, native_id, s->stats.ticks));
    if (word >= gil && word < gil + pi_gil_struct_size())
        return PI_GIL_WAITING;
    if (word)
        return PI_GIL_OUTSIDE; /* blocked on something else: a lock, I/O, a sleep */
    /* on a CPU, or ready for one. Python code runs only with the GIL: a thread not in a C
     * call is taking it (woken from its wait), unless it took it since the tick read it
     * (the sampling thread may have been descheduled meanwhile): read the GIL again */
    uint8_t now[PI_MAX_GIL_READ];
    uintptr_t holder;
    uint64_t switches;
    s->stats.syscalls++;
    if (pi_read_exact(gil, now, pi_gil_read_size()) != 0)
        return PI_GIL_UNKNOWN;
    pi_parse_gil(now, &holder, &switches);
    if (pi_gil_locked(now) && holder == w->tstate_addr)
        return PI_GIL_HELD;
    return w->leaf_callee >= 0 ? PI_GIL_OUTSIDE : PI_GIL_WAITING;
}

int pi_gil_state(pi_state *s, pi_walker *w, unsigned long native_id, int64_t cpu_ns)
{
    pi_scratch *x = s->scratch;
    if (!pi_runtime_layout.gil_addr)
        return PI_GIL_NONE;
    if (!x->gil_read || !native_id)
        return PI_GIL_UNKNOWN;
    if (pi_gil_locked(x->gil_buf) && x->gil_holder == w->tstate_addr)
        return PI_GIL_HELD;
    /* a thread that has not run since its state was read is still blocked where it was:
     * an idle pool costs no read a thread each tick */
    bool ran = cpu_ns < 0 || w->gil_cpu_ns < 0 || cpu_ns != w->gil_cpu_ns || w->gil_tstate != w->tstate_addr;
    if (!ran && (w->gil_state_read == PI_GIL_WAITING || w->gil_state_read == PI_GIL_OUTSIDE))
        return w->gil_state_read;
    w->gil_state_read = gil_state_now(s, w, native_id);
    w->gil_tstate = w->tstate_addr;
    w->gil_cpu_ns = cpu_ns;
    return w->gil_state_read;
}
