/*
 * sampler.c: the process's one sampling thread.
 *
 * Every profiler subscribes to the same thread, made at the first start() and kept
 * (idle, asleep) after the last stop(): starting or stopping a profiler makes no
 * thread. It is a pthread with no Python thread state: it never takes the GIL and
 * never calls the C API. It sleeps to the earliest absolute deadline of the running
 * subscriptions (so its own work does not stretch their intervals), ticks those due,
 * skips deadlines they overran instead of bursting, and blocks every signal so that
 * Ctrl-C and friends still reach Python's main thread.
 */
#define _GNU_SOURCE
#include "sampler.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
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

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The process's one sampling thread and the subscriptions it ticks. `lock` guards all
 * of it: the thread holds it while it ticks and sleeps on `wake` in between, so that a
 * subscription starting or stopping (which signals `wake`) is seen at once. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t ticked; /* a subscription's tick ended */
    pi_sampler *subscribers;
    pthread_t thread;
    bool thread_running;
    bool pausing; /* the thread is asked to end, before a fork */
    bool paused;  /* it ended for a fork, and starts again after it */
    atomic_int tid;
    atomic_int pid; /* the process all this belongs to (0: not made yet) */
    /* the thread's own: the subscriptions due in a round, and the reads they share */
    pi_sampler **due;
    pi_state **states; /* theirs, for pi_tick_group */
    size_t due_cap;    /* of both */
    pi_state reader, async_reader; /* of the subscriptions outside async mode, and in it */
    bool reader_ready, async_reader_ready;
    uint64_t reader_generation; /* each new reader's, so that translations start over */
} hub;

/* Locks the hub, first making it this process's: at first use, and in a forked child,
 * where the parent's thread does not exist and its subscriptions are not the child's. */
static void hub_enter(void)
{
    pid_t pid = getpid();
    if (atomic_load(&hub.pid) != pid) {
        /* callers hold the GIL here (start, and the fork hooks): no other thread races */
        pthread_mutex_init(&hub.lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&hub.wake, &attr);
        pthread_condattr_destroy(&attr);
        pthread_cond_init(&hub.ticked, NULL);
        hub.subscribers = NULL;
        hub.thread_running = hub.pausing = hub.paused = false;
        /* a parent's thread may have been mid-tick: what it held is left, not freed */
        hub.due = NULL;
        hub.states = NULL;
        hub.due_cap = 0;
        hub.reader_ready = hub.async_reader_ready = false;
        atomic_store(&hub.pid, pid);
    }
    pthread_mutex_lock(&hub.lock);
}

/* After a subscription's tick: its cost, and its next deadline, skipping deadlines it
 * overran rather than sampling in a burst. */
static void ticked(pi_sampler *s, int64_t start, int64_t end)
{
    s->state.stats.tick_ns_total += (uint64_t)(end - start);
    s->next_deadline_ns += s->interval_ns;
    if (end > s->next_deadline_ns) {
        int64_t missed = (end - s->next_deadline_ns) / s->interval_ns + 1;
        s->state.stats.missed_ticks += (uint64_t)missed;
        s->next_deadline_ns += missed * s->interval_ns;
    }
}

static void tick_subscriber(pi_sampler *s)
{
    int64_t start = monotonic_ns();
    pi_tick(&s->state, start);
    ticked(s, start, monotonic_ns());
}

/* Room for n due subscriptions, and their states, in the thread's round arrays. */
static int due_grow(size_t n)
{
    if (n <= hub.due_cap)
        return 0;
    size_t cap = hub.due_cap ? hub.due_cap * 2 : 16;
    pi_sampler **due = realloc(hub.due, cap * sizeof *due);
    if (due)
        hub.due = due;
    pi_state **states = realloc(hub.states, cap * sizeof *states);
    if (states)
        hub.states = states;
    if (!due || !states)
        return -1;
    hub.due_cap = cap;
    return 0;
}

/* A reader for shared ticks, made at first need. */
static bool reader_ready(pi_state *reader, bool *ready)
{
    if (!*ready && pi_state_init(reader, 0, 0, 0) == 0) {
        reader->generation = ++hub.reader_generation;
        *ready = true;
    }
    return *ready;
}

/* Subscriptions due together, all in async mode or none: one alone ticks with its own
 * reads (and caches), several share a reader's. Async ones share it with those
 * profiling the same thread (due sorted by it). */
