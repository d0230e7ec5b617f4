/* test_sched.c - the scheduler's decisions on one ticket, with an injected clock:
 * per batch, whether to go on (sched_batch_ran, sched_keep_draining, sched_slice_over);
 * at the end, what the fleet's books get (sched_drain_report). Table-driven: outcome
 * sequences in, decisions out. The same functions decide in worker.c and cli.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "limiter.h"
#include "response.h"
#include "sched.h"

struct batch_step {
	int64_t at; /* ms since the ticket started: the injected clock */
	enum batch_outcome outcome;
	int jobs;
	enum batch_fault fault;
	bool breaker_open;
	bool more;       /* expected: sched_keep_draining */
	bool slice_over; /* expected: sched_slice_over at `at` */
};

struct drain_case {
	const char *name;
	int failures; /* the wiki's failures before the ticket */
	int slot;
	struct batch_step steps[6];
	/* expected report */
	bool reported; /* false: the lease goes back untouched (the pod's fault) */
	bool count_failure, park, drained;
	int64_t backoff_min, backoff_max;
};

/* A table laid out by hand: clang-format would put every field on a line of its own. */
/* clang-format off */
#define STEP(at, o, jobs, fault, more) { at, o, jobs, fault, false, more, false }
#define END { -1, OUTCOME_ABORTED, 0, FAULT_NONE, false, false, false }

static const struct drain_case cases[] = {
	{ "drains in three batches", 0, 0,
	  { STEP(0, OUTCOME_MORE, 100, FAULT_NONE, true), STEP(1000, OUTCOME_MORE, 100, FAULT_NONE, true),
	    STEP(2000, OUTCOME_DRAINED, 50, FAULT_NONE, false), END },
	  true, false, false, true, 0, 0 },
	{ "drained having run nothing is parked", 0, 0,
	  { STEP(0, OUTCOME_DRAINED, 0, FAULT_NONE, false), END }, true, false, true, true, 0, 0 },
	{ "an extra slot never parks", 0, 1,
	  { STEP(0, OUTCOME_DRAINED, 0, FAULT_NONE, false), END }, true, false, false, true, 0, 0 },
	{ "no progress once gets one more try, twice backs off three steps up", 0, 0,
	  { STEP(0, OUTCOME_MORE, 0, FAULT_WIKI, true), STEP(500, OUTCOME_MORE, 0, FAULT_WIKI, false),
	    END },
	  true, true, false, false, 5000, 40000 },
	{ "progress in between resets the no-progress count", 0, 0,
	  { STEP(0, OUTCOME_MORE, 0, FAULT_WIKI, true), STEP(500, OUTCOME_MORE, 10, FAULT_NONE, true),
	    STEP(1000, OUTCOME_MORE, 0, FAULT_WIKI, true), STEP(1500, OUTCOME_DRAINED, 3, FAULT_NONE, false),
	    END },
	  true, false, false, true, 0, 0 },
	{ "a wiki's server error backs off from the base", 0, 0,
	  { STEP(0, OUTCOME_SERVER_ERROR, 0, FAULT_WIKI, false), END }, true, true, false, false, 5000,
	  5000 },
	{ "each failure in a row doubles the ceiling", 3, 0,
	  { STEP(0, OUTCOME_TIMEOUT, 0, FAULT_WIKI, false), END }, true, true, false, false, 5000,
	  40000 },
	{ "a refused request starts three steps up", 0, 0,
	  { STEP(0, OUTCOME_BAD_REQUEST, 0, FAULT_WIKI, false), END }, true, true, false, false, 5000,
	  40000 },
	{ "the ceiling stops at backoff_max", 40, 0,
	  { STEP(0, OUTCOME_SERVER_ERROR, 0, FAULT_WIKI, false), END }, true, true, false, false,
	  5000, 600000 },
	{ "the pod's fault leaves the books alone", 2, 0,
	  { STEP(0, OUTCOME_MORE, 100, FAULT_NONE, true),
	    STEP(900, OUTCOME_SERVER_ERROR, 0, FAULT_POD, false), END },
	  false, false, false, false, 0, 0 },
	{ "an open breaker ends the drain even on more", 0, 0,
	  { { 0, OUTCOME_MORE, 100, FAULT_POD, true, false, false }, END },
	  false, false, false, false, 0, 0 },
	{ "the time slice is over after time_slice, draining may go on", 0, 0,
	  { STEP(0, OUTCOME_MORE, 100, FAULT_NONE, true),
	    STEP(59999, OUTCOME_MORE, 100, FAULT_NONE, true),
	    { 60000, OUTCOME_MORE, 100, FAULT_NONE, false, true, true },
	    { 61000, OUTCOME_DRAINED, 1, FAULT_NONE, false, false, true }, END },
	  true, false, false, true, 0, 0 },
};
/* clang-format on */

