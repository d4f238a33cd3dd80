/* sampler.h: the profilers' subscriptions to the process's sampling thread (sampler.c),
 * used by module.c. */
#ifndef PI_SAMPLER_H
#define PI_SAMPLER_H

#include "engine.h"

#include <sys/types.h>

/* One profiler's subscription: what it samples and when. The process's one sampling
 * thread ticks each running subscription at its own interval. */
typedef struct pi_sampler {
    pi_state state;
    bool running;
    pid_t owner_pid;          /* a forked child's copy is no subscription of its own */
    int64_t interval_ns;
    int64_t next_deadline_ns; /* its next tick */
    bool ticking;             /* the sampling thread ticks it (unlocked) */
    struct pi_sampler *next;  /* the running subscriptions */
} pi_sampler;

int pi_sampler_init(pi_sampler *s, double interval, unsigned long only_thread, size_t timeline_budget);
/* Subscribes; starts the sampling thread the first time (the only thread ever made). */
int pi_sampler_start(pi_sampler *s, char *err, size_t errlen);
/* Unsubscribes, after a last tick covering the time since the previous one. */
void pi_sampler_stop(pi_sampler *s);
void pi_sampler_free(pi_sampler *s);
/* around os.fork(): the sampling thread is joined, so the process forks with one
 * thread as it would unprofiled (CPython 3.12+ warns about forking with threads) */
void pi_samplers_pause(void);
void pi_samplers_resume(void);

#endif
