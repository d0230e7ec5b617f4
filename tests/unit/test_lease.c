/* test_lease.c - the shared rules under the drain loop and the scanner: lease trust
 * (lease.h), the one exponential backoff (util_backoff_ms) and the once-a-while
 * failure logger (log_streak). Table-driven, with explicit clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "db.h"
#include "lease.h"
#include "log.h"
#include "util.h"

static void test_lease_trust(void **state)
{
	static const struct {
		int64_t sent, now;
		int ttl, margin;
		int64_t need;
		bool covers;
	} cases[] = {
		/* ttl 30, margin 5: trusted for 25 s from the statement's sending */
		{ 1000, 1000, 30, 5, 0, true },
		{ 1000, 26000, 30, 5, 0, true },
		{ 1000, 26001, 30, 5, 0, false },
		/* a batch of up to 20 s starts only with 20 s of trust left */
		{ 1000, 6000, 30, 5, 20000, true },
		{ 1000, 6001, 30, 5, 20000, false },
		{ 0, 0, 10, 10, 0, true },
		{ 0, 1, 10, 10, 0, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t until = lease_trusted_until(cases[i].sent, cases[i].ttl, cases[i].margin);
		assert_int_equal(lease_covers(cases[i].now, until, cases[i].need), cases[i].covers);
	}
	assert_int_equal(lease_trusted_until(500, 30, 5), 25500);
}

static void test_lease_renew_due(void **state)
{
	(void)state;
	assert_false(lease_renew_due(1999, 1000, 1000));
	assert_true(lease_renew_due(2000, 1000, 1000));
	assert_true(lease_renew_due(9000, 1000, 1000));
	assert_true(lease_renew_due(1000, 1000, 0));
}

static void test_backoff(void **state)
{
	static const struct {
		int64_t base, cap;
		int steps;
		int64_t want;
	} cases[] = {
		{ 1000, 60000, 0, 1000 },   { 1000, 60000, -3, 1000 }, { 1000, 60000, 1, 2000 },
		{ 1000, 60000, 5, 32000 },  { 1000, 60000, 6, 60000 }, { 1000, 60000, 1000, 60000 },
		{ 90000, 60000, 0, 60000 }, { 250, 4000, 4, 4000 },    { 250, 4000, 3, 2000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(util_backoff_ms(cases[i].base, cases[i].cap, cases[i].steps),
				 cases[i].want);
	/* db.c's reconnect schedule is built on it: 0, 0, 250, 500, ... 4000 */
	assert_int_equal(db_retry_delay_ms(1), 0);
	assert_int_equal(db_retry_delay_ms(2), 250);
	assert_int_equal(db_retry_delay_ms(3), 500);
	assert_int_equal(db_retry_delay_ms(40), DB_RETRY_MAX_MS);
}

static void test_streak(void **state)
{
	/* at (ms) of each failure, 0 = a success; whether the failure is logged */
	static const struct {
		int64_t at;
		bool ok, logged;
		int count;
	} steps[] = {
		{ 1000, false, true, 1 },  { 2000, false, false, 2 },  { 60999, false, false, 3 },
		{ 61000, false, true, 4 }, { 62000, false, false, 5 }, { 63000, true, false, 0 },
		{ 63500, false, true, 1 }, { 64000, false, false, 2 },
	};
	struct log_streak s = { 0, 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (steps[i].ok) {
			assert_int_equal(log_streak_ok(&s), 5);
			assert_int_equal(log_streak_ok(&s), 0);
		} else {
			assert_int_equal(log_streak_fail(&s, steps[i].at, 60000), steps[i].logged);
		}
		assert_int_equal(s.count, steps[i].count);
	}
}

static void test_timespec(void **state)
{
	struct timespec ts = util_timespec(12345);

	(void)state;
	assert_int_equal(ts.tv_sec, 12);
	assert_int_equal(ts.tv_nsec, 345000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lease_trust), cmocka_unit_test(test_lease_renew_due),
		cmocka_unit_test(test_backoff),     cmocka_unit_test(test_streak),
		cmocka_unit_test(test_timespec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
