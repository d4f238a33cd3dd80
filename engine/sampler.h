/* sampler.h: the sampling thread's control block (sampler.c), used by module.c. */
#ifndef PI_SAMPLER_H
#define PI_SAMPLER_H

#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct {
    pi_state state;
    pthread_t thread;
    bool running;
    pid_t owner_pid;
    atomic_int stop_requested;
    int64_t interval_ns;
} pi_sampler;

int pi_sampler_init(pi_sampler *s, double interval, unsigned long only_thread, size_t timeline_budget);
int pi_sampler_start(pi_sampler *s, char *err, size_t errlen);
void pi_sampler_stop(pi_sampler *s);
void pi_sampler_free(pi_sampler *s);

#endif
