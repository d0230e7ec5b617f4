/* worker.c - see worker.h. Each thread owns its RunJobs client (and so its HTTP
 * connection); the only shared state is the scheduler. Logs one line per batch. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "jobtype.h"
#include "log.h"
#include "metrics.h"
#include "runjobs.h"
#include "util.h"

/* Recently healthy wikis a probe tries, in order. */
#define PROBE_TARGETS 8

struct worker {
	struct workers *pool;
	pthread_t thread;
	int id;
	bool started;
};

struct workers {
	const struct config *_Atomic cfg; /* swapped by workers_set_config (a reload) */
	struct sched *sched;
	struct limiter *limiter;
	const atomic_bool *abort_now;
	pthread_mutex_t lock;
	pthread_cond_t exited;
	int running;
	int count;
	struct worker *threads;
};

static enum log_level batch_level(enum batch_outcome o)
{
	if (o == OUTCOME_BAD_REQUEST)
		return LOG_ERROR; /* a configuration problem of that wiki: someone must act */
	return outcome_is_failure(o) ? LOG_WARN : LOG_INFO;
}

/* What happens next, as the log says it. */
static void next_text(const struct batch_result *r, const struct health_verdict *v,
		      int64_t backoff_ms, bool keep_going, char *next, size_t len)
{
	if (backoff_ms > 0)
		snprintf(next, len, "backoff %llds", (long long)(backoff_ms + 999) / 1000);
	else if (r->outcome == OUTCOME_ABORTED)
		snprintf(next, len, "shutting down");
	else if (v->fault == FAULT_POD && v->pause_ms > 0)
		snprintf(next, len, "released to other pods; breaker probes in %llds",
			 (long long)(v->pause_ms + 999) / 1000);
	else if (v->fault == FAULT_POD)
		snprintf(next, len, "released to other pods, no backoff");
	else if (keep_going)
		snprintf(next, len, "next batch");
	else if (v->fault == FAULT_WIKI && health_no_progress(r))
		snprintf(next, len, "one more try");
	else if (r->outcome == OUTCOME_MORE)
		snprintf(next, len, "yield to waiting wikis");
	else
		snprintf(next, len, "idle until the next scan finds jobs");
}

static void log_batch(const struct worker *w, const struct sched_ticket *t,
		      const struct batch_result *r, const struct health_verdict *v,
		      int64_t backoff_ms, bool keep_going)
{
	bool failed = outcome_is_failure(r->outcome) || v->fault != FAULT_NONE;
	struct log_line l;
	char next[80];

	log_begin(&l,
		  failed && r->outcome != OUTCOME_BAD_REQUEST ? LOG_WARN : batch_level(r->outcome),
		  failed ? "batch failed" : "batch");
	log_str(&l, "wiki", t->wiki->domain);
	if (r->type[0] != '\0')
		log_str(&l, "type", r->type);
	log_str(&l, "outcome", outcome_name(r->outcome));
	log_int(&l, "maxjobs", t->maxjobs);
	log_int(&l, "jobs_ok", r->jobs_ok);
	log_int(&l, "jobs_failed", r->jobs_failed);
	log_str(&l, "reached", r->reached);
	log_int(&l, "http_status", r->http_status);
	log_int(&l, "ms", r->took_ms);
	log_int(&l, "worker", w->id);
	log_int(&l, "lane", t->lease.slot + 1);
	if (r->detail[0] != '\0')
		log_str(&l, "detail", r->detail);
	if (failed)
		log_str(&l, "fault", v->fault == FAULT_POD ? "pod" : "wiki");
	if (failed && v->why != NULL)
		log_str(&l, "why", v->why);
	next_text(r, v, backoff_ms, keep_going, next, sizeof(next));
	log_str(&l, "next", next);
	log_end(&l);
}

static void count_batch(const struct batch_result *r)
{
	metrics_add(METRIC_BATCHES, (int)r->outcome, 1);
	metrics_add(METRIC_JOBS, JOBS_OK, r->jobs_ok);
	metrics_add(METRIC_JOBS, JOBS_FAILED, r->jobs_failed);
}

/* As the batch goes out: how long its wiki's oldest ready job has waited, as the last
 * scan saw that job. The batch's jobs were ready then or came later (or that job is
 * gone and the rest are younger), so this bounds their wait from above. */
static void observe_wait(const struct sched_ticket *t)
{
	if (t->ready_age_ms >= 0)
		metrics_observe(METRIC_BATCH_WAIT,
				(double)(t->ready_age_ms + util_mono_ms() - t->started_ms) / 1000);
}

