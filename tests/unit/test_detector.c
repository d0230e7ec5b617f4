/* test_detector.c - one database server's detection (detector.h) driven by a fake
 * clock and a fake server: what it reads next (wakes before the sweep, the unreadable
 * tail last, once a sweep), whose failure a failure is (a lost connection is the
 * server's, a timed-out statement its wiki's), where the sweep resumes, and what it
 * spends (within the budget with wakes included, a woken wiki still read within a
 * second). The fake server's statements take the clock forward by what they cost. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "changes.h"
#include "config.h"
#include "detector.h"
#include "pace.h"

#define MAX_WIKIS 2000
#define MAX_CALLS 200000
#define MAX_READS 8000000

/* One scan call the detector made. */
struct call {
	int64_t at, end;
	size_t first, n; /* wikis, as indexes of fake.wikis (by domain number) */
	int per_query;
	enum scan_depth depth;
};

static struct fake {
	int64_t now;
	struct wiki *wikis[MAX_WIKIS];
	size_t nwikis;
	int64_t stmt_us, wiki_us; /* a statement's cost, and each wiki's in it */
	int timeout_wiki;         /* its statement times out (-1: none) */
	int64_t timeout_us;       /* what the wait takes */
	int lose_call;            /* this call loses the connection (-1: none) */
	bool ready[MAX_WIKIS];    /* the wiki has ready jobs */
	int64_t spent_us;         /* every statement's time */
	struct call *calls;
	size_t ncalls;
	size_t *read_list; /* the wikis of every call, in order */
	size_t nread;
	int64_t pending_wake[MAX_WIKIS]; /* the earliest wake not read yet (0: none) */
	int64_t worst_wake_ms;           /* the longest a wake waited for its read */
} fk;

static int wiki_number(const struct wiki *w)
{
	return atoi(w->domain + 1); /* "w0042.example" */
}

static int64_t fake_now(void *arg)
{
	(void)arg;
	return fk.now;
}

static int fake_scan(void *arg, struct wiki *const *wikis, size_t n, int per_query,
		     enum scan_depth depth, struct backlog *out, struct scan_stats *stats,
		     char *err, size_t errlen)
{
	struct call *c = &fk.calls[fk.ncalls];
	int64_t cost = 0;

	(void)arg;
	memset(stats, 0, sizeof(*stats));
	memset(out, 0, n * sizeof(*out));
	assert_true(fk.ncalls < MAX_CALLS && fk.nread + n <= MAX_READS);
	*c = (struct call){ fk.now, 0, fk.nread, n, per_query, depth };
	if ((int)fk.ncalls++ == fk.lose_call) {
		snprintf(err, errlen, "scan_db: error 2013: Lost connection to server during query");
		stats->queries = 1;
		stats->db_us = SCAN_FAILED_COST_US;
		fk.now += 5;
		c->end = fk.now;
		return -EIO;
	}
	for (size_t i = 0; i < n; i++) {
		int k = wiki_number(wikis[i]);
		fk.read_list[fk.nread++] = (size_t)k;
		if (k == fk.timeout_wiki) {
			out[i].failed = out[i].timed_out = true;
			snprintf(out[i].error, sizeof(out[i].error), "error 1969: timed out");
			fk.now += fk.timeout_us / 1000;
			stats->queries++;
			stats->db_us += SCAN_FAILED_COST_US;
			continue;
		}
		cost += fk.wiki_us;
		out[i].max_job_id = 7;
		out[i].oldest_ready_ms = fk.ready[k] ? 1700000000000LL : 0;
		out[i].ready_types = fk.ready[k];
	}
	stats->queries += (int)((n + (size_t)per_query - 1) / (size_t)per_query);
	cost += stats->queries * fk.stmt_us;
	stats->db_us += cost;
	fk.spent_us += stats->db_us;
	fk.now += cost / 1000;
	c->end = fk.now;
	for (size_t i = 0; i < n; i++) {
		int k = wiki_number(wikis[i]);
		if (fk.pending_wake[k] != 0) {
			int64_t waited = fk.now - fk.pending_wake[k];
			if (waited > fk.worst_wake_ms)
				fk.worst_wake_ms = waited;
			fk.pending_wake[k] = 0;
		}
	}
	return 0;
}

