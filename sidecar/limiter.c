/* limiter.c - see limiter.h. One mutex; waits use a monotonic condition variable;
 * log lines are written after the mutex is released.
 *
 * Whose fault is a failed batch (health_judge, the one home of the rule):
 * - the wiki's own answer (400-404, 423, 429, a body that is not RunJobs JSON, an
 *   oversized body, a redirect, MediaWiki's exception/replica-lag answers, "more to
 *   do" with no job run): always that wiki's; it never counts against the pod;
 * - connection refused: the pod's MediaWiki is not listening; the breaker opens at once;
 * - 5xx, timeouts and dropped connections: the pod's only when the wiki vouches for
 *   MediaWiki: it had a successful batch on this pod in the last HEALTH_RECENT_OK_MS.
 *   Evidence is counted in distinct wikis: each vouching wiki that is failing, with no
 *   successful batch on any wiki started after its failure, is one piece of evidence
 *   however often it fails (its first failure is the pod's, its next ones its own
 *   until the breaker opens); breaker_failures of them (or all the wikis that vouch, if
 *   fewer, but at least 2) open the breaker. A success only
 *   clears the evidence it outdates: a batch that was already in flight when a wiki
 *   failed proves nothing about MediaWiki now, so it erases nothing (with 2 workers and
 *   3 wikis, in-flight successes would otherwise keep the breaker shut forever). A
 *   failure that a later-started success outlived becomes that wiki's own, and so do
 *   its next failures until it succeeds again: one broken wiki (a 500 while the others
 *   succeed) never opens the breaker, and neither does the same error from a wiki with
 *   no recent success here.
 * While the breaker is open a failure from a vouched-for wiki is the pod's, from any
 * other wiki its own; only a success closes the breaker. */
#include "limiter.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* The most worker threads ([sidecar] workers' maximum). */
#define LIMITER_MAX_SLOTS 64

/* Multiplicative decrease at most this often: one slow period, one halving. */
#define DECREASE_EVERY_MS 1000

bool health_no_progress(const struct batch_result *r)
{
	return r->outcome == OUTCOME_MORE && r->jobs_ok + r->jobs_failed == 0;
}

static int recent_index(const struct pod_health *h, const char *wiki)
{
	for (int i = 0; i < h->nrecent; i++)
		if (strcmp(h->recent[i].wiki, wiki) == 0)
			return i;
	return -1;
}

/* started: when the successful batch began (now - took_ms); only a batch that began
 * after a failure outdates it. */
static void record_success(struct pod_health *h, const char *wiki, int64_t started, int64_t now)
{
	int i = recent_index(h, wiki);

	if (started > h->ok_started_ms)
		h->ok_started_ms = started;

	if (i < 0 && h->nrecent < HEALTH_RECENT) {
		i = h->nrecent++;
	} else if (i < 0) {
		i = 0; /* replace the oldest success */
		for (int j = 1; j < h->nrecent; j++)
			if (h->recent[j].ok_ms < h->recent[i].ok_ms)
				i = j;
	}
	snprintf(h->recent[i].wiki, sizeof(h->recent[i].wiki), "%s", wiki);
	h->recent[i].ok_ms = now;
	h->recent[i].fail_since = 0;
	h->recent[i].own = false;
}

/* Marks failures a later-started success outlived as their wikis' own and counts the
 * rest: distinct vouching wikis failing with no success since. *since: the earliest. */
static int count_evidence(struct pod_health *h, int64_t now, int64_t *since)
{
	int n = 0;

	*since = now;
	for (int i = 0; i < h->nrecent; i++) {
		if (h->recent[i].fail_since == 0 || h->recent[i].own)
			continue;
		if (h->ok_started_ms > h->recent[i].fail_since ||
		    now - h->recent[i].fail_since > HEALTH_RECENT_OK_MS) {
			h->recent[i].own = true;
			continue;
		}
		n++;
		if (h->recent[i].fail_since < *since)
			*since = h->recent[i].fail_since;
	}
	return n;
}

/* breaker_failures wikis, or every wiki that vouches if this pod drained fewer
 * recently (a small farm, or workers busy on a few wikis), but never one: one wiki's
 * failures alone never open the breaker. */
static int evidence_needed(const struct pod_health *h, const struct config *cfg, int64_t now)
{
	int vouching = 0;

	for (int i = 0; i < h->nrecent; i++)
		if (!h->recent[i].own && (h->recent[i].fail_since > 0 ||
					  now - h->recent[i].ok_ms <= HEALTH_RECENT_OK_MS))
			vouching++;
	if (vouching < 2)
		vouching = 2;
	return vouching < cfg->breaker_failures ? vouching : cfg->breaker_failures;
}

