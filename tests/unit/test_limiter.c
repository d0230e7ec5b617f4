/* test_limiter.c - whose fault a batch is, and the breaker that follows from it
 * (health_judge with an injected clock), and what the fleet's books get for it
 * (sched_drain_report). Table-driven: batch sequences in, verdicts out. */
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

#define ANY -1

struct step {
	int64_t at; /* ms */
	const char *wiki;
	enum batch_outcome outcome;
	int jobs;
	bool probe; /* the probe slot: the pause must be over */
	enum batch_fault fault;
	enum breaker_state state;
	int64_t pause_ms; /* ANY: not checked */
	bool closed;
	int64_t took; /* ms the batch took: it started at `at - took` */
};

struct scenario {
	const char *name;
	int breaker_failures; /* 0: the shipped 2 */
	struct step steps[16];
};

/* clang-format off */
#define OK(t, w) { t, w, OUTCOME_MORE, 100, false, FAULT_NONE, BREAKER_CLOSED, ANY, false, 0 }
/* A success of a batch that started `took` ms before it was reported. */
#define OK_INFLIGHT(t, w, took, state) \
	{ t, w, OUTCOME_MORE, 100, false, FAULT_NONE, state, ANY, false, took }
#define S503(t, w, fault, state) \
	{ t, w, OUTCOME_SERVER_ERROR, 0, false, fault, state, ANY, false, 0 }
/* clang-format on */

