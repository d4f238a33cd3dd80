/*
 * memread.c: safe reads of our own process's memory, or of the one attached to.
 *
 * process_vm_readv on our own pid needs no ptrace permission, and a read of memory
 * that was unmapped meanwhile fails with EFAULT instead of crashing the program.
 * Requests are batched: one syscall carries up to IOV_MAX of them. When one request
 * faults the kernel stops there, so the batch resumes after the faulting request.
 * Where process_vm_readv is refused, a few bytes can still be read without risk of a
 * fault by having the kernel copy them through a pipe (the Python sampler does).
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PI_IOV_BATCH 512

/* The process's pid, kept: getpid() is a syscall (glibc caches it no more), one per
 * batch. A forked child forgets it in its at-fork handler, before anything runs there. */
static pid_t kept_pid;

/* The process attached to (attach.c), read in place of our own; 0: none. */
static pid_t attached_pid;

void pi_set_attached_pid(pid_t pid)
{
    attached_pid = pid;
}

pid_t pi_attached_pid(void)
{
    return attached_pid;
}

static void forget_pid(void)
{
    __atomic_store_n(&kept_pid, 0, __ATOMIC_RELAXED);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

pid_t pi_own_pid(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watch_forks);
    if (attached_pid)
        return attached_pid;
    pid_t pid = __atomic_load_n(&kept_pid, __ATOMIC_RELAXED);
    if (pid == 0) {
        pid = getpid();
        __atomic_store_n(&kept_pid, pid, __ATOMIC_RELAXED);
    }
    return pid;
}

int pi_read_exact(uintptr_t addr, void *dst, size_t len)
{
    if (len == 0)
        return 0;
    if (addr == 0 || addr + len < addr)
        return -1;
    struct iovec local = {dst, len};
    struct iovec remote = {(void *)addr, len};
    ssize_t got = process_vm_readv(pi_own_pid(), &local, 1, &remote, 1, 0);
    return got == (ssize_t)len ? 0 : -1;
}

int pi_read_via_pipe(uintptr_t addr, void *dst, size_t len)
{
    static int fds[2] = {-1, -1};
    static pid_t owner; /* a forked child makes its own: sharing one would mix the copies */
    if (len == 0 || len > PIPE_BUF || addr == 0 || addr + len < addr)
        return -1;
    if (fds[0] < 0 || owner != getpid()) {
        if (fds[0] >= 0) {
            close(fds[0]);
            close(fds[1]);
        }
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
            fds[0] = fds[1] = -1;
            return -1;
        }
        owner = getpid();
    }
    /* the kernel copies from addr (EFAULT where it is unmapped) */
    ssize_t wrote = write(fds[1], (const void *)addr, len);
    char drain[PIPE_BUF];
    ssize_t got = wrote > 0 ? read(fds[0], wrote == (ssize_t)len ? dst : drain, (size_t)wrote) : -1;
    return wrote == (ssize_t)len && got == wrote ? 0 : -1;
}

int pi_read_batch(pi_read *reads, size_t count)
{
    struct iovec local[PI_IOV_BATCH], remote[PI_IOV_BATCH];
    size_t index[PI_IOV_BATCH];
    int syscalls = 0;
    pid_t pid = pi_own_pid();
    size_t next = 0;

    for (size_t i = 0; i < count; i++)
        reads[i].ok = false;

    while (next < count) {
        size_t n = 0;
        size_t scan = next;
        for (; scan < count && n < PI_IOV_BATCH; scan++) {
            pi_read *r = &reads[scan];
            if (r->len == 0) {
                r->ok = true;
                continue;
            }
            if (r->addr == 0 || r->addr + r->len < r->addr)
                continue; /* null or wrapping address: fails without a syscall */
            local[n].iov_base = r->dst;
            local[n].iov_len = r->len;
            remote[n].iov_base = (void *)r->addr;
            remote[n].iov_len = r->len;
            index[n] = scan;
            n++;
        }
        if (n == 0)
            break;
        ssize_t got = process_vm_readv(pid, local, n, remote, n, 0);
        syscalls++;
        size_t done = 0;
        size_t bytes = got > 0 ? (size_t)got : 0;
        while (done < n && bytes >= local[done].iov_len) {
            bytes -= local[done].iov_len;
            reads[index[done]].ok = true;
            done++;
        }
        if (done == n) {
            next = scan;
        } else {
            /* request index[done] faulted (or was cut short): skip it, resume after it */
            next = index[done] + 1;
        }
    }
    return syscalls;
}

int pi_read_probe(char *err, size_t errlen)
{
    static volatile long probe_value = 0x5079496e;
    long copy = 0;
    if (pi_read_exact((uintptr_t)&probe_value, &copy, sizeof copy) == 0 && copy == probe_value)
        return 0;
    int e = errno;
    snprintf(err, errlen, "this system refuses process_vm_readv (%s), which the C sampler needs", strerror(e));
    return -1;
}
