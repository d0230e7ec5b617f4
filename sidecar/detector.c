/* detector.c - see detector.h. One thread per database server: its turns read what is
 * due (wakes, hot set, sweep, unreadable tail) within the server's budget and sleep on
 * a condition variable until the next is due or the scanner or the feed has news. */
#include "detector.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binlog.h"
#include "coord.h"
#include "db.h"
#include "pace.h"
#include "publish.h"
#include "sched.h"
#include "util.h"

/* While a failure persists, repeat its log line at most this often. */
#define REPEAT_FAILURE_LOG_MS 60000
/* A woken wiki whose read found no ready job is read once more this much later: the
 * binary log is written before InnoDB's commit completes. */
#define WAKE_RECHECK_MS 250
/* Wakes coalesce: a round of wake reads starts this long after the first wake it
 * serves and at least this long after the last round, and reads every wiki woken
 * until then, so hundreds of inserts a second make a few rounds a second sharing their
 * statements, not hundreds of rounds. Shorter while the budget has credit; longer in
 * debt, when the rounds are what spends it. */
#define WAKE_WINDOW_MS 100
#define WAKE_WINDOW_DEBT_MS 250
/* The latest a round for a wake may start: with a round's own time, its wiki is read
 * within a second of the job's insert. */
#define WAKE_LATEST_MS 700
/* A wiki stays in the hot set this long after a read last found jobs in it. */
#define HOT_KEEP_MS 120000
/* One turn spends at most about this long on the sweep, so that wakes and the hot set
 * are served between its chunks. */
#define TICK_MS 1000
/* A sweep longer than this is logged (once, on change): half the 60 s a job on a cold
 * wiki may wait before a worker hears of it, a third of the 3-minute promise. */
#define SWEEP_STRETCHED_MS 30000
/* The coordination database's clock is read again after this long (coord_clock):
 * local and database clocks drift apart by far less than a millisecond in that time. */
#define CLOCK_REREAD_MS 1000
/* Nothing to do (inactive, no wikis): the turn waits for news this long at most. */
#define IDLE_MS 60000
/* A feed that does not follow is looked at this often: once it follows, the catch-up
 * sweep starts within this long (feed_check). */
#define FEED_POLL_MS 1000
/* The scan session's limits (db_set_statement_limits). A SELECT of index dives waits on
 * a table's metadata lock only behind LOCK TABLES, DDL or a transaction holding it:
 * 2 s is past any moment's contention, and a wiki held longer waits for the tail of
 * the sweep, costing its server 2 s a sweep, not a statement's whole time limit. A
 * statement may take STATEMENT_LIMIT_FACTOR times the server's recent average (a table
 * cache miss, a busy moment), never less than 1 s (a statement's fixed cost on a
 * loaded server), and never more than 0.8 x query_timeout, so that the server's error
 * comes before the client's read timeout (which then means a server that stopped
 * answering: the server's failure). Before any measurement: that maximum. */
#define LOCK_WAIT_S 2
#define STATEMENT_LIMIT_FACTOR 4
#define STATEMENT_LIMIT_MIN_MS 1000

/* What a run of reads cost and found. */
struct read_tally {
	int64_t cost_us; /* database time (scan.h: db_us) */
	int queries;
	size_t with_backlog; /* wikis with ready jobs */
};

/* The detector thread's own state of one wiki of its list (parallel to d->wikis). */
struct dwiki {
	int64_t woken_ms;   /* a wake is pending since then (0: none) */
	int64_t recheck_ms; /* a second look is due then (0: none) */
	bool unreadable;    /* its last read failed: read at the sweep's tail only */
	unsigned tried;     /* the sweep (sweep.gen) that last read it */
};

struct detector {
	char *key; /* the wikis' db_server; NULL: [scan_db] as configured */
	char name[128];
	struct sched *sched;
	struct detector_io io;
	struct scan_endpoint ep;
	struct db *db;    /* the job tables' connection (real io) */
	struct db *coord; /* its own coordination connection (real io) */
	pthread_t thread;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock: */
	bool stop, kick;
	bool want_active;
	struct wiki_list next_wikis; /* detector_set_wikis, not yet picked up */
	bool wikis_due;
	const struct config *next_cfg;
	struct wiki_list wikis; /* replaced under lock by the thread (wakes look it up) */
	unsigned char *woken;   /* per wiki: in the wake set */
	int64_t *woken_at;      /* per wiki: since when */
	size_t *wake_idx;       /* the wake set, as indexes */
	size_t nwake;
	struct server_report report;
	bool swept;        /* a complete sweep since made active */
	char swept_db[32]; /* its start, coordination clock */

	/* The thread's own: */
	const struct config *cfg;
	struct dwiki *dw;
	size_t *pending; /* wikis with a wake or second look pending (indexes) */
	size_t npending;
	bool active;
	struct binlog *feed;
	bool feed_none; /* this server has no feed (detector_feed_start) */
	bool feed_following;
	unsigned long feed_follows;    /* binlog_follows at the last look */
	struct detector_streak streak; /* "scan failed" */
	bool down;
	char down_why[256];
	int64_t retry_at;
	int64_t last_round; /* the last round of wake reads */
	struct pace pace;
	struct hotset hot;
	int64_t next_hot;
	int64_t next_full_scan;
	int64_t period_ms;     /* the last complete sweep's length */
	int64_t sweep_cost_us; /* its database time */
	bool budget_raised;
	int64_t stmt_avg_us; /* recent statements' average (the statement limit) */
	struct coord_clock clock;
	bool clock_read;
	struct sweep {
		bool running;
		char *after; /* the last wiki read (NULL: none yet) */
		int64_t started;
		char started_db[32];
		struct read_tally tally; /* its reads so far */
		enum scan_depth depth;
		bool incomplete; /* some chunk was not written: not a complete sweep */
		bool stretched;
		int64_t next_start;
		unsigned gen; /* which sweep: a wiki read in it is not read at its tail */
	} sweep;
};

