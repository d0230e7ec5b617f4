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
	int64_t ready_age_ms;     /* its oldest ready job's age at started_ms (-1: unknown) */
	int batches;              /* batches run under this ticket (the worker counts) */
	int jobs_run;             /* jobs MediaWiki ran under it, ok or failed */
	int no_progress;          /* batches in a row that said "more" but ran no job */
	/* The job-type lists ([drain] priority_types, skip_types), when set: */
	char types[256];       /* job types the last scan saw ready on the wiki */
	char types_seen[32];   /* that scan's start: a newer scan clears `tried` */
	char tried[256];       /* types that answered "none left" under this ticket */
	char last_type[64];    /* the type the last batch asked for */
	int64_t types_read_ms; /* monotonic: when `types` was read */
	/* Batch growth ([mediawiki] maxjobs_alone): */
	int maxjobs;     /* what the last batch asked for (0: none yet) */
	int64_t last_ms; /* how long the last batch took */
	int last_jobs;   /* how many jobs it ran, ok or failed */
	/* Lanes (lanes.h): the most this wiki may have; [drain] max_workers_per_wiki, or
	 * drain --lanes. */
	int lanes_cap;
};

/* Batches in a row without progress after which a wiki backs off. */
#define SCHED_NO_PROGRESS_LIMIT 2

/* The job type the next batch asks for (jobtype_next over the ticket's ready types;
 * "" for any type). Re-reads the wiki's ready types at most once a second, so a
 * priority job (or, with skip_types, a new type) queued behind a long backlog is asked
 * for within a scan interval and a batch. False: nothing this pod may run is left (only types of
 * skip_types, or every type tried). */
bool sched_batch_type(struct sched_worker *w, struct sched_ticket *t, char *type, size_t len);

/* sched_batch_type said nothing is left before any batch ran: the wiki counts as
 * drained (and parks, as no job ran), with r saying why. */
void sched_only_skipped_types(const struct sched_ticket *t, struct batch_result *r);

/* After a typed batch: a type that answered none-ready or none-possible (MediaWiki's
 * word for a type it does not know or has backed off) goes into t->tried, and the
 * answer counts as that type drained (r->outcome becomes drained). True when the
 * batch should be followed by one of another type. */
bool sched_type_answered(struct sched_ticket *t, const struct config *cfg, struct batch_result *r);

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

/* A reload: batches from now on follow cfg (the caller keeps it alive until exit;
 * keys that cannot change live are the same as before, config_keep_static). */
void sched_set_config(struct sched *s, const struct config *cfg);

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

/* The operator's `drain --wiki`: takes the wiki's lease in `slot` now (0: its first
 * lane; more with --lanes), whatever its backoff or parking (but never from a holder).
 * t->wiki = wiki (the caller still owns it). 1 got it, 0 another holder has it, -EPERM
 * paused, -EIO (message in err). */
int sched_take(struct sched_worker *w, struct wiki *wiki, int slot, struct sched_ticket *t,
	       char *err, size_t errlen);

/* After each batch, in the daemon's workers and `drain --wiki` alike: counts it in the
 * ticket (batches, jobs run, batches in a row without progress, how long it took). */
void sched_batch_ran(struct sched_ticket *t, const struct batch_result *r);

/* The one rule for draining on after a batch, from what it came to (both drain
 * loops): only while MediaWiki says there is more, the breaker is not open, and the
 * wiki has not made no progress SCHED_NO_PROGRESS_LIMIT times in a row (then it backs
 * off). Pure. The daemon's workers also ask sched_may_continue (the time slice). */
bool sched_keep_draining(const struct sched_ticket *t, const struct batch_result *r,
			 const struct health_verdict *v, bool breaker_open);

/* The one rule for a batch's size (RunJobs maxjobs), before each batch: [mediawiki]
 * maxjobs on the ticket's first batch, after a batch that ran no job, and whenever
 * another wiki this pod serves waits for a worker; while none waits, as many jobs as
 * the last batch's pace fits in sched_batch_target_ms (a third of maxtime), at most
 * twice the last batch's and at most maxjobs_alone, never fewer than maxjobs. Every
 * batch pays a MediaWiki start-up (tens of ms): a lone backlog drains in fewer, bigger
 * batches, slow jobs included (100 jobs of 20 ms take 2 s: the next asks for 200),
 * while a batch in flight when a wiki starts waiting lasts about the target (or one
 * maxjobs batch, if that is longer), and the next is maxjobs again. A third of maxtime
 * leaves room for jobs that slow down threefold before maxtime, not the size, ends a
 * batch. Records the size in t. Pure. */
int sched_batch_size(const struct config *cfg, struct sched_ticket *t, bool others_wait);

/* The duration sched_batch_size aims a lone wiki's batches at: maxtime / 3, in ms. */
int sched_batch_target_ms(const struct config *cfg);

/* sched_batch_size for a daemon worker: whether others wait comes from the pod's
 * candidate list (refreshed at most every poll_interval_ms). */
int sched_next_batch_size(struct sched_worker *w, struct sched_ticket *t);

/* After each batch (both drain loops): if it tells of contention on its wiki (lanes.h),
 * reduces the lanes the wiki may use, fleet-wide, and logs it with why. */
void sched_lanes_after_batch(struct sched_worker *w, struct sched_ticket *t,
			     const struct batch_result *r);

/* Whether an extra lane (slot > 0) is still within the lanes its wiki may use now
 * (lanes_allowed of t->lanes_cap); when not, logs that it hands the lane back. Slot 0
 * always fits. */
bool sched_lane_fits(struct sched_worker *w, struct sched_ticket *t);

/* Whether the ticket's time slice ([sidecar] time_slice from its start) is over at
 * now (monotonic ms). Pure. */
bool sched_slice_over(const struct config *cfg, const struct sched_ticket *t, int64_t now);

/* After a batch: whether another batch on the same wiki may follow. False when
 * stopping, when this extra lane's slot is no longer within the lanes the wiki may use
 * (lanes.h; logged), and with the fleet's rules (fleet: a daemon worker) when the time
 * slice is over (or this is an extra lane) and another wiki is waiting. */
bool sched_may_continue(struct sched_worker *w, struct sched_ticket *t, bool fleet);

/* Whether sched_stop was called: the drain that ends now ends for a stop. */
bool sched_worker_stopping(struct sched_worker *w);

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
