/* test_metrics.c - the metrics table: label sets line up with the enums they count,
 * values render in the Prometheus text format, histogram observations land in the right
 * bucket (a bound is inclusive) and render cumulative, the per-server series follow
 * the last report (label values escaped, at most METRICS_SERVERS_MAX servers, a server
 * gone from the report gone from the output, the feed's state as one series per
 * state), and the backoff schedule stays within its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "metrics.h"
#include "response.h"
#include "sched.h"

/* jobdrainer_batches_total's labels are indexed by enum batch_outcome. */
static void test_outcome_labels_match_outcome_names(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	metrics_render(&b);
	for (int o = 0; o < OUTCOME_COUNT; o++) {
		char series[96];
		snprintf(series, sizeof(series), "jobdrainer_batches_total{outcome=\"%s\"} ",
			 outcome_name((enum batch_outcome)o));
		assert_non_null(strstr(b.data, series));
	}
	buf_release(&b);
}

static void test_counters_and_gauges_render(void **state)
{
	struct buf b;

	(void)state;
	metrics_add(METRIC_BATCHES, OUTCOME_TIMEOUT, 2);
	metrics_add(METRIC_BATCHES, OUTCOME_TIMEOUT, 1);
	metrics_add(METRIC_JOBS, 1, 7);
	metrics_set(METRIC_OLDEST_AGE, 0, 12.5);
	metrics_set(METRIC_LEASES_HELD, 0, 3);
	metrics_add(METRIC_LEASES_HELD, 0, -1);
	assert_true(metrics_get(METRIC_BATCHES, OUTCOME_TIMEOUT) == 3);
	/* Out-of-range labels are ignored, not written elsewhere. */
	metrics_add(METRIC_JOBS, 2, 100);
	metrics_add(METRIC_JOBS, -1, 100);
	buf_init(&b);
	metrics_render(&b);
	assert_non_null(strstr(b.data, "\njobdrainer_batches_total{outcome=\"timeout\"} 3\n"));
	assert_non_null(strstr(b.data, "\njobdrainer_jobs_total{status=\"failed\"} 7\n"));
	assert_non_null(strstr(b.data, "\njobdrainer_jobs_total{status=\"ok\"} 0\n"));
	assert_non_null(strstr(b.data, "\njobdrainer_oldest_ready_job_age_seconds 12.500000\n"));
	assert_non_null(strstr(b.data, "\njobdrainer_leases_held 2\n"));
	assert_non_null(strstr(b.data, "# TYPE jobdrainer_batches_total counter\n"));
	assert_non_null(strstr(b.data, "# TYPE jobdrainer_leases_held gauge\n"));
	buf_release(&b);
}

#define WAIT "jobdrainer_batch_oldest_job_wait_seconds"

/* The series line `name value` is in the render. */
static void assert_series(const struct buf *b, const char *series, const char *value)
{
	char line[160];

	snprintf(line, sizeof(line), "\n%s %s\n", series, value);
	if (strstr(b->data, line) == NULL)
		fail_msg("missing %s", line + 1);
}

static void test_histogram_buckets(void **state)
{
	/* (value, the bucket it lands in): bounds are inclusive, 180 s is in "180". */
	static const struct {
		double value;
		const char *le;
	} cases[] = {
		{ 0, "1" },         { 1, "1" },         { 1.001, "5" },
		{ 179.999, "180" }, { 180, "180" },     { 180.5, "300" },
		{ 3600, "3600" },   { 3600.5, "+Inf" }, { 1e9, "+Inf" },
	};
	static const char *const les[] = { "1",   "5",   "15",  "30",   "60",   "90",  "120",
					   "180", "300", "600", "1800", "3600", "+Inf" };
	struct buf b;
	double gauge = metrics_get(METRIC_OLDEST_AGE, 0);

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		double before[sizeof(les) / sizeof(les[0])];
		for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++)
			before[i] = metrics_get(METRIC_BATCH_WAIT, (int)i);
		metrics_observe(METRIC_BATCH_WAIT, cases[c].value);
		for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
			double want = before[i] + (strcmp(les[i], cases[c].le) == 0);
			if (metrics_get(METRIC_BATCH_WAIT, (int)i) != want)
				fail_msg("%g: bucket le=%s has %g, want %g", cases[c].value, les[i],
					 metrics_get(METRIC_BATCH_WAIT, (int)i), want);
		}
	}
	/* Not a number, or not a histogram: nothing counted anywhere. */
	metrics_observe(METRIC_BATCH_WAIT, 0.0 / 0.0);
	metrics_observe(METRIC_OLDEST_AGE, 5);
	assert_true(metrics_get(METRIC_OLDEST_AGE, 0) == gauge);

	buf_init(&b);
	metrics_render(&b);
	assert_non_null(strstr(b.data, "# TYPE " WAIT " histogram\n"));
	assert_series(&b, WAIT "_bucket{le=\"1\"}", "2");
	assert_series(&b, WAIT "_bucket{le=\"5\"}", "3");
	assert_series(&b, WAIT "_bucket{le=\"120\"}", "3");
	assert_series(&b, WAIT "_bucket{le=\"180\"}", "5");
	assert_series(&b, WAIT "_bucket{le=\"300\"}", "6");
	assert_series(&b, WAIT "_bucket{le=\"3600\"}", "7");
	assert_series(&b, WAIT "_bucket{le=\"+Inf\"}", "9");
	assert_series(&b, WAIT "_count", "9");
	/* 0 + 1 + 1.001 + 179.999 + 180 + 180.5 + 3600 + 3600.5 + 1e9 */
	assert_series(&b, WAIT "_sum", "1000007743");
	/* Buckets only: no plain series of the histogram's own name. */
	assert_null(strstr(b.data, "\n" WAIT " "));
	buf_release(&b);
}