/* ---- failure streaks ---- */

void detector_streak_fail(struct detector_streak *s, const char *server, const char *err,
			  int64_t now_ms, int64_t retry_ms)
{
	struct log_line l;
	char next[160];

	metrics_add(METRIC_ERRORS, s->metric_kind, 1);
	if (!log_streak_fail(&s->run, now_ms, REPEAT_FAILURE_LOG_MS))
		return;
	snprintf(next, sizeof(next), "retrying in %llds%s", (long long)(retry_ms + 999) / 1000,
		 server != NULL ? "; this server's wikis keep their last figures, other"
				  " servers' detection goes on"
				: "");
	log_begin(&l, LOG_ERROR, s->what);
	if (server != NULL)
		log_str(&l, "server", server);
	log_str(&l, "error", err);
	log_int(&l, "failures", s->run.count);
	log_str(&l, "next", next);
	log_end(&l);
}

void detector_streak_ok(struct detector_streak *s, const char *server)
{
	struct log_line l;
	int failures = log_streak_ok(&s->run);

	if (failures == 0)
		return;
	log_begin(&l, LOG_INFO, "recovered");
	log_str(&l, "after", s->what);
	if (server != NULL)
		log_str(&l, "server", server);
	log_int(&l, "failures", failures);
	log_end(&l);
}

/* ---- the real io: this server's connections ---- */

static int64_t real_now(void *arg)
{
	(void)arg;
	return util_mono_ms();
}

/* The session's statement limit from the recent statements' average (see
 * STATEMENT_LIMIT_FACTOR), sent when it moved by more than a quarter. */
static void adjust_statement_limit(struct detector *d, const struct scan_stats *stats,
				   const struct backlog *b, size_t n)
{
	int64_t max_ms = (int64_t)d->ep.ep.query_timeout * 800, limit;

	for (size_t i = 0; i < n; i++)
		if (b[i].failed)
			return; /* a failed statement's time says nothing of the server's pace */
	if (stats->queries > 0) {
		int64_t avg = stats->db_us / stats->queries;
		d->stmt_avg_us = d->stmt_avg_us == 0 ? avg : (d->stmt_avg_us * 4 + avg) / 5;
	}
	limit = d->stmt_avg_us * STATEMENT_LIMIT_FACTOR / 1000;
	if (d->stmt_avg_us == 0 || limit > max_ms)
		limit = max_ms;
	if (limit < STATEMENT_LIMIT_MIN_MS)
		limit = STATEMENT_LIMIT_MIN_MS < max_ms ? STATEMENT_LIMIT_MIN_MS : max_ms;
	db_set_statement_limits(d->db, limit, LOCK_WAIT_S);
}

static int real_scan(void *arg, struct wiki *const *wikis, size_t n, int per_query,
		     enum scan_depth depth, struct backlog *out, struct scan_stats *stats,
		     char *err, size_t errlen)
{
	struct detector *d = arg;

	if (scan_run_skipping(d->db, wikis, n, per_query, depth, d->cfg->skip_types, out, stats,
			      err, errlen) != 0)
		return -EIO;
	adjust_statement_limit(d, stats, out, n);
	return 0;
}

static int real_publish(void *arg, struct wiki *const *wikis, const struct backlog *b, size_t n,
			enum scan_depth depth, const char *scan_started, char *err, size_t errlen)
{
	struct detector *d = arg;
	char probe[32], why[300];

	if (publish_backlog(d->coord, d->cfg, wikis, b, n, depth, scan_started, err, errlen) == 0) {
		/* The workers look again at once when there is work to see (not for every
		 * chunk of a sweep of idle wikis: each poke makes them re-read the backlog). */
		for (size_t i = 0; i < n; i++) {
			if (b[i].oldest_ready_ms != 0 && d->sched != NULL) {
				sched_poke(d->sched);
				break;
			}
		}
		return 0;
	}
	snprintf(why, sizeof(why), "%s", err);
	if (coord_now(d->coord, probe, err, errlen) != 0)
		return -EIO;
	/* The database answers: something in these rows. The others go on. */
	snprintf(err, errlen, "backlog of %zu wikis from %s not written: %s", n,
		 n > 0 ? wikis[0]->domain : "", why);
	return 1;
}

/* The coordination database's time now, from a reading at most CLOCK_REREAD_MS old:
 * one statement a second, not one per chunk of a sweep. */
static int real_clock(void *arg, char out[32], char *err, size_t errlen)
{
	struct detector *d = arg;
	int64_t now = util_mono_ms();

	if (!d->clock_read || now - d->clock.mono_ms >= CLOCK_REREAD_MS) {
		struct coord_clock c;
		if (coord_clock_read(d->coord, &c, err, errlen) != 0)
			return -EIO;
		d->clock = c;
		d->clock_read = true;
		now = c.mono_ms;
	}
	coord_clock_at(&d->clock, now, out);
	return 0;
}

/* ---- the feed ---- */

/* The server's own feed: [binlog]'s endpoint for the wikis that name no server, the
 * named server's host:port otherwise (binlog_endpoint_for: its [server] section's feed
 * login, or [binlog]'s). */
static struct binlog *detector_feed_start(struct detector *d)
{
	return binlog_start(d->cfg, d->key, detector_wake, d);
}

/* The report's feed state (enum binlog_state, as server_report.h names it) and why. */
static int detector_feed_state(struct detector *d, char *why, size_t whylen)
{
	struct binlog_status st;

	why[0] = '\0';
	if (d->feed == NULL)
		return -1;
	binlog_status(d->feed, &st);
	if (st.state != BINLOG_FOLLOWING)
		snprintf(why, whylen, "%s", st.why);
	return (int)st.state;
}

static void feed_stop(struct detector *d)
{
	binlog_stop(d->feed);
	d->feed = NULL;
	d->feed_following = false;
	d->feed_follows = 0;
}

static void sweep_restart_now(struct detector *d, int64_t now);

