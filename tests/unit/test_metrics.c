/* test_metrics.c - the metrics table: label sets line up with the enums they count,
 * values render in the Prometheus text format, histogram observations land in the right
 * bucket (a bound is inclusive) and render cumulative, and the backoff schedule stays
 * within its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
		cmocka_unit_test(test_backoff_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
