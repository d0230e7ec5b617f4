/* test_reload.c - when a reload takes a file that parses for one cut short by a write
 * in progress (reload_looks_cut). Table-driven: the file in force, the new one, and
 * whether the new one is refused (with a word of the reason). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reload.h"

#define FULL                                                                                       \
	{                                                                                          \
		20, 40, true, " sidecar mediawiki drain coordination"                              \
	}

static void test_looks_cut(void **state)
{
	static const struct {
		const char *name;
		struct config_file_shape cur, next;
		const char *why; /* NULL: taken */
	} cases[] = {
		{ "the same shape", FULL, FULL, NULL },
		{ "a value changed, a key dropped inside a section: an edit",
		  FULL,
		  { 19, 39, true, " sidecar mediawiki drain coordination" },
		  NULL },
		{ "a section added",
		  FULL,
		  { 21, 42, true, " sidecar mediawiki drain coordination scan" },
		  NULL },
		{ "sections reordered",
		  FULL,
		  { 20, 40, true, " drain sidecar coordination mediawiki" },
		  NULL },
		{ "an empty header keeps its section: back to defaults on purpose",
		  FULL,
		  { 17, 37, true, " sidecar mediawiki drain coordination" },
		  NULL },
		{ "empty", FULL, { 0, 0, true, "" }, "sets no key" },
		{ "only comments", FULL, { 0, 12, true, "" }, "sets no key" },
		{ "empty after empty: nothing lost", { 0, 3, true, "" }, { 0, 0, true, "" }, NULL },
		{ "cut mid-line",
		  FULL,
		  { 20, 40, false, " sidecar mediawiki drain coordination" },
		  "line (40) has no newline" },
		{ "no final newline, like the file in force (a ConfigMap's |-)",
		  { 20, 40, false, " sidecar drain" },
		  { 20, 40, false, " sidecar drain" },
		  NULL },
		{ "cut between sections",
		  FULL,
		  { 12, 25, true, " sidecar mediawiki" },
		  "[drain], [coordination] are gone" },
		{ "one section dropped",
		  FULL,
		  { 18, 36, true, " sidecar mediawiki coordination" },
		  "[drain] is gone" },
		{ "a name that only starts like a section is not it",
		  { 5, 5, true, " scan" },
		  { 5, 5, true, " scan_db" },
		  "[scan] is gone" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[512] = "";
		bool cut = reload_looks_cut(&cases[i].cur, &cases[i].next, why, sizeof(why));
		if (cut != (cases[i].why != NULL))
			fail_msg("%s: %s (%s)", cases[i].name, cut ? "refused" : "taken", why);
		if (cut && strstr(why, cases[i].why) == NULL)
			fail_msg("%s: why '%s' lacks '%s'", cases[i].name, why, cases[i].why);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_looks_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
