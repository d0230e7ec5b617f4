/* test_changes.c - which scanned figures are written to the coordination database
 * (changes.h): new, changed, with work or unreadable, or due for a refresh; an idle
 * wiki whose figures did not change costs no write. Explicit clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "changes.h"

/* An idle wiki as a full scan sees it: no ready job, some history. */
static struct backlog idle(void)
{
	struct backlog b;

	memset(&b, 0, sizeof(b));
	b.max_job_id = 41;
	return b;
}

static void test_idle_wiki_is_written_once_then_left_alone(void **state)
{
	struct wiki_written w = { 0 };
	struct backlog b = idle();

	(void)state;
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 1000)); /* nothing written yet */
	changes_note_written(&w, &b, SCAN_FULL, 1000);
	assert_false(changes_need_write(&w, &b, SCAN_FULL, 2000));
	/* A light scan reads no claims and no highest id: the same light half. */
	b.max_job_id = 0;
	b.orphaned_claims = -1;
	assert_false(changes_need_write(&w, &b, SCAN_LIGHT, 3000));
	/* Until the refresh is due. */
	assert_false(changes_need_write(&w, &b, SCAN_LIGHT, 1000 + CHANGES_REFRESH_MS - 1));
	assert_true(changes_need_write(&w, &b, SCAN_LIGHT, 1000 + CHANGES_REFRESH_MS));
}

static void test_a_change_of_any_figure_is_written(void **state)
{
	struct wiki_written w = { 0 };
	struct backlog base = idle(), b;

	(void)state;
	changes_note_written(&w, &base, SCAN_FULL, 0);
	b = base;
	b.max_job_id = 42; /* a job came and went: unparks a parked wiki */
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
	assert_false(changes_need_write(&w, &b, SCAN_LIGHT, 10)); /* a light scan has no id */
	b = base;
	b.orphaned_claims = 3;
	b.oldest_claim_ms = 1700000000000;
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
	b = base;
	b.abandoned = 1;
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
	b = base;
	b.ready_types = 1; /* e.g. only skipped types' jobs changed the count */
	assert_true(changes_need_write(&w, &b, SCAN_LIGHT, 10));
	b = base;
	strcpy(b.types, "refreshLinks");
	assert_true(changes_need_write(&w, &b, SCAN_LIGHT, 10));
}

static void test_work_and_errors_are_written_every_scan(void **state)
{
	struct wiki_written w = { 0 };
	struct backlog b = idle();

	(void)state;
	b.oldest_ready_ms = 1700000000000;
	b.ready_types = 1;
	changes_note_written(&w, &b, SCAN_FULL, 0);
	/* Same figures, but a worker may have marked the wiki drained meanwhile. */
	assert_true(changes_need_write(&w, &b, SCAN_LIGHT, 10));
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
	b = idle();
	b.failed = true;
	strcpy(b.error, "1146 table doesn't exist");
	changes_note_written(&w, &b, SCAN_FULL, 0);
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
	/* Back to idle after the error: a change. */
	b = idle();
	assert_true(changes_need_write(&w, &b, SCAN_FULL, 10));
}

static void test_light_write_then_first_full_scan(void **state)
{
	struct wiki_written w = { 0 };
	struct backlog light = idle(), full = idle();

	(void)state;
	light.max_job_id = 0;
	light.orphaned_claims = -1;
	changes_note_written(&w, &light, SCAN_LIGHT, 0);
	assert_false(changes_need_write(&w, &light, SCAN_LIGHT, 10));
	/* Nothing of a full scan written yet: its half is new. */
	assert_true(changes_need_write(&w, &full, SCAN_FULL, 10));
	changes_note_written(&w, &full, SCAN_FULL, 10);
	assert_false(changes_need_write(&w, &full, SCAN_FULL, 20));
	assert_false(changes_need_write(&w, &light, SCAN_LIGHT, 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_wiki_is_written_once_then_left_alone),
		cmocka_unit_test(test_a_change_of_any_figure_is_written),
		cmocka_unit_test(test_work_and_errors_are_written_every_scan),
		cmocka_unit_test(test_light_write_then_first_full_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
