/* worker.c - see worker.h. Each thread owns its RunJobs client (and so its HTTP
 * connection); the only shared state is the scheduler. Logs one line per batch. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mysql.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "runjobs.h"

struct worker {
	struct workers *pool;
	pthread_t thread;
	int id;
	bool started;
};

struct workers {
	const struct config *cfg;
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

static void log_batch(const struct worker *w, const struct wiki *wiki,
		      const struct batch_result *r, int64_t backoff_ms, bool keep_going)
{
	struct log_line l;
	char next[64];

	log_begin(&l, batch_level(r->outcome),
		  outcome_is_failure(r->outcome) ? "batch failed" : "batch");
	log_str(&l, "wiki", wiki->domain);
	log_str(&l, "outcome", outcome_name(r->outcome));
	log_int(&l, "jobs_ok", r->jobs_ok);
	log_int(&l, "jobs_failed", r->jobs_failed);
	log_str(&l, "reached", r->reached);
	log_int(&l, "http_status", r->http_status);
	log_int(&l, "ms", r->took_ms);
	log_int(&l, "worker", w->id);
	if (r->detail[0] != '\0')
		log_str(&l, "detail", r->detail);
	if (backoff_ms > 0)
		snprintf(next, sizeof(next), "backoff %llds", (long long)(backoff_ms + 999) / 1000);
	else if (r->outcome == OUTCOME_ABORTED)
		snprintf(next, sizeof(next), "shutting down");
	else if (keep_going)
		snprintf(next, sizeof(next), "next batch");
	else if (r->outcome == OUTCOME_MORE)
		snprintf(next, sizeof(next), "yield to waiting wikis");
	else
		snprintf(next, sizeof(next), "idle until the next scan finds jobs");
	log_str(&l, "next", next);
	log_end(&l);
}

static void count_batch(const struct batch_result *r)
{
	metrics_add(METRIC_BATCHES, (int)r->outcome, 1);
	metrics_add(METRIC_JOBS, 0, r->jobs_ok);
	metrics_add(METRIC_JOBS, 1, r->jobs_failed);
}

/* Sleeps ms, whole: used for wiki_min_interval_ms between two batches of one wiki, and
 * after a failed allocation. A shutdown waits for it (both are short). */
static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Drains one leased wiki until it is done, fails, or must let go. */
static void drain(struct worker *w, struct sched_worker *sw, struct runjobs *rj,
		  struct sched_ticket *t)
{
	struct workers *pool = w->pool;
	struct batch_result r;
	int64_t backoff = 0, pause;
	bool more;

	memset(&r, 0, sizeof(r));
	r.outcome = OUTCOME_ABORTED;
	do {
		if (limiter_pace(pool->limiter) != 0)
			break; /* stopping before the batch: nothing ran */
		metrics_add(METRIC_IN_FLIGHT, 0, 1);
		runjobs_batch(rj, t->wiki, (unsigned long long)t->lease.token, &r);
		metrics_add(METRIC_IN_FLIGHT, 0, -1);
		count_batch(&r);
		t->batches++;
		t->jobs_run += r.jobs_ok + r.jobs_failed;
		pause = limiter_report(pool->limiter, &r, t->wiki->domain);
		if (pause > 0)
			sched_pause_until(pool->sched, pause);
		more = r.outcome == OUTCOME_MORE && !limiter_breaker_open(pool->limiter) &&
		       sched_may_continue(sw, t);
		if (more) {
			log_batch(w, t->wiki, &r, 0, true);
			if (pool->cfg->wiki_min_interval_ms > 0)
				pause_ms(pool->cfg->wiki_min_interval_ms);
		}
	} while (more);
	sched_done(sw, t, &r, &backoff);
	if (t->batches > 0)
		log_batch(w, t->wiki, &r, backoff, false);
	wiki_free(t->wiki);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct workers *pool = w->pool;
	struct runjobs *rj;
	struct sched_worker *sw;
	struct sched_ticket t;
	int rc;

	mysql_thread_init();
	rj = runjobs_new(pool->cfg, pool->abort_now);
	sw = sched_worker_new(pool->sched, w->id);
	if (rj == NULL || sw == NULL) {
		log_msg(LOG_ERROR, "worker: out of memory; this worker stops");
		goto out;
	}
	/* A slot first (the pod's concurrency limit), then a lease: a worker never holds
	 * a wiki while it waits for the pod to allow it. */
	while (limiter_enter(pool->limiter) == 0) {
		rc = sched_next(sw, &t);
		if (rc == 0)
			drain(w, sw, rj, &t);
		limiter_exit(pool->limiter);
		if (rc == -ECANCELED)
			break;
		if (rc != 0)
			pause_ms(1000); /* out of memory for a ticket: wait rather than spin */
	}
out:
	sched_worker_free(sw);
	runjobs_free(rj);
	mysql_thread_end();
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
	pthread_condattr_t attr;

	if (pool == NULL)
		return NULL;
	pool->cfg = cfg;
	pool->sched = s;
	pool->limiter = lim;
	pool->abort_now = abort_now;
	pool->count = cfg->workers;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->exited, &attr);
	pthread_condattr_destroy(&attr);
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

bool workers_wait(struct workers *pool, int64_t deadline_ms)
{
	struct timespec ts = { (time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000 };
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
