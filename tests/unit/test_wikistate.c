/* test_wikistate.c - a wiki's state (wikistate.h): which fact wins when several hold,
 * and the why. Table-driven: each case is the facts and the state expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wikistate.h"

/* A wiki with ready jobs and nothing else: waiting. Each case changes some of it. */
#define BASE .oldest_ready_age_s = 30

static void test_states(void **state)
{
	static const struct {
		const char *name;
		struct wikistate_facts f;
		enum wiki_state want;
		const char *why_has;
	} cases[] = {
		{ "ready jobs, no worker", { BASE }, WIKI_WAITING, "waiting for a worker" },
		{ "nothing ready", { .oldest_ready_age_s = -1 }, WIKI_IDLE, "no ready job" },
		{ "a holder", { BASE, .holder = "pod-a:1" }, WIKI_DRAINING, "pod-a:1 holds" },
		{ "an empty holder is none", { BASE, .holder = "" }, WIKI_WAITING, NULL },
		{ "backed off",
		  { BASE, .backoff_s = 9, .failures = 2, .last_outcome = "timeout" },
		  WIKI_BACKOFF,
		  "2 failure(s) in a row, last outcome timeout" },
		{ "a backoff that ended: waiting again",
		  { BASE, .backoff_s = -3, .last_outcome = "timeout" },
		  WIKI_WAITING,
		  NULL },
		{ "parked", { BASE, .parked = true }, WIKI_PARKED, "none of its ready jobs" },
		{ "read-only, backed off",
		  { BASE, .backoff_s = 9, .failures = 1, .last_outcome = "read_only" },
		  WIKI_READ_ONLY,
		  "read-only" },
		{ "read-only, backoff ended, jobs still wait",
		  { BASE, .last_outcome = "read_only" },
		  WIKI_READ_ONLY,
		  "when a worker is free" },
		{ "read-only, nothing waits any more",
		  { .oldest_ready_age_s = -1, .last_outcome = "read_only" },
		  WIKI_IDLE,
		  NULL },
		{ "read-only but drained by a holder now",
		  { BASE, .holder = "pod-a:1", .last_outcome = "read_only" },
		  WIKI_DRAINING,
		  NULL },
		{ "paused, with a backlog (status used to say waiting)",
		  { BASE, .paused = true },
		  WIKI_PAUSED,
		  "paused by an operator" },
		{ "paused, idle", { .oldest_ready_age_s = -1, .paused = true }, WIKI_PAUSED, NULL },
		{ "paused while its holder finishes a batch",
		  { BASE, .paused = true, .paused_by = "ann@pod", .pause_reason = "migration",
		    .holder = "pod-a:1" },
		  WIKI_PAUSED,
		  "paused by ann@pod: migration" },
		{ "paused and read-only",
		  { BASE, .paused = true, .last_outcome = "read_only" },
		  WIKI_PAUSED,
		  NULL },
		{ "unreadable wins over everything",
		  { BASE, .scan_error = "1146: no table", .paused = true, .holder = "pod-a:1" },
		  WIKI_UNREADABLE,
		  "cannot be read: 1146: no table" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[512];
		enum wiki_state got = wikistate_of(&cases[i].f, why, sizeof(why));
		if (got != cases[i].want)
			fail_msg("%s: %s, expected %s (%s)", cases[i].name, wikistate_name(got),
				 wikistate_name(cases[i].want), why);
		if (cases[i].why_has != NULL && strstr(why, cases[i].why_has) == NULL)
			fail_msg("%s: why '%s' lacks '%s'", cases[i].name, why, cases[i].why_has);
		/* The fleet view asks without a why: the same state. */
		assert_int_equal(wikistate_of(&cases[i].f, NULL, 0), got);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(wikistate_name(WIKI_READ_ONLY), "read-only");
	assert_string_equal(wikistate_name(WIKI_PAUSED), "paused");
	assert_string_equal(wikistate_name(WIKI_IDLE), "idle");
	assert_string_equal(wikistate_name(WIKI_STATE_COUNT), "unknown");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
