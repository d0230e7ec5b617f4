/* test_response.c - response_classify on MediaWiki-shaped answers (one cmocka test per
 * table row), outcome names and which outcomes count as failures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

#define ANY (-2) /* do not check this count or elapsed_ms */

struct response_case {
	const char *name;
	long status;
	const char *body;
	bool over_cap;
	enum batch_outcome outcome;
	const char *reached; /* expected r.reached */
	int ok, failed, backoff_types;
	long long elapsed_ms;
	const char *detail;    /* substring of r.detail (NULL: no check); a 200 that is not
				* BAD_RESPONSE must have an empty detail */
	const char *no_detail; /* must not appear in r.detail (NULL: no check) */
};

#define JOB_OK(t) "{\"type\":\"" t "\",\"status\":\"ok\",\"error\":null,\"time\":12}"
#define JOB_FAILED(t)                                                                              \
	"{\"type\":\"" t "\",\"status\":\"failed\",\"error\":\"Exception: boom\",\"time\":3}"

/* A 200 answer with one ok job, the given reached value and no backoffs. */
/* clang-format off */
#define REACHED_BODY(r) "{\"jobs\":[" JOB_OK("refreshLinks") "],\"reached\":\"" r \
			"\",\"backoffs\":[],\"elapsed\":40}"
#define REACHED_CASE(r, o) \
	{ "reached " r, 200, REACHED_BODY(r), false, o, r, 1, 0, 0, 40, NULL, NULL }
/* clang-format on */

static const char html_400[] = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"UTF-8\"/>"
			       "<title>Bad Request</title></head>\n<body>\n<h1>Bad Request</h1>\n"
			       "<p>Invalid or stale signature provided.</p>\n</body></html>\n";

