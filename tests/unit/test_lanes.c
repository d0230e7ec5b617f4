/* test_lanes.c - how many lanes a wiki may use (lanes.h): additive increase after a
 * reduction, multiplicative decrease on contention, and which batches tell of
 * contention. Table-driven, with explicit clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lanes.h"

static void test_allowed(void **state)
{
	static const struct {
		const char *name;
		int cap, reduced;
		int64_t since_ms;
		int allowed;
		enum lanes_why why;
	} cases[] = {
		{ "no reduction: the cap", 4, -1, 0, 4, LANES_ELASTIC },
		{ "cap 1: one lane, by configuration", 1, -1, 0, 1, LANES_CAPPED },
		{ "cap 1 stays capped after contention", 1, 1, 0, 1, LANES_CAPPED },
		{ "just reduced to 2", 4, 2, 0, 2, LANES_LOCKS },
		{ "one lane back per recovery interval", 4, 2, LANES_RECOVER_MS, 3, LANES_LOCKS },
		{ "just short of it: none yet", 4, 2, LANES_RECOVER_MS - 1, 2, LANES_LOCKS },
		{ "back to the cap, elastic again", 4, 2, 2 * LANES_RECOVER_MS, 4, LANES_ELASTIC },
		{ "never above the cap", 4, 1, 100 * (int64_t)LANES_RECOVER_MS, 4, LANES_ELASTIC },
		{ "a cap lowered by a reload below the reduction", 2, 3, 0, 2, LANES_ELASTIC },
		{ "a stored 0 counts as one lane", 8, 0, 0, 1, LANES_LOCKS },
		{ "a clock behind the row: no lane back", 8, 2, -5000, 2, LANES_LOCKS },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lanes_state st = { cases[i].reduced, cases[i].since_ms, LANES_LOCKS };
		int got = lanes_allowed(cases[i].cap, &st);
		if (got != cases[i].allowed)
			fail_msg("%s: %d lanes, expected %d", cases[i].name, got, cases[i].allowed);
		if (lanes_reason(cases[i].cap, &st) != cases[i].why)
			fail_msg("%s: why '%s', expected '%s'", cases[i].name,
				 lanes_why_text(lanes_reason(cases[i].cap, &st)),
				 lanes_why_text(cases[i].why));
	}
	assert_int_equal(lanes_allowed(4, NULL), 4);
	assert_int_equal(lanes_allowed(0, NULL), 1);
}

static void test_decrease(void **state)
{
	(void)state;
	assert_int_equal(lanes_after_contention(8), 4);
	assert_int_equal(lanes_after_contention(5), 2);
	assert_int_equal(lanes_after_contention(2), 1);
	assert_int_equal(lanes_after_contention(1), 1);
	assert_int_equal(lanes_after_contention(0), 1);
}

static void test_contention(void **state)
{
	struct batch_result r;
	enum lanes_why why = LANES_ELASTIC;

	(void)state;
	memset(&r, 0, sizeof(r));
	snprintf(r.reached, sizeof(r.reached), "job-limit");
	r.jobs_failed = 3; /* failures of the jobs' own: no contention */
	assert_false(lanes_contention(&r, &why));
	r.jobs_contended = 1;
	assert_true(lanes_contention(&r, &why));
	assert_int_equal(why, LANES_LOCKS);
	snprintf(r.reached, sizeof(r.reached), "replica-lag-limit");
	assert_true(lanes_contention(&r, &why));
	assert_int_equal(why, LANES_REPLICA);
	r.jobs_contended = 0;
	assert_true(lanes_contention(&r, &why));
	/* A 500 whose page names a deadlock (JobQueueDB::doAck beside another lane). */
	memset(&r, 0, sizeof(r));
	r.outcome = OUTCOME_SERVER_ERROR;
	snprintf(r.detail, sizeof(r.detail),
		 "server error: [x] JobQueueError: Error 1213: "
		 "Deadlock found when trying to get lock");
	assert_true(lanes_contention(&r, &why));
	assert_int_equal(why, LANES_LOCKS);
	snprintf(r.detail, sizeof(r.detail), "server error: Internal error [abc] Exception: boom");
	assert_false(lanes_contention(&r, &why));
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(lanes_why_name(LANES_LOCKS), "locks");
	assert_string_equal(lanes_why_name(LANES_REPLICA), "replica");
	assert_null(lanes_why_name(LANES_ELASTIC));
	assert_int_equal(lanes_why_parse("replica"), LANES_REPLICA);
	assert_int_equal(lanes_why_parse("locks"), LANES_LOCKS);
	assert_int_equal(lanes_why_parse(NULL), LANES_LOCKS);
	assert_string_equal(lanes_why_text(LANES_ELASTIC), "elastic");
	assert_string_equal(lanes_why_text(LANES_CAPPED), "capped");
	assert_string_equal(lanes_why_text(LANES_LOCKS), "reduced after lock errors");
	assert_string_equal(lanes_why_text(LANES_REPLICA), "reduced after replica lag");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_decrease),
		cmocka_unit_test(test_contention),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