static struct server_report server(const char *name, bool down, int feed)
{
	struct server_report r;

	memset(&r, 0, sizeof(r));
	snprintf(r.server, sizeof(r.server), "%s", name);
	r.wikis = 3;
	r.down = down;
	r.sweep_ms = 4200;
	r.budget_used = 0.048;
	r.hot = 1;
	r.unreadable = 2;
	r.feed = feed;
	return r;
}

/* The render as a string (the caller frees it). */
static char *rendered(void)
{
	struct buf b;

	buf_init(&b);
	metrics_render(&b);
	assert_false(b.failed);
	return b.data;
}

static size_t occurrences(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void test_server_series(void **state)
{
	struct server_report r[2] = { server("db1:3306", false, 1), server("db2:3307", true, -1) };
	char *text;

	(void)state;
	r[1].sweep_ms = 0; /* no sweep yet: no period to show */
	metrics_set_servers(r, 2);
	text = rendered();
	assert_non_null(strstr(text, "# TYPE jobdrainer_scan_server_up gauge\n"));
	assert_non_null(strstr(text, "\njobdrainer_scan_server_up{server=\"db1:3306\"} 1\n"));
	assert_non_null(strstr(text, "\njobdrainer_scan_server_up{server=\"db2:3307\"} 0\n"));
	assert_non_null(strstr(
		text,
		"\njobdrainer_scan_server_sweep_period_seconds{server=\"db1:3306\"} 4.200000\n"));
	assert_null(
		strstr(text, "jobdrainer_scan_server_sweep_period_seconds{server=\"db2:3307\"}"));
	assert_non_null(strstr(
		text,
		"\njobdrainer_scan_server_db_budget_used_ratio{server=\"db1:3306\"} 0.048000\n"));
	assert_non_null(strstr(text, "\njobdrainer_scan_server_wikis{server=\"db2:3307\"} 3\n"));
	assert_non_null(strstr(text, "\njobdrainer_scan_server_hot_wikis{server=\"db2:3307\"} 1\n"));
	assert_non_null(
		strstr(text, "\njobdrainer_scan_server_unreadable_wikis{server=\"db1:3306\"} 2\n"));
	/* The unlabelled gauges stay as they were. */
	assert_non_null(strstr(text, "\njobdrainer_scan_sweep_period_seconds "));
	free(text);

	/* db2 leaves: its series go, db1's stay. */
	metrics_set_servers(r, 1);
	text = rendered();
	assert_null(strstr(text, "db2:3307"));
	assert_non_null(strstr(text, "\njobdrainer_scan_server_up{server=\"db1:3306\"} 1\n"));
	free(text);

	/* The scanner lease let go: no per-server series at all. */
	metrics_set_servers(NULL, 0);
	text = rendered();
	assert_null(strstr(text, "{server="));
	free(text);
}

/* Server names come from discovery rows: the text format's escapes keep a hostile one
 * from breaking the exposition or making up series. */
static void test_server_label_escaped(void **state)
{
	struct server_report r = server("a\"b\\c\nd} 1\nfake 2", false, -1);
	char *text;

	(void)state;
	metrics_set_servers(&r, 1);
	text = rendered();
	assert_non_null(
		strstr(text,
		       "\njobdrainer_scan_server_up{server=\"a\\\"b\\\\c\\nd} 1\\nfake 2\"} 1\n"));
	assert_null(strstr(text, "\nfake 2"));
	free(text);
	metrics_set_servers(NULL, 0);
}

/* A fixed table: the first METRICS_SERVERS_MAX servers of a longer list are kept. */
static void test_server_table_bounded(void **state)
{
	struct server_report r[METRICS_SERVERS_MAX + 5];
	char *text, name[32];

	(void)state;
	for (int i = 0; i < METRICS_SERVERS_MAX + 5; i++) {
		snprintf(name, sizeof(name), "db%d:3306", i);
		r[i] = server(name, false, 1);
	}
	metrics_set_servers(r, METRICS_SERVERS_MAX + 5);
	text = rendered();
	assert_int_equal(occurrences(text, "\njobdrainer_scan_server_up{"), METRICS_SERVERS_MAX);
	snprintf(name, sizeof(name), "\"db%d:3306\"", METRICS_SERVERS_MAX - 1);
	assert_non_null(strstr(text, name));
	snprintf(name, sizeof(name), "\"db%d:3306\"", METRICS_SERVERS_MAX);
	assert_null(strstr(text, name));
	free(text);
	metrics_set_servers(NULL, 0);
}

/* The feed's state: one series per state, 1 for the current one; none without a feed. */
static void test_feed_state_enum_as_gauge(void **state)
{
	static const char *const states[] = { "starting", "following", "blind", "failed" };
	struct server_report r[2] = { server("db1:3306", false, 2), server("db2:3306", false, -1) };
	char *text, series[128];

	(void)state;
	assert_int_equal(sizeof(states) / sizeof(states[0]), SERVER_REPORT_FEED_STATE_COUNT);
	for (int i = 0; i < SERVER_REPORT_FEED_STATE_COUNT; i++)
		assert_string_equal(server_report_feed_name(i), states[i]);
	assert_null(server_report_feed_name(-1));
	assert_null(server_report_feed_name(SERVER_REPORT_FEED_STATE_COUNT));

	metrics_set_servers(r, 2);
	text = rendered();
	assert_non_null(strstr(text, "# TYPE jobdrainer_binlog_feed_state gauge\n"));
	for (int i = 0; i < SERVER_REPORT_FEED_STATE_COUNT; i++) {
		snprintf(series, sizeof(series),
			 "\njobdrainer_binlog_feed_state{server=\"db1:3306\",state=\"%s\"} %d\n",
			 states[i], i == 2);
		if (strstr(text, series) == NULL)
			fail_msg("missing %s", series + 1);
	}
	assert_int_equal(occurrences(text, "\njobdrainer_binlog_feed_state{"),
			 SERVER_REPORT_FEED_STATE_COUNT);
	assert_null(strstr(text, "jobdrainer_binlog_feed_state{server=\"db2:3306\""));
	free(text);
	metrics_set_servers(NULL, 0);
}

static void test_backoff_bounds(void **state)
{
	struct config cfg;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.backoff_base = 5;
	cfg.backoff_max = 600;
	for (int i = 0; i < 200; i++) {
		int64_t first = sched_backoff_ms(&cfg, OUTCOME_SERVER_ERROR, 1);
		int64_t fourth = sched_backoff_ms(&cfg, OUTCOME_SERVER_ERROR, 4);
		int64_t refused = sched_backoff_ms(&cfg, OUTCOME_BAD_REQUEST, 1);
		int64_t many = sched_backoff_ms(&cfg, OUTCOME_TIMEOUT, 60);
		assert_true(first == 5000);                       /* base..base */
		assert_true(fourth >= 5000 && fourth <= 40000);   /* full jitter up to base*2^3 */
		assert_true(refused >= 5000 && refused <= 40000); /* a 400 starts 3 steps up */
		assert_true(many >= 5000 && many <= 600000);      /* never above the cap */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcome_labels_match_outcome_names),
		cmocka_unit_test(test_counters_and_gauges_render),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_server_series),
		cmocka_unit_test(test_server_label_escaped),
		cmocka_unit_test(test_server_table_bounded),
		cmocka_unit_test(test_feed_state_enum_as_gauge),
		cmocka_unit_test(test_backoff_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