static const struct scenario scenarios[] = {
	{ "broken wikis beside healthy ones never open the breaker",
	  0,
	  { OK(0, "a"),
	    OK(100, "b"),
	    { 200, "x", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 300, "y", OUTCOME_BAD_RESPONSE, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 400, "z", OUTCOME_TIMEOUT, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 500, "w", OUTCOME_BAD_REQUEST, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 600, "x", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 700, "v", OUTCOME_READ_ONLY, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    OK(800, "a") } },
	{ "a 500 on one wiki while the others succeed is that wiki's after one try",
	  0,
	  { OK(0, "a"),
	    OK(100, "b"),
	    { 200, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_POD, BREAKER_CLOSED, ANY, false, 0 },
	    OK(300, "b"),
	    { 400, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    OK(500, "b"),
	    { 600, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false,
	      0 } } },
	{ "no progress is the wiki's, never the pod's",
	  0,
	  { OK(0, "a"),
	    { 100, "n", OUTCOME_MORE, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 200, "a", OUTCOME_MORE, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    { 300, "a", OUTCOME_MORE, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 } } },
	{ "a success older than five minutes vouches for nothing",
	  0,
	  { OK(0, "a"),
	    OK(0, "b"),
	    { 400000, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false,
	      0 },
	    { 400100, "b", OUTCOME_TIMEOUT, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 } } },
	{ "503 on two healthy wikis opens; probes stay cheap and capped; a success closes",
	  0,
	  { OK(0, "a"),
	    OK(100, "b"),
	    { 1000, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_POD, BREAKER_CLOSED, ANY, false, 0 },
	    { 1100, "b", OUTCOME_SERVER_ERROR, 0, false, FAULT_POD, BREAKER_OPEN, 5000, false, 0 },
	    /* a batch in flight when it opened changes nothing */
	    { 1200, "x", OUTCOME_TIMEOUT, 0, false, FAULT_WIKI, BREAKER_OPEN, 4900, false, 0 },
	    { 6100, "b", OUTCOME_SERVER_ERROR, 0, true, FAULT_POD, BREAKER_OPEN, 10000, false, 0 },
	    { 16100, "b", OUTCOME_SERVER_ERROR, 0, true, FAULT_POD, BREAKER_OPEN, 10000, false, 0 },
	    { 26100, "b", OUTCOME_SERVER_ERROR, 0, true, FAULT_POD, BREAKER_OPEN, 10000, false, 0 },
	    { 36100, "b", OUTCOME_MORE, 50, true, FAULT_NONE, BREAKER_CLOSED, 0, true, 0 },
	    OK(36200, "a") } },
	{ "connection refused opens at once; a probe on a broken wiki keeps the pause",
	  0,
	  { OK(0, "a"),
	    { 100, "a", OUTCOME_REFUSED, 0, false, FAULT_POD, BREAKER_OPEN, 5000, false, 0 },
	    { 5100, "x", OUTCOME_BAD_RESPONSE, 0, true, FAULT_WIKI, BREAKER_OPEN, 5000, false, 0 },
	    { 10100, "a", OUTCOME_REFUSED, 0, true, FAULT_POD, BREAKER_OPEN, 10000, false, 0 },
	    { 20100, "a", OUTCOME_DRAINED, 3, true, FAULT_NONE, BREAKER_CLOSED, 0, true, 0 } } },
	{ "several recently healthy wikis failing with 5xx open it (breaker_failures 3)",
	  3,
	  { OK(0, "a"), OK(100, "b"), OK(200, "c"), S503(1000, "a", FAULT_POD, BREAKER_CLOSED),
	    S503(1100, "a", FAULT_WIKI, BREAKER_CLOSED), /* the same wiki counts once */
	    S503(1200, "b", FAULT_POD, BREAKER_CLOSED), S503(1300, "b", FAULT_WIKI, BREAKER_CLOSED),
	    S503(1400, "c", FAULT_POD, BREAKER_OPEN) } },
	{ "successes in flight when the failures began erase no evidence (3 wikis, 2 workers)",
	  3,
	  { OK(0, "a"),
	    OK(100, "b"),
	    OK(200, "c"),
	    S503(1000, "a", FAULT_POD, BREAKER_CLOSED),
	    /* c's batch began at 900, before MediaWiki failed: it proves nothing now */
	    OK_INFLIGHT(1050, "c", 150, BREAKER_CLOSED),
	    S503(1100, "b", FAULT_POD, BREAKER_CLOSED),
	    S503(1200, "a", FAULT_WIKI, BREAKER_CLOSED),
	    OK_INFLIGHT(1250, "d", 1000, BREAKER_CLOSED), /* a long one, began at 250 */
	    S503(1300, "c", FAULT_POD, BREAKER_OPEN),
	    /* a success in flight since before it opened does not close it either */
	    OK_INFLIGHT(1400, "a", 300, BREAKER_OPEN),
	    { 6300, "a", OUTCOME_MORE, 10, true, FAULT_NONE, BREAKER_CLOSED, 0, true, 100 } } },
	{ "one wiki failing again and again while the others succeed never opens it",
	  0,
	  { OK(0, "a"),
	    OK(0, "b"),
	    OK(0, "x"),
	    S503(1000, "x", FAULT_POD, BREAKER_CLOSED),
	    OK_INFLIGHT(1100, "a", 300, BREAKER_CLOSED), /* began before x failed */
	    S503(1200, "x", FAULT_WIKI, BREAKER_CLOSED),
	    OK_INFLIGHT(1500, "b", 200, BREAKER_CLOSED), /* began after: outdates x's */
	    S503(1600, "x", FAULT_WIKI, BREAKER_CLOSED),
	    OK(1700, "a"),
	    S503(1800, "x", FAULT_WIKI, BREAKER_CLOSED),
	    S503(1900, "x", FAULT_WIKI, BREAKER_CLOSED),
	    { 2000, "x", OUTCOME_TIMEOUT, 0, false, FAULT_WIKI, BREAKER_CLOSED, ANY, false, 0 },
	    OK(2100, "b"),
	    /* until it succeeds again: then it vouches once more */
	    OK(3000, "x"),
	    S503(3100, "x", FAULT_POD, BREAKER_CLOSED) } },
	{ "breaker_failures 3, but only two wikis drained here lately: both failing open it",
	  3,
	  { OK(0, "a"), OK(100, "b"), S503(1000, "a", FAULT_POD, BREAKER_CLOSED),
	    S503(1100, "a", FAULT_WIKI, BREAKER_CLOSED),
	    S503(1200, "b", FAULT_POD, BREAKER_OPEN) } },
	{ "one wiki drained here lately: its failures alone never open it",
	  3,
	  { OK(0, "a"), S503(1000, "a", FAULT_POD, BREAKER_CLOSED),
	    S503(1100, "a", FAULT_WIKI, BREAKER_CLOSED),
	    S503(1200, "q", FAULT_WIKI, BREAKER_CLOSED) } },
	{ "a failure older than five minutes is no longer evidence",
	  0,
	  { OK(0, "a"), OK(0, "b"), S503(1000, "a", FAULT_POD, BREAKER_CLOSED),
	    OK_INFLIGHT(300000, "b", 299500, BREAKER_CLOSED), /* began before a failed */
	    S503(302000, "b", FAULT_POD, BREAKER_CLOSED) } },
	{ "while open, unknown wikis' failures are their own",
	  0,
	  { OK(0, "a"),
	    OK(0, "b"),
	    { 10, "a", OUTCOME_TIMEOUT, 0, false, FAULT_POD, BREAKER_CLOSED, ANY, false, 0 },
	    { 20, "b", OUTCOME_TIMEOUT, 0, false, FAULT_POD, BREAKER_OPEN, ANY, false, 0 },
	    { 30, "q", OUTCOME_SERVER_ERROR, 0, false, FAULT_WIKI, BREAKER_OPEN, ANY, false, 0 },
	    { 40, "a", OUTCOME_SERVER_ERROR, 0, false, FAULT_POD, BREAKER_OPEN, ANY, false, 0 } } },
};

static void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backoff_base = 5;
	cfg->backoff_max = 600;
	cfg->probe_interval_max = 10;
	cfg->breaker_failures = 2;
	cfg->maxtime = 15;
}

static void test_scenario(void **state)
{
	const struct scenario *sc = *state;
	struct pod_health h;
	struct config cfg;

	memset(&h, 0, sizeof(h));
	config_defaults(&cfg);
	if (sc->breaker_failures > 0)
		cfg.breaker_failures = sc->breaker_failures;
	for (size_t i = 0; i < sizeof(sc->steps) / sizeof(sc->steps[0]) && sc->steps[i].wiki; i++) {
		const struct step *st = &sc->steps[i];
		struct batch_result r = { .outcome = st->outcome,
					  .jobs_ok = st->jobs,
					  .took_ms = st->took };
		struct health_verdict v;
		if (st->probe && !health_start_probe(&h, st->at))
			fail_msg("step %zu: no probe allowed at %lld ms", i, (long long)st->at);
		health_judge(&h, &cfg, &r, st->wiki, st->probe, st->at, &v);
		if (v.fault != st->fault)
			fail_msg("step %zu (%s %s): fault %d, want %d", i, st->wiki,
				 outcome_name(st->outcome), v.fault, st->fault);
		if (h.breaker != st->state)
			fail_msg("step %zu: breaker %d, want %d", i, h.breaker, st->state);
		if (st->pause_ms != ANY && v.pause_ms != st->pause_ms)
			fail_msg("step %zu: pause %lld ms, want %lld", i, (long long)v.pause_ms,
				 (long long)st->pause_ms);
		if (v.closed != st->closed)
			fail_msg("step %zu: closed %d, want %d", i, v.closed, st->closed);
	}
}

/* The outage's start is where the evidence began, for lifting the backoffs it caused. */
static void test_outage_since_and_probe_order(void **state)
{
	struct pod_health h;
	struct config cfg;
	struct batch_result ok = { .outcome = OUTCOME_MORE, .jobs_ok = 1 };
	struct batch_result bad = { .outcome = OUTCOME_SERVER_ERROR, .http_status = 503 };
	struct health_verdict v;
	char targets[4][256];

	(void)state;
	memset(&h, 0, sizeof(h));
	config_defaults(&cfg);
	health_judge(&h, &cfg, &ok, "old", false, 0, &v);
	health_judge(&h, &cfg, &ok, "newer", false, 500, &v);
	health_judge(&h, &cfg, &ok, "newest", false, 900, &v);
	assert_int_equal(health_probe_targets(&h, targets, 4), 3);
	assert_string_equal(targets[0], "newest");
	assert_string_equal(targets[1], "newer");
	assert_string_equal(targets[2], "old");
	health_judge(&h, &cfg, &bad, "newest", false, 1000, &v);
	health_judge(&h, &cfg, &bad, "newer", false, 3000, &v);
	assert_true(v.opened);
	assert_true(health_start_probe(&h, 8000));
	health_judge(&h, &cfg, &ok, "newest", true, 8000, &v);
	assert_true(v.closed);
	assert_int_equal(v.outage_since, 1000);
}

/* What the fleet's books get: the pod's fault leaves them untouched. */
static void test_drain_report_policy(void **state)
{
	struct config cfg;
	struct sched_ticket t;
	struct coord_drain_report r;
	struct batch_result res = { .outcome = OUTCOME_SERVER_ERROR };

	(void)state;
	config_defaults(&cfg);
	memset(&t, 0, sizeof(t));
	assert_false(sched_drain_report(&cfg, &t, &res, FAULT_POD, &r));
	assert_false(r.count_failure);
	assert_int_equal(r.backoff_ms, 0);

	assert_true(sched_drain_report(&cfg, &t, &res, FAULT_WIKI, &r));
	assert_true(r.count_failure);
	assert_true(r.backoff_ms >= 5000 && r.backoff_ms <= 5000);

	/* One answer without progress: no backoff yet; the second in a row: three steps up. */
	res.outcome = OUTCOME_MORE;
	t.no_progress = 1;
	assert_true(sched_drain_report(&cfg, &t, &res, FAULT_WIKI, &r));
	assert_false(r.count_failure);
	t.no_progress = 2;
	assert_true(sched_drain_report(&cfg, &t, &res, FAULT_WIKI, &r));
	assert_true(r.count_failure);
	assert_true(r.backoff_ms >= 5000 && r.backoff_ms <= 40000);

	/* Drained having run nothing: parked; not in an extra slot. */
	res.outcome = OUTCOME_DRAINED;
	assert_true(sched_drain_report(&cfg, &t, &res, FAULT_NONE, &r));
	assert_true(r.drained && r.park && !r.count_failure);
	t.lease.slot = 1;
	assert_true(sched_drain_report(&cfg, &t, &res, FAULT_NONE, &r));
	assert_false(r.park);
}

int main(void)
{
	enum { N = sizeof(scenarios) / sizeof(scenarios[0]) };
	struct CMUnitTest tests[N + 2];

	for (size_t i = 0; i < N; i++) {
		memset(&tests[i], 0, sizeof(tests[i]));
		tests[i].name = scenarios[i].name;
		tests[i].test_func = test_scenario;
		tests[i].initial_state = (void *)&scenarios[i];
	}
	tests[N] = (struct CMUnitTest)cmocka_unit_test(test_outage_since_and_probe_order);
	tests[N + 1] = (struct CMUnitTest)cmocka_unit_test(test_drain_report_policy);
	return _cmocka_run_group_tests("limiter", tests, N + 2, NULL, NULL);
}