static void tick_together(pi_sampler **due, size_t count, bool async)
{
    pi_state *reader = async ? &hub.async_reader : &hub.reader;
    bool shared = count > 1 && reader_ready(reader, async ? &hub.async_reader_ready : &hub.reader_ready);
    for (size_t first = 0, n; first < count; first += n) {
        n = 1;
        while (shared && first + n < count &&
               (!async || due[first + n]->state.async_thread == due[first]->state.async_thread))
            n++;
        if (n == 1) {
            tick_subscriber(due[first]);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            hub.states[i] = &due[first + i]->state;
        int64_t start = monotonic_ns();
        if (async)
            pi_tick_async_group(reader, hub.states, n, start);
        else
            pi_tick_group(reader, hub.states, n, start);
        int64_t end = monotonic_ns();
        for (size_t i = 0; i < n; i++)
            ticked(due[first + i], start, end);
    }
}

static int by_async_thread(const void *a, const void *b)
{
    unsigned long x = (*(pi_sampler *const *)a)->state.async_thread;
    unsigned long y = (*(pi_sampler *const *)b)->state.async_thread;
    return (x > y) - (x < y);
}

/* Ticks the subscriptions due now, those in async mode (`async`) or the others. */
static void tick_due(int64_t now, bool async)
{
    size_t due = 0;
    for (pi_sampler *s = hub.subscribers; s; s = s->next) {
        if (s->next_deadline_ns <= now && s->state.async.enabled == async && due_grow(due + 1) == 0) {
            hub.due[due++] = s;
            s->ticking = true;
        }
    }
    if (due == 0)
        return;
    if (async)
        qsort(hub.due, due, sizeof *hub.due, by_async_thread);
    pthread_mutex_unlock(&hub.lock);
    tick_together(hub.due, due, async);
    pthread_mutex_lock(&hub.lock);
    for (size_t i = 0; i < due; i++)
        hub.due[i]->ticking = false;
    pthread_cond_broadcast(&hub.ticked);
}

/* The readers' caches and identities go when no profiler runs (hub locked, the thread's). */
static void reset_readers(void)
{
    if (hub.reader_ready)
        pi_state_free(&hub.reader);
    if (hub.async_reader_ready)
        pi_state_free(&hub.async_reader);
    hub.reader_ready = hub.async_reader_ready = false;
}

static void *hub_main(void *arg)
{
    (void)arg;
    atomic_store(&hub.tid, (int)syscall(SYS_gettid));
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* default 50 us slack would stretch 0.1 ms ticks */
    prctl(PR_SET_NAME, "pyinstrument", 0, 0, 0); /* as top -H and /proc/PID/task/TID/comm show it */
    pi_native_id_discover();
    int64_t rest_until = 0;
    pthread_mutex_lock(&hub.lock);
    while (!hub.pausing) {
        int64_t next = INT64_MAX;
        for (pi_sampler *s = hub.subscribers; s; s = s->next)
            if (s->next_deadline_ns < next)
                next = s->next_deadline_ns;
        if (next == INT64_MAX) {
            pthread_cond_wait(&hub.wake, &hub.lock); /* idle until a profiler starts */
            continue;
        }
        if (next < rest_until)
            next = rest_until;
        int64_t now = monotonic_ns();
        if (now < next) {
            struct timespec ts = {(time_t)(next / 1000000000), (long)(next % 1000000000)};
            pthread_cond_timedwait(&hub.wake, &hub.lock, &ts);
            continue;
        }
        /* ticks run unlocked, so that start() and stop() never wait for a round; stop()
           waits for its subscription's own tick to end (`ticking`). Subscriptions due
           together share one tick, each thread read once for all: outside async mode
           all of them, in it those of one thread (their contexts decide what each
           records) */
        int64_t round_cpu = thread_cpu_ns();
        tick_due(now, false);
        if (!hub.pausing)
            tick_due(now, true);
        if (!hub.subscribers)
            reset_readers(); /* idle: what the shared reads cached goes */
        /* at most half of a core: a round is followed by a rest as long as the CPU time
           it took (not its wall time, which a busy machine stretches by preempting it),
           its subscriptions' deadlines meanwhile skipped (counted as missed ticks) */
        rest_until = monotonic_ns() + (thread_cpu_ns() - round_cpu);
    }
    pthread_mutex_unlock(&hub.lock);
    return NULL;
}

int pi_sampler_init(pi_sampler *s, double interval, unsigned long only_thread, size_t timeline_budget)
{
    memset(s, 0, sizeof *s);
    s->interval_ns = (int64_t)(interval * 1e9);
    if (s->interval_ns < 10000)
        s->interval_ns = 10000;
    return pi_state_init(&s->state, only_thread, s->interval_ns, timeline_budget);
}

/* Starts the sampling thread (hub locked). */
static int start_thread(char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    atomic_store(&hub.tid, 0);
    hub.pausing = false;
    int rc = pthread_create(&hub.thread, NULL, hub_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0 && err)
        snprintf(err, errlen, "could not start the sampling thread: %s", strerror(rc));
    hub.thread_running = rc == 0;
    return rc == 0 ? 0 : -1;
}

/* pthread_join returns when the kernel clears the thread's id, a moment before the
 * thread leaves the process's thread count, which os.fork() reads (/proc/self/stat) */
static void wait_until_gone(void)
{
    char task[64];
    snprintf(task, sizeof task, "/proc/self/task/%d", atomic_load(&hub.tid));
    for (int i = 0; i < 10000 && atomic_load(&hub.tid) > 0 && access(task, F_OK) == 0; i++)
        sched_yield();
}

int pi_sampler_start(pi_sampler *s, char *err, size_t errlen)
{
    if (s->running)
        return 0;
    hub_enter();
    if (!hub.thread_running && !hub.paused && start_thread(err, errlen) != 0) {
        pthread_mutex_unlock(&hub.lock);
        return -1;
    }
    /* time starts now, not when the thread first ticks (on a busy machine, later) */
    int64_t now = monotonic_ns();
    s->state.last_tick_ns = now;
    /* on the grid of its interval, so that profilers at one interval tick together */
    s->next_deadline_ns = (now / s->interval_ns + 1) * s->interval_ns;
    s->running = true;
    s->owner_pid = getpid();
    s->next = hub.subscribers;
    hub.subscribers = s;
    pthread_cond_signal(&hub.wake);
    pthread_mutex_unlock(&hub.lock);
    return 0;
}

void pi_sampler_stop(pi_sampler *s)
{
    if (!s->running)
        return;
    s->running = false;
    if (s->owner_pid != getpid())
        return; /* the copy a forked child inherited: its parent's subscription */
    hub_enter();
    while (s->ticking)
        pthread_cond_wait(&hub.ticked, &hub.lock);
    for (pi_sampler **link = &hub.subscribers; *link; link = &(*link)->next) {
        if (*link == s) {
            *link = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&hub.lock);
    /* the time since the last tick is a sample too, of its real length: taken here,
       where it is credited to stop()'s caller */
    pi_tick(&s->state, monotonic_ns());
}

void pi_sampler_free(pi_sampler *s)
{
    pi_sampler_stop(s);
    pi_state_free(&s->state);
}

void pi_samplers_pause(void)
{
    if (atomic_load(&hub.pid) != getpid())
        return;
    pthread_mutex_lock(&hub.lock);
    bool running = hub.thread_running;
    hub.pausing = running;
    pthread_cond_signal(&hub.wake);
    pthread_mutex_unlock(&hub.lock);
    if (!running)
        return;
    pthread_join(hub.thread, NULL);
    wait_until_gone();
    pthread_mutex_lock(&hub.lock);
    hub.thread_running = hub.pausing = false;
    hub.paused = true;
    pthread_mutex_unlock(&hub.lock);
}

void pi_samplers_resume(void)
{
    if (atomic_load(&hub.pid) != getpid())
        return; /* a forked child: its parent's thread is not its own */
    pthread_mutex_lock(&hub.lock);
    if (hub.paused) {
        /* the next tick's wall time covers the fork: only the deadlines start again */
        int64_t now = monotonic_ns();
        for (pi_sampler *s = hub.subscribers; s; s = s->next)
            s->next_deadline_ns = (now / s->interval_ns + 1) * s->interval_ns;
        if (start_thread(NULL, 0) == 0)
            hub.paused = false;
    }
    pthread_mutex_unlock(&hub.lock);
}
