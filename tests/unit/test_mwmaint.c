/* test_mwmaint.c - MediaWiki's maintenance commands as status --wiki spells them
 * (mwmaint.h): the release a version label names, the wiki ID, the manageJobs form for
 * each release and the quoting of odd job types. Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mwmaint.h"

static void test_release(void **state)
{
	static const struct {
		const char *label;
		int release;
	} cases[] = {
		{ "mw1.43-wbs2", 43 },
		{ "mw1.39-wbs1", 39 },
		{ "1.40.0", 40 },
		{ "1.39", 39 },
		{ "", -1 },
		{ "wbs", -1 },
		{ "11.2", -1 },
		{ "1.", -1 },
		{ "v2.1.5", -1 },
		{ "mw1.100", 100 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (mwmaint_release(cases[i].label) != cases[i].release)
			fail_msg("'%s': %d, expected %d", cases[i].label,
				 mwmaint_release(cases[i].label), cases[i].release);
	assert_int_equal(mwmaint_release(NULL), -1);
}

static void test_wiki_id(void **state)
{
	struct wiki w = { .domain = "a.test", .dbname = "mwdb_1a2b", .table_prefix = "mwt_3c_" };
	char id[128];

	(void)state;
	mwmaint_wiki_id(&w, id, sizeof(id));
	assert_string_equal(id, "mwdb_1a2b-mwt_3c_");
	w.table_prefix = "";
	mwmaint_wiki_id(&w, id, sizeof(id));
	assert_string_equal(id, "mwdb_1a2b");
}

static void test_requeue(void **state)
{
	static const struct {
		int release;
		const char *type, *want;
	} cases[] = {
		{ 43, "refreshLinks",
		  "php maintenance/run.php manageJobs --wiki db-p_ --type refreshLinks "
		  "--action repush-abandoned" },
		{ 40, "null",
		  "php maintenance/run.php manageJobs --wiki db-p_ --type null "
		  "--action repush-abandoned" },
		{ 39, "refreshLinks",
		  "php maintenance/manageJobs.php --wiki db-p_ --type refreshLinks "
		  "--action repush-abandoned" },
		{ 43, "cirrusSearch:Links Update",
		  "php maintenance/run.php manageJobs --wiki db-p_ --type 'cirrusSearch:Links "
		  "Update' --action repush-abandoned" },
		{ 43, "it's",
		  "php maintenance/run.php manageJobs --wiki db-p_ --type 'it'\\''s' "
		  "--action repush-abandoned" },
		{ 43, "$(rm -rf /)",
		  "php maintenance/run.php manageJobs --wiki db-p_ --type '$(rm -rf /)' "
		  "--action repush-abandoned" },
	};
	char cmd[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mwmaint_requeue(cmd, sizeof(cmd), cases[i].release, "db-p_", cases[i].type);
		assert_string_equal(cmd, cases[i].want);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_wiki_id),
		cmocka_unit_test(test_requeue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
