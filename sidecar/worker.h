/* worker.h - the drain loop: a fixed pool of threads, each taking the next wiki from
 * the scheduler and running batches on it until MediaWiki says none-ready, a batch
 * fails, or the scheduler says to move on. */
#ifndef JD_WORKER_H
#define JD_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "limiter.h"
#include "sched.h"

struct workers;

/* Starts cfg->workers threads, paced by lim. abort_now cuts batches in flight short
 * when set. Returns NULL (and starts nothing) on failure. */
struct workers *workers_start(const struct config *cfg, struct sched *s, struct limiter *lim,
			      const atomic_bool *abort_now);

/* Waits until every worker has returned (after sched_stop) or the monotonic deadline
 * passes. Returns true when all have returned. */
bool workers_wait(struct workers *w, int64_t deadline_ms);
/* A reload: each worker's next batch follows cfg (the caller keeps it alive until exit). */
void workers_set_config(struct workers *w, const struct config *cfg);

/* Joins every thread (they must be on their way out) and frees. Accepts NULL. */
void workers_join_free(struct workers *w);

#endif