/* The evidence has been used (the breaker opened): every wiki starts afresh. */
static void clear_evidence(struct pod_health *h)
{
	for (int i = 0; i < h->nrecent; i++) {
		h->recent[i].fail_since = 0;
		h->recent[i].own = false;
	}
}

/* Opens (or re-opens after a probe) the breaker; longer: the probe failed on a wiki
 * known to be healthy, so MediaWiki is still down. */
static void open_breaker(struct pod_health *h, const struct config *cfg, bool longer, int64_t now,
			 struct health_verdict *v)
{
	int64_t cap = (int64_t)cfg->probe_interval_max * 1000;
	int64_t base = (int64_t)cfg->backoff_base * 1000;

	if (h->breaker == BREAKER_CLOSED) {
		int64_t since;
		h->open_ms = util_backoff_ms(base, cap, 0);
		h->opened_ms = now;
		h->outage_since = count_evidence(h, now, &since) > 0 ? since : now;
	} else {
		h->open_ms = util_backoff_ms(h->open_ms, cap, longer ? 1 : 0);
	}
	if (h->open_ms < 1000)
		h->open_ms = 1000;
	h->breaker = BREAKER_OPEN;
	h->open_until = now + h->open_ms;
	clear_evidence(h);
	v->opened = true;
}

void health_judge(struct pod_health *h, const struct config *cfg, const struct batch_result *r,
		  const char *wiki, bool probe, int64_t now, struct health_verdict *v)
{
	int i = recent_index(h, wiki);
	bool known = i >= 0;
	int64_t since, started;
	bool vouches;

	memset(v, 0, sizeof(*v));
	count_evidence(h, now, &since); /* settles which failures are their wikis' own */
	vouches = known && !h->recent[i].own &&
		  (h->recent[i].fail_since > 0 || now - h->recent[i].ok_ms <= HEALTH_RECENT_OK_MS);
	switch (r->outcome) {
	case OUTCOME_ABORTED:
		v->fault = FAULT_NONE;
		v->why = "shutdown";
		if (probe && h->breaker == BREAKER_PROBING)
			h->breaker = BREAKER_OPEN; /* the probe told nothing: probe again */
		break;
	case OUTCOME_DRAINED:
	case OUTCOME_MORE:
		if (health_no_progress(r)) {
			v->fault = FAULT_WIKI;
			v->why = "no progress: more to do, yet no job ran";
			break;
		}
		v->fault = FAULT_NONE;
		v->why = "ok";
		started = now - (r->took_ms > 0 ? r->took_ms : 0);
		record_success(h, wiki, started, now);
		/* A batch in flight since before the breaker opened proves nothing about
		 * MediaWiki now; one that started since does. */
		if (h->breaker != BREAKER_CLOSED && started >= h->opened_ms) {
			h->breaker = BREAKER_CLOSED;
			v->closed = true;
			v->outage_since = h->outage_since;
		}
		break;
	case OUTCOME_REFUSED:
		v->fault = FAULT_POD;
		v->why = "local MediaWiki refuses connections";
		if (h->breaker == BREAKER_CLOSED || (probe && h->breaker == BREAKER_PROBING))
			open_breaker(h, cfg, true, now, v);
		break;
	case OUTCOME_SERVER_ERROR:
	case OUTCOME_TIMEOUT:
		if (h->breaker != BREAKER_CLOSED) {
			v->fault = known ? FAULT_POD : FAULT_WIKI;
			v->why = known ? "local MediaWiki is failing" : "the wiki's own failure";
			if (probe && h->breaker == BREAKER_PROBING)
				open_breaker(h, cfg, known, now, v);
		} else if (vouches) {
			bool again = h->recent[i].fail_since > 0;
			if (!again)
				h->recent[i].fail_since = now;
			if (count_evidence(h, now, &since) >= evidence_needed(h, cfg, now)) {
				v->fault = FAULT_POD;
				v->why = "local MediaWiki is failing on several healthy wikis";
				open_breaker(h, cfg, false, now, v);
			} else if (again) {
				/* Still evidence, but retrying it at once would hammer it. */
				v->fault = FAULT_WIKI;
				v->why =
					"failed again, no other healthy wiki failing: the wiki's own";
			} else {
				v->fault = FAULT_POD;
				v->why =
					"failure on a wiki that just succeeded: local MediaWiki suspected";
			}
		} else {
			v->fault = FAULT_WIKI;
			v->why = "the wiki's own failure";
		}
		break;
	default: /* slow_down, read_only, bad_request, bad_response: the wiki's own answer */
		v->fault = FAULT_WIKI;
		v->why = "the wiki's own answer";
		if (probe && h->breaker == BREAKER_PROBING)
			open_breaker(h, cfg, false, now, v);
		break;
	}
	if (h->breaker == BREAKER_OPEN)
		v->pause_ms = h->open_until > now ? h->open_until - now : 0;
}