/* The feed runs while the detector is active and [binlog] enabled. When it starts
 * following after not following (a new holder, a reconnect that could not resume), the
 * events in between were seen by no one: a sweep from the start, at once, is the
 * catch-up for that gap. */
static void feed_check(struct detector *d, int64_t now)
{
	unsigned long follows;
	bool following;

	if (!d->active || !d->cfg->binlog_enabled) {
		if (d->feed != NULL)
			feed_stop(d);
		d->feed_none = false; /* tried again when next active */
		return;
	}
	if (d->feed == NULL && !d->feed_none) {
		d->feed = detector_feed_start(d);
		if (d->feed == NULL && !d->feed_none)
			log_msg(LOG_ERROR, "binary log feed: cannot start its thread; detection by "
					   "scanning only");
		if (d->feed == NULL) {
			d->feed_none = true;
			return;
		}
		if (binlog_set_wikis(d->feed, &d->wikis) != 0)
			log_msg(LOG_ERROR, "binary log feed: out of memory for the wiki list");
	}
	if (d->feed == NULL)
		return;
	/* binlog_follows counts entries into following: a quick lost-and-back between two
	 * looks is a gap too. */
	following = binlog_following(d->feed);
	follows = binlog_follows(d->feed);
	if (following && (!d->feed_following || follows != d->feed_follows))
		sweep_restart_now(d, now);
	d->feed_following = following;
	d->feed_follows = follows;
}

/* ---- state ---- */

#define NOW(d) ((d)->io.now((d)->io.arg))

static bool stopping(struct detector *d)
{
	bool stop;

	pthread_mutex_lock(&d->lock);
	stop = d->stop;
	pthread_mutex_unlock(&d->lock);
	return stop;
}

static int wiki_domain_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(struct wiki *const *)elem)->domain);
}

static size_t unreadable_count(const struct detector *d)
{
	size_t n = 0;

	for (size_t i = 0; i < d->wikis.len; i++)
		n += d->dw[i].unreadable;
	return n;
}

/* The report, under the lock, as of now. */
static void report_update(struct detector *d, int64_t now)
{
	struct server_report r;

	memset(&r, 0, sizeof(r));
	snprintf(r.server, sizeof(r.server), "%s", d->name);
	r.wikis = d->wikis.len;
	r.down = d->down;
	snprintf(r.down_why, sizeof(r.down_why), "%s", d->down ? d->down_why : "");
	r.sweep_ms = d->period_ms;
	r.budget_used = pace_used(&d->pace, now);
	r.hot = d->hot.len;
	r.unreadable = unreadable_count(d);
	r.feed = detector_feed_state(d, r.feed_why, sizeof(r.feed_why));
	pthread_mutex_lock(&d->lock);
	d->report = r;
	pthread_mutex_unlock(&d->lock);
}

/* Starts a sweep from the first wiki at once (keeping the budget). */
static void sweep_restart_now(struct detector *d, int64_t now)
{
	free(d->sweep.after);
	d->sweep.after = NULL;
	d->sweep.running = false;
	d->sweep.next_start = now;
}

/* Made active: a sweep at once, a fresh budget (a burst: the first chunks are read at
 * once), its own hot set, and every row written again (another holder may have written
 * or forgotten rows meanwhile). */
static void detection_restart(struct detector *d, int64_t now)
{
	unsigned gen = d->sweep.gen;

	/* The last sweep's cost (sweep_cost_us) is kept: it sizes the next one's share. */
	pace_init(&d->pace, d->cfg->scan_db_budget_percent / 100.0, now);
	pace_set_qps(&d->pace, d->cfg->scan_queries_per_second);
	free(d->sweep.after);
	memset(&d->sweep, 0, sizeof(d->sweep));
	d->sweep.gen = gen;
	d->next_full_scan = 0;
	d->next_hot = now;
	for (size_t i = 0; i < d->wikis.len; i++)
		memset(&d->wikis.items[i]->written, 0, sizeof(d->wikis.items[i]->written));
	pthread_mutex_lock(&d->lock);
	d->swept = false;
	pthread_mutex_unlock(&d->lock);
}

/* Under lock: the new list replaces the old; each wiki still listed keeps what was
 * written, its readability and a pending wake (both lists are sorted by domain). */
static int swap_wikis(struct detector *d)
{
	struct wiki_list *now = &d->next_wikis, *old = &d->wikis;
	size_t n = now->len ? now->len : 1, j = 0;
	struct dwiki *dw = calloc(n, sizeof(*dw));
	unsigned char *woken = calloc(n, 1);
	int64_t *woken_at = calloc(n, sizeof(*woken_at));
	size_t *wake_idx = calloc(n, sizeof(*wake_idx)), *pending = calloc(n, sizeof(*pending));
	size_t nwake = 0, npending = 0;

	if (dw == NULL || woken == NULL || woken_at == NULL || wake_idx == NULL || pending == NULL) {
		free(dw);
		free(woken);
		free(woken_at);
		free(wake_idx);
		free(pending);
		return -ENOMEM;
	}
	for (size_t i = 0; i < now->len; i++) {
		int cmp = 1;
		while (j < old->len &&
		       (cmp = strcmp(old->items[j]->domain, now->items[i]->domain)) < 0)
			j++;
		if (j >= old->len || cmp != 0)
			continue;
		now->items[i]->written = old->items[j]->written;
		dw[i] = d->dw[j];
		if (d->woken[j]) {
			woken[i] = 1;
			woken_at[i] = d->woken_at[j];
			wake_idx[nwake++] = i;
		}
		if (dw[i].woken_ms != 0 || dw[i].recheck_ms != 0)
			pending[npending++] = i;
		j++;
	}
	wiki_list_free(old);
	*old = *now;
	memset(now, 0, sizeof(*now));
	free(d->dw);
	free(d->woken);
	free(d->woken_at);
	free(d->wake_idx);
	free(d->pending);
	d->dw = dw;
	d->woken = woken;
	d->woken_at = woken_at;
	d->wake_idx = wake_idx;
	d->nwake = nwake;
	d->pending = pending;
	d->npending = npending;
	return 0;
}

