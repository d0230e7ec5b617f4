/* drain.h - the one drain loop: batches on one leased wiki until it is done, fails, or
 * must let go. Used by the daemon's workers (worker.c) and `drain --wiki` (cli.c) alike,
 * so that both pace, confirm the lease, pick job types, size batches, judge evidence,
 * count metrics, give lanes back and report to the fleet by the same rules; what
 * differs is said in struct drain_params and told through the hook.
 *
 * Every wait (the wiki's interval, the pod's batch rate) comes before the lease check,
 * so each batch goes out right after the database confirmed its lease. */
#ifndef JD_DRAIN_H
#define JD_DRAIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "limiter.h"
#include "response.h"
#include "runjobs.h"
#include "sched.h"

struct drain_params {
	const struct config *_Atomic const *cfg; /* read before each batch (a reload) */
	struct sched_worker *sw;
	struct runjobs *rj;
	struct limiter *lim;
	/* The daemon's fleet rules: a batch shrinks while another wiki waits, the time
	 * slice ends a drain that another wiki waits for, and extra lanes yield to
	 * waiting wikis. `drain --wiki` (false) serves its one wiki: only its lanes'
	 * allowance and a stop end it. */
	bool fleet;
	bool probe; /* the breaker's probe: the first batch's evidence says */
	/* After every batch (more: another batch of this drain follows). */
	void (*batch_done)(void *arg, const struct sched_ticket *t, const struct batch_result *r,
			   const struct health_verdict *v, bool more);
	void *arg;
};

/* How a drain ended, for the drain's log line or the command's summary. */
struct drain_result {
	struct batch_result last; /* the last batch (outcome aborted if none ran) */
	struct health_verdict verdict;
	int64_t backoff_ms;       /* the wiki is backed off this long (0: not) */
	int jobs_ok, jobs_failed; /* over the whole drain */
	int64_t ms;               /* from the lease to its release */
	bool stopped;             /* a stop (sched_stop) ended it */
	/* batch_done already had the last batch (with more = true): the drain ended before
	 * another batch went out, and that batch's line is written. */
	bool last_told;
};

/* Drains t's wiki, then releases the lease with the drain's report to the fleet
 * (sched_done). The caller still owns t->wiki. */
void drain_wiki(const struct drain_params *p, struct sched_ticket *t, struct drain_result *out);

/* "backoff 12s", "next batch", "yield to waiting wikis", ...: what follows, as the log
 * and the command say it. */
void drain_next_text(const struct batch_result *r, const struct health_verdict *v,
		     int64_t backoff_ms, bool more, char *next, size_t len);

#endif