static int fake_publish(void *arg, struct wiki *const *wikis, const struct backlog *b, size_t n,
			enum scan_depth depth, const char *scan_started, char *err, size_t errlen)
{
	(void)arg;
	(void)scan_started;
	(void)err;
	(void)errlen;
	for (size_t i = 0; i < n; i++)
		changes_note_written(&wikis[i]->written, &b[i], depth, fk.now);
	return 0;
}

static int fake_clock(void *arg, char out[32], char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	snprintf(out, 32, "%020lld", (long long)fk.now);
	return 0;
}

static const struct detector_io fake_io = { fake_now, fake_scan, fake_publish, fake_clock, NULL };

static struct config cfg;
static char host[] = "127.0.0.1", empty[] = "", scope[] = "1.43";

/* A fresh fake server of n wikis (w0000..), and a detector on it, active. */
static struct detector *setup(size_t n)
{
	struct wiki_list list = { 0 };
	struct detector *d;

	for (size_t i = 0; i < fk.nwikis; i++)
		wiki_free(fk.wikis[i]);
	memset(&fk, 0, sizeof(fk));
	fk.calls = calloc(MAX_CALLS, sizeof(*fk.calls));
	fk.read_list = calloc(MAX_READS, sizeof(*fk.read_list));
	assert_non_null(fk.calls);
	assert_non_null(fk.read_list);
	fk.now = 1000000;
	fk.stmt_us = 1000;
	fk.wiki_us = 20;
	fk.timeout_wiki = -1;
	fk.lose_call = -1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.scan = (struct db_endpoint){ .host = host,
					 .port = 3306,
					 .socket = empty,
					 .user = empty,
					 .password = empty,
					 .password_file = empty,
					 .password_env = empty,
					 .database = empty,
					 .connect_timeout = 5,
					 .query_timeout = 30,
					 .tls_ca = empty };
	cfg.platform = cfg.scan;
	cfg.mw_version = scope;
	cfg.skip_types = empty;
	cfg.scan_interval = 2;
	cfg.scan_wikis_per_query = 50;
	cfg.scan_queries_per_second = 0;
	cfg.scan_full_interval = 60;
	cfg.scan_db_budget_percent = 5;
	cfg.scan_max_sweep_seconds = 0;
	list.items = calloc(n, sizeof(*list.items));
	assert_non_null(list.items);
	for (size_t i = 0; i < n; i++) {
		char domain[32], db[32];
		struct wiki w = { 0 };
		snprintf(domain, sizeof(domain), "w%04zu.example", i);
		snprintf(db, sizeof(db), "db%04zu", i);
		w.domain = domain;
		w.dbname = db;
		w.table_prefix = empty;
		w.secret = empty;
		fk.wikis[i] = wiki_dup(&w);
		assert_non_null(fk.wikis[i]);
		list.items[list.len++] = fk.wikis[i];
	}
	fk.nwikis = n;
	d = detector_new(&cfg, NULL, NULL, &fake_io);
	assert_non_null(d);
	assert_int_equal(detector_set_wikis(d, &list), 0);
	free(list.items);
	detector_set_active(d, true);
	return d;
}

static void teardown_fake(struct detector *d)
{
	detector_stop(d);
	for (size_t i = 0; i < fk.nwikis; i++)
		wiki_free(fk.wikis[i]);
	fk.nwikis = 0;
	free(fk.calls);
	free(fk.read_list);
	fk.calls = NULL;
	fk.read_list = NULL;
}

/* One turn, then the clock to when the next is due. */
static void step(struct detector *d)
{
	int64_t next = detector_turn(d);

	fk.now = next > fk.now ? next : fk.now + 1;
}

/* Wakes during a run: every wake_every_ms, wiki (k * 7 % wake_span) is woken. */
struct wakes {
	int64_t every_ms;
	size_t span;
	size_t k;
	int64_t next;
};

static void wake(struct detector *d, size_t k)
{
	if (fk.pending_wake[k] == 0)
		fk.pending_wake[k] = fk.now;
	fk.ready[k] = true; /* a job was inserted */
	detector_wake(d, fk.wikis[k]->domain);
}

