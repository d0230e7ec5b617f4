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
#include "limiter.h"
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
	int no_progress;          /* batches in a row that said "more" but ran no job */
};

/* Batches in a row without progress after which a wiki backs off. */
#define SCHED_NO_PROGRESS_LIMIT 2

/* Wikis to try first (the breaker's probe: most recently healthy first). */
struct sched_prefer {
	char (*domains)[256];
	int n;
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

struct sched_worker *sched_worker_new(struct sched *s, int id);
void sched_worker_free(struct sched_worker *w);

/* Blocks until this worker holds a lease on a wiki with work; with prefer, one of
 * those wikis when the fresh candidate list has one. Returns 0, or -ECANCELED once
 * sched_stop was called. */
int sched_next(struct sched_worker *w, const struct sched_prefer *prefer, struct sched_ticket *t);

/* The operator's `drain --wiki`: takes the wiki's lease now, whatever its backoff or
 * parking (but never from a holder). t->wiki = wiki (the caller still owns it). 1 got
 * it, 0 another holder has it, -EIO (message in err). */
int sched_take(struct sched_worker *w, struct wiki *wiki, struct sched_ticket *t, char *err,
	       size_t errlen);

/* After each batch, in the daemon's workers and `drain --wiki` alike: counts it in the
 * ticket (batches, jobs run, batches in a row without progress). */
void sched_batch_ran(struct sched_ticket *t, const struct batch_result *r);

/* The one rule for draining on after a batch, from what it came to (both drain
 * loops): only while MediaWiki says there is more, the breaker is not open, and the
 * wiki has not made no progress SCHED_NO_PROGRESS_LIMIT times in a row (then it backs
 * off). Pure. The daemon's workers also ask sched_may_continue (the time slice). */
bool sched_keep_draining(const struct sched_ticket *t, const struct batch_result *r,
			 const struct health_verdict *v, bool breaker_open);

/* Whether the ticket's time slice ([sidecar] time_slice from its start) is over at
 * now (monotonic ms). Pure. */
bool sched_slice_over(const struct config *cfg, const struct sched_ticket *t, int64_t now);

/* After a batch: whether another batch on the same wiki may follow. False when
 * stopping, or when the time slice is over (or this is an extra slot) and another
 * wiki is waiting. */
bool sched_may_continue(struct sched_worker *w, struct sched_ticket *t);

/* Waits ms (wiki_min_interval_ms) keeping the lease: renewed whenever renew_interval
 * passes. Returns early with false on sched_stop, or when the lease is lost or cannot
 * be confirmed. */
bool sched_hold(struct sched_worker *w, struct sched_ticket *t, int64_t ms);

/* Immediately before sending a batch, after every wait: renews the lease (unless the
 * database confirmed it within the last second) and says whether it is trusted for
 * longer than a batch can last. False: send nothing, let go of the wiki. */
bool sched_confirm(struct sched_worker *w, struct sched_ticket *t);

/* The one outcome-to-report policy (the daemon's workers and `drain --wiki`): fills r
 * with what the last batch means for the wiki in the fleet's books. Returns false when
 * the lease must be given back untouched (the pod's fault: other pods take the wiki at
 * once, with no backoff or failure counted). */
bool sched_drain_report(const struct config *cfg, const struct sched_ticket *t,
			const struct batch_result *last, enum batch_fault fault,
			struct coord_drain_report *r);

/* Releases the lease and records the last batch's outcome for the fleet (backoff,
 * parking, last served) as sched_drain_report says. *backoff_ms tells how long the
 * wiki is backed off (0 if not). */
void sched_done(struct sched_worker *w, struct sched_ticket *t, const struct batch_result *last,
		enum batch_fault fault, int64_t *backoff_ms);

/* Gives a lease back untouched (no batch ran: the breaker opened meanwhile). */
void sched_give_back(struct sched_worker *w, struct sched_ticket *t);

/* The breaker closed: lift the backoffs this pod gave wikis since outage_since
 * (monotonic ms) for failures MediaWiki caused. */
void sched_clear_outage(struct sched_worker *w, int64_t outage_since);

/* Wakes every sched_next caller with -ECANCELED; later calls return it at once. */
void sched_stop(struct sched *s);

/* Exponential backoff with full jitter, floored at backoff_base. */
int64_t sched_backoff_ms(const struct config *cfg, enum batch_outcome o, int failures);

#endif
