/* drain.c - see drain.h. */
#include "drain.h"

#include <stdio.h>
#include <string.h>

#include "jobtype.h"
#include "metrics.h"
#include "util.h"

void drain_next_text(const struct batch_result *r, const struct health_verdict *v,
		     int64_t backoff_ms, bool more, char *next, size_t len)
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
	else if (more)
		snprintf(next, len, "next batch");
	else if (v->fault == FAULT_WIKI && health_no_progress(r))
		snprintf(next, len, "one more try");
	else if (r->outcome == OUTCOME_MORE)
		snprintf(next, len, "yield to waiting wikis");
	else
		snprintf(next, len, "idle until the next scan finds jobs");
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

void drain_wiki(const struct drain_params *p, struct sched_ticket *t, struct drain_result *out)
{
	struct batch_result *r = &out->last;
	struct health_verdict *v = &out->verdict;
	bool more = false, next_type;
	char type[JOBTYPE_MAX + 1];

	memset(out, 0, sizeof(*out));
	r->outcome = OUTCOME_ABORTED;
	v->fault = FAULT_NONE;
	do {
		const struct config *cfg = atomic_load(p->cfg); /* a reload applies from here */
		int64_t gap = cfg->wiki_min_interval_ms;
		if (more && gap > 0 && !sched_hold(p->sw, t, gap))
			break;
		if (limiter_pace(p->lim) != 0 || !sched_confirm(p->sw, t))
			break; /* nothing ran: the last outcome stands */
		runjobs_set_config(p->rj, cfg);
		if (!sched_batch_type(p->sw, t, type, sizeof(type))) {
			sched_only_skipped_types(t, r);
			break;
		}
		observe_wait(t);
		/* `drain --wiki` serves its one wiki: none waits on it, whatever the
		 * fleet's rows say, so its batches grow as a lone wiki's. */
		runjobs_set_maxjobs(p->rj, p->fleet ? sched_next_batch_size(p->sw, t)
						    : sched_batch_size(cfg, t, false));
		metrics_add(METRIC_IN_FLIGHT, 0, 1);
		out->last_told = false;
		runjobs_batch_typed(p->rj, t->wiki, (unsigned long long)t->lease.token, type, r);
		metrics_add(METRIC_IN_FLIGHT, 0, -1);
		next_type = sched_type_answered(t, cfg, r);
		count_batch(r);
		sched_batch_ran(t, r);
		sched_lanes_after_batch(p->sw, t, r);
		out->jobs_ok += r->jobs_ok;
		out->jobs_failed += r->jobs_failed;
		limiter_report(p->lim, r, t->wiki->domain, p->probe && t->batches == 1, v);
		if (v->closed)
			sched_clear_outage(p->sw, v->outage_since);
		/* A typed batch that found its type empty goes on with the next type. */
		more = (sched_keep_draining(t, r, v, limiter_breaker_open(p->lim)) ||
			(next_type && !limiter_breaker_open(p->lim))) &&
		       sched_may_continue(p->sw, t, p->fleet);
		if (more && p->batch_done != NULL)
			p->batch_done(p->arg, t, r, v, true);
		out->last_told = more;
	} while (more);
	out->stopped = sched_worker_stopping(p->sw);
	sched_done(p->sw, t, r, t->batches > 0 ? v->fault : FAULT_NONE, &out->backoff_ms);
	out->ms = util_mono_ms() - t->started_ms;
	if (t->batches > 0 && !out->last_told && p->batch_done != NULL)
		p->batch_done(p->arg, t, r, v, false);
}
