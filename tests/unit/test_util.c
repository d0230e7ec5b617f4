/* test_util.c - identifier checks, strict integer parsing, MediaWiki timestamps, the
 * growable buffer and the logger (text and JSON, escaping, cutting, levels). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "scan.h"
#include "util.h"

/* Fills dst with n copies of c and a NUL (dst has room for n + 1). */
static char *fill(char *dst, char c, size_t n)
{
	memset(dst, c, n);
	dst[n] = '\0';
	return dst;
}

struct name_case {
	const char *s;
	bool ok;
};

static void check_names(const char *what, bool (*fn)(const char *), const struct name_case *c,
			size_t n)
{
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		bool got = fn(c[i].s);
		if (got != c[i].ok) {
			print_error("%s(\"%s\") (case %zu) = %d, want %d\n", what, c[i].s, i, got,
				    c[i].ok);
			bad++;
		}
	}
	if (bad)
		fail_msg("%d of %zu %s cases wrong", bad, n, what);
}

#define CHECK_NAMES(fn, cases) check_names(#fn, fn, cases, sizeof(cases) / sizeof(cases[0]))

static void test_is_db_name(void **state)
{
	char c64[65], c65[66];
	struct name_case cases[] = {
		{ "mwdb_0123456789", true },
		{ "a", true },
		{ "A_$9", true },
		{ c64, true },
		{ "", false },
		{ c65, false },
		{ "a-b", false },
		{ "a b", false },
		{ "a`b", false },
		{ "db;DROP", false },
		{ "a.b", false },
		{ "\xc3\xa9", false }, /* é */
		{ "a\nb", false },
		{ "a'b", false },
	};

	(void)state;
	fill(c64, 'd', 64);
	fill(c65, 'd', 65);
	CHECK_NAMES(util_is_db_name, cases);
	assert_false(util_is_db_name(NULL));
}

static void test_is_table_prefix(void **state)
{
	char c50[51], c51[52];
	struct name_case cases[] = {
		{ "", true },     { "mwt_abc_", true },  { c50, true },   { "a-b", false },
		{ "x`", false },  { c51, false },        { "a$", false }, { "a.", false },
		{ "a b", false }, { "\xc3\xa9", false },
	};

	(void)state;
	fill(c50, 'p', 50);
	fill(c51, 'p', 51);
	CHECK_NAMES(util_is_table_prefix, cases);
	assert_false(util_is_table_prefix(NULL));
}

static void test_is_domain(void **state)
{
	char h253[254], h254[255], h253port[270], h251port[270];
	struct name_case cases[] = {
		{ "wiki1.farm.test", true },
		{ "a.b:8080", true },
		{ "localhost", true },
		{ "a.b:1", true },
		{ "a.b:65535", true },
		{ "x-y.example", true },
		{ h253, true },
		/* 257 bytes: a valid Host header, but longer than jd_wiki.domain holds. */
		{ h253port, false },
		{ h251port, true },
		{ "", false },
		{ "a b", false },
		{ "a/b", false },
		{ "-x", false },
		{ ".x", false },
		{ "a.b:0", false },
		{ "a.b:65536", false },
		{ "a.b:99999", false },
		{ "a.b:x", false },
		{ "a.b:", false },
		{ "a.b:80:1", false },
		{ ":80", false },
		{ "a\r\nb", false },
		{ "a\r\nX-Evil: 1", false },
		{ "a_b", false },
		{ "a@b", false },
		{ h254, false },
	};

	(void)state;
	fill(h253, 'h', 253);
	fill(h254, 'h', 254);
	fill(h253port, 'h', 253);
	memcpy(h253port + 253, ":443", 5);
	fill(h251port, 'h', 251);
	memcpy(h251port + 251, ":443", 5);
	CHECK_NAMES(util_is_domain, cases);
	assert_false(util_is_domain(NULL));
}