/* Sleeps ms, whole: after a failed allocation only (short). */
static void pause_ms(int ms)
{
	struct timespec ts = util_timespec(ms);

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Drains one leased wiki until it is done, fails, or must let go. Every wait (the
 * wiki's interval, the pod's batch rate) comes before the lease check, so each batch
 * goes out right after the database confirmed its lease. */
static void drain(struct worker *w, struct sched_worker *sw, struct runjobs *rj,
		  struct sched_ticket *t, bool probe)
{
	struct workers *pool = w->pool;
	int64_t gap;
	struct health_verdict v = { .fault = FAULT_NONE };
	struct batch_result r;
	int64_t backoff = 0;
	bool more = false, next_type;
	char type[JOBTYPE_MAX + 1];

	memset(&r, 0, sizeof(r));
	r.outcome = OUTCOME_ABORTED;
	do {
		gap = pool->cfg->wiki_min_interval_ms;
		if (more && gap > 0 && !sched_hold(sw, t, gap))
			break;
		if (limiter_pace(pool->limiter) != 0 || !sched_confirm(sw, t))
			break;                     /* nothing ran: the last outcome stands */
		runjobs_set_config(rj, pool->cfg); /* a reload applies from the next batch */
		if (!sched_batch_type(sw, t, type, sizeof(type))) {
			sched_only_skipped_types(t, &r);
			break;
		}
		observe_wait(t);
		runjobs_set_maxjobs(rj, sched_next_batch_size(sw, t));
		metrics_add(METRIC_IN_FLIGHT, 0, 1);
		runjobs_batch_typed(rj, t->wiki, (unsigned long long)t->lease.token, type, &r);
		metrics_add(METRIC_IN_FLIGHT, 0, -1);
		next_type = sched_type_answered(t, pool->cfg, &r);
		count_batch(&r);
		sched_batch_ran(t, &r);
		sched_lanes_after_batch(sw, t, &r);
		limiter_report(pool->limiter, &r, t->wiki->domain, probe && t->batches == 1, &v);
		if (v.closed)
			sched_clear_outage(sw, v.outage_since);
		/* A typed batch that found its type empty goes on with the next type. */
		more = (sched_keep_draining(t, &r, &v, limiter_breaker_open(pool->limiter)) ||
			(next_type && !limiter_breaker_open(pool->limiter))) &&
		       sched_may_continue(sw, t);
		if (more)
			log_batch(w, t, &r, &v, 0, true);
	} while (more);
	sched_done(sw, t, &r, t->batches > 0 ? v.fault : FAULT_NONE, &backoff);
	if (t->batches > 0)
		log_batch(w, t, &r, &v, backoff, false);
	wiki_free(t->wiki);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct workers *pool = w->pool;
	struct runjobs *rj;
	struct sched_worker *sw;
	struct sched_ticket t;
	char targets[PROBE_TARGETS][256];
	bool probe;
	int rc;

	db_thread_init();
	rj = runjobs_new(pool->cfg, pool->abort_now);
	sw = sched_worker_new(pool->sched, w->id);
	if (rj == NULL || sw == NULL) {
		log_msg(LOG_ERROR, "worker: out of memory; this worker stops");
		goto out;
	}
	/* A slot first (the pod's concurrency limit), then a lease: a worker never holds
	 * a wiki while it waits for the pod to allow it. */
	while (limiter_enter(pool->limiter, &probe) == 0) {
		struct sched_prefer prefer = { targets, 0 };
		if (probe)
			prefer.n = limiter_probe_targets(pool->limiter, targets, PROBE_TARGETS);
		rc = sched_next(sw, probe ? &prefer : NULL, &t);
		if (rc == 0 && !limiter_admits(pool->limiter, probe)) {
			/* The breaker opened while this worker waited for a wiki. */
			sched_give_back(sw, &t);
			wiki_free(t.wiki);
		} else if (rc == 0) {
			drain(w, sw, rj, &t, probe);
		}
		limiter_exit(pool->limiter);
		if (rc == -ECANCELED)
			break;
		if (rc != 0)
			pause_ms(1000); /* out of memory for a ticket: wait rather than spin */
	}
out:
	sched_worker_free(sw);
	runjobs_free(rj);
	db_thread_end();
	pthread_mutex_lock(&pool->lock);
	pool->running--;
	pthread_cond_broadcast(&pool->exited);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct workers *workers_start(const struct config *cfg, struct sched *s, struct limiter *lim,
			      const atomic_bool *abort_now)
{
	struct workers *pool = calloc(1, sizeof(*pool));

	if (pool == NULL)
		return NULL;
	pool->cfg = cfg;
	pool->sched = s;
	pool->limiter = lim;
	pool->abort_now = abort_now;
	pool->count = cfg->workers;
	pthread_mutex_init(&pool->lock, NULL);
	util_cond_init(&pool->exited);
	pool->threads = calloc((size_t)pool->count, sizeof(*pool->threads));
	if (pool->threads == NULL) {
		workers_join_free(pool);
		return NULL;
	}
	for (int i = 0; i < pool->count; i++) {
		struct worker *w = &pool->threads[i];
		w->pool = pool;
		w->id = i + 1;
		pthread_mutex_lock(&pool->lock);
		pool->running++;
		pthread_mutex_unlock(&pool->lock);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			pthread_mutex_lock(&pool->lock);
			pool->running--;
			pthread_mutex_unlock(&pool->lock);
			/* Let the ones that started see the stop and leave. */
			sched_stop(s);
			workers_join_free(pool);
			return NULL;
		}
		w->started = true;
	}
	return pool;
}

void workers_set_config(struct workers *pool, const struct config *cfg)
{
	atomic_store(&pool->cfg, cfg);
}

bool workers_wait(struct workers *pool, int64_t deadline_ms)
{
	struct timespec ts = util_timespec(deadline_ms);
	bool done;

	pthread_mutex_lock(&pool->lock);
	while (pool->running > 0) {
		if (pthread_cond_timedwait(&pool->exited, &pool->lock, &ts) == ETIMEDOUT)
			break;
	}
	done = pool->running == 0;
	pthread_mutex_unlock(&pool->lock);
	return done;
}

void workers_join_free(struct workers *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; pool->threads != NULL && i < pool->count; i++)
		if (pool->threads[i].started)
			pthread_join(pool->threads[i].thread, NULL);
	free(pool->threads);
	pthread_cond_destroy(&pool->exited);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}
