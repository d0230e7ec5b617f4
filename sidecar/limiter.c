/* limiter.c - see limiter.h. One mutex; waits use a monotonic condition variable. */
#include "limiter.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* Failures on this many different wikis in a row mean MediaWiki itself is sick. */
#define BREAKER_DISTINCT_WIKIS 2
/* Multiplicative decrease at most this often: one slow period, one halving. */
#define DECREASE_EVERY_MS 1000

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_PROBING };

struct limiter {
	const struct config *cfg;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool stopping;

	double limit;       /* 1..workers */
	int in_use;
	int64_t last_decrease;

	double tokens;      /* token bucket for batches_per_second */
	int64_t tokens_at;

	enum breaker_state breaker;
	int64_t open_until;
	int64_t open_ms;    /* current pause length */
	int streak;         /* consecutive MediaWiki-side failures */
	char first_wiki[256];
	bool distinct;      /* the streak spans at least two wikis */
};

struct limiter *limiter_new(const struct config *cfg)
{
	struct limiter *l = calloc(1, sizeof(*l));
	pthread_condattr_t attr;

	if (l == NULL)
		return NULL;
	l->cfg = cfg;
	l->limit = cfg->workers;
	l->tokens = cfg->batches_per_second > 0 ? cfg->batches_per_second : 0;
	l->tokens_at = util_mono_ms();
	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&l->changed, &attr);
	pthread_condattr_destroy(&attr);
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
	struct timespec ts = { (time_t)(until / 1000), (long)(until % 1000) * 1000000 };

	pthread_cond_timedwait(&l->changed, &l->lock, &ts);
}

/* The usable limit: a probing breaker lets one wiki through. */
static int current_limit(const struct limiter *l)
{
	return l->breaker == BREAKER_CLOSED ? (int)l->limit : 1;
}

int limiter_enter(struct limiter *l)
{
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		int64_t now = util_mono_ms();
		if (l->stopping) {
			rc = -ECANCELED;
			break;
		}
		if (l->breaker == BREAKER_OPEN && now >= l->open_until) {
			l->breaker = BREAKER_PROBING;
			log_msg(LOG_INFO, "mediawiki breaker: probing with one batch");
		}
		if (l->breaker != BREAKER_OPEN && l->in_use < current_limit(l)) {
			l->in_use++;
			break;
		}
		wait_until(l, l->breaker == BREAKER_OPEN ? l->open_until : now + 1000);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void limiter_exit(struct limiter *l)
{
	pthread_mutex_lock(&l->lock);
	l->in_use--;
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);
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

/* Failures that say something about MediaWiki (or its database), not about one wiki. */
static bool mediawiki_failure(enum batch_outcome o)
{
	return o == OUTCOME_SERVER_ERROR || o == OUTCOME_TIMEOUT || o == OUTCOME_REFUSED ||
	       o == OUTCOME_BAD_RESPONSE;
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

static void open_breaker(struct limiter *l, const char *why, const char *wiki)
{
	int64_t base = (int64_t)l->cfg->backoff_base * 1000, cap = (int64_t)l->cfg->backoff_max * 1000;
	struct log_line line;
	char next[64];

	l->open_ms = l->breaker == BREAKER_PROBING ? l->open_ms * 2 : base;
	if (l->open_ms > cap)
		l->open_ms = cap;
	if (l->open_ms < base)
		l->open_ms = base;
	l->breaker = BREAKER_OPEN;
	l->open_until = util_mono_ms() + l->open_ms;
	l->streak = 0;
	metrics_set(METRIC_BREAKER_OPEN, 0, 1);
	snprintf(next, sizeof(next), "pausing %llds, then one probe batch",
		 (long long)(l->open_ms + 999) / 1000);
	log_begin(&line, LOG_ERROR, "mediawiki breaker open: local MediaWiki is failing");
	log_str(&line, "reason", why);
	log_str(&line, "last_wiki", wiki);
	log_str(&line, "next", next);
	log_end(&line);
}

int64_t limiter_report(struct limiter *l, const struct batch_result *r, const char *wiki)
{
	int64_t now = util_mono_ms(), pause = 0;
	bool slow = limiter_is_slow(l->cfg, r);
	bool mw_fail = mediawiki_failure(r->outcome);

	pthread_mutex_lock(&l->lock);
	/* Concurrency: back off on trouble, grow back slowly on success. */
	if (mw_fail || slow || r->outcome == OUTCOME_SLOW_DOWN) {
		if (now - l->last_decrease >= DECREASE_EVERY_MS) {
			set_limit(l, l->limit / 2);
			l->last_decrease = now;
		}
	} else if (r->outcome == OUTCOME_DRAINED || r->outcome == OUTCOME_MORE) {
		set_limit(l, l->limit + 1.0 / l->limit);
	}
	/* Breaker. */
	if (mw_fail) {
		if (l->streak == 0) {
			snprintf(l->first_wiki, sizeof(l->first_wiki), "%s", wiki);
			l->distinct = false;
		} else if (strcmp(l->first_wiki, wiki) != 0) {
			l->distinct = true;
		}
		l->streak++;
		if (l->breaker == BREAKER_PROBING)
			open_breaker(l, outcome_name(r->outcome), wiki);
		else if (l->breaker == BREAKER_CLOSED &&
			 (r->outcome == OUTCOME_REFUSED ||
			  (l->streak >= l->cfg->breaker_failures && l->distinct)))
			open_breaker(l, outcome_name(r->outcome), wiki);
		if (l->breaker == BREAKER_OPEN)
			pause = l->open_until;
	} else if (r->outcome != OUTCOME_ABORTED) {
		l->streak = 0;
		if (l->breaker == BREAKER_PROBING) {
			l->breaker = BREAKER_CLOSED;
			metrics_set(METRIC_BREAKER_OPEN, 0, 0);
			log_msg(LOG_INFO, "mediawiki breaker closed: local MediaWiki answers again");
		}
	}
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);
	return pause;
}

bool limiter_breaker_open(struct limiter *l)
{
	bool open;

	pthread_mutex_lock(&l->lock);
	open = l->breaker == BREAKER_OPEN;
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