/* A Host header port is digits only (RFC 3986: port = *DIGIT). strtoll accepts a
 * sign and util_parse_int lets "+" through, so "a.b:+80" passes today. */
static void test_is_domain_port_digits_only(void **state)
{
	(void)state;
	assert_false(util_is_domain("a.b:+80"));
}

/* Discovery's fifth column: "host" (port 3306) or "host:port"; anything else refused. */
static void test_parse_db_server(void **state)
{
	char host[254], small[4];
	int port = 0;

	(void)state;
	assert_int_equal(util_parse_db_server("db2.internal", host, sizeof(host), &port), 0);
	assert_string_equal(host, "db2.internal");
	assert_int_equal(port, 3306);
	assert_int_equal(util_parse_db_server("127.0.0.1:3307", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 3307);
	assert_int_equal(util_parse_db_server("", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("db:0", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("db:65536", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("db:", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("::1", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("db;DROP", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("db 2", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(util_parse_db_server("dbhost", small, sizeof(small), &port), -EINVAL);
}

/* One server, one name: the allow-list, the connections and the budgets key on it. */
static void test_canon_db_server(void **state)
{
	static const struct {
		const char *in, *out;
	} same[] = {
		{ "db2", "db2:3306" },
		{ "DB2.Internal", "db2.internal:3306" },
		{ "db2.internal.", "db2.internal:3306" },
		{ "db2.internal:3306", "db2.internal:3306" },
		{ "db2.internal:03306", "db2.internal:3306" },
		{ "127.0.0.1:3307", "127.0.0.1:3307" },
		{ "127.0.0.1", "127.0.0.1:3306" },
	};
	char out[UTIL_DB_SERVER_MAX], longest[300];

	(void)state;
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		assert_int_equal(util_canon_db_server(same[i].in, out, sizeof(out)), 0);
		assert_string_equal(out, same[i].out);
	}
	static const char *const bad[] = { "",    "db:0",    "db:",  "db:+3306",
					   "::1", "db;DROP", "db 2", ".db" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(util_canon_db_server(bad[i], out, sizeof(out)), -EINVAL);
	/* The longest name it writes (the longest host, the port written out) fits. */
	memset(longest, 'a', 253);
	longest[253] = '\0';
	assert_int_equal(util_canon_db_server(longest, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 258);
	assert_int_equal(util_canon_db_server("db2", out, 8), -EINVAL);
}

struct int_case {
	const char *s;
	long long min, max;
	int rc;
	long long v;
};

static void test_parse_int(void **state)
{
	static const struct int_case cases[] = {
		{ "0", 0, 10, 0, 0 },
		{ "42", 0, 100, 0, 42 },
		{ "10", 0, 10, 0, 10 }, /* max is inclusive */
		{ "1", 1, 64, 0, 1 },   /* min is inclusive */
		{ "-5", -10, 10, 0, -5 },
		{ "+5", 0, 10, 0, 5 },  /* strtoll's sign is accepted */
		{ "007", 0, 10, 0, 7 }, /* decimal, not octal */
		{ "9223372036854775807", LLONG_MIN, LLONG_MAX, 0, LLONG_MAX },
		{ "-9223372036854775808", LLONG_MIN, LLONG_MAX, 0, LLONG_MIN },
		{ "", 0, 10, -EINVAL, 0 },
		{ "abc", 0, 10, -EINVAL, 0 },
		{ "2x", 0, 10, -EINVAL, 0 },
		{ "5 ", 0, 10, -EINVAL, 0 },
		{ " 5", 0, 10, -EINVAL, 0 },
		{ "\t5", 0, 10, -EINVAL, 0 },
		{ "0x10", 0, 100, -EINVAL, 0 },
		{ "1.5", 0, 10, -EINVAL, 0 },
		{ "1e3", 0, 10000, -EINVAL, 0 },
		{ "-", 0, 10, -EINVAL, 0 },
		{ "+", 0, 10, -EINVAL, 0 },
		{ "+-5", -10, 10, -EINVAL, 0 },
		{ "--5", -10, 10, -EINVAL, 0 },
		{ "11", 0, 10, -ERANGE, 0 },
		{ "-1", 0, 10, -ERANGE, 0 },
		{ "0", 1, 64, -ERANGE, 0 },
		{ "65", 1, 64, -ERANGE, 0 },
		{ "9223372036854775808", LLONG_MIN, LLONG_MAX, -ERANGE, 0 },
		{ "-9223372036854775809", LLONG_MIN, LLONG_MAX, -ERANGE, 0 },
		{ "99999999999999999999999", 0, 10, -ERANGE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = 777;
		int rc = util_parse_int(cases[i].s, cases[i].min, cases[i].max, &v);
		if (rc != cases[i].rc)
			fail_msg("util_parse_int(\"%s\", %lld, %lld) = %d, want %d", cases[i].s,
				 cases[i].min, cases[i].max, rc, cases[i].rc);
		if (rc == 0 && v != cases[i].v)
			fail_msg("util_parse_int(\"%s\") gave %lld, want %lld", cases[i].s, v,
				 cases[i].v);
		if (rc != 0 && v != 777)
			fail_msg("util_parse_int(\"%s\") wrote %lld on failure", cases[i].s, v);
	}
	assert_int_equal(util_parse_int(NULL, 0, 10, &(long long){ 0 }), -EINVAL);
	/* errno from an earlier failure does not leak into a later parse. */
	errno = ERANGE;
	{
		long long v;
		assert_int_equal(util_parse_int("3", 0, 10, &v), 0);
		assert_int_equal(v, 3);
	}
}

struct ts_case {
	const char *s;
	int64_t ms;
};

static void check_timestamps(const struct ts_case *c, size_t n)
{
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		int64_t got = scan_parse_mw_timestamp(c[i].s);
		if (got != c[i].ms) {
			print_error("scan_parse_mw_timestamp(\"%s\") = %lld, want %lld\n",
				    c[i].s ? c[i].s : "(null)", (long long)got, (long long)c[i].ms);
			bad++;
		}
	}
	if (bad)
		fail_msg("%d of %zu timestamp cases wrong", bad, n);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *in;
		int rc;
		long long s;
	} cases[] = {
		{ "90", 0, 90 },        { "90s", 0, 90 },
		{ "30m", 0, 1800 },     { "2h", 0, 7200 },
		{ "1d", 0, 86400 },     { "366d", 0, 366LL * 86400 },
		{ "0", -ERANGE, 0 },    { "0m", -ERANGE, 0 },
		{ "367d", -ERANGE, 0 }, { "-5m", -ERANGE, 0 },
		{ "", -EINVAL, 0 },     { "m", -EINVAL, 0 },
		{ "1w", -EINVAL, 0 },   { "1.5h", -EINVAL, 0 },
		{ "2 h", -EINVAL, 0 },  { "2hh", -EINVAL, 0 },
		{ "soon", -EINVAL, 0 }, { "99999999999999999999999d", -EINVAL, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = -1;
		int rc = util_parse_duration(cases[i].in, 366LL * 86400, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].s))
			fail_msg("'%s': rc %d v %lld, want rc %d v %lld", cases[i].in, rc, v,
				 cases[i].rc, cases[i].s);
	}
}

static void test_mw_timestamp(void **state)
{
	/* Values from `date -u -d '2023-11-14 22:14:20' +%s` and friends. */
	static const struct ts_case cases[] = {
		{ "20231114221420", 1700000060000LL },
		{ "20231114221320", 1700000000000LL },
		{ "20000229120000", 951825600000LL }, /* leap day */
		{ "20231231235959", 1704067199000LL },
		{ "19991231235959", 946684799000LL },
		{ "", 0 },
		{ "2023", 0 },
		{ "abcdabcdabcdab", 0 },
		{ "2023111422142", 0 },   /* 13 digits */
		{ "202311142214200", 0 }, /* 15 digits */
		{ NULL, 0 },
	};

	(void)state;
	check_timestamps(cases, sizeof(cases) / sizeof(cases[0]));
}

/* "YYYYMMDDHHMMSS ... 0 if bad": 14 characters that are not 14 digits of a real time
 * are bad. sscanf("%4d%2d...") skips blanks, takes signs and stops early, and timegm
 * normalises month 13 or day 32, so all of these get a time today. */
static void test_mw_timestamp_strict(void **state)
{
	static const struct ts_case cases[] = {
		{ "2023111422142x", 0 }, /* trailing junk: read as 22:14:02 */
		{ " 2023111422142", 0 }, /* leading blank */
		{ "2023-111422142", 0 }, /* a sign inside */
		{ "20231314221420", 0 }, /* month 13 */
		{ "20231132221420", 0 }, /* day 32 */
		{ "20231114256161", 0 }, /* hour 25, minute 61 */
	};

	(void)state;
	check_timestamps(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_buf(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	buf_adds(&b, "abc");
	buf_add(&b, "def", 2);
	buf_addf(&b, "%d-%s", 42, "x");
	assert_string_equal(b.data, "abcde42-x");
	assert_int_equal(b.len, 9);
	for (int i = 0; i < 1000; i++)
		buf_adds(&b, "0123456789");
	assert_int_equal(b.len, 10009);
	assert_int_equal(strlen(b.data), 10009);
	assert_true(b.cap > b.len);
	assert_false(b.failed);
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_add(&b, "a\0b", 3); /* binary-safe */
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "a\0b", 4);
	buf_release(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

/* ---- logger ---------------------------------------------------------------------- */

static int log_pipe[2] = { -1, -1 };

static int log_capture_setup(void **state)
{
	(void)state;
	if (pipe2(log_pipe, O_CLOEXEC) != 0)
		return -1;
	/* Non-blocking read end: reading what was logged never hangs a test. */
	if (fcntl(log_pipe[0], F_SETFL, O_NONBLOCK) != 0)
		return -1;
	return 0;
}

static int log_capture_teardown(void **state)
{
	(void)state;
	log_setup(LOG_FORMAT_TEXT, LOG_INFO, 2);
	close(log_pipe[0]);
	close(log_pipe[1]);
	log_pipe[0] = log_pipe[1] = -1;
	return 0;
}

/* Everything written to the pipe so far, as a NUL-terminated string (caller frees). */
static char *captured(void)
{
	size_t cap = 65536, len = 0;
	char *s = malloc(cap);
	ssize_t n;

	assert_non_null(s);
	while ((n = read(log_pipe[0], s + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	s[len] = '\0';
	return s;
}

/* Has every nasty byte class a database or web server can send. */
#define NASTY "say \"hi\"\nsecond line\\path\x01\x1f\x7f\ttab\rcr"

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_log_text(void **state)
{
	struct log_line l;
	char *out;
	const char *p;

	(void)state;
	log_setup(LOG_FORMAT_TEXT, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_INFO, "batch done");
	log_str(&l, "wiki", "a.example");
	log_str(&l, "v", NASTY);
	log_str(&l, "empty", "");
	log_str(&l, "eq", "a=b");
	log_str(&l, "null", NULL);
	log_int(&l, "ok", 3);
	log_int(&l, "neg", -42);
	log_end(&l);
	out = captured();

	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_null(strchr(out, '\r'));
	assert_int_equal(strncmp(out, "ts=", 3), 0);
	p = strstr(out, " level=info msg=\"batch done\"");
	assert_non_null(p);
	assert_non_null(strstr(p, " wiki=a.example "));
	assert_non_null(strstr(p, " v=\"say \\\"hi\\\"\\nsecond line\\\\path\\u0001\\u001f\\u007f"
				  "\\ttab\\rcr\" "));
	assert_non_null(strstr(p, " empty=\"\" "));
	assert_non_null(strstr(p, " eq=\"a=b\" "));
	assert_non_null(strstr(p, " null=\"\" "));
	assert_non_null(strstr(p, " ok=3 neg=-42\n"));
	free(out);
}

/* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
static void assert_timestamp(const char *ts)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

	assert_int_equal(strlen(ts), strlen(shape));
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd')
			assert_true(ts[i] >= '0' && ts[i] <= '9');
		else
			assert_int_equal(ts[i], shape[i]);
	}
}

static void test_log_json(void **state)
{
	struct log_line l;
	json_error_t err;
	json_t *root;
	char *out;

	(void)state;
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_INFO, "batch \"done\"");
	log_str(&l, "v", NASTY);
	log_str(&l, "utf8", "caf\xc3\xa9");
	log_int(&l, "ok", 3);
	log_end(&l);
	out = captured();

	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	root = json_loads(out, 0, &err);
	if (root == NULL)
		fail_msg("JSON line does not parse (%s): %s", err.text, out);
	assert_true(json_is_object(root));
	assert_string_equal(json_string_value(json_object_get(root, "severity")), "INFO");
	assert_string_equal(json_string_value(json_object_get(root, "msg")), "batch \"done\"");
	assert_string_equal(json_string_value(json_object_get(root, "v")), NASTY);
	assert_string_equal(json_string_value(json_object_get(root, "utf8")), "caf\xc3\xa9");
	assert_true(json_is_integer(json_object_get(root, "ok")));
	assert_int_equal(json_integer_value(json_object_get(root, "ok")), 3);
	assert_non_null(json_string_value(json_object_get(root, "ts")));
	assert_timestamp(json_string_value(json_object_get(root, "ts")));
	/* Fixed keys first. */
	assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
	assert_true(strstr(out, "\"severity\"") < strstr(out, "\"msg\""));
	assert_true(strstr(out, "\"msg\"") < strstr(out, "\"v\""));
	json_decref(root);
	free(out);
}

static void test_log_json_severities(void **state)
{
	static const struct {
		enum log_level level;
		const char *severity;
	} cases[] = {
		{ LOG_DEBUG, "DEBUG" },
		{ LOG_INFO, "INFO" },
		{ LOG_WARN, "WARNING" },
		{ LOG_ERROR, "ERROR" },
	};

	(void)state;
	log_setup(LOG_FORMAT_JSON, LOG_DEBUG, log_pipe[1]);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *root;
		char *out;

		log_msg(cases[i].level, "m");
		out = captured();
		root = json_loads(out, 0, NULL);
		assert_non_null(root);
		assert_string_equal(json_string_value(json_object_get(root, "severity")),
				    cases[i].severity);
		assert_string_equal(json_string_value(json_object_get(root, "msg")), "m");
		json_decref(root);
		free(out);
	}
}

/* A 10 KB value: one line, shorter than LOG_LINE_MAX + 2, still valid JSON, the value
 * ends in "..." after a prefix of the original, and later fields are dropped. */
static void test_log_json_cut(void **state)
{
	static char big[10 * 1024 + 1];
	struct log_line l;
	json_t *root;
	json_error_t err;
	const char *v;
	char *out;
	size_t vlen;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_WARN, "big");
	log_int(&l, "before", 1);
	log_str(&l, "big", big);
	log_int(&l, "after", 2);
	log_str(&l, "after2", "y");
	log_end(&l);
	out = captured();

	assert_true(strlen(out) < LOG_LINE_MAX + 2);
	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	root = json_loads(out, 0, &err);
	if (root == NULL)
		fail_msg("cut JSON line does not parse (%s)", err.text);
	v = json_string_value(json_object_get(root, "big"));
	assert_non_null(v);
	vlen = strlen(v);
	assert_true(vlen > LOG_LINE_MAX / 2); /* cut, not dropped */
	assert_true(vlen < sizeof(big));
	assert_string_equal(v + vlen - 3, "...");
	assert_memory_equal(v, big, vlen - 3);
	assert_int_equal(json_integer_value(json_object_get(root, "before")), 1);
	assert_null(json_object_get(root, "after"));
	assert_null(json_object_get(root, "after2"));
	assert_string_equal(json_string_value(json_object_get(root, "severity")), "WARNING");
	json_decref(root);
	free(out);
}

/* Cutting never leaves half an escape sequence: a value of nothing but escapes. */
static void test_log_json_cut_escapes(void **state)
{
	static char big[10 * 1024 + 1];
	struct log_line l;
	json_t *root;
	json_error_t err;
	char *out;

	(void)state;
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = "\"\\\n\x01"[i % 4];
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_INFO, "escapes");
	log_str(&l, "v", big);
	log_end(&l);
	out = captured();
	assert_true(strlen(out) < LOG_LINE_MAX + 2);
	root = json_loads(out, 0, &err);
	if (root == NULL)
		fail_msg("cut JSON line does not parse (%s)", err.text);
	assert_string_equal(json_string_value(json_object_get(root, "v")) +
				    strlen(json_string_value(json_object_get(root, "v"))) - 3,
			    "...");
	json_decref(root);
	free(out);
}

static void test_log_text_cut(void **state)
{
	static char big[10 * 1024 + 1];
	struct log_line l;
	char *out;
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[0] = ' '; /* needs quotes */
	log_setup(LOG_FORMAT_TEXT, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_INFO, "big");
	log_str(&l, "big", big);
	log_int(&l, "after", 2);
	log_end(&l);
	out = captured();
	n = strlen(out);
	assert_true(n < LOG_LINE_MAX + 2);
	assert_int_equal(count_char(out, '\n'), 1);
	assert_true(n > 5);
	assert_string_equal(out + n - 5, "...\"\n");
	assert_non_null(strstr(out, " big=\" xxxx"));
	assert_null(strstr(out, "after="));
	free(out);
}

/* Multi-byte UTF-8 is cut on a character boundary, so the cut line stays valid JSON
 * (jansson, like most collectors, rejects invalid UTF-8). Two alignments, so one of
 * them would land inside a two-byte character. */
static void test_log_json_cut_utf8(void **state)
{
	static char big[10 * 1024 + 2];

	(void)state;
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	for (int shift = 0; shift < 2; shift++) {
		struct log_line l;
		json_error_t err;
		json_t *root;
		char *out;
		size_t n = 0;

		if (shift)
			big[n++] = 'a';
		while (n + 2 < sizeof(big)) {
			big[n++] = '\xc3';
			big[n++] = '\xa9';
		}
		big[n] = '\0';
		log_begin(&l, LOG_INFO, "utf8");
		log_str(&l, "v", big);
		log_end(&l);
		out = captured();
		assert_true(strlen(out) < LOG_LINE_MAX + 2);
		root = json_loads(out, 0, &err);
		if (root == NULL)
			fail_msg("shift %d: cut JSON line does not parse: %s", shift, err.text);
		json_decref(root);
		free(out);
	}
}

/* A value that is not UTF-8 at all (a Latin-1 error page, binary garbage from a
 * database) must not make the JSON line unparsable either. */
static void test_log_json_invalid_utf8(void **state)
{
	struct log_line l;
	json_error_t err;
	json_t *root;
	char *out;

	(void)state;
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_INFO, "latin1");
	log_str(&l, "v", "caf\xe9 \xff\xfe");
	log_end(&l);
	out = captured();
	assert_int_equal(count_char(out, '\n'), 1);
	root = json_loads(out, 0, &err);
	if (root == NULL)
		fail_msg("JSON line with a non-UTF-8 value does not parse: %s", err.text);
	assert_non_null(strstr(json_string_value(json_object_get(root, "v")), "caf"));
	json_decref(root);
	free(out);
}

static void test_log_levels(void **state)
{
	struct log_line l;
	char *out;

	(void)state;
	log_setup(LOG_FORMAT_TEXT, LOG_INFO, log_pipe[1]);
	log_begin(&l, LOG_DEBUG, "hidden");
	assert_true(l.skip);
	log_str(&l, "k", "v");
	log_int(&l, "n", 1);
	log_end(&l);
	log_msg(LOG_DEBUG, "hidden too");
	out = captured();
	assert_string_equal(out, "");
	free(out);

	log_msg(LOG_INFO, "shown");
	log_msg(LOG_ERROR, "shown too");
	out = captured();
	assert_int_equal(count_char(out, '\n'), 2);
	assert_non_null(strstr(out, "level=info msg=shown\n"));
	assert_non_null(strstr(out, "level=error msg=\"shown too\"\n"));
	free(out);

	log_setup(LOG_FORMAT_JSON, LOG_ERROR, log_pipe[1]);
	log_msg(LOG_WARN, "hidden");
	out = captured();
	assert_string_equal(out, "");
	free(out);

	log_setup(LOG_FORMAT_TEXT, LOG_DEBUG, log_pipe[1]);
	log_msg(LOG_DEBUG, "debug shown");
	out = captured();
	assert_non_null(strstr(out, "level=debug msg=\"debug shown\"\n"));
	free(out);
}

/* errno is preserved across every logging call (callers log, then report errno). */
static void test_log_preserves_errno(void **state)
{
	struct log_line l;
	char *out;

	(void)state;
	log_setup(LOG_FORMAT_JSON, LOG_INFO, log_pipe[1]);
	errno = EADDRINUSE;
	log_begin(&l, LOG_INFO, "m");
	log_str(&l, "k", "v");
	log_int(&l, "n", 1);
	log_end(&l);
	assert_int_equal(errno, EADDRINUSE);
	/* Even when the write itself fails. */
	log_setup(LOG_FORMAT_TEXT, LOG_INFO, -1);
	errno = ETIMEDOUT;
	log_msg(LOG_ERROR, "to nowhere");
	assert_int_equal(errno, ETIMEDOUT);
	out = captured();
	free(out);
}

#define LOG_TEST(f) cmocka_unit_test_setup_teardown(f, log_capture_setup, log_capture_teardown)

/* util_duration_text: the one way the commands print a duration. */
static void test_duration_text(void **state)
{
	static const struct {
		long long s;
		const char *text;
	} cases[] = {
		{ -1, "-" },       { 0, "0s" },         { 119, "119s" },   { 120, "2m00s" },
		{ 725, "12m05s" }, { 7199, "119m59s" }, { 7200, "2h00m" }, { 11220, "3h07m" },
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		util_duration_text(cases[i].s, out, sizeof(out));
		assert_string_equal(out, cases[i].text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_text),
		cmocka_unit_test(test_is_db_name),
		cmocka_unit_test(test_is_table_prefix),
		cmocka_unit_test(test_is_domain),
		cmocka_unit_test(test_is_domain_port_digits_only),
		cmocka_unit_test(test_parse_db_server),
		cmocka_unit_test(test_canon_db_server),
		cmocka_unit_test(test_parse_int),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_mw_timestamp),
		cmocka_unit_test(test_mw_timestamp_strict),
		cmocka_unit_test(test_buf),
		LOG_TEST(test_log_text),
		LOG_TEST(test_log_json),
		LOG_TEST(test_log_json_severities),
		LOG_TEST(test_log_json_cut),
		LOG_TEST(test_log_json_cut_escapes),
		LOG_TEST(test_log_text_cut),
		LOG_TEST(test_log_json_cut_utf8),
		LOG_TEST(test_log_json_invalid_utf8),
		LOG_TEST(test_log_levels),
		LOG_TEST(test_log_preserves_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
