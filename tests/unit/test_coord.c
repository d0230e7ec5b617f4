/* test_coord.c - the coordination database's clock carried forward locally
 * (coord_clock_at): formatted as NOW(6) formats, across second, day and year ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "coord.h"

static void test_clock_carried_forward(void **state)
{
	/* 2026-12-31 23:59:59.999500 UTC, read at monotonic 5000 ms. */
	const struct coord_clock c = { 1798761599999500LL, 5000 };
	char out[32];

	(void)state;
	coord_clock_at(&c, 5000, out);
	assert_string_equal(out, "2026-12-31 23:59:59.999500");
	coord_clock_at(&c, 5001, out);
	assert_string_equal(out, "2027-01-01 00:00:00.000500");
	coord_clock_at(&c, 5000 + 86400 * 1000, out);
	assert_string_equal(out, "2027-01-01 23:59:59.999500");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_carried_forward),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