bool health_start_probe(struct pod_health *h, int64_t now)
{
	if (h->breaker != BREAKER_OPEN || now < h->open_until)
		return false;
	h->breaker = BREAKER_PROBING;
	return true;
}

int health_probe_targets(const struct pod_health *h, char (*out)[256], int max)
{
	bool taken[HEALTH_RECENT] = { false };
	int n = 0;

	while (n < max) {
		int best = -1;
		for (int i = 0; i < h->nrecent; i++)
			if (!taken[i] && (best < 0 || h->recent[i].ok_ms > h->recent[best].ok_ms))
				best = i;
		if (best < 0)
			break;
		taken[best] = true;
		snprintf(out[n++], 256, "%s", h->recent[best].wiki);
	}
	return n;
}

struct limiter {
	const struct config *_Atomic cfg; /* swapped by limiter_set_config (a reload) */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool stopping;

	double limit; /* 1..workers */
	int in_use;
	struct { /* who holds a slot since when (one per worker thread) */
		pthread_t holder;
		int64_t since;
	} slots[LIMITER_MAX_SLOTS];
	int64_t last_decrease;

	double tokens; /* token bucket for batches_per_second */
	int64_t tokens_at;

	struct pod_health health;
};

void limiter_set_config(struct limiter *l, const struct config *cfg)
{
	atomic_store(&l->cfg, cfg);
}

struct limiter *limiter_new(const struct config *cfg)
{
	struct limiter *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->cfg = cfg;
	l->limit = cfg->workers;
	l->tokens = cfg->batches_per_second > 0 ? cfg->batches_per_second : 0;
	l->tokens_at = util_mono_ms();
	pthread_mutex_init(&l->lock, NULL);
	util_cond_init(&l->changed);
	metrics_set(METRIC_CONCURRENCY, 0, l->limit);
	return l;
}

void limiter_free(struct limiter *l)
{
	if (l == NULL)
		return;
	pthread_cond_destroy(&l->changed);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static void wait_until(struct limiter *l, int64_t until)
{
	struct timespec ts = util_timespec(until);

	pthread_cond_timedwait(&l->changed, &l->lock, &ts);
}

/* The usable limit: a probing breaker lets one wiki through. */
static int current_limit(const struct limiter *l)
{
	return l->health.breaker == BREAKER_CLOSED ? (int)l->limit : 1;
}

/* Slots that hold back the next batch. Not a batch running past the slow threshold:
 * MediaWiki stops a healthy batch at maxtime, so that one hangs on its own wiki, and a
 * hanging wiki must not keep the others (or the breaker's evidence and probe) waiting
 * on a halved limit. Nor, while the breaker is open or probing, a batch that was in
 * flight before it opened: it will be released, and the probe must not wait on it. */
static int busy_slots(const struct limiter *l, int64_t now)
{
	int64_t stuck_ms = (int64_t)l->cfg->maxtime * 1500;
	int n = 0;

	for (int i = 0; i < l->in_use; i++) {
		if (now - l->slots[i].since > stuck_ms)
			continue;
		if (l->health.breaker != BREAKER_CLOSED && l->slots[i].since < l->health.opened_ms)
			continue;
		n++;
	}
	return n;
}

int limiter_enter(struct limiter *l, bool *probe)
{
	struct pod_health *h = &l->health;
	bool probing_now = false;
	int rc = 0;

	*probe = false;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		int64_t now = util_mono_ms();
		if (l->stopping) {
			rc = -ECANCELED;
			break;
		}
		if (health_start_probe(h, now))
			probing_now = true;
		if (h->breaker != BREAKER_OPEN && busy_slots(l, now) < current_limit(l) &&
		    l->in_use < LIMITER_MAX_SLOTS) {
			l->slots[l->in_use].holder = pthread_self();
			l->slots[l->in_use].since = now;
			l->in_use++;
			*probe = h->breaker == BREAKER_PROBING;
			break;
		}
		wait_until(l, h->breaker == BREAKER_OPEN ? h->open_until : now + 1000);
	}
	pthread_mutex_unlock(&l->lock);
	if (probing_now)
		log_msg(LOG_INFO,
			"mediawiki breaker: probing with one batch on a recently healthy wiki");
	return rc;
}

void limiter_exit(struct limiter *l)
{
	pthread_mutex_lock(&l->lock);
	for (int i = 0; i < l->in_use; i++) {
		if (pthread_equal(l->slots[i].holder, pthread_self())) {
			l->slots[i] = l->slots[--l->in_use];
			break;
		}
	}
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);
}

