/*
 * threads.c: the interpreter's list of thread states, read with the GIL's state, and
 * what the kernel knows of a thread (its tid, its CPU clock).
 */
#define _GNU_SOURCE
#include "tick.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* An attached process's thread: the kernel gives no clock of another process's thread,
 * but its scheduler statistics start with the time it ran, in ns. */
static int64_t attached_thread_cpu_ns(unsigned long native_id)
{
    char path[96];
    unsigned long long ran = 0;
    snprintf(path, sizeof path, "/proc/%d/task/%lu/schedstat", (int)pi_attached_pid(), native_id);
    FILE *f = fopen(path, "re");
    int got = f ? fscanf(f, "%llu", &ran) : 0;
    if (f)
        fclose(f);
    return got == 1 && ran <= INT64_MAX ? (int64_t)ran : -1;
}

int64_t pi_thread_cpu_ns(unsigned long native_id)
{
    if (pi_attached_pid())
        return native_id && native_id <= INT32_MAX ? attached_thread_cpu_ns(native_id) : -1;
    /* the kernel's per-thread CPU clock id: ~tid << 3 | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED */
    clockid_t clock = (clockid_t)((~(unsigned int)native_id) << 3) | 6;
    struct timespec ts;
    if (native_id == 0 || native_id > INT32_MAX || clock_gettime(clock, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 3.9/3.10 thread states do not record the kernel tid; glibc's thread descriptor
 * (what pthread_t points at) does, at an offset we find in our own descriptor. */
static long tid_offset = -1;

void pi_native_id_discover(void)
{
    if (tid_offset >= 0)
        return;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (tid == getpid())
        return; /* the main thread's tid equals the pid: ambiguous, try from another thread */
    uintptr_t self = (uintptr_t)pthread_self();
    int32_t words[512];
    if (pi_read_via_pipe(self, words, sizeof words) != 0) /* ours, even when attached */
        return;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        if (words[i] == tid) {
            tid_offset = (long)(i * sizeof *words);
            return;
        }
    }
}

unsigned long pi_native_id_of(unsigned long pthread_id)
{
    int32_t tid;
    if (tid_offset < 0 || pi_read_exact((uintptr_t)pthread_id + (uintptr_t)tid_offset, &tid, sizeof tid) != 0 ||
        tid <= 0)
        return 0;
    return (unsigned long)tid;
}

size_t read_threads(pi_state *s, uintptr_t **addrs_out, pi_tstate **states_out)
{
    pi_scratch *x = s->scratch;
    size_t ts_size = pi_runtime_layout.tstate_read_size;
    size_t cached = x->cache_len < PI_MAX_THREADS ? x->cache_len : PI_MAX_THREADS;
    x->gil_read = false;
    if (GROW(x->tstate_bufs, x->tstate_bufs_cap, (cached + 1) * ts_size) != 0 ||
        GROW(x->list_reads, x->list_reads_cap, cached + 2) != 0)
        return 0;
    uintptr_t head = 0;
    pi_read *reads = x->list_reads;
    reads[0] = (pi_read){pi_runtime_layout.thread_head_addr, &head, sizeof head, false};
    for (size_t i = 0; i < cached; i++)
        reads[i + 1] = (pi_read){x->cache[i], x->tstate_bufs + i * ts_size, ts_size, false};
    /* and the GIL, read before any stack is copied (see stack_unmoved) */
    size_t gil_size = pi_gil_read_size();
    bool gil_wanted = pi_runtime_layout.gil_addr && gil_size <= sizeof x->gil_buf;
    reads[cached + 1] = (pi_read){pi_runtime_layout.gil_addr, x->gil_buf, gil_wanted ? gil_size : 0, false};
    s->stats.syscalls += (uint64_t)pi_read_batch(reads, cached + 2);
    x->gil_read = gil_wanted && reads[cached + 1].ok;
    if (x->gil_read)
        pi_parse_gil(x->gil_buf, &x->gil_holder, &x->gil_switches);
    if (!reads[0].ok)
        return 0;

    size_t n = 0;
    uint8_t *one = x->tstate_bufs + cached * ts_size;
    for (uintptr_t addr = head; addr && n < PI_MAX_THREADS; n++) {
        if (GROW(x->addrs, x->addrs_cap, n + 1) != 0 || GROW(x->states, x->states_cap, n + 1) != 0)
            break;
        const uint8_t *buf;
        if (n < cached && x->cache[n] == addr && reads[n + 1].ok) {
            buf = x->tstate_bufs + n * ts_size;
        } else {
            if (pi_read_exact(addr, one, ts_size) != 0)
                break; /* the thread ended while we read: the rest waits for next tick */
            s->stats.syscalls++;
            buf = one;
        }
        x->addrs[n] = addr;
        pi_parse_tstate(buf, addr, &x->states[n]);
        addr = x->states[n].next;
        /* a state pointing back into the list is a torn read */
        for (size_t k = 0; k <= n && addr; k++)
            if (x->addrs[k] == addr)
                addr = 0;
    }
    if (GROW(x->cache, x->cache_cap, n) == 0) {
        memcpy(x->cache, x->addrs, n * sizeof *x->addrs);
        x->cache_len = n;
    }
    *addrs_out = x->addrs;
    *states_out = x->states;
    return n;
}

unsigned long walked_native_id(const pi_walker *w)
{
    return pi_runtime_layout.has_native_thread_id ? w->ts.native_id : pi_native_id_of(w->ts.thread_id);
}