/* Runs turns (and wakes) until the clock reaches `until`. */
static void run_until(struct detector *d, int64_t until, struct wakes *w)
{
	while (fk.now < until) {
		int64_t next = detector_turn(d);
		if (next <= fk.now)
			next = fk.now + 1;
		while (w != NULL && w->every_ms > 0 && w->next <= next && w->next < until) {
			if (w->next > fk.now)
				fk.now = w->next;
			wake(d, (w->k++ * 7) % w->span);
			w->next += w->every_ms;
			/* A wake may make a turn due sooner: the thread is kicked. */
			next = fk.now;
		}
		if (next > fk.now)
			fk.now = next < until ? next : until;
	}
}

/* How many times wiki k was read in calls [from, to). */
static int reads_of(size_t k, size_t from, size_t to)
{
	int n = 0;

	for (size_t c = from; c < to; c++)
		for (size_t i = 0; i < fk.calls[c].n; i++)
			n += fk.read_list[fk.calls[c].first + i] == k;
	return n;
}

static void run_until_swept(struct detector *d, int sweeps)
{
	char since[32], last[32] = "";
	int seen = 0;

	for (int guard = 0; seen < sweeps && guard < 100000; guard++) {
		step(d);
		if (detector_swept(d, since) && strcmp(since, last) != 0) {
			memcpy(last, since, sizeof(last));
			seen++;
		}
	}
	assert_int_equal(seen, sweeps);
}

static void test_timed_out_wiki_is_not_rerun_and_goes_to_the_tail(void **state)
{
	struct detector *d = setup(120);
	struct server_report r;
	size_t first_sweep_end, k;

	(void)state;
	fk.timeout_wiki = 7;
	fk.timeout_us = 2000000; /* the lock wait */
	cfg.scan_interval = 10;  /* one sweep at a time */
	run_until_swept(d, 1);
	first_sweep_end = fk.ncalls;
	/* Its statement ran once in that sweep: not again in its tail. */
	assert_int_equal(reads_of(7, 0, first_sweep_end), 1);
	detector_report(d, &r);
	assert_int_equal(r.unreadable, 1);
	assert_false(r.down);
	/* Next sweep: the other wikis in chunks without it, then it alone, last. */
	run_until_swept(d, 1);
	assert_int_equal(reads_of(7, first_sweep_end, fk.ncalls), 1);
	for (k = fk.ncalls; k-- > first_sweep_end;)
		if (reads_of(7, k, k + 1) > 0)
			break;
	assert_int_equal(fk.calls[k].n, 1);
	assert_int_equal(fk.calls[k].per_query, 1);
	for (size_t c = first_sweep_end; c < k; c++)
		assert_true(fk.calls[c].n > 1); /* the grouped reads came first */
	teardown_fake(d);
}

static void test_unreadable_wiki_is_not_in_the_hot_sets_reads(void **state)
{
	struct detector *d = setup(60);
	size_t from;

	(void)state;
	fk.ready[3] = fk.ready[4] = true; /* both hot */
	run_until_swept(d, 1);
	fk.timeout_wiki = 4; /* its table locked from now on */
	run_until_swept(d, 1);
	from = fk.ncalls;
	run_until(d, fk.now + 10000, NULL);
	/* The hot set's reads (every [scan] interval) go on for wiki 3... */
	assert_true(reads_of(3, from, fk.ncalls) >= 5);
	/* ...while wiki 4 is read alone, at a sweep's tail, once a sweep: at most one
	 * sweep every [scan] interval (2 s) in 10 s. */
	assert_true(reads_of(4, from, fk.ncalls) >= 1);
	assert_true(reads_of(4, from, fk.ncalls) <= 6);
	for (size_t c = from; c < fk.ncalls; c++)
		if (reads_of(4, c, c + 1) > 0)
			assert_int_equal(fk.calls[c].n, 1);
	teardown_fake(d);
}

