/* limiter.h - how hard this pod may push its MediaWiki ("don't DDoS ourselves"), and
 * the one owner of "is this pod's MediaWiki healthy?".
 *
 * Three mechanisms, all per pod:
 * - a concurrency limit on wikis being drained at once, between 1 and [sidecar]
 *   workers, adapted to how MediaWiki copes: halved (at most once per second) when a
 *   batch comes back slow or with a server-side failure, grown back by one slot per
 *   `limit` good batches (additive increase, multiplicative decrease);
 * - a token bucket of [drain] batches_per_second across all workers;
 * - a circuit breaker for the local MediaWiki, fed by health_judge(): evidence decides
 *   whose fault a failed batch is (see health_judge). While it is open no new wiki is
 *   leased; after a pause (backoff_base, doubling up to [drain] probe_interval_max,
 *   never backoff_max) one probe batch goes to a wiki this pod recently drained
 *   successfully, and its success closes the breaker.
 * Thread-safe (struct limiter). struct pod_health is the pure part, clock injected,
 * for unit tests. */
#ifndef JD_LIMITER_H
#define JD_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "response.h"

/* Whose fault a finished batch is. */
enum batch_fault {
	FAULT_NONE, /* progress (or shutdown): nothing to hold against anyone */
	FAULT_WIKI, /* that wiki's own trouble: back it off fleet-wide; not the pod's */
	FAULT_POD,  /* this pod's MediaWiki: release the wiki untouched, other pods take it */
};

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_PROBING };

/* Wikis whose batches recently succeeded on this pod: the evidence base. */
#define HEALTH_RECENT 32
/* A success this old no longer vouches for the wiki when judging a failure. */
#define HEALTH_RECENT_OK_MS (5 * 60 * 1000)

struct pod_health {
	struct {
		char wiki[256];
		int64_t ok_ms;      /* its last successful batch ended */
		int64_t fail_since; /* 0, or when its current run of failures began */
		bool own;           /* a later success outlived that failure: its failures
				     * are its own until it succeeds again */
	} recent[HEALTH_RECENT];
	int nrecent;
	int64_t ok_started_ms; /* the latest start of a successful batch, any wiki */
	enum breaker_state breaker;
	int64_t open_until;
	int64_t open_ms;      /* current pause between probes */
	int64_t opened_ms;    /* when it last opened from closed */
	int64_t outage_since; /* set while open: when the evidence began */
};

/* What one batch meant for the pod. */
struct health_verdict {
	enum batch_fault fault;
	const char *why;      /* short reason for the log (static string) */
	bool opened;          /* this batch opened (or re-opened) the breaker */
	bool closed;          /* this batch closed it */
	int64_t pause_ms;     /* > 0 while open: until the next probe */
	int64_t outage_since; /* when closed: when the outage's evidence began */
};

/* The rule, in one place. now is monotonic ms. */
void health_judge(struct pod_health *h, const struct config *cfg, const struct batch_result *r,
		  const char *wiki, bool probe, int64_t now, struct health_verdict *v);
/* The pause is over: the breaker goes from open to probing (one batch may go). True
 * when it did just now. */
bool health_start_probe(struct pod_health *h, int64_t now);
/* True when r ran no job although MediaWiki says there is more to do. */
bool health_no_progress(const struct batch_result *r);
/* Up to max domains to probe with, most recent success first. Returns the count. */
int health_probe_targets(const struct pod_health *h, char (*out)[256], int max);

struct limiter;

struct limiter *limiter_new(const struct config *cfg);
/* A reload: the rate, concurrency and breaker settings of cfg apply from the next
 * call (the caller keeps cfg alive until exit). */
void limiter_set_config(struct limiter *l, const struct config *cfg);
void limiter_free(struct limiter *l);

/* Blocks until one more wiki may be drained (a concurrency slot; while the breaker is
 * open, only the one probe). A slot whose batch runs past the slow threshold, or that
 * was taken before the breaker opened, no longer holds the others back. *probe says this slot is the probe: lease a wiki from
 * limiter_probe_targets. Returns 0, or -ECANCELED after limiter_stop. */
int limiter_enter(struct limiter *l, bool *probe);
/* Gives the slot back; call it on the thread that entered. */
void limiter_exit(struct limiter *l);

/* False while the breaker stops new batches (a slot taken before it opened must give
 * its wiki back untouched); the probe slot is admitted. */
bool limiter_admits(struct limiter *l, bool probe);

/* See health_probe_targets. */
int limiter_probe_targets(struct limiter *l, char (*out)[256], int max);

/* Blocks until the batch rate allows one more batch. -ECANCELED after limiter_stop. */
int limiter_pace(struct limiter *l);

/* Reports a finished batch (probe: it ran in the probe slot): adapts concurrency,
 * judges the evidence (health_judge), logs breaker transitions, and fills v. */
void limiter_report(struct limiter *l, const struct batch_result *r, const char *wiki, bool probe,
		    struct health_verdict *v);

/* True while the breaker is open: finish the batch in flight, release, take no more. */
bool limiter_breaker_open(struct limiter *l);

void limiter_stop(struct limiter *l);

/* A batch that took this much longer than maxtime counts as slow (MediaWiki stops a
 * batch at maxtime between jobs, so a healthy one ends soon after it). */
bool limiter_is_slow(const struct config *cfg, const struct batch_result *r);

#endif
