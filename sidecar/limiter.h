/* limiter.h - how hard this pod may push its MediaWiki ("don't DDoS ourselves").
 *
 * Three mechanisms, all per pod:
 * - a concurrency limit on wikis being drained at once, between 1 and [sidecar]
 *   workers, adapted to how MediaWiki copes: halved (at most once per second) when a
 *   batch comes back slow or with a server-side failure, grown back by one slot per
 *   `limit` good batches (additive increase, multiplicative decrease);
 * - a token bucket of [drain] batches_per_second across all workers;
 * - a circuit breaker for the local MediaWiki: when it refuses connections, or fails
 *   on several different wikis in a row, draining pauses (the caller releases its
 *   leases, so healthy pods take over), then a single probe batch decides whether to
 *   resume; each failed probe doubles the pause up to backoff_max.
 * Thread-safe. */
#ifndef JD_LIMITER_H
#define JD_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "response.h"

struct limiter;

struct limiter *limiter_new(const struct config *cfg);
void limiter_free(struct limiter *l);

/* Blocks until one more wiki may be drained (a concurrency slot). Returns 0, or
 * -ECANCELED after limiter_stop. */
int limiter_enter(struct limiter *l);
/* Gives the slot back. */
void limiter_exit(struct limiter *l);

/* Blocks until the batch rate allows one more batch. -ECANCELED after limiter_stop. */
int limiter_pace(struct limiter *l);

/* Reports a finished batch. Returns the monotonic time until which draining must
 * pause (the breaker opened), or 0. */
int64_t limiter_report(struct limiter *l, const struct batch_result *r, const char *wiki);

/* True while the breaker is open: finish the batch in flight, release, take no more. */
bool limiter_breaker_open(struct limiter *l);

void limiter_stop(struct limiter *l);

/* A batch that took this much longer than maxtime counts as slow (MediaWiki stops a
 * batch at maxtime between jobs, so a healthy one ends soon after it). */
bool limiter_is_slow(const struct config *cfg, const struct batch_result *r);

#endif
