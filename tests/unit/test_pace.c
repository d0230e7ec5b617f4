/* test_pace.c - the scanner's database budget (pace_*) with an injected clock, and the
 * hot set and sweep rotation (hotset_*, sweep_position). Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pace.h"

/* One statement: at `at` ms it costs cost_us; then the wait is checked. */
struct spend {
	int64_t at;
	int64_t cost_us;
	int64_t wait_ms; /* expected pace_wait_ms right after */
};

struct budget_case {
	const char *name;
	double budget;
	struct spend steps[8];
};

static const struct budget_case budget_cases[] = {
	/* 5%: a burst of 10 s * 5% = 500 ms of credit to start with. */
	{ "a fresh budget lets the first statements through",
	  0.05,
	  { { 0, 100000, 0 }, { 0, 300000, 0 }, { 0, 100000, 0 }, { -1, 0, 0 } } },
	{ "debt is paid back at the budget's rate",
	  0.05,
	  { { 0, 600000, 2001 }, { 1000, 0, 1001 }, { 2001, 0, 0 }, { -1, 0, 0 } } },
	{ "credit never grows past the burst",
	  0.05,
	  { { 0, 500000, 0 }, { 600000, 0, 0 }, { 600000, 600000, 2001 }, { -1, 0, 0 } } },
	{ "a tiny budget makes long waits",
	  0.01,
	  { { 0, 100000, 0 }, { 0, 50000, 5001 }, { -1, 0, 0 } } },
	{ "a whole core never waits for cheap statements",
	  1.0,
	  { { 0, 1000, 0 }, { 1, 1000, 0 }, { 2, 1000, 0 }, { -1, 0, 0 } } },
};

static void test_budget(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(budget_cases) / sizeof(*budget_cases); c++) {
		const struct budget_case *bc = &budget_cases[c];
		struct pace p;
		pace_init(&p, bc->budget, 0);
		for (const struct spend *s = bc->steps; s->at >= 0; s++) {
			int64_t wait;
			pace_spend(&p, s->at, s->cost_us);
			wait = pace_wait_ms(&p, s->at);
			if (wait != s->wait_ms)
				fail_msg("%s: step at %lld: wait %lld, want %lld", bc->name,
					 (long long)s->at, (long long)wait, (long long)s->wait_ms);
		}
	}
}

/* Whatever the statements cost, a scanner that waits as told uses at most its budget
 * (plus the first burst) over a long run. */
static void test_budget_holds(void **state)
{
	static const double budgets[] = { 0.01, 0.05, 0.2 };
	static const int64_t costs_us[] = { 200, 5000, 80000, 700000 };

	(void)state;
	for (size_t b = 0; b < sizeof(budgets) / sizeof(*budgets); b++) {
		for (size_t c = 0; c < sizeof(costs_us) / sizeof(*costs_us); c++) {
			struct pace p;
			int64_t now = 0, spent = 0, run_ms = 30 * 60 * 1000;
			pace_init(&p, budgets[b], 0);
			while (now < run_ms) {
				int64_t wait = pace_wait_ms(&p, now);
				if (wait > 0) {
					now += wait;
					continue;
				}
				now += costs_us[c] / 1000; /* the statement's own time */
				pace_spend(&p, now, costs_us[c]);
				spent += costs_us[c];
			}
			double share = (double)spent / 1000.0 / (double)now;
			double allowed = budgets[b] + budgets[b] * PACE_BURST_MS / (double)run_ms +
					 (double)costs_us[c] / 1000.0 / (double)run_ms;
			if (share > allowed)
				fail_msg("budget %.2f cost %lldus: used %.4f > %.4f", budgets[b],
					 (long long)costs_us[c], share, allowed);
			/* And it is used, not left idle: within 10% of the budget. */
			if (share < budgets[b] * 0.9)
				fail_msg("budget %.2f cost %lldus: used only %.4f", budgets[b],
					 (long long)costs_us[c], share);
			/* The gauge agrees over its last window. */
			double used = pace_used(&p, now);
			if (used > budgets[b] * 1.5 || used < budgets[b] * 0.5)
				fail_msg("budget %.2f cost %lldus: gauge %.4f", budgets[b],
					 (long long)costs_us[c], used);
		}
	}
}

/* A reload changes the budget: earned credit stays (up to the new burst), debt is
 * paid back at the new rate. */