static void test_lost_connection_is_the_servers_failure_and_the_sweep_resumes(void **state)
{
	struct detector *d = setup(200);
	struct server_report r;
	size_t failed;

	(void)state;
	fk.lose_call = 2; /* the third chunk */
	while (fk.ncalls < 3)
		step(d);
	failed = 2;
	detector_report(d, &r);
	assert_true(r.down);
	assert_non_null(strstr(r.down_why, "2013"));
	assert_int_equal(r.unreadable, 0); /* no wiki blamed */
	assert_string_equal(r.server, "127.0.0.1:3306");
	/* Retried on the database's schedule, where the sweep stopped. */
	while (fk.ncalls < 4)
		step(d);
	assert_int_equal(fk.read_list[fk.calls[3].first], fk.read_list[fk.calls[failed].first]);
	assert_int_equal(fk.read_list[fk.calls[3].first], 100);
	detector_report(d, &r);
	assert_false(r.down);
	assert_int_equal(r.unreadable, 0);
	teardown_fake(d);
}

static void test_woken_wikis_are_served_before_the_sweep(void **state)
{
	struct detector *d = setup(1000);
	size_t from;

	(void)state;
	fk.stmt_us = 20000; /* a slow sweep: 20 chunks of 20 ms */
	detector_turn(d);   /* the sweep has begun */
	assert_true(fk.ncalls > 0);
	fk.now += 10;
	wake(d, 990); /* far ahead of the sweep */
	fk.now += 100;
	from = fk.ncalls;
	detector_turn(d);
	assert_true(fk.ncalls > from);
	assert_int_equal(fk.calls[from].n, 1);
	assert_int_equal(fk.read_list[fk.calls[from].first], 990);
	assert_int_equal(fk.calls[from].depth, SCAN_FULL);
	teardown_fake(d);
}

static void test_woken_wiki_is_read_within_a_second_while_the_budget_is_spent(void **state)
{
	struct detector *d = setup(400);
	struct server_report r;

	(void)state;
	fk.stmt_us = 400000; /* 400 ms a chunk: the burst is gone in two */
	run_until(d, fk.now + 3000, NULL);
	detector_report(d, &r);
	assert_true(fk.spent_us > 500000); /* in debt: more than 10 s of 5 % */
	for (int i = 0; i < 5; i++) {
		size_t k = 300 + (size_t)i;
		int64_t next;
		fk.stmt_us = 1000;
		wake(d, k);
		next = fk.now + 1000;
		run_until(d, next, NULL);
		assert_int_equal(fk.pending_wake[k], 0);
	}
	assert_true(fk.worst_wake_ms <= 1000);
	teardown_fake(d);
}

static void test_spending_stays_within_the_budget_with_wakes(void **state)
{
	struct detector *d = setup(2000);
	struct wakes w = { 3, 200, 0, 0 }; /* 333 inserts a second over 200 wikis */
	int64_t start, t = 120000;
	double used, budget = 0.05;

	(void)state;
	start = fk.now;
	w.next = start + 1;
	run_until(d, start + t, &w);
	used = (double)fk.spent_us / 1000.0;
	/* What the budget allows over the run plus its burst, with one statement over. */
	assert_true(used <= budget * (double)(t + PACE_BURST_MS) + 25);
	/* The sweep still moved: the wakes did not take the whole budget. */
	assert_true(detector_swept(d, (char[32]){ 0 }));
	assert_true(fk.worst_wake_ms <= 1000);
	assert_true(w.k > 30000);
	teardown_fake(d);
}

static void test_wakes_of_one_wiki_coalesce(void **state)
{
	struct detector *d = setup(100);
	size_t from;

	(void)state;
	run_until_swept(d, 1);
	from = fk.ncalls;
	for (int i = 0; i < 50; i++) {
		wake(d, 42);
		fk.now += 1;
	}
	run_until(d, fk.now + 300, NULL);
	assert_int_equal(reads_of(42, from, fk.ncalls), 1);
	teardown_fake(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timed_out_wiki_is_not_rerun_and_goes_to_the_tail),
		cmocka_unit_test(test_unreadable_wiki_is_not_in_the_hot_sets_reads),
		cmocka_unit_test(test_lost_connection_is_the_servers_failure_and_the_sweep_resumes),
		cmocka_unit_test(test_woken_wikis_are_served_before_the_sweep),
		cmocka_unit_test(test_woken_wiki_is_read_within_a_second_while_the_budget_is_spent),
		cmocka_unit_test(test_spending_stays_within_the_budget_with_wakes),
		cmocka_unit_test(test_wakes_of_one_wiki_coalesce),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
