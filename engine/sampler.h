/* sampler.h: the sampling thread's control block (sampler.c), used by module.c. */
#ifndef PI_SAMPLER_H
#define PI_SAMPLER_H

#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct pi_sampler {
    pi_state state;
    pthread_t thread;
    bool running;
    bool paused; /* running, but its thread is joined while the process forks */
    pid_t owner_pid;
    atomic_int stop_requested; /* PI_RUN, PI_STOP (after a last tick) or PI_PAUSE */
    /* the thread sleeps on this condition, so stop() need not wait for the next tick */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    int64_t interval_ns;
    int64_t first_deadline_ns; /* the thread's deadlines count from here */
    atomic_int tid;            /* the sampling thread's kernel id, once it runs */
    struct pi_sampler *next_running; /* the list pi_samplers_pause/resume go through */
} pi_sampler;

int pi_sampler_init(pi_sampler *s, double interval, unsigned long only_thread, size_t timeline_budget);
int pi_sampler_start(pi_sampler *s, char *err, size_t errlen);
void pi_sampler_stop(pi_sampler *s);
void pi_sampler_free(pi_sampler *s);
/* around os.fork(): the sampling threads are joined, so the process forks with one
 * thread as it would unprofiled (CPython 3.12+ warns about forking with threads) */
void pi_samplers_pause(void);
void pi_samplers_resume(void);

#endif