static void test_set_budget(void **state)
{
	struct pace p;

	(void)state;
	pace_init(&p, 0.05, 0);
	pace_spend(&p, 0, 600000); /* 100 ms in debt */
	pace_set_budget(&p, 0.10, 0);
	assert_int_equal(pace_wait_ms(&p, 0), 1001);
	pace_set_budget(&p, 0.01, 10000); /* 900 ms earned at 10%, capped at 100 ms */
	assert_int_equal(p.credit_us, 100000);
	pace_set_budget(&p, 0, 10000); /* out of range: a whole core */
	assert_int_equal(pace_sweep_ms(&p, 2000000), 2000);
}

/* [scan] queries_per_second is part of the one wait: statements take their slots of
 * 1/qps s, and pace_wait_ms waits for the later of the slot and the credit. */
static void test_qps_is_part_of_the_wait(void **state)
{
	struct pace p;

	(void)state;
	pace_init(&p, 0.05, 0);
	assert_int_equal(pace_wait_ms(&p, 0), 0); /* no limit until set */
	pace_set_qps(&p, 50);
	pace_spend_queries(&p, 0, 1000, 2); /* two statements: 40 ms of slots */
	assert_int_equal(pace_wait_ms(&p, 0), 40);
	assert_int_equal(pace_wait_ms(&p, 30), 10);
	pace_spend_queries(&p, 30, 1000, 1); /* follows on from the last slots */
	assert_int_equal(pace_wait_ms(&p, 30), 30);
	/* After an idle spell, no saved-up burst: slots start now. */
	pace_spend_queries(&p, 5000, 1000, 1);
	assert_int_equal(pace_wait_ms(&p, 5000), 20);
	/* In debt, the credit's wait is the longer one. */
	pace_spend_queries(&p, 5000, 600000, 1);
	assert_true(pace_wait_ms(&p, 5000) > 1000);
	pace_set_qps(&p, 0);
	pace_spend_queries(&p, 100000, 0, 100);
	assert_int_equal(pace_wait_ms(&p, 100000), 0);
}

static void test_sweep_estimate(void **state)
{
	struct pace p;

	(void)state;
	pace_init(&p, 0.05, 0);
	/* 20,000 wikis at 100 us each: 2 s of database time, 40 s at 5%. */
	assert_int_equal(pace_sweep_ms(&p, 2000000), 40000);
	pace_init(&p, 7, 0); /* out of range: a whole core */
	assert_int_equal(pace_sweep_ms(&p, 2000000), 2000);
}

/* The sweep's share: the budget while a sweep fits max_sweep_ms within it, more when
 * it would not (up to a quarter of a core), never less than the budget. */
