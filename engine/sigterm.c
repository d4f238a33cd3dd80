/*
 * sigterm.c: a profiled child process still dies of SIGTERM (--subprocesses).
 *
 * A profiled child saves its profile in a Python SIGTERM handler, then dies of the
 * signal. Python runs that handler in the main thread, between bytecodes, and only
 * notices a signal when it arrives there or interrupts a blocking call. A SIGTERM
 * that arrives just before the main thread blocks (a pool worker about to wait for
 * the task queue's lock, which Pool.terminate() holds for good) is acted on when
 * something next interrupts that wait, maybe never; a main thread stuck in C code
 * never gets to run it either. The child would outlive the SIGTERM meant to end it.
 *
 * pi_guard_sigterm puts a C handler in front of Python's. From the first SIGTERM on,
 * a timer sends SIGTERM again every `nudge` seconds: each interrupts whatever the
 * main thread waits in, so Python's handler runs; the first after `deadline` seconds
 * ends the process the default way, saved or not. Called again (by the Python handler
 * once it runs), it sets a new deadline, counted from the next SIGTERM. Only
 * async-signal-safe calls in the handler.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct sigaction python_action; /* the handler ours runs in front of */
static timer_t timer;
static atomic_int timer_pid;           /* POSIX timers are not inherited by fork */
static int64_t nudge_ns, deadline_ns;
static _Atomic int64_t dies_at;        /* 0 until the first SIGTERM */

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die_of_sigterm(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &dfl, NULL);
    raise(SIGTERM); /* blocked while this handler runs: it kills as the handler returns */
}

static void on_sigterm(int sig, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    if (atomic_load(&timer_pid) == getpid()) {
        int64_t now = monotonic_ns(), first = 0;
        if (atomic_compare_exchange_strong(&dies_at, &first, now + deadline_ns)) {
            struct timespec every = {(time_t)(nudge_ns / 1000000000), (long)(nudge_ns % 1000000000)};
            struct itimerspec nudges = {every, every};
            timer_settime(timer, 0, &nudges, NULL);
        } else if (now >= first) {
            die_of_sigterm();
            errno = saved_errno;
            return;
        }
    }
    errno = saved_errno;
    if (python_action.sa_flags & SA_SIGINFO)
        python_action.sa_sigaction(sig, info, context);
    else
        python_action.sa_handler(sig);
}

int pi_guard_sigterm(double nudge, double deadline)
{
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0)
        return -1;
    bool ours = (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigterm;
    if (!ours && !(current.sa_flags & SA_SIGINFO) &&
        (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN))
        return -1; /* no handler to put ours in front of */
    if (atomic_load(&timer_pid) != getpid()) {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = SIGTERM;
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0)
            return -1;
        atomic_store(&timer_pid, getpid());
    }
    nudge_ns = (int64_t)(nudge * 1e9);
    deadline_ns = (int64_t)(deadline * 1e9);
    atomic_store(&dies_at, 0);
    if (!ours) {
        python_action = current;
        struct sigaction action = current; /* Python's mask and flags, our function */
        action.sa_flags |= SA_SIGINFO;
        action.sa_sigaction = on_sigterm;
        if (sigaction(SIGTERM, &action, NULL) != 0)
            return -1;
    }
    return 0;
}