/* Picks up what the scanner and the feed said since the last turn. */
static void take_news(struct detector *d, int64_t now)
{
	bool active, list_changed = false;

	pthread_mutex_lock(&d->lock);
	d->kick = false;
	if (d->next_cfg != NULL) {
		d->cfg = d->next_cfg;
		d->next_cfg = NULL;
	}
	if (d->wikis_due) {
		if (swap_wikis(d) == 0)
			list_changed = true;
		else
			log_msg(LOG_ERROR, "detector: out of memory for a new wiki list; keeping "
					   "the previous one until the next discovery");
		d->wikis_due = false;
	}
	/* The wake set joins the thread's pending wikis. */
	for (size_t k = 0; k < d->nwake; k++) {
		size_t i = d->wake_idx[k];
		d->woken[i] = 0;
		if (d->dw[i].woken_ms == 0 && d->dw[i].recheck_ms == 0)
			d->pending[d->npending++] = i;
		if (d->dw[i].woken_ms == 0 || d->woken_at[i] < d->dw[i].woken_ms)
			d->dw[i].woken_ms = d->woken_at[i];
	}
	d->nwake = 0;
	active = d->want_active;
	pthread_mutex_unlock(&d->lock);
	if (list_changed && d->feed != NULL && binlog_set_wikis(d->feed, &d->wikis) != 0)
		log_msg(LOG_ERROR, "binary log feed: out of memory; keeping its previous wiki list");
	if (active && !d->active)
		detection_restart(d, now);
	d->active = active;
}

/* ---- what a read tells ---- */

/* A wiki's job table became unreadable (missing database...) or readable again:
 * logged on the change, not on every read. */
static void note_readability(struct detector *d, size_t i, const struct backlog *b)
{
	const struct wiki *w = d->wikis.items[i];
	struct log_line l;

	if (b->failed == d->dw[i].unreadable)
		return;
	d->dw[i].unreadable = b->failed;
	if (b->failed) {
		log_begin(&l, LOG_ERROR, "wiki skipped: its job table cannot be read");
		log_str(&l, "wiki", w->domain);
		log_str(&l, "db", w->dbname);
		if (d->key != NULL)
			log_str(&l, "server", d->key);
		log_str(&l, "error", b->error);
		log_str(&l, "next",
			b->timed_out ? "read once a sweep, at its end, until its statement ends"
				       " in time (a locked table)"
				     : "no batches until a scan can read it again");
	} else {
		log_begin(&l, LOG_INFO, "wiki readable again");
		log_str(&l, "wiki", w->domain);
	}
	log_end(&l);
}

/* The server answered again after failing. */
static void server_up(struct detector *d)
{
	if (!d->down && d->streak.run.count == 0)
		return;
	d->down = false;
	detector_streak_ok(&d->streak, d->name);
}

/* A failure of the server (or of the coordination database, down false): retried on
 * db.c's reconnect schedule (a few seconds at most), never on a wiki's backoff. */
static void turn_failed(struct detector *d, bool down, const char *err, int64_t now)
{
	int64_t delay = db_retry_delay_ms(d->streak.run.count + 2);

	if (stopping(d))
		return;
	if (down) {
		d->down = true;
		snprintf(d->down_why, sizeof(d->down_why), "%.255s", err);
	}
	d->retry_at = now + delay;
	detector_streak_fail(&d->streak, d->name, err, now, delay);
}

/* Index of w in d->wikis (w is one of its items). */
static size_t index_of(const struct detector *d, const struct wiki *w)
{
	struct wiki **hit = bsearch(w->domain, d->wikis.items, d->wikis.len,
				    sizeof(*d->wikis.items), wiki_domain_cmp);

	return hit != NULL ? (size_t)(hit - d->wikis.items) : d->wikis.len;
}

/* Reads wikis[0..n) in statements of per_query and publishes them, chunk by chunk of
 * [scan] wikis_per_query; pays the budget; notes readability and the hot set; adds
 * to *tally (may be NULL) and fills had_jobs[0..n) (may be NULL). 0; 1
 * some chunk not written; -EIO the server failed; -ECOMM the coordination database
 * does not answer (err set). */
static int read_publish(struct detector *d, struct wiki **wikis, size_t n, int per_query,
			enum scan_depth depth, bool *had_jobs, struct read_tally *tally, char *err,
			size_t errlen)
{
	size_t group = (size_t)d->cfg->scan_wikis_per_query;
	struct backlog *b = calloc(group ? group : 1, sizeof(*b));
	int rc = 0;

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	for (size_t from = 0; from < n && rc >= 0 && !stopping(d); from += group) {
		size_t len = n - from < group ? n - from : group;
		struct scan_stats stats = { 0 };
		char started[32];
		int64_t now;
		int w;
		/* Each chunk's own start: a wiki drained after it keeps its figures. */
		if (d->io.clock(d->io.arg, started, err, errlen) != 0) {
			rc = -ECOMM;
			break;
		}
		if (d->io.scan(d->io.arg, wikis + from, len, per_query, depth, b, &stats, err,
			       errlen) != 0) {
			pace_spend_queries(&d->pace, NOW(d), stats.db_us, stats.queries);
			rc = -EIO;
			break;
		}
		now = NOW(d);
		server_up(d);
		pace_spend_queries(&d->pace, now, stats.db_us, stats.queries);
		for (size_t k = 0; k < len; k++) {
			size_t i = index_of(d, wikis[from + k]);
			if (i < d->wikis.len) {
				note_readability(d, i, &b[k]);
				d->dw[i].tried = d->sweep.gen;
			}
			if (had_jobs != NULL)
				had_jobs[from + k] = b[k].oldest_ready_ms != 0;
			if ((b[k].oldest_ready_ms != 0 || b[k].orphaned_claims > 0) &&
			    hotset_touch(&d->hot, wikis[from + k]->domain, now + HOT_KEEP_MS) != 0)
				log_msg(LOG_ERROR,
					"hot set: out of memory; the wiki waits for the sweep");
		}
		if (tally != NULL) {
			tally->cost_us += stats.db_us;
			tally->queries += stats.queries;
			for (size_t k = 0; k < len; k++)
				tally->with_backlog += b[k].oldest_ready_ms != 0;
		}
		w = d->io.publish(d->io.arg, wikis + from, b, len, depth, started, err, errlen);
		if (w < 0)
			rc = -ECOMM;
		else if (w > 0)
			rc = 1;
	}
	free(b);
	return rc;
}

