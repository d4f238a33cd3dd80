/*
 * sampler.c: the sampling thread.
 *
 * A pthread with no Python thread state: it never takes the GIL and never calls
 * the C API. It sleeps to absolute deadlines (so its own work does not stretch the
 * interval), skips deadlines it missed instead of bursting, and blocks every signal
 * so that Ctrl-C and friends still reach Python's main thread.
 */
#define _GNU_SOURCE
#include "sampler.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t pi_thread_cpu_ns(unsigned long native_id)
{
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
    if (pi_read_exact(self, words, sizeof words) != 0)
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

enum { PI_RUN, PI_STOP, PI_PAUSE };

/* Sleeps until the absolute CLOCK_MONOTONIC deadline; false when asked to stop first. */
static bool sleep_until(pi_sampler *s, int64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
    pthread_mutex_lock(&s->wake_lock);
    while (atomic_load(&s->stop_requested) == PI_RUN &&
           pthread_cond_timedwait(&s->wake, &s->wake_lock, &ts) != ETIMEDOUT)
        ;
    bool run = atomic_load(&s->stop_requested) == PI_RUN;
    pthread_mutex_unlock(&s->wake_lock);
    return run;
}

static void *sampler_main(void *arg)
{
    pi_sampler *s = arg;
    atomic_store(&s->tid, (int)syscall(SYS_gettid));
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* default 50 us slack would stretch 0.1 ms ticks */
    pi_native_id_discover();
    int64_t deadline = s->first_deadline_ns;
    for (;;) {
        deadline += s->interval_ns;
        int64_t now = monotonic_ns();
        if (now > deadline) {
            /* overran: skip the missed deadlines rather than sampling in a burst */
            int64_t missed = (now - deadline) / s->interval_ns + 1;
            s->state.stats.missed_ticks += (uint64_t)missed;
            deadline += missed * s->interval_ns;
        }
        if (!sleep_until(s, deadline))
            break;
        int64_t start = monotonic_ns();
        pi_tick(&s->state, start);
        s->state.stats.tick_ns_total += (uint64_t)(monotonic_ns() - start);
    }
    /* stopping: the time since the last tick is a sample too, of its real length */
    if (atomic_load(&s->stop_requested) == PI_STOP)
        pi_tick(&s->state, monotonic_ns());
    return NULL;
}

int pi_sampler_init(pi_sampler *s, double interval, unsigned long only_thread, size_t timeline_budget)
{
    memset(s, 0, sizeof *s);
    s->interval_ns = (int64_t)(interval * 1e9);
    if (s->interval_ns < 10000)
        s->interval_ns = 10000;
    atomic_store(&s->stop_requested, PI_RUN);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&s->wake_lock, NULL);
    return pi_state_init(&s->state, only_thread, s->interval_ns, timeline_budget);
}

/* the samplers whose thread runs (or is paused around a fork), for pi_samplers_pause */
static pi_sampler *running_samplers;
static pthread_mutex_t running_samplers_lock = PTHREAD_MUTEX_INITIALIZER;

static void forget_running(pi_sampler *s)
{
    pthread_mutex_lock(&running_samplers_lock);
    for (pi_sampler **link = &running_samplers; *link; link = &(*link)->next_running) {
        if (*link == s) {
            *link = s->next_running;
            break;
        }
    }
    pthread_mutex_unlock(&running_samplers_lock);
}

static int start_thread(pi_sampler *s, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    atomic_store(&s->stop_requested, PI_RUN);
    atomic_store(&s->tid, 0);
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0 && err)
        snprintf(err, errlen, "could not start the sampling thread: %s", strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Asks the thread to end (PI_STOP or PI_PAUSE) and waits for it. */
static void end_thread(pi_sampler *s, int how)
{
    pthread_mutex_lock(&s->wake_lock);
    atomic_store(&s->stop_requested, how);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->wake_lock);
    pthread_join(s->thread, NULL);
}

/* pthread_join returns when the kernel clears the thread's id, a moment before the
 * thread leaves the process's thread count, which os.fork() reads (/proc/self/stat) */
static void wait_until_gone(pi_sampler *s)
{
    char task[64];
    snprintf(task, sizeof task, "/proc/self/task/%d", atomic_load(&s->tid));
    for (int i = 0; i < 10000 && atomic_load(&s->tid) > 0 && access(task, F_OK) == 0; i++)
        sched_yield();
}

int pi_sampler_start(pi_sampler *s, char *err, size_t errlen)
{
    if (s->running)
        return 0;
    /* time starts now, not when the new thread first runs (on a busy machine, later) */
    s->state.last_tick_ns = s->first_deadline_ns = monotonic_ns();
    if (start_thread(s, err, errlen) != 0)
        return -1;
    s->running = true;
    s->paused = false;
    s->owner_pid = getpid();
    pthread_mutex_lock(&running_samplers_lock);
    s->next_running = running_samplers;
    running_samplers = s;
    pthread_mutex_unlock(&running_samplers_lock);
    return 0;
}

void pi_sampler_stop(pi_sampler *s)
{
    if (!s->running)
        return;
    forget_running(s);
    /* after fork the child has no sampling thread to join */
    if (s->owner_pid == getpid() && !s->paused)
        end_thread(s, PI_STOP);
    s->running = false;
    s->paused = false;
}

void pi_sampler_free(pi_sampler *s)
{
    pi_sampler_stop(s);
    pi_state_free(&s->state);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->wake_lock);
}

void pi_samplers_pause(void)
{
    pthread_mutex_lock(&running_samplers_lock);
    for (pi_sampler *s = running_samplers; s; s = s->next_running) {
        if (s->owner_pid == getpid() && !s->paused) {
            end_thread(s, PI_PAUSE);
            wait_until_gone(s);
            s->paused = true;
        }
    }
    pthread_mutex_unlock(&running_samplers_lock);
}

void pi_samplers_resume(void)
{
    pthread_mutex_lock(&running_samplers_lock);
    for (pi_sampler *s = running_samplers; s; s = s->next_running) {
        if (s->owner_pid != getpid() || !s->paused)
            continue;
        /* the next tick's wall time covers the fork: only the deadlines start again */
        s->first_deadline_ns = monotonic_ns();
        if (start_thread(s, NULL, 0) == 0)
            s->paused = false;
    }
    pthread_mutex_unlock(&running_samplers_lock);
}