static void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backoff_base = 5;
	cfg->backoff_max = 600;
	cfg->time_slice = 60;
}

static void test_case(void **state)
{
	const struct drain_case *c = *state;
	struct config cfg;
	struct sched_ticket t;
	struct batch_result last;
	struct health_verdict v;
	struct coord_drain_report rep;
	enum batch_fault fault = FAULT_NONE;
	bool reported;

	config_defaults(&cfg);
	memset(&t, 0, sizeof(t));
	t.started_ms = 1000000; /* the clock's origin: steps are relative to it */
	t.failures = c->failures;
	t.lease.slot = c->slot;
	memset(&last, 0, sizeof(last));
	for (const struct batch_step *s = c->steps; s->at >= 0; s++) {
		char where[160];
		snprintf(where, sizeof(where), "%s: step at %lld", c->name, (long long)s->at);
		memset(&last, 0, sizeof(last));
		last.outcome = s->outcome;
		last.jobs_ok = s->jobs;
		memset(&v, 0, sizeof(v));
		v.fault = s->fault;
		fault = s->fault;
		sched_batch_ran(&t, &last);
		if (sched_keep_draining(&t, &last, &v, s->breaker_open) != s->more)
			fail_msg("%s: keep draining should be %d", where, s->more);
		if (sched_slice_over(&cfg, &t, t.started_ms + s->at) != s->slice_over)
			fail_msg("%s: slice over should be %d", where, s->slice_over);
		/* A sequence ends where the loop stops. */
		assert_true(s->more || s[1].at < 0);
	}
	reported = sched_drain_report(&cfg, &t, &last, t.batches > 0 ? fault : FAULT_NONE, &rep);
	assert_int_equal(reported, c->reported);
	assert_int_equal(rep.outcome, last.outcome);
	if (!reported)
		return;
	assert_int_equal(rep.count_failure, c->count_failure);
	assert_int_equal(rep.park, c->park);
	assert_int_equal(rep.drained, c->drained);
	if (rep.backoff_ms < c->backoff_min || rep.backoff_ms > c->backoff_max)
		fail_msg("%s: backoff %lld not in [%lld, %lld]", c->name, (long long)rep.backoff_ms,
			 (long long)c->backoff_min, (long long)c->backoff_max);
}

/* The ticket's counts, which the report reads. */
static void test_batch_ran_counts(void **state)
{
	struct sched_ticket t;
	struct batch_result r;

	(void)state;
	memset(&t, 0, sizeof(t));
	memset(&r, 0, sizeof(r));
	r.outcome = OUTCOME_MORE;
	r.jobs_ok = 3;
	r.jobs_failed = 2;
	sched_batch_ran(&t, &r);
	assert_int_equal(t.batches, 1);
	assert_int_equal(t.jobs_run, 5);
	assert_int_equal(t.no_progress, 0);
	r.jobs_ok = r.jobs_failed = 0;
	sched_batch_ran(&t, &r);
	sched_batch_ran(&t, &r);
	assert_int_equal(t.batches, 3);
	assert_int_equal(t.no_progress, 2);
}

/* sched_batch_size: batch sizes over a ticket's life as other wikis start and stop
 * waiting. at: when each batch starts, on the injected clock (ms since the ticket
 * started); batches run back to back, so each one took until the next one's `at`. */
struct size_step {
	int64_t at;
	bool others_wait;
	int maxjobs; /* expected */
};

struct size_case {
	const char *name;
	int maxjobs, alone, maxtime;
	struct size_step steps[10];
};