/* ---- wakes ---- */

/* The gap between two rounds of wake reads, and a round's window. */
static int64_t wake_gap(struct detector *d, int64_t now)
{
	return pace_wait_ms(&d->pace, now) > 0 ? WAKE_WINDOW_DEBT_MS : WAKE_WINDOW_MS;
}

/* When a pending wake of wiki i is due: its window after the wake, or, when the wiki's
 * last written row already shows ready jobs, as late as the promise allows
 * (WAKE_LATEST_MS): its row already tells the drainers there is work, so the wake
 * needs no read of its own now; it is read once within the second, for the figures (a
 * drainer may have cleared the row meanwhile), and every further wake of that wiki
 * until then shares that read. A second look: its own time. 0: nothing pending. */
static int64_t wake_due(struct detector *d, size_t i, int64_t gap)
{
	const struct dwiki *w = &d->dw[i];
	int64_t due = 0;

	if (w->woken_ms != 0)
		due = w->woken_ms + (d->wikis.items[i]->written.ready ? WAKE_LATEST_MS : gap);
	if (w->recheck_ms != 0 && (due == 0 || w->recheck_ms < due))
		due = w->recheck_ms;
	return due;
}

/* When the next round of wake reads is due (INT64_MAX: nothing pending): the soonest
 * due wake, not sooner than a gap after the last round. */
static int64_t wakes_next(struct detector *d, int64_t now)
{
	int64_t gap = wake_gap(d, now), next = INT64_MAX;

	for (size_t k = 0; k < d->npending; k++) {
		int64_t due = wake_due(d, d->pending[k], gap);
		if (due != 0 && due < next)
			next = due;
	}
	if (next != INT64_MAX && next < d->last_round + gap)
		next = d->last_round + gap;
	return next;
}

/* A round of wake reads, when due: every pending wiki that is due before the next
 * round could start (woken wikis, second looks) is read at full depth (the highest
 * job_id, which unparks a parked wiki) and published, so that a new job is seen within
 * a second rather than at the next sweep. Paid from the budget like any read: a storm
 * of wakes delays the sweep, not the wakes. A wiki not due by then waits for a later
 * round; an unreadable one for the sweep's tail. */
static int serve_wakes(struct detector *d, char *err, size_t errlen)
{
	int64_t now = NOW(d), gap = wake_gap(d, now);
	struct wiki **order;
	bool *second, *had_jobs;
	size_t n = 0, kept = 0;
	int rc;

	if (d->npending == 0 || wakes_next(d, now) > now)
		return 0;
	order = calloc(d->npending, sizeof(*order));
	second = calloc(d->npending, sizeof(*second));
	had_jobs = calloc(d->npending, sizeof(*had_jobs));
	if (order == NULL || second == NULL || had_jobs == NULL) {
		free(order);
		free(second);
		free(had_jobs);
		return 0; /* the sweep finds them */
	}
	for (size_t k = 0; k < d->npending; k++) {
		size_t i = d->pending[k];
		struct dwiki *w = &d->dw[i];
		int64_t due = wake_due(d, i, gap);
		if (w->unreadable) {
			w->woken_ms = w->recheck_ms = 0;
			continue;
		}
		if (due > now + gap) {
			d->pending[kept++] = i;
			continue;
		}
		/* A second look that is due, with no new wake: that was the last look. */
		second[n] = w->woken_ms == 0;
		order[n++] = d->wikis.items[i];
		w->woken_ms = w->recheck_ms = 0;
	}
	d->npending = kept;
	d->last_round = now;
	rc = read_publish(d, order, n, d->cfg->scan_wikis_per_query, SCAN_FULL, had_jobs, NULL, err,
			  errlen);
	if (rc < 0) {
		/* Not read: pending again, as they were (the server's retry comes first). */
		for (size_t k = 0; k < n; k++) {
			size_t i = index_of(d, order[k]);
			if (i < d->wikis.len && d->dw[i].woken_ms == 0 && d->dw[i].recheck_ms == 0) {
				d->dw[i].woken_ms = now;
				d->pending[d->npending++] = i;
			}
		}
	} else {
		now = NOW(d);
		for (size_t k = 0; k < n; k++) {
			size_t i = index_of(d, order[k]);
			if (had_jobs[k] || second[k] || i >= d->wikis.len || d->dw[i].unreadable)
				continue;
			if (d->dw[i].woken_ms == 0 && d->dw[i].recheck_ms == 0)
				d->pending[d->npending++] = i;
			d->dw[i].recheck_ms = now + WAKE_RECHECK_MS;
		}
		if (n > 0) {
			struct log_line l;
			log_begin(&l, LOG_DEBUG, "woken wikis scanned");
			if (d->key != NULL)
				log_str(&l, "server", d->key);
			log_int(&l, "wikis", (long long)n);
			log_str(&l, "first", order[0]->domain);
			log_end(&l);
		}
	}
	free(order);
	free(second);
	free(had_jobs);
	return rc;
}