bool limiter_admits(struct limiter *l, bool probe)
{
	bool ok;

	pthread_mutex_lock(&l->lock);
	ok = l->health.breaker == BREAKER_CLOSED || (probe && l->health.breaker == BREAKER_PROBING);
	pthread_mutex_unlock(&l->lock);
	return ok;
}

int limiter_probe_targets(struct limiter *l, char (*out)[256], int max)
{
	int n;

	pthread_mutex_lock(&l->lock);
	n = health_probe_targets(&l->health, out, max);
	pthread_mutex_unlock(&l->lock);
	return n;
}

int limiter_pace(struct limiter *l)
{
	double rate = l->cfg->batches_per_second;
	int rc = 0;

	if (rate <= 0)
		return 0;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		int64_t now = util_mono_ms();
		if (l->stopping) {
			rc = -ECANCELED;
			break;
		}
		/* Refill; the bucket holds one second's worth, so bursts stay small. */
		l->tokens += (double)(now - l->tokens_at) * rate / 1000.0;
		if (l->tokens > rate)
			l->tokens = rate;
		l->tokens_at = now;
		if (l->tokens >= 1.0) {
			l->tokens -= 1.0;
			break;
		}
		wait_until(l, now + (int64_t)((1.0 - l->tokens) * 1000.0 / rate) + 1);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

bool limiter_is_slow(const struct config *cfg, const struct batch_result *r)
{
	return r->took_ms > (int64_t)cfg->maxtime * 1500;
}

static void set_limit(struct limiter *l, double limit)
{
	if (limit < 1)
		limit = 1;
	if (limit > l->cfg->workers)
		limit = l->cfg->workers;
	l->limit = limit;
	metrics_set(METRIC_CONCURRENCY, 0, (int)limit);
}

void limiter_report(struct limiter *l, const struct batch_result *r, const char *wiki, bool probe,
		    struct health_verdict *v)
{
	int64_t now = util_mono_ms();
	bool slow, reopened;

	pthread_mutex_lock(&l->lock);
	reopened = l->health.breaker != BREAKER_CLOSED;
	health_judge(&l->health, l->cfg, r, wiki, probe, now, v);
	/* Concurrency: back off when MediaWiki struggles (not for one wiki's own trouble;
	 * a hanging wiki is slow only for itself), grow back slowly on success. A pod
	 * fault counts once the breaker confirms it: halving on one wiki's suspected 5xx
	 * leaves the only slot to a batch hanging on a broken wiki until it passes the
	 * slow threshold, and meanwhile the pod gathers no evidence and drains nothing. */
	slow = v->fault != FAULT_WIKI && limiter_is_slow(l->cfg, r);
	if ((v->fault == FAULT_POD && (reopened || v->opened)) || slow ||
	    r->outcome == OUTCOME_SLOW_DOWN) {
		if (now - l->last_decrease >= DECREASE_EVERY_MS) {
			set_limit(l, l->limit / 2);
			l->last_decrease = now;
		}
	} else if (v->fault == FAULT_NONE && r->outcome != OUTCOME_ABORTED) {
		set_limit(l, l->limit + 1.0 / l->limit);
	}
	metrics_set(METRIC_BREAKER_OPEN, 0, l->health.breaker == BREAKER_CLOSED ? 0 : 1);
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);

	if (v->opened) {
		struct log_line line;
		char next[64];
		snprintf(next, sizeof(next), "pausing %llds, then one probe batch",
			 (long long)(v->pause_ms + 999) / 1000);
		log_begin(&line, LOG_ERROR,
			  reopened ? "mediawiki breaker stays open: the probe failed"
				   : "mediawiki breaker open: local MediaWiki is failing");
		log_str(&line, "reason", outcome_name(r->outcome));
		log_str(&line, "evidence", v->why);
		log_str(&line, "last_wiki", wiki);
		log_str(&line, "next", next);
		log_end(&line);
	} else if (v->closed) {
		struct log_line line;
		log_begin(&line, LOG_INFO,
			  "mediawiki breaker closed: local MediaWiki answers again");
		log_str(&line, "wiki", wiki);
		log_int(&line, "outage_s", (now - v->outage_since + 999) / 1000);
		log_end(&line);
	}
}

bool limiter_breaker_open(struct limiter *l)
{
	bool open;

	pthread_mutex_lock(&l->lock);
	open = l->health.breaker == BREAKER_OPEN;
	pthread_mutex_unlock(&l->lock);
	return open;
}

void limiter_stop(struct limiter *l)
{
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);
}