/* clang-format off */
static const struct size_case size_cases[] = {
	{ "a lone wiki's quick batches double up to maxjobs_alone", 100, 1000, 15,
	  { { 0, false, 100 }, { 100, false, 200 }, { 250, false, 400 }, { 550, false, 800 },
	    { 1100, false, 1000 }, { 1900, false, 1000 }, { -1, false, 0 } } },
	{ "the first batch is small even when nobody waits", 100, 1000, 15,
	  { { 0, false, 100 }, { -1, false, 0 } } },
	{ "someone waiting shrinks the next batch at once, growth starts over", 100, 1000, 15,
	  { { 0, false, 100 }, { 100, false, 200 }, { 250, false, 400 }, { 550, true, 100 },
	    { 650, true, 100 }, { 750, false, 200 }, { 900, false, 400 }, { -1, false, 0 } } },
	{ "batches of a second or more still grow toward a third of maxtime", 100, 1000, 15,
	  { { 0, false, 100 }, { 300, false, 200 }, { 900, false, 400 }, { 2100, false, 800 },
	    { 4500, false, 1000 }, { 9500, false, 1000 }, { 9600, true, 100 },
	    { -1, false, 0 } } },
	{ "slow jobs (20 ms): batches grow past maxjobs to what fits 5 s", 100, 1000, 15,
	  { { 0, false, 100 }, { 2000, false, 200 }, { 6000, false, 250 },
	    { 11000, false, 250 }, { -1, false, 0 } } },
	{ "batches that overran the target shrink, never below maxjobs", 100, 1000, 15,
	  { { 0, false, 100 }, { 100, false, 200 }, { 250, false, 400 },
	    { 10250, false, 200 }, { 20250, false, 100 }, { -1, false, 0 } } },
	{ "maxtime 3: the target is 1 s, a 1 s batch keeps its size", 100, 1000, 3,
	  { { 0, false, 100 }, { 1000, false, 100 }, { 1500, false, 200 }, { -1, false, 0 } } },
	{ "a cap that is no multiple of maxjobs is reached, not passed", 30, 100, 15,
	  { { 0, false, 30 }, { 100, false, 60 }, { 300, false, 100 }, { 700, false, 100 },
	    { -1, false, 0 } } },
	{ "maxjobs_alone at or below maxjobs: no growth", 100, 50, 15,
	  { { 0, false, 100 }, { 100, false, 100 }, { 200, false, 100 }, { -1, false, 0 } } },
};
/* clang-format on */

static void test_size_case(void **state)
{
	const struct size_case *c = *state;
	struct config cfg;
	struct sched_ticket t;
	struct batch_result r;

	config_defaults(&cfg);
	cfg.maxjobs = c->maxjobs;
	cfg.maxjobs_alone = c->alone;
	cfg.maxtime = c->maxtime;
	memset(&t, 0, sizeof(t));
	t.started_ms = 1000000;
	for (const struct size_step *s = c->steps; s->at >= 0; s++) {
		int got;
		if (s != c->steps) {
			/* The batch before this one ran, full, until now. */
			memset(&r, 0, sizeof(r));
			r.outcome = OUTCOME_MORE;
			r.jobs_ok = t.maxjobs;
			r.took_ms = s->at - s[-1].at;
			sched_batch_ran(&t, &r);
		}
		got = sched_batch_size(&cfg, &t, s->others_wait);
		if (got != s->maxjobs || t.maxjobs != s->maxjobs)
			fail_msg("%s: at %lld: maxjobs %d, expected %d", c->name, (long long)s->at,
				 got, s->maxjobs);
	}
}

int main(void)
{
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	enum { M = sizeof(size_cases) / sizeof(size_cases[0]) };
	struct CMUnitTest tests[N + M + 1];

	for (size_t i = 0; i < N; i++) {
		memset(&tests[i], 0, sizeof(tests[i]));
		tests[i].name = cases[i].name;
		tests[i].test_func = test_case;
		tests[i].initial_state = (void *)&cases[i];
	}
	for (size_t i = 0; i < M; i++) {
		memset(&tests[N + i], 0, sizeof(tests[N + i]));
		tests[N + i].name = size_cases[i].name;
		tests[N + i].test_func = test_size_case;
		tests[N + i].initial_state = (void *)&size_cases[i];
	}
	tests[N + M] = (struct CMUnitTest)cmocka_unit_test(test_batch_ran_counts);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