void detector_wake(void *arg, const char *domain)
{
	struct detector *d = arg;
	struct wiki **hit;

	pthread_mutex_lock(&d->lock);
	hit = d->wikis.len == 0 ? NULL
				: bsearch(domain, d->wikis.items, d->wikis.len,
					  sizeof(*d->wikis.items), wiki_domain_cmp);
	if (hit != NULL) {
		size_t i = (size_t)(hit - d->wikis.items);
		if (!d->woken[i]) {
			d->woken[i] = 1;
			d->woken_at[i] = NOW(d);
			d->wake_idx[d->nwake++] = i;
			/* The first wake of a round sets its window: the thread recomputes. */
			if (d->nwake == 1) {
				d->kick = true;
				pthread_cond_signal(&d->cond);
			}
		}
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- the sweep and the hot set ---- */

/* What the next sweep is expected to cost: the last complete sweep's, or the running
 * sweep's so far extrapolated to all the server's wikis when that is more. 0: none. */
static int64_t sweep_cost_estimate(const struct detector *d)
{
	int64_t est = d->sweep_cost_us;
	size_t done;

	if (!d->sweep.running || d->sweep.after == NULL)
		return est;
	done = sweep_position(&d->wikis, d->sweep.after);
	if (done > 0 && done <= d->wikis.len) {
		int64_t projected = d->sweep.tally.cost_us * (int64_t)d->wikis.len / (int64_t)done;
		if (projected > est)
			est = projected;
	}
	return est;
}

/* The server's share of a database core from now on: [scan] db_budget_percent, or more
 * while a sweep would outlast [scan] max_sweep_seconds within it (pace_sweep_budget).
 * A server whose feed follows keeps the budget: the feed sees its new jobs at once,
 * the sweep is only the safety net (delayed jobs, expired claims); measured at 20,000
 * wikis, the raise cost 13 % of a core for nothing. Any other feed state (starting,
 * blind, failed, none) gets the full-speed sweep. Logged on the change only. */
static void set_budget(struct detector *d, int64_t now)
{
	const struct config *cfg = d->cfg;
	double budget = cfg->scan_db_budget_percent / 100.0;
	int64_t est = sweep_cost_estimate(d);
	bool fed = d->feed_following;
	double share = pace_sweep_budget(budget, est,
					 fed ? 0 : (int64_t)cfg->scan_max_sweep_seconds * 1000);
	bool raised = share > budget;
	struct log_line l;

	pace_set_qps(&d->pace, cfg->scan_queries_per_second);
	if (share != d->pace.budget)
		pace_set_budget(&d->pace, share, now);
	if (raised == d->budget_raised)
		return;
	d->budget_raised = raised;
	log_begin(&l, raised ? LOG_WARN : LOG_INFO,
		  raised ? "database budget raised to keep the sweep short"
			 : "database budget back to its setting");
	if (d->key != NULL)
		log_str(&l, "server", d->key);
	log_int(&l, "budget_percent", cfg->scan_db_budget_percent);
	log_int(&l, "sweep_budget_percent", (long long)(share * 100 + 0.999));
	log_int(&l, "sweep_db_ms", est / 1000);
	log_int(&l, "max_sweep_s", cfg->scan_max_sweep_seconds);
	log_int(&l, "wikis", (long long)d->wikis.len);
	if (!raised && fed)
		log_str(&l, "why", "the binary log feed follows: it sees new jobs at once");
	if (raised)
		log_str(&l, "next",
			"a sweep costs more than the budget allows in max_sweep_seconds at this "
			"farm's size; enable [binlog], give the server table caches for its "
			"tables, or set max_sweep_seconds = 0 to keep the budget");
	log_end(&l);
}

/* The sweep took longer than SWEEP_STRETCHED_MS, or is back under it: on the change. */
static void log_sweep_stretch(struct detector *d, int64_t period_ms)
{
	bool stretched = period_ms > SWEEP_STRETCHED_MS;
	struct log_line l;

	if (stretched == d->sweep.stretched)
		return;
	d->sweep.stretched = stretched;
	log_begin(&l, stretched ? LOG_WARN : LOG_INFO,
		  stretched ? "database budget stretches the sweep"
			    : "sweep back within its threshold");
	if (d->key != NULL)
		log_str(&l, "server", d->key);
	log_int(&l, "sweep_s", (period_ms + 500) / 1000);
	log_int(&l, "threshold_s", SWEEP_STRETCHED_MS / 1000);
	log_int(&l, "db_ms", d->sweep.tally.cost_us / 1000);
	log_int(&l, "budget_percent", d->cfg->scan_db_budget_percent);
	log_int(&l, "wikis", (long long)d->wikis.len);
	if (stretched)
		log_str(&l, "next",
			"new jobs on cold wikis wait up to a sweep (at most [scan] "
			"max_sweep_seconds while the database keeps up); enable [binlog] for "
			"sub-second detection");
	log_end(&l);
}

/* The sweep read every wiki of the server, its tail included: reported; a complete one
 * is marked for the fleet's record (detector_swept). */
static void sweep_finish(struct detector *d, int64_t now)
{
	int64_t period = now - d->sweep.started;
	struct log_line l;

	d->sweep.running = false;
	free(d->sweep.after);
	d->sweep.after = NULL;
	/* The budget is a ceiling, not a target: a farm swept in less than [scan] interval
	 * waits for it, as the hot set does. */
	d->sweep.next_start = d->sweep.started + (int64_t)d->cfg->scan_interval * 1000;
	if (!d->sweep.incomplete) {
		pthread_mutex_lock(&d->lock);
		d->swept = true;
		memcpy(d->swept_db, d->sweep.started_db, sizeof(d->swept_db));
		pthread_mutex_unlock(&d->lock);
	}
	if (d->sweep.depth == SCAN_FULL)
		d->next_full_scan = d->sweep.started + (int64_t)d->cfg->scan_full_interval * 1000;
	d->period_ms = period;
	d->sweep_cost_us = d->sweep.tally.cost_us;
	metrics_add(METRIC_SCANS, 0, 1);
	metrics_set(METRIC_SCAN_SECONDS, 0, (double)d->sweep.tally.cost_us / 1e6);
	log_sweep_stretch(d, period);
	/* "scan", as when one pass read every wiki: what tools and tests count. */
	log_begin(&l, LOG_DEBUG, "scan");
	if (d->key != NULL)
		log_str(&l, "server", d->key);
	log_int(&l, "wikis", (long long)d->wikis.len);
	log_int(&l, "with_backlog", (long long)d->sweep.tally.with_backlog);
	log_int(&l, "queries", d->sweep.tally.queries);
	log_int(&l, "hot", (long long)d->hot.len);
	log_int(&l, "unreadable", (long long)unreadable_count(d));
	log_str(&l, "depth", d->sweep.depth == SCAN_FULL ? "full" : "light");
	log_int(&l, "db_ms", d->sweep.tally.cost_us / 1000);
	log_int(&l, "ms", period);
	log_end(&l);
}

/* The sweep's next step: the next [scan] wikis_per_query readable wikis after the last
 * one read, or, past the last wiki, up to as many unreadable wikis not read in this
 * sweep, one statement each (a broken table costs one statement of its own, and one
 * whose statement timed out in this sweep is not run again in it). 0, or <0 as
 * read_publish (the sweep resumes where it stopped). */
static int sweep_step(struct detector *d, char *err, size_t errlen)
{
	size_t n = d->wikis.len, group = (size_t)d->cfg->scan_wikis_per_query, len = 0;
	struct wiki **chunk = calloc(group, sizeof(*chunk));
	size_t from, last = 0;
	bool tail;
	int rc;

	if (chunk == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	if (!d->sweep.running) {
		if (d->io.clock(d->io.arg, d->sweep.started_db, err, errlen) != 0) {
			free(chunk);
			return -ECOMM;
		}
		d->sweep.running = true;
		d->sweep.started = NOW(d);
		memset(&d->sweep.tally, 0, sizeof(d->sweep.tally));
		d->sweep.incomplete = false;
		d->sweep.gen++;
		/* Claims are read every [scan] full_interval (and in the first sweep). */
		d->sweep.depth = d->sweep.started >= d->next_full_scan ? SCAN_FULL : SCAN_LIGHT;
	}
	from = sweep_position(&d->wikis, d->sweep.after);
	tail = from >= n;
	for (size_t i = tail ? 0 : from; i < n && len < group; i++) {
		if (d->dw[i].unreadable == tail && (!tail || d->dw[i].tried != d->sweep.gen))
			chunk[len++] = d->wikis.items[i];
		last = i;
	}
	if (len == 0) {
		free(chunk);
		if (!tail) { /* only unreadable wikis left before the end */
			free(d->sweep.after);
			d->sweep.after = strdup(d->wikis.items[n - 1]->domain);
			return 0;
		}
		sweep_finish(d, NOW(d));
		return 0;
	}
	rc = read_publish(d, chunk, len, tail ? 1 : d->cfg->scan_wikis_per_query, d->sweep.depth,
			  NULL, &d->sweep.tally, err, errlen);
	free(chunk);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		d->sweep.incomplete = true;
		detector_streak_fail(&d->streak, d->name, err, NOW(d),
				     (int64_t)d->cfg->scan_interval * 1000);
	}
	if (!tail) {
		char *after = strdup(d->wikis.items[last]->domain);
		if (after == NULL) {
			snprintf(err, errlen, "out of memory");
			return -EIO;
		}
		free(d->sweep.after);
		d->sweep.after = after;
	}
	return 0;
}

/* Re-reads the server's hot set (light: no claims), its unreadable wikis left to the
 * sweep's tail. 0 or <0 as read_publish; *cost_us what it cost. */
static int read_hot(struct detector *d, int64_t *cost_us, char *err, size_t errlen)
{
	struct wiki **hot;
	struct read_tally tally = { 0 };
	int64_t now = NOW(d);
	size_t n, kept = 0;
	int rc = 0;

	*cost_us = 0;
	hotset_expire(&d->hot, now);
	if (d->hot.len == 0)
		return 0;
	hot = calloc(d->hot.len, sizeof(*hot));
	if (hot == NULL)
		return 0;
	n = hotset_select(&d->hot, &d->wikis, now, hot);
	for (size_t k = 0; k < n; k++) {
		size_t i = index_of(d, hot[k]);
		if (i < d->wikis.len && !d->dw[i].unreadable)
			hot[kept++] = hot[k];
	}
	if (kept > 0)
		rc = read_publish(d, hot, kept, d->cfg->scan_wikis_per_query, SCAN_LIGHT, NULL,
				  &tally, err, errlen);
	free(hot);
	*cost_us = tally.cost_us;
	return rc;
}

/* ---- a turn ---- */

/* When the next turn is due: the soonest of a wake, the hot set and the sweep (those
 * two once the budget has credit again). */
static int64_t next_turn(struct detector *d, int64_t now)
{
	int64_t wait = pace_wait_ms(&d->pace, now), next, wake = wakes_next(d, now);

	next = d->sweep.running ? now : d->sweep.next_start;
	if (d->hot.len > 0 && d->next_hot < next)
		next = d->next_hot;
	if (next < now + wait)
		next = now + wait;
	return wake < next ? wake : next;
}

int64_t detector_turn(struct detector *d)
{
	int64_t now = NOW(d), deadline = now + TICK_MS, hot_cost = 0, next;
	char err[512];
	int rc = 0;

	take_news(d, now);
	feed_check(d, now);
	if (!d->active || d->wikis.len == 0) {
		report_update(d, now);
		return now + IDLE_MS;
	}
	if (now < d->retry_at) {
		report_update(d, now);
		return d->retry_at;
	}
	set_budget(d, now);
	rc = serve_wakes(d, err, sizeof(err));
	if (rc >= 0 && now >= d->next_hot && pace_wait_ms(&d->pace, now) == 0) {
		rc = read_hot(d, &hot_cost, err, sizeof(err));
		if (rc >= 0)
			d->next_hot = now + pace_hot_gap_ms(d->cfg->scan_db_budget_percent / 100.0,
							    hot_cost,
							    (int64_t)d->cfg->scan_interval * 1000);
	}
	while (rc >= 0 && !stopping(d) && (now = NOW(d)) < deadline &&
	       (d->sweep.running || now >= d->sweep.next_start) &&
	       pace_wait_ms(&d->pace, now) == 0) {
		rc = sweep_step(d, err, sizeof(err));
		if (rc < 0)
			break;
		/* Wakes that came meanwhile are served between chunks, not after the tick. */
		take_news(d, NOW(d));
		if (!d->active)
			break;
		rc = serve_wakes(d, err, sizeof(err));
	}
	now = NOW(d);
	if (rc < 0) {
		turn_failed(d, rc == -EIO, err, now);
		report_update(d, now);
		return d->retry_at;
	}
	next = next_turn(d, now);
	if (d->feed != NULL && !d->feed_following && next > now + FEED_POLL_MS)
		next = now + FEED_POLL_MS;
	report_update(d, now);
	return next;
}

/* ---- the thread and the scanner's calls ---- */

static void *detector_main(void *arg)
{
	struct detector *d = arg;

	db_thread_init();
	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		int64_t next;
		struct timespec ts;
		pthread_mutex_unlock(&d->lock);
		next = detector_turn(d);
		ts = util_timespec(next);
		pthread_mutex_lock(&d->lock);
		if (!d->stop && !d->kick && !d->wikis_due)
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
	feed_stop(d);
	db_thread_end();
	return NULL;
}

static void canon_name(const struct config *cfg, const char *key, char *out, size_t outlen)
{
	char hp[UTIL_DB_SERVER_MAX], canon[UTIL_DB_SERVER_MAX];

	if (key == NULL) {
		snprintf(hp, sizeof(hp), "%.200s:%d",
			 cfg->scan.socket[0] != '\0' ? "localhost" : cfg->scan.host, cfg->scan.port);
		key = hp;
	}
	if (util_canon_db_server(key, canon, sizeof(canon)) != 0)
		snprintf(canon, sizeof(canon), "%.200s", key);
	snprintf(out, outlen, "%.127s", canon);
}

struct detector *detector_new(const struct config *cfg, const char *server, struct sched *sched,
			      const struct detector_io *io)
{
	struct detector *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	pthread_mutex_init(&d->lock, NULL);
	util_cond_init(&d->cond);
	d->cfg = cfg;
	d->sched = sched;
	d->streak = (struct detector_streak){ "scan failed", ERROR_SCAN, { 0, 0 } };
	if ((server != NULL && (d->key = strdup(server)) == NULL) ||
	    scan_endpoint_for(cfg, d->key, &d->ep) != 0) {
		detector_stop(d);
		return NULL;
	}
	canon_name(cfg, d->key, d->name, sizeof(d->name));
	if (io != NULL) {
		d->io = *io;
	} else {
		d->io = (struct detector_io){ real_now, real_scan, real_publish, real_clock, d };
		if ((d->db = db_new(&d->ep.ep, d->ep.name)) == NULL ||
		    (d->coord = db_new(&cfg->platform, "coordination")) == NULL) {
			detector_stop(d);
			return NULL;
		}
		/* Until a statement's time is known: the largest limit (see LOCK_WAIT_S). */
		db_set_statement_limits(d->db, (int64_t)d->ep.ep.query_timeout * 800, LOCK_WAIT_S);
	}
	pace_init(&d->pace, cfg->scan_db_budget_percent / 100.0, NOW(d));
	pace_set_qps(&d->pace, cfg->scan_queries_per_second);
	report_update(d, NOW(d));
	return d;
}

int detector_start(struct detector *d)
{
	int rc = pthread_create(&d->thread, NULL, detector_main, d);

	if (rc != 0)
		return -rc;
	d->started = true;
	return 0;
}

void detector_stop(struct detector *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	/* A statement on a hung server returns now; no new connection is made. */
	db_cut(d->db);
	db_cut(d->coord);
	if (d->started)
		pthread_join(d->thread, NULL);
	else
		feed_stop(d);
	db_free(d->db);
	db_free(d->coord);
	wiki_list_free(&d->wikis);
	wiki_list_free(&d->next_wikis);
	hotset_release(&d->hot);
	free(d->sweep.after);
	free(d->dw);
	free(d->woken);
	free(d->woken_at);
	free(d->wake_idx);
	free(d->pending);
	free(d->key);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int detector_set_wikis(struct detector *d, const struct wiki_list *wikis)
{
	struct wiki_list copy = { calloc(wikis->len ? wikis->len : 1, sizeof(struct wiki *)), 0 };

	if (copy.items == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < wikis->len; i++)
		copy.items[copy.len++] = wiki_ref(wikis->items[i]);
	pthread_mutex_lock(&d->lock);
	wiki_list_free(&d->next_wikis);
	d->next_wikis = copy;
	d->wikis_due = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void detector_set_active(struct detector *d, bool active)
{
	pthread_mutex_lock(&d->lock);
	if (d->want_active != active) {
		d->want_active = active;
		d->kick = true;
		pthread_cond_signal(&d->cond);
	}
	pthread_mutex_unlock(&d->lock);
}

void detector_set_config(struct detector *d, const struct config *cfg)
{
	pthread_mutex_lock(&d->lock);
	d->next_cfg = cfg;
	d->kick = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void detector_report(struct detector *d, struct server_report *out)
{
	pthread_mutex_lock(&d->lock);
	*out = d->report;
	pthread_mutex_unlock(&d->lock);
}

bool detector_swept(struct detector *d, char since[32])
{
	bool swept;

	pthread_mutex_lock(&d->lock);
	swept = d->swept;
	if (swept)
		memcpy(since, d->swept_db, 32);
	pthread_mutex_unlock(&d->lock);
	return swept;
}
