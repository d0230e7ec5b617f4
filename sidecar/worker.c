/* worker.c - see worker.h. Each thread owns its RunJobs client (and so its HTTP
 * connection); the only shared state is the scheduler. Logs one line per drain at info
 * (and every failed batch); one per batch at debug. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "drain.h"
#include "log.h"
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

/* A failed batch's line: an error where someone must act (a refused request: that
 * wiki's configuration), a warning otherwise. */
static enum log_level failed_level(enum batch_outcome o)
{
	return o == OUTCOME_BAD_REQUEST ? LOG_ERROR : LOG_WARN;
}

/* The fields a batch line and a drain line share: the batch (the drain's last) and its
 * verdict. */
static void log_batch_fields(struct log_line *l, const struct worker *w,
			     const struct sched_ticket *t, const struct batch_result *r,
			     const struct health_verdict *v, bool failed)
{
	log_str(l, "wiki", t->wiki->domain);
	if (r->type[0] != '\0')
		log_str(l, "type", r->type);
	log_str(l, "outcome", outcome_name(r->outcome));
	log_int(l, "maxjobs", t->maxjobs);
	log_int(l, "jobs_ok", r->jobs_ok);
	log_int(l, "jobs_failed", r->jobs_failed);
	log_str(l, "reached", r->reached);
	log_int(l, "http_status", r->http_status);
	log_int(l, "ms", r->took_ms);
	log_int(l, "worker", w->id);
	log_int(l, "lane", t->lease.slot + 1);
	if (r->detail[0] != '\0')
		log_str(l, "detail", r->detail);
	if (failed)
		log_str(l, "fault", v->fault == FAULT_POD ? "pod" : "wiki");
	if (failed && v->why != NULL)
		log_str(l, "why", v->why);
}

static bool batch_failed(const struct batch_result *r, const struct health_verdict *v)
{
	return outcome_is_failure(r->outcome) || v->fault != FAULT_NONE;
}

/* A batch's own line: at debug, unless it failed (every failure is said). more: another
 * batch of the drain follows; backoff_ms: the wiki's backoff after the last. */
static void log_batch(const struct worker *w, const struct sched_ticket *t,
		      const struct batch_result *r, const struct health_verdict *v,
		      int64_t backoff_ms, bool more)
{
	bool failed = batch_failed(r, v);
	struct log_line l;
	char next[80];

	log_begin(&l, failed ? failed_level(r->outcome) : LOG_DEBUG,
		  failed ? "batch failed" : "batch");
	log_batch_fields(&l, w, t, r, v, failed);
	drain_next_text(r, v, backoff_ms, more, next, sizeof(next));
	log_str(&l, "next", next);
	log_end(&l);
}

/* The drain's one line: at info ("drain") what the whole drain did and how it ended,
 * after its last batch's own line at debug; or, when that last batch failed, one
 * "batch failed" line (warn, error for a refused request) with the batch's figures and
 * the drain's. */
static void log_drain(const struct worker *w, const struct sched_ticket *t,
		      const struct drain_result *d)
{
	bool failed = batch_failed(&d->last, &d->verdict);
	struct log_line l;
	char next[80];

	drain_next_text(&d->last, &d->verdict, d->backoff_ms, false, next, sizeof(next));
	if (d->last_told)
		failed = false; /* its line was written: the drain's alone follows */
	if (failed) {
		log_begin(&l, failed_level(d->last.outcome), "batch failed");
		log_batch_fields(&l, w, t, &d->last, &d->verdict, true);
	} else {
		if (!d->last_told)
			log_batch(w, t, &d->last, &d->verdict, d->backoff_ms, false);
		log_begin(&l, LOG_INFO, "drain");
		log_str(&l, "wiki", t->wiki->domain);
		log_int(&l, "lane", t->lease.slot + 1);
		log_int(&l, "worker", w->id);
		log_str(&l, "last_outcome", outcome_name(d->last.outcome));
		log_str(&l, "reached", d->last.reached);
		log_int(&l, "maxjobs", t->maxjobs);
	}
	log_int(&l, "batches", t->batches);
	log_int(&l, "drain_jobs_ok", d->jobs_ok);
	log_int(&l, "drain_jobs_failed", d->jobs_failed);
	log_int(&l, "drain_ms", d->ms);
	log_str(&l, "next", next);
	log_end(&l);
}

static void batch_done(void *arg, const struct sched_ticket *t, const struct batch_result *r,
		       const struct health_verdict *v, bool more)
{
	if (more)
		log_batch(arg, t, r, v, 0, true);
}

/* Sleeps ms, whole: after a failed allocation only (short). */
static void pause_ms(int ms)
{
	struct timespec ts = util_timespec(ms);

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Drains one leased wiki by the fleet's rules (drain.h), then says how it went. */
static void drain(struct worker *w, struct sched_worker *sw, struct runjobs *rj,
		  struct sched_ticket *t, bool probe)
{
	struct drain_params p = {
		.cfg = &w->pool->cfg,
		.sw = sw,
		.rj = rj,
		.lim = w->pool->limiter,
		.fleet = true,
		.probe = probe,
		.batch_done = batch_done,
		.arg = w,
	};
	struct drain_result d;

	drain_wiki(&p, t, &d);
	if (t->batches > 0)
		log_drain(w, t, &d);
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
