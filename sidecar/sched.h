/* sched.h - which wiki a worker drains next, and whether it may go on.
 *
 * The one interface between the drain loop and "who may run what", answered from the
 * coordination database (coord.h), so that every sidecar of the fleet follows the same
 * rules:
 * - a wiki is drained under a lease: at most one worker of the whole fleet per wiki
 *   (per lease slot; max_workers_per_wiki > 1 opens extra slots for idle workers);
 * - the wiki whose oldest ready job has waited longest goes first, where a wiki's wait
 *   starts at the later of its oldest ready job and its last service, so a wiki just
 *   served never jumps ahead of one waiting;
 * - a worker keeps a wiki at most a time slice while others wait;
 * - every batch starts right after the database confirmed (renewed) the lease, and
 *   only if the lease is trusted locally (until lease_ttl - safety_margin after that
 *   confirmation) for longer than the batch can last; a renew that finds the lease
 *   gone, or cannot reach the database, ends the work on that wiki.
 * Thread-safe: one struct sched per process, one struct sched_worker per thread. */
#ifndef JD_SCHED_H
#define JD_SCHED_H

#include <stdint.h>

#include "config.h"
#include "coord.h"
#include "response.h"
#include "wiki.h"

struct sched;
struct sched_worker;

struct sched_ticket {
	struct wiki *wiki;        /* the worker's own copy: it frees it with wiki_free */
	struct coord_lease lease; /* the lease it drains under */
	int64_t started_ms;       /* monotonic */
	int64_t confirmed_ms;     /* monotonic: when the lease was last confirmed */
	int64_t trusted_until;    /* monotonic: confirmed_ms + lease_ttl - safety_margin */
	int failures;             /* the wiki's consecutive failures before this ticket */
	int batches;              /* batches run under this ticket (the worker counts) */
	int jobs_run;             /* jobs MediaWiki ran under it, ok or failed */
};

struct sched *sched_new(const struct config *cfg);
void sched_free(struct sched *s);

/* Replaces this pod's view of the wikis (from discovery: secrets, databases). Takes
 * ownership of the list's wikis and empties it. Returns 0 or -ENOMEM. */
int sched_set_wikis(struct sched *s, struct wiki_list *list);

/* The shared backlog just changed (this pod's scan wrote it): idle workers look at it
 * now rather than at their next poll. */
void sched_poke(struct sched *s);

/* The coordination schema exists: workers may start asking for leases. */
void sched_set_ready(struct sched *s);

/* A pod-wide pause: no new leases until then (monotonic ms); e.g. local MediaWiki is
 * refusing connections, so other pods should drain. */
void sched_pause_until(struct sched *s, int64_t until_ms);

struct sched_worker *sched_worker_new(struct sched *s, int id);
void sched_worker_free(struct sched_worker *w);

/* Blocks until this worker holds a lease on a wiki with work. Returns 0, or
 * -ECANCELED once sched_stop was called. */
int sched_next(struct sched_worker *w, struct sched_ticket *t);

/* Before another batch on the same wiki: renews the lease and says whether to go on.
 * False when stopping, when the lease is lost or cannot be confirmed, or when the time
 * slice is over and another wiki is waiting. */
bool sched_may_continue(struct sched_worker *w, struct sched_ticket *t);

/* Releases the lease and records the last batch's outcome for the fleet (backoff,
 * parking, last served). *backoff_ms tells how long the wiki is backed off (0 if
 * not). */
void sched_done(struct sched_worker *w, struct sched_ticket *t, const struct batch_result *last,
		int64_t *backoff_ms);

/* Wakes every sched_next caller with -ECANCELED; later calls return it at once. */
void sched_stop(struct sched *s);

/* Exponential backoff with full jitter, floored at backoff_base. */
int64_t sched_backoff_ms(const struct config *cfg, enum batch_outcome o, int failures);

#endif
