/* test_jobtype.c - the job-type lists of [drain] priority_types / skip_types: pattern
 * checks, matching, and the choice of the type each batch asks for. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jobtype.h"

static void test_check_list(void **state)
{
	char why[160];

	(void)state;
	assert_int_equal(jobtype_check_list("", why, sizeof(why)), 0);
	assert_int_equal(jobtype_check_list("  , ,", why, sizeof(why)), 0);
	assert_int_equal(jobtype_check_list("cirrusSearch*, refreshLinks\n  wikibase-addUsagesForPage",
					    why, sizeof(why)),
			 0);
	assert_int_equal(jobtype_check_list("a;b", why, sizeof(why)), -EINVAL);
	assert_string_equal(why,
			    "pattern 'a;b' has ';': only [A-Za-z0-9_.:-] and the wildcards * and ?");
	assert_int_equal(jobtype_check_list("[ab]", why, sizeof(why)), -EINVAL);
	char long_pattern[80];
	memset(long_pattern, 'x', 61);
	long_pattern[61] = '\0';
	assert_int_equal(jobtype_check_list(long_pattern, why, sizeof(why)), -EINVAL);
	char many[200] = "";
	for (int i = 0; i < JOBTYPE_LIST_MAX + 1; i++)
		strcat(many, "a ");
	assert_int_equal(jobtype_check_list(many, why, sizeof(why)), -EINVAL);
}

static void test_match(void **state)
{
	(void)state;
	assert_int_equal(jobtype_match("", "refreshLinks"), -1);
	assert_int_equal(jobtype_match("cirrusSearch*, refreshLinks", "refreshLinks"), 1);
	assert_int_equal(jobtype_match("cirrusSearch*, refreshLinks", "cirrusSearchLinksUpdate"), 0);
	assert_int_equal(jobtype_match("cirrusSearch*", "CirrusSearchLinksUpdate"), -1); /* case */
	assert_int_equal(jobtype_match("refresh?inks", "refreshLinks"), 0);
	assert_int_equal(jobtype_match("refreshLinks", "refreshLinksPrioritized"), -1);
	assert_true(jobtype_in("a bb ccc", "bb"));
	assert_false(jobtype_in("a bb ccc", "b"));
	assert_false(jobtype_in("", "b"));
}

/* The list form of job types (jd_wiki.ready_type_names is ASCII, blank-separated). */
static void test_encode(void **state)
{
	static const struct {
		const char *raw;
		size_t len;
		const char *word;
	} cases[] = {
		/* Every type MediaWiki and its extensions use today reads the same. */
		{ "refreshLinks", 12, "refreshLinks" },
		{ "wikibase-addUsagesForPage", 25, "wikibase-addUsagesForPage" },
		{ "SMW\\UpdateJob", 13, "SMW\\UpdateJob" },
		{ "smw.update", 10, "smw.update" },
		/* A blank, a comma, a tab, a newline: the list's separators. */
		{ "foo bar", 7, "foo%20bar" },
		{ "a,b\tc\nd", 7, "a%2Cb%09c%0Ad" },
		/* The escape itself, so the form stays reversible. */
		{ "100%", 4, "100%25" },
		/* Bytes >= 0x80 (UTF-8 or not) and the control bytes, NUL included. */
		{ "\xc3\x9cml", 4, "%C3%9Cml" },
		{ "\xff", 1, "%FF" },
		{ "a\0b\x7f", 4, "a%00b%7F" },
		{ "", 0, "" },
	};
	char out[JOBTYPE_MAX + 1], back[JOBTYPE_MAX + 1];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(jobtype_encode(cases[i].raw, cases[i].len, out, sizeof(out)),
				 (int)strlen(cases[i].word));
		assert_string_equal(out, cases[i].word);
		assert_int_equal(jobtype_decode(out, back, sizeof(back), &len), 0);
		assert_int_equal(len, cases[i].len);
		assert_memory_equal(back, cases[i].raw, len);
	}
	/* A list form longer than a list word may be: left out, never cut. */
	char raw[JOBTYPE_MAX];
	memset(raw, 0xe9, sizeof(raw));
	assert_int_equal(jobtype_encode(raw, sizeof(raw), out, sizeof(out)), -ENAMETOOLONG);
	assert_string_equal(out, "");
	assert_int_equal(jobtype_encode("abc", 3, out, 3), -ENAMETOOLONG);
	assert_int_equal(jobtype_encode("abc", 3, out, 4), 3);
	/* One spelling per type: anything jobtype_encode never writes is refused. */
	static const char *const bad[] = { "a b", "a%2", "a%",  "%zz",
					   "%41", "%c3", "a,b", "\xc3\x9c" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(jobtype_decode(bad[i], back, sizeof(back), &len), -EINVAL);
	assert_int_equal(jobtype_decode("abcd", back, 4, &len), -EINVAL);
	/* A list form is a word of the list: the lists' functions see one type. */
	assert_int_equal(jobtype_encode("foo bar", 7, out, sizeof(out)), 9);
	assert_true(jobtype_in("x foo%20bar y", out));
	assert_false(jobtype_in("x foo%20bar y", "foo"));
}

static void test_next(void **state)
{
	static const struct {
		const char *priority, *skip, *ready, *tried, *last;
		bool ok;
		const char *type;
	} cases[] = {
		/* No lists: always an untyped batch. */
		{ "", "", "a b", "", "", true, "" },
		/* A ready priority type first, in the order of the patterns. */
		{ "p2 p1*", "", "a p1x p2", "", "", true, "p2" },
		{ "p1* p2", "", "a p1x p2", "", "", true, "p1x" },
		/* Once tried, the next priority type, then untyped. */
		{ "p1* p2", "", "a p1x p2", "p1x", "", true, "p2" },
		{ "p1* p2", "", "a p1x p2", "p1x p2", "", true, "" },
		/* No priority type ready: untyped. */
		{ "p*", "", "a b", "", "", true, "" },
		/* A skip list makes every batch typed: ready types in scan order, skipped ones
		 * never, and nothing left is false. */
		{ "", "s*", "a skipme b", "", "", true, "a" },
		{ "", "s*", "a skipme b", "a", "", true, "b" },
		{ "", "s*", "a skipme b", "a b", "", false, "" },
		{ "", "s*", "skipme", "", "", false, "" },
		{ "", "s*", "", "", "", false, "" },
		/* Priority first, skip wins over priority. */
		{ "b s*", "s*", "a skipme b", "", "", true, "b" },
		{ "s*", "s*", "skipme a", "", "", true, "a" },
		/* Round robin after the last type asked for, wrapping around. */
		{ "", "s*", "a b c", "", "a", true, "b" },
		{ "", "s*", "a b c", "", "c", true, "a" },
		{ "", "s*", "a b c", "b", "a", true, "c" },
		{ "", "s*", "a", "", "a", true, "a" },
		{ "", "s*", "a b", "", "gone", true, "a" },
		/* Priority still first, whatever came last. */
		{ "c", "s*", "a b c", "", "a", true, "c" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[JOBTYPE_MAX + 1] = "junk";
		bool ok = jobtype_next(cases[i].priority, cases[i].skip, cases[i].ready,
				       cases[i].tried, cases[i].last, out, sizeof(out));
		if (ok != cases[i].ok || strcmp(out, cases[i].type) != 0)
			fail_msg("case %zu: got %d '%s', want %d '%s'", i, ok, out, cases[i].ok,
				 cases[i].type);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_list),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_next),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