static void test_sweep_budget(void **state)
{
	static const struct {
		const char *name;
		double budget;
		int64_t cost_us, max_ms;
		double want;
	} cases[] = {
		{ "a sweep that fits keeps the budget", 0.05, 2000000, 120000, 0.05 },
		{ "20,000 cold tables at 1 ms: 20 s per sweep needs 16.7% for 120 s, and the "
		  "hot set keeps its 2.5%",
		  0.05, 20000000, 120000, 20.0 / 120 + 0.025 },
		{ "a sweep that just fits the sweep's half of the budget", 0.05, 3000000, 120000,
		  0.05 },
		{ "a database too slow even for a quarter of a core", 0.05, 100000000, 120000,
		  PACE_SWEEP_SHARE_MAX },
		{ "a budget above the cap is kept", 0.5, 100000000, 120000, 0.5 },
		{ "max_sweep_seconds = 0: the budget always", 0.05, 100000000, 0, 0.05 },
		{ "no estimate yet: the budget", 0.05, 0, 120000, 0.05 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		double got = pace_sweep_budget(cases[i].budget, cases[i].cost_us, cases[i].max_ms);
		if (got < cases[i].want - 1e-9 || got > cases[i].want + 1e-9)
			fail_msg("%s: %.6f, want %.6f", cases[i].name, got, cases[i].want);
	}
}

/* The hot set's rounds: every interval while cheap, spaced out when they would take
 * more than half the budget. */
static void test_hot_gap(void **state)
{
	static const struct {
		double budget;
		int64_t cost_us, interval_ms, want_ms;
	} cases[] = {
		{ 0.05, 1000, 2000, 2000 },    /* 1 ms a round: every 2 s */
		{ 0.05, 50000, 2000, 2000 },   /* 50 ms: 2 s is exactly half of 5% */
		{ 0.05, 300000, 2000, 12000 }, /* 500 hot wikis at 300 ms: every 12 s */
		{ 0.01, 10000, 1000, 2000 },   { 1.0, 300000, 2000, 2000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int64_t got =
			pace_hot_gap_ms(cases[i].budget, cases[i].cost_us, cases[i].interval_ms);
		if (got != cases[i].want_ms)
			fail_msg("case %zu: %lld, want %lld", i, (long long)got,
				 (long long)cases[i].want_ms);
	}
}

static struct wiki_list make_list(const char *const *domains, size_t n)
{
	struct wiki_list l = { calloc(n ? n : 1, sizeof(struct wiki *)), n };
	for (size_t i = 0; i < n; i++) {
		l.items[i] = calloc(1, sizeof(struct wiki));
		l.items[i]->domain = strdup(domains[i]);
	}
	return l;
}

static void free_list(struct wiki_list *l)
{
	for (size_t i = 0; i < l->len; i++) {
		free(l->items[i]->domain);
		free(l->items[i]);
	}
	free(l->items);
}

static const char *const farm[] = { "a.wiki", "b.wiki", "c.wiki", "d.wiki", "e.wiki" };

struct touch {
	const char *domain;
	int64_t until;
};

struct hot_case {
	const char *name;
	struct touch touches[6];
	int64_t now;
	const char *want; /* the selected domains, comma-separated, in farm order */
};

static const struct hot_case hot_cases[] = {
	{ "nothing hot", { { NULL, 0 } }, 0, "" },
	{ "hot until a time", { { "c.wiki", 100 }, { "a.wiki", 50 }, { NULL, 0 } }, 60, "c.wiki" },
	{ "touching again extends",
	  { { "b.wiki", 10 }, { "b.wiki", 90 }, { NULL, 0 } },
	  60,
	  "b.wiki" },
	{ "touching again never shortens",
	  { { "b.wiki", 90 }, { "b.wiki", 10 }, { NULL, 0 } },
	  60,
	  "b.wiki" },
	{ "a wiki discovery no longer returns is not selected",
	  { { "gone.wiki", 100 }, { "e.wiki", 100 }, { "a.wiki", 100 }, { NULL, 0 } },
	  0,
	  "a.wiki,e.wiki" },
	{ "expired at exactly its time", { { "d.wiki", 60 }, { NULL, 0 } }, 60, "" },
};

static void test_hotset(void **state)
{
	struct wiki_list all = make_list(farm, 5);

	(void)state;
	for (size_t c = 0; c < sizeof(hot_cases) / sizeof(*hot_cases); c++) {
		const struct hot_case *hc = &hot_cases[c];
		struct hotset h = { 0 };
		struct wiki *out[5];
		char got[128] = "";
		size_t n;
		for (const struct touch *t = hc->touches; t->domain != NULL; t++)
			assert_int_equal(hotset_touch(&h, t->domain, t->until), 0);
		n = hotset_select(&h, &all, hc->now, out);
		for (size_t i = 0; i < n; i++) {
			strcat(got, i ? "," : "");
			strcat(got, out[i]->domain);
		}
		if (strcmp(got, hc->want) != 0)
			fail_msg("%s: selected '%s', want '%s'", hc->name, got, hc->want);
		for (size_t i = 0; i < 5; i++)
			assert_int_equal(hotset_has(&h, farm[i], hc->now),
					 strstr(hc->want, farm[i]) != NULL);
		hotset_expire(&h, hc->now);
		for (size_t i = 0; i < h.len; i++)
			assert_true(h.items[i].until_ms > hc->now);
		hotset_release(&h);
	}
	free_list(&all);
}

struct position_case {
	const char *after;
	size_t want;
};

static void test_sweep_position(void **state)
{
	static const struct position_case cases[] = {
		{ NULL, 0 },                       /* a new sweep starts at the start */
		{ "a.wiki", 1 },                   /* the one after the last read */
		{ "c.wiki", 3 },  { "e.wiki", 5 }, /* past the end: the sweep is over */
		{ "bb.wiki", 2 }, /* the last read is gone from discovery: the next one */
		{ "0.wiki", 0 },  /* a wiki before all the others */
		{ "zz.wiki", 5 },
	};
	struct wiki_list all = make_list(farm, 5);
	struct wiki_list none = { NULL, 0 };

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		size_t got = sweep_position(&all, cases[c].after);
		if (got != cases[c].want)
			fail_msg("after %s: %zu, want %zu",
				 cases[c].after ? cases[c].after : "NULL", got, cases[c].want);
	}
	assert_int_equal(sweep_position(&none, "a.wiki"), 0);
	free_list(&all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_budget_holds),
		cmocka_unit_test(test_set_budget),
		cmocka_unit_test(test_sweep_estimate),
		cmocka_unit_test(test_qps_is_part_of_the_wait),
		cmocka_unit_test(test_hot_gap),
		cmocka_unit_test(test_hotset),
		cmocka_unit_test(test_sweep_position),
		cmocka_unit_test(test_sweep_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