static const struct response_case cases[] = {
	REACHED_CASE("none-ready", OUTCOME_DRAINED),
	REACHED_CASE("job-limit", OUTCOME_MORE),
	REACHED_CASE("time-limit", OUTCOME_MORE),
	REACHED_CASE("memory-limit", OUTCOME_MORE),
	REACHED_CASE("replica-lag-limit", OUTCOME_SLOW_DOWN),
	REACHED_CASE("exception", OUTCOME_SLOW_DOWN),
	REACHED_CASE("none-possible", OUTCOME_SLOW_DOWN),
	REACHED_CASE("read-only", OUTCOME_READ_ONLY),

	{ "3 ok + 1 failed, realistic body", 200,
	  "{\"jobs\":[" JOB_OK("refreshLinks") "," JOB_OK("htmlCacheUpdate") "," JOB_FAILED(
		  "cirrusSearchLinksUpdate") "," JOB_OK("refreshLinks") "],"
									"\"reached\":\"job-limit\",\"backoffs\":[],\"elapsed\":40}",
	  false, OUTCOME_MORE, "job-limit", 3, 1, 0, 40, NULL, NULL },
	{ "backoffs as an object", 200,
	  "{\"jobs\":[],\"reached\":\"none-possible\",\"backoffs\":{\"htmlCacheUpdate\":1700000100},"
	  "\"elapsed\":7}",
	  false, OUTCOME_SLOW_DOWN, "none-possible", 0, 0, 1, 7, NULL, NULL },
	{ "backoffs object with two types", 200,
	  "{\"jobs\":[],\"reached\":\"none-possible\",\"backoffs\":{\"a\":1700000100,\"b\":1700000200},"
	  "\"elapsed\":7}",
	  false, OUTCOME_SLOW_DOWN, "none-possible", 0, 0, 2, 7, NULL, NULL },
	{ "early exit: only jobs and reached", 200, "{\"jobs\":[],\"reached\":\"none-ready\"}",
	  false, OUTCOME_DRAINED, "none-ready", 0, 0, 0, -1, NULL, NULL },
	{ "elapsed parsed", 200,
	  "{\"jobs\":[],\"reached\":\"time-limit\",\"backoffs\":[],\"elapsed\":15234}", false,
	  OUTCOME_MORE, "time-limit", 0, 0, 0, 15234, NULL, NULL },
	{ "elapsed as a float", 200,
	  "{\"jobs\":[],\"reached\":\"time-limit\",\"backoffs\":[],\"elapsed\":15234.0}", false,
	  OUTCOME_MORE, "time-limit", 0, 0, 0, 15234, NULL, NULL },
	{ "whitespace around the JSON", 200, "\n  {\"jobs\":[],\"reached\":\"none-ready\"}\n",
	  false, OUTCOME_DRAINED, "none-ready", 0, 0, 0, -1, NULL, NULL },

	{ "400 MediaWiki HTML error page", 400, html_400, false, OUTCOME_BAD_REQUEST, "", 0, 0, 0,
	  -1, "Invalid or stale signature provided.", "<" },
	{ "401", 401, "Unauthorized", false, OUTCOME_BAD_REQUEST, "", 0, 0, 0, -1, "Unauthorized",
	  NULL },
	{ "403", 403, "", false, OUTCOME_BAD_REQUEST, "", 0, 0, 0, -1, "refused", NULL },
	{ "404", 404, "<html><body>Not Found</body></html>", false, OUTCOME_BAD_REQUEST, "", 0, 0,
	  0, -1, "Not Found", ">" },
	{ "423", 423, "read-only", false, OUTCOME_READ_ONLY, "", 0, 0, 0, -1, "read-only", NULL },
	{ "429", 429, "", false, OUTCOME_SLOW_DOWN, "", 0, 0, 0, -1, "too many", NULL },
	{ "500", 500, "<h1>Internal error</h1>", false, OUTCOME_SERVER_ERROR, "", 0, 0, 0, -1,
	  "Internal error", "<" },
	{ "502", 502, "Bad Gateway", false, OUTCOME_SERVER_ERROR, "", 0, 0, 0, -1, "Bad Gateway",
	  NULL },
	{ "503", 503, "", false, OUTCOME_SERVER_ERROR, "", 0, 0, 0, -1, "server error", NULL },
	{ "302 redirect", 302, "", false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "redirect", NULL },
	{ "non-200 JSON is not trusted", 500, REACHED_BODY("none-ready"), false,
	  OUTCOME_SERVER_ERROR, "", 0, 0, 0, -1, NULL /* any */, NULL },
	{ "204", 204, "", false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "unexpected HTTP status",
	  NULL },

	{ "truncated JSON", 200, "{\"jobs\":[{\"type\":\"refreshLinks\",\"status\":\"ok\"", false,
	  OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "not JSON", NULL },
	{ "PHP warning before the JSON", 200,
	  "<br />\n<b>Warning</b>: foo\n{\"jobs\":[],\"reached\":\"none-ready\"}", false,
	  OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "not JSON", NULL },
	{ "empty body", 200, "", false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "empty body", NULL },
	{ "over cap", 200, REACHED_BODY("none-ready"), true, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1,
	  "max_body_kib", NULL },
	{ "over cap wins over the status", 500, "x", true, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1,
	  "max_body_kib", NULL },
	{ "jobs not a list", 200, "{\"jobs\":{},\"reached\":\"none-ready\"}", false,
	  OUTCOME_BAD_RESPONSE, "", 0, 0, 0, ANY, "\"jobs\"", NULL },
	{ "jobs missing", 200, "{\"reached\":\"none-ready\"}", false, OUTCOME_BAD_RESPONSE, "", 0,
	  0, 0, ANY, "\"jobs\"", NULL },
	{ "reached a number", 200, "{\"jobs\":[],\"reached\":3}", false, OUTCOME_BAD_RESPONSE, "",
	  0, 0, 0, ANY, "\"reached\"", NULL },
	{ "reached missing", 200, "{\"jobs\":[]}", false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, ANY,
	  "\"reached\"", NULL },
	{ "backoffs a string", 200, "{\"jobs\":[],\"reached\":\"none-ready\",\"backoffs\":\"x\"}",
	  false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, ANY, "\"backoffs\"", NULL },
	{ "elapsed a string", 200,
	  "{\"jobs\":[],\"reached\":\"none-ready\",\"backoffs\":[],\"elapsed\":\"40\"}", false,
	  OUTCOME_BAD_RESPONSE, "", 0, 0, 0, ANY, "\"elapsed\"", NULL },
	{ "a job without status", 200,
	  "{\"jobs\":[" JOB_OK("a") ",{\"type\":\"b\",\"time\":1}],\"reached\":\"job-limit\"}",
	  false, OUTCOME_BAD_RESPONSE, "", ANY, ANY, 0, ANY, "\"jobs\"", NULL },
	{ "a job that is not an object", 200, "{\"jobs\":[\"ok\"],\"reached\":\"job-limit\"}",
	  false, OUTCOME_BAD_RESPONSE, "", ANY, ANY, 0, ANY, "\"jobs\"", NULL },
	{ "top-level array", 200, "[{\"jobs\":[],\"reached\":\"none-ready\"}]", false,
	  OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "not an object", NULL },
	{ "unknown reached value", 200, "{\"jobs\":[],\"reached\":\"cosmic-rays\"}", false,
	  OUTCOME_BAD_RESPONSE, "cosmic-rays", 0, 0, 0, ANY, "cosmic-rays", NULL },
	{ "duplicate key", 200, "{\"jobs\":[],\"reached\":\"none-ready\",\"reached\":\"job-limit\"}",
	  false, OUTCOME_BAD_RESPONSE, "", 0, 0, 0, -1, "not JSON", NULL },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void test_classify_case(void **state)
{
	const struct response_case *c = *state;
	struct batch_result r;

	/* Garbage in every field: classify must set what it reports. */
	memset(&r, 0x5a, sizeof(r));
	r.took_ms = 1234;
	response_classify(c->status, c->body, strlen(c->body), c->over_cap, &r);

	if (r.outcome != c->outcome)
		fail_msg("%s: outcome %s, want %s (detail: %s)", c->name, outcome_name(r.outcome),
			 outcome_name(c->outcome), r.detail);
	assert_int_equal(r.http_status, c->status);
	assert_string_equal(r.reached, c->reached);
	if (c->ok != ANY)
		assert_int_equal(r.jobs_ok, c->ok);
	if (c->failed != ANY)
		assert_int_equal(r.jobs_failed, c->failed);
	assert_int_equal(r.backoff_types, c->backoff_types);
	if (c->elapsed_ms != ANY)
		assert_int_equal(r.elapsed_ms, c->elapsed_ms);
	assert_int_equal(r.took_ms, 1234); /* the caller's measurement is left alone */
	assert_non_null(memchr(r.detail, '\0', sizeof(r.detail)));
	if (c->outcome == OUTCOME_BAD_RESPONSE || c->status != 200)
		assert_true(r.detail[0] != '\0'); /* every failure says why */
	if (c->detail != NULL && strstr(r.detail, c->detail) == NULL)
		fail_msg("%s: detail \"%s\" lacks \"%s\"", c->name, r.detail, c->detail);
	if (c->status == 200 && c->outcome != OUTCOME_BAD_RESPONSE)
		assert_string_equal(r.detail, "");
	if (c->no_detail != NULL && strstr(r.detail, c->no_detail) != NULL)
		fail_msg("%s: detail \"%s\" contains \"%s\"", c->name, r.detail, c->no_detail);
}

/* The HTML page becomes readable text: tags gone, blanks folded. */
static void test_html_excerpt(void **state)
{
	struct batch_result r;

	(void)state;
	response_classify(400, html_400, strlen(html_400), false, &r);
	assert_int_equal(r.outcome, OUTCOME_BAD_REQUEST);
	assert_non_null(strstr(r.detail, "Bad Request Bad Request Invalid or stale signature "
					 "provided."));
	assert_null(strchr(r.detail, '<'));
	assert_null(strchr(r.detail, '>'));
	assert_null(strchr(r.detail, '\n'));
	assert_null(strstr(r.detail, "  "));
	assert_null(strstr(r.detail, "charset"));
}

/* A huge error page is cut to fit detail, still NUL-terminated. */
static void test_long_error_page(void **state)
{
	struct batch_result r;
	size_t n = 100000;
	char *body = malloc(n);

	(void)state;
	assert_non_null(body);
	memset(body, 'e', n);
	response_classify(503, body, n, false, &r);
	assert_int_equal(r.outcome, OUTCOME_SERVER_ERROR);
	assert_true(strlen(r.detail) < sizeof(r.detail));
	assert_non_null(strstr(r.detail, "eeee"));
	free(body);
}

/* The body need not be NUL-terminated: only len bytes are read. */
static void test_body_not_terminated(void **state)
{
	static const char body[] = "{\"jobs\":[],\"reached\":\"none-ready\"}GARBAGE";
	struct batch_result r;

	(void)state;
	response_classify(200, body, strlen(body) - strlen("GARBAGE"), false, &r);
	assert_int_equal(r.outcome, OUTCOME_DRAINED);
	response_classify(200, body, strlen(body), false, &r);
	assert_int_equal(r.outcome, OUTCOME_BAD_RESPONSE);
}

/* A long unknown reached value is cut to fit r.reached, not overflowed. */
static void test_long_reached(void **state)
{
	static const char body[] =
		"{\"jobs\":[],\"reached\":\"a-very-long-reached-value-from-the-future-xxxxxxxx\"}";
	struct batch_result r;

	(void)state;
	response_classify(200, body, strlen(body), false, &r);
	assert_int_equal(r.outcome, OUTCOME_BAD_RESPONSE);
	assert_int_equal(strlen(r.reached), sizeof(r.reached) - 1);
	assert_memory_equal(r.reached, "a-very-long-reached-value", sizeof(r.reached) - 1);
}

static void test_outcome_names(void **state)
{
	static const char *const want[OUTCOME_COUNT] = {
		[OUTCOME_DRAINED] = "drained",           [OUTCOME_MORE] = "more",
		[OUTCOME_SLOW_DOWN] = "slow_down",       [OUTCOME_READ_ONLY] = "read_only",
		[OUTCOME_BAD_REQUEST] = "bad_request",   [OUTCOME_SERVER_ERROR] = "server_error",
		[OUTCOME_TIMEOUT] = "timeout",           [OUTCOME_REFUSED] = "refused",
		[OUTCOME_BAD_RESPONSE] = "bad_response", [OUTCOME_ABORTED] = "aborted",
	};

	(void)state;
	for (int i = 0; i < OUTCOME_COUNT; i++) {
		const char *n = outcome_name((enum batch_outcome)i);
		assert_non_null(n);
		assert_true(n[0] != '\0');
		assert_string_equal(n, want[i]);
		for (const char *p = n; *p; p++) /* snake_case: usable as a metric label */
			assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(n, outcome_name((enum batch_outcome)j));
	}
	assert_string_equal(outcome_name(OUTCOME_COUNT), "unknown");
	assert_string_equal(outcome_name((enum batch_outcome) - 1), "unknown");
}

static void test_outcome_is_failure(void **state)
{
	(void)state;
	for (int i = 0; i < OUTCOME_COUNT; i++) {
		enum batch_outcome o = (enum batch_outcome)i;
		bool want = !(o == OUTCOME_DRAINED || o == OUTCOME_MORE || o == OUTCOME_ABORTED);
		if (outcome_is_failure(o) != want)
			fail_msg("outcome_is_failure(%s) = %d", outcome_name(o), !want);
	}
}

/* A 400 "Invalid or stale signature" is a wrong secret only when the request came back
 * before its signature could expire; later it is an overloaded MediaWiki. */
static void test_stale_signature_is_not_a_wrong_secret(void **state)
{
	static const char body[] = "Invalid or stale signature provided";
	static const struct {
		long long took_ms;
		enum batch_outcome want;
	} rows[] = {
		{ 120, OUTCOME_BAD_REQUEST },   /* answered at once: the secret is wrong */
		{ 28000, OUTCOME_BAD_REQUEST }, /* still inside a 30 s lifetime */
		{ 29500, OUTCOME_SLOW_DOWN },   /* MediaWiki's whole-second clock */
		{ 32000, OUTCOME_SLOW_DOWN },   /* waited in front of PHP past the lifetime */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct batch_result r = { 0 };
		response_classify(400, body, sizeof(body) - 1, false, &r);
		r.took_ms = rows[i].took_ms;
		response_check_stale_signature(&r, 30);
		if (r.outcome != rows[i].want)
			fail_msg("took %lld ms: %s, want %s", rows[i].took_ms,
				 outcome_name(r.outcome), outcome_name(rows[i].want));
		if (r.outcome == OUTCOME_SLOW_DOWN)
			assert_non_null(strstr(r.detail, "not a wrong secret"));
		else
			assert_non_null(strstr(r.detail, "secret"));
	}
	/* Other statuses are left alone, however long they took. */
	{
		struct batch_result r = { 0 };
		response_classify(503, "busy", 4, false, &r);
		r.took_ms = 60000;
		response_check_stale_signature(&r, 30);
		assert_int_equal(r.outcome, OUTCOME_SERVER_ERROR);
	}
}

/* Lock errors of several lanes on one wiki are told apart from other failures: they
 * take lanes away (lanes.h), a job's own bug does not. */
static void test_contention_errors(void **state)
{
	static const char body[] =
		"{\"jobs\":["
		"{\"type\":\"refreshLinks\",\"status\":\"failed\",\"error\":"
		"\"LinksUpdate already running for this page, try again later.\",\"time\":1},"
		"{\"type\":\"refreshLinks\",\"status\":\"failed\",\"error\":\"Wikimedia\\\\Rdbms"
		"\\\\DBQueryError: Error 1213: Deadlock found when trying to get lock\",\"time\":2},"
		"{\"type\":\"null\",\"status\":\"failed\",\"error\":\"Exception: boom\",\"time\":3},"
		"{\"type\":\"null\",\"status\":\"failed\",\"error\":null,\"time\":3},"
		"{\"type\":\"null\",\"status\":\"ok\",\"error\":null,\"time\":3}],"
		"\"reached\":\"job-limit\",\"backoffs\":[],\"elapsed\":40}";
	struct batch_result r;

	(void)state;
	memset(&r, 0, sizeof(r));
	response_classify(200, body, strlen(body), false, &r);
	assert_int_equal(r.outcome, OUTCOME_MORE);
	assert_int_equal(r.jobs_ok, 1);
	assert_int_equal(r.jobs_failed, 4);
	assert_int_equal(r.jobs_contended, 2);
	assert_true(response_is_contention("Lock wait timeout exceeded; try restarting"));
	assert_true(response_is_contention("LOCK WAIT TIMEOUT EXCEEDED"));
	assert_false(response_is_contention("Exception: boom"));
	assert_false(response_is_contention(""));
	assert_false(response_is_contention(NULL));
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_contention_errors),
		cmocka_unit_test(test_html_excerpt),
		cmocka_unit_test(test_long_error_page),
		cmocka_unit_test(test_body_not_terminated),
		cmocka_unit_test(test_long_reached),
		cmocka_unit_test(test_outcome_names),
		cmocka_unit_test(test_outcome_is_failure),
		cmocka_unit_test(test_stale_signature_is_not_a_wrong_secret),
	};
	const size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(NCASES + nfixed, sizeof(*tests));
	int failed;

	if (tests == NULL)
		return 1;
	for (size_t i = 0; i < NCASES; i++) {
		tests[i].name = cases[i].name;
		tests[i].test_func = test_classify_case;
		tests[i].initial_state = (void *)&cases[i];
	}
	memcpy(tests + NCASES, fixed, sizeof(fixed));
	failed = _cmocka_run_group_tests("response", tests, NCASES + nfixed, NULL, NULL);
	free(tests);
	return failed;
}
