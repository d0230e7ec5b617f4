/* scanner.c - see scanner.h. One thread: a connection to the platform database for
 * discovery, one to the coordination database for the scanner lease and the shared
 * backlog, and one per database server the wikis are on for their job tables
 * ([scan_db], possibly a replica, or the server discovery names: struct server). */
#include "scanner.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binlog.h"
#include "changes.h"
#include "coord.h"
#include "db.h"
#include "discovery.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "pace.h"
#include "scan.h"
#include "util.h"

/* While a failure persists, repeat its log line at most this often. */
#define REPEAT_FAILURE_LOG_MS 60000
/* A woken wiki whose scan found no ready job is read once more this much later: the
 * binary log is written before InnoDB's commit completes. */
#define WAKE_RECHECK_MS 250
/* Wakes waiting beyond this many wikis are dropped: the next scan finds them. */
#define WAKE_MAX 65536
/* A wiki stays in the hot set this long after a scan last found jobs in it. */
#define HOT_KEEP_MS 120000
/* One pass of the loop spends at most about this long scanning, so that the lease is
 * renewed and discovery runs on time whatever the farm's size. */
#define TICK_MS 1000
/* A sweep longer than this is logged (once, on change): half the 60 s a job on a cold
 * wiki may wait before a worker hears of it, a third of the 3-minute promise. */
#define SWEEP_STRETCHED_MS 30000
/* The coordination database's clock is read again after this long (coord_time): local
 * and database clocks drift apart by far less than a millisecond in that time. */
#define CLOCK_REREAD_MS 1000
/* The fleet gauges and readiness are refreshed this often. */
#define READINESS_INTERVAL_MS 5000

/* What a run of scan statements cost and found. */
struct scan_tally {
	int64_t cost_us; /* database time (scan.h: db_us) */
	int queries;
	size_t with_backlog; /* wikis with ready jobs */
};

/* A run of failures of one kind: logged when it starts, then once a minute, and when
 * it ends. */
struct failure_streak {
	const char *what;
	enum metric_error_kind metric_kind;
	struct log_streak run;
};

/* One database server's detection: the wikis discovery places on it, read over a
 * connection of their own, within a budget of their own, in a sweep and a hot set of
 * their own. A slow, broken or unreachable server delays only its own wikis, and a
 * farm spread over several servers spends [scan] db_budget_percent of each. */
struct server {
	char *key;                    /* the wikis' db_server; NULL: [scan_db] as configured */
	struct scan_endpoint ep;      /* what db connects to */
	struct db *db;                /* the job tables' connection */
	struct wiki_list wikis;       /* its wikis (shared with the scanner's list), by domain */
	bool listed;                  /* seen in the last regroup (servers_regroup) */
	size_t room;                  /* servers_regroup: its wikis, counted before allocating */
	struct failure_streak streak; /* "scan failed" */
	int64_t next_tick;            /* monotonic: run_tick's next pass */
	int64_t next_full_scan;       /* monotonic: when a sweep reads claims and max ids again */
	struct pace pace;             /* its database budget */
	struct hotset hot;            /* wikis re-read every [scan] interval */
	int64_t next_hot;             /* monotonic: the hot set's next read */
	int64_t period_ms;            /* the last complete sweep's length */
	int64_t sweep_cost_us;        /* the last complete sweep's database time */
	bool budget_raised;           /* set_server_budget raised it over the setting */
	bool swept;                   /* a complete sweep since this sidecar took the lease */
	char swept_db[32];            /* its start, coordination clock (fleet_sweep_done) */
	struct sweep {
		bool running;
		char *after;             /* the last wiki read (NULL: none yet) */
		int64_t started;         /* monotonic */
		char started_db[32];     /* the coordination clock then: forget_unseen */
		struct scan_tally tally; /* its statements so far */
		enum scan_depth depth;
		bool incomplete;    /* some chunk was not written: forget nothing */
		bool stretched;     /* the last one took longer than SWEEP_STRETCHED_MS */
		int64_t next_start; /* monotonic: a small farm is not swept more often */
	} sweep;
};

struct scanner {
	const struct config *_Atomic cfg; /* swapped by scanner_set_config (a reload) */
	struct sched *sched;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	/* Owned by the thread: */
	struct wiki_list wikis;  /* from the last good discovery, sorted by domain */
	struct server **servers; /* the wikis grouped by database server (servers_regroup) */
	size_t nservers;
	bool forget_due; /* a wiki left discovery (or a new holder): rows to forget */
	bool discovered;
	bool schema_ready;
	struct coord_lease lease; /* the fleet's scanner lease */
	bool scanning;            /* this sidecar holds it */
	int64_t confirmed_ms;
	char **unreadable; /* domains whose job table could not be read last scan */
	size_t nunreadable;
	int64_t started_ms;    /* monotonic: when the thread started */
	int64_t fleet_read_ms; /* monotonic: the last good read of the fleet's figures */
	double scan_age_s;     /* the scan age read then */
	struct binlog *feed;   /* the binary log feed, while this sidecar scans */
	char **woken;          /* under lock: domains the feed woke, to rescan now */
	size_t nwoken;
	char **recheck; /* woken, found empty: read again at recheck_at */
	size_t nrecheck;
	int64_t recheck_at;
	struct coord_clock clock; /* the coordination database's time (coord_time) */
	bool clock_read;
};

/* The process's scanner health (scanner.h): written by the scanner thread only. */
static struct {
	pthread_mutex_t lock;
	struct scanner_health h;
} health = { PTHREAD_MUTEX_INITIALIZER, { 0, false, "starting" } };

void scanner_health(struct scanner_health *out)
{
	pthread_mutex_lock(&health.lock);
	*out = health.h;
	pthread_mutex_unlock(&health.lock);
}

static void note_alive(void)
{
	pthread_mutex_lock(&health.lock);
	health.h.last_turn_ms = util_mono_ms();
	pthread_mutex_unlock(&health.lock);
}

static void note_ready(bool ready, const char *why)
{
	pthread_mutex_lock(&health.lock);
	health.h.ready = ready;
	snprintf(health.h.why, sizeof(health.h.why), "%s", ready ? "" : why);
	pthread_mutex_unlock(&health.lock);
	metrics_set(METRIC_READY, 0, ready ? 1 : 0);
}

/* A wiki's job table became unreadable (missing database...) or readable again:
 * logged on the change, not on every scan. */
static void log_readability(const struct wiki *w, const struct backlog *b)
{
	struct log_line l;

	if (b->failed) {
		log_begin(&l, LOG_ERROR, "wiki skipped: its job table cannot be read");
		log_str(&l, "wiki", w->domain);
		log_str(&l, "db", w->dbname);
		log_str(&l, "error", b->error);
		log_str(&l, "next", "no batches until a scan can read it again");
	} else {
		log_begin(&l, LOG_INFO, "wiki readable again");
		log_str(&l, "wiki", w->domain);
	}
	log_end(&l);
}

static int str_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, *(char *const *)elem);
}

static int str_sort(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool sc_was_unreadable(const struct scanner *sc, const char *domain)
{
	return sc->nunreadable > 0 && bsearch(domain, sc->unreadable, sc->nunreadable,
					      sizeof(*sc->unreadable), str_cmp) != NULL;
}

static void sc_forget_unreadable(struct scanner *sc)
{
	for (size_t i = 0; i < sc->nunreadable; i++)
		free(sc->unreadable[i]);
	free(sc->unreadable);
	sc->unreadable = NULL;
	sc->nunreadable = 0;
}

/* Keeps the sorted list of unreadable wikis up to date with one wiki's scan, logging
 * the change. */
static void sc_note_readability(struct scanner *sc, const struct wiki *w, const struct backlog *b)
{
	char **hit = sc->nunreadable == 0 ? NULL
					  : bsearch(w->domain, sc->unreadable, sc->nunreadable,
						    sizeof(*sc->unreadable), str_cmp);
	char **p, *copy;

	if (b->failed == (hit != NULL))
		return;
	log_readability(w, b);
	if (hit != NULL) {
		free(*hit);
		memmove(hit, hit + 1,
			(size_t)(sc->unreadable + sc->nunreadable - hit - 1) * sizeof(*hit));
		sc->nunreadable--;
		return;
	}
	p = realloc(sc->unreadable, (sc->nunreadable + 1) * sizeof(*p));
	if (p == NULL || (copy = strdup(w->domain)) == NULL) {
		if (p != NULL)
			sc->unreadable = p;
		return;
	}
	sc->unreadable = p;
	sc->unreadable[sc->nunreadable++] = copy;
	qsort(sc->unreadable, sc->nunreadable, sizeof(*sc->unreadable), str_sort);
}

static void streak_fail(struct failure_streak *s, const char *err, int64_t retry_ms)
{
	struct log_line l;
	char next[48];

	metrics_add(METRIC_ERRORS, s->metric_kind, 1);
	if (!log_streak_fail(&s->run, util_mono_ms(), REPEAT_FAILURE_LOG_MS))
		return;
	snprintf(next, sizeof(next), "retrying in %llds", (long long)(retry_ms + 999) / 1000);
	log_begin(&l, LOG_ERROR, s->what);
	log_str(&l, "error", err);
	log_int(&l, "failures", s->run.count);
	log_str(&l, "next", next);
	log_end(&l);
}

static void streak_ok(struct failure_streak *s)
{
	struct log_line l;
	int failures = log_streak_ok(&s->run);

	if (failures == 0)
		return;
	log_begin(&l, LOG_INFO, "recovered");
	log_str(&l, "after", s->what);
	log_int(&l, "failures", failures);
	log_end(&l);
}

/* Database failures are retried on db.c's reconnect schedule (a few seconds at most),
 * never on a wiki's backoff: the fleet resumes promptly when the database is back. */
static int64_t retry_delay(int failures)
{
	return db_retry_delay_ms(failures + 1);
}

static void log_discovery(size_t before, size_t now, bool first)
{
	struct log_line l;

	if (!first && before == now)
		return;
	log_begin(&l, LOG_INFO, "discovery");
	log_int(&l, "wikis", (long long)now);
	log_int(&l, "previously", (long long)before);
	log_end(&l);
}

/* The scheduler's list: the same wikis (shared, wiki_ref), in an array of its own. */
static int share_list(const struct wiki_list *from, struct wiki_list *to)
{
	to->len = 0;
	to->items = calloc(from->len ? from->len : 1, sizeof(*to->items));
	if (to->items == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < from->len; i++) {
		to->items[i] = wiki_ref(from->items[i]);
		to->len++;
	}
	return 0;
}

/* Forgets what was written: the next scan writes every wiki's row (a new scanner lease
 * holder cannot know what another holder wrote meanwhile). */
static void forget_written(struct wiki_list *wikis)
{
	for (size_t i = 0; i < wikis->len; i++)
		memset(&wikis->items[i]->written, 0, sizeof(wikis->items[i]->written));
}

/* A new discovery list keeps what was written for the wikis it still lists (both lists
 * are sorted by domain). Returns whether some wiki of the old list is gone. */
static bool carry_written(const struct wiki_list *old, struct wiki_list *now)
{
	size_t j = 0, kept = 0;

	for (size_t i = 0; i < now->len; i++) {
		int cmp = 1;
		while (j < old->len &&
		       (cmp = strcmp(old->items[j]->domain, now->items[i]->domain)) < 0)
			j++;
		if (j < old->len && cmp == 0) {
			now->items[i]->written = old->items[j]->written;
			kept++;
			j++;
		}
	}
	return kept < old->len;
}

static bool same_server(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static void server_free(struct server *sv)
{
	if (sv == NULL)
		return;
	db_free(sv->db);
	wiki_list_free(&sv->wikis);
	hotset_release(&sv->hot);
	free(sv->sweep.after);
	free(sv->key);
	free(sv);
}

/* A server's detection, starting afresh: a full sweep at once, a fresh budget. */
static void server_restart(struct server *sv, const struct config *cfg, int64_t now)
{
	/* The last sweep's cost (sweep_cost_us) is kept: it sizes the next one's share. */
	pace_init(&sv->pace, cfg->scan_db_budget_percent / 100.0, now);
	free(sv->sweep.after);
	memset(&sv->sweep, 0, sizeof(sv->sweep));
	sv->next_full_scan = 0;
	sv->next_hot = now;
	sv->next_tick = 0;
	sv->swept = false;
}

static struct server *server_new(const struct config *cfg, const char *key)
{
	struct server *sv = calloc(1, sizeof(*sv));

	if (sv == NULL || (key != NULL && (sv->key = strdup(key)) == NULL) ||
	    scan_endpoint_for(cfg, sv->key, &sv->ep) != 0 ||
	    (sv->db = db_new(&sv->ep.ep, sv->ep.name)) == NULL) {
		server_free(sv);
		return NULL;
	}
	/* A job table locked for minutes must not leave server threads waiting on it. */
	db_limit_statements(sv->db);
	sv->streak = (struct failure_streak){ "scan failed", ERROR_SCAN, { 0, 0 } };
	server_restart(sv, cfg, util_mono_ms());
	return sv;
}

/* The server of wikis that name none ([scan_db]), if any wiki is there. */
static struct server *server_default(const struct scanner *sc)
{
	for (size_t i = 0; i < sc->nservers; i++)
		if (sc->servers[i]->key == NULL)
			return sc->servers[i];
	return NULL;
}

static struct server *server_of(struct scanner *sc, const char *key, bool create)
{
	struct server **p, *sv;

	for (size_t i = 0; i < sc->nservers; i++)
		if (same_server(sc->servers[i]->key, key))
			return sc->servers[i];
	if (!create || (p = realloc(sc->servers, (sc->nservers + 1) * sizeof(*p))) == NULL)
		return NULL;
	sc->servers = p;
	if ((sv = server_new(sc->cfg, key)) == NULL)
		return NULL;
	if (key != NULL) {
		struct log_line l;
		log_begin(&l, LOG_INFO, "database server added to the scan");
		log_str(&l, "server", key);
		log_end(&l);
	}
	sc->servers[sc->nservers++] = sv;
	return sv;
}

/* Groups sc->wikis by their database server: a server keeps its connection, budget,
 * sweep position and hot set across discoveries; a server no wiki names any more is
 * closed. Each server's list is counted first and allocated once. -ENOMEM: some wikis
 * are in no group until the next discovery. */
static int servers_regroup(struct scanner *sc)
{
	size_t kept = 0;
	int rc = 0;

	for (size_t i = 0; i < sc->nservers; i++) {
		wiki_list_free(&sc->servers[i]->wikis);
		sc->servers[i]->listed = false;
		sc->servers[i]->room = 0;
	}
	for (size_t i = 0; i < sc->wikis.len; i++) {
		struct server *sv = server_of(sc, sc->wikis.items[i]->db_server, true);
		if (sv == NULL)
			rc = -ENOMEM;
		else
			sv->room++;
	}
	for (size_t i = 0; i < sc->nservers; i++) {
		struct server *sv = sc->servers[i];
		if (sv->room > 0 &&
		    (sv->wikis.items = calloc(sv->room, sizeof(struct wiki *))) == NULL)
			rc = -ENOMEM;
	}
	for (size_t i = 0; i < sc->wikis.len; i++) {
		struct wiki *w = sc->wikis.items[i];
		struct server *sv = server_of(sc, w->db_server, false);
		if (sv == NULL || sv->wikis.items == NULL || sv->wikis.len == sv->room)
			continue;
		sv->wikis.items[sv->wikis.len++] = wiki_ref(w);
		sv->listed = true;
	}
	for (size_t i = 0; i < sc->nservers; i++) {
		struct server *sv = sc->servers[i];
		if (sv->listed) {
			sc->servers[kept++] = sv;
			continue;
		}
		if (sv->key != NULL) {
			struct log_line l;
			log_begin(&l, LOG_INFO, "database server left the scan: no wiki names it");
			log_str(&l, "server", sv->key);
			log_end(&l);
		}
		server_free(sv);
	}
	sc->nservers = kept;
	return rc;
}

/* The binary log feed follows [binlog]'s server: the wikis that name no server of
 * their own. */
static int feed_set_wikis(struct scanner *sc)
{
	struct server *sv = server_default(sc);
	struct wiki_list none = { 0 };

	return binlog_set_wikis(sc->feed, sv != NULL ? &sv->wikis : &none);
}

/* Refreshes sc->wikis (kept for scanning) and the scheduler's copy. Returns when the
 * next discovery is due (monotonic ms). */
static int64_t run_discovery(struct scanner *sc, struct discovery *disc, struct db *db,
			     struct failure_streak *streak)
{
	struct wiki_list list = { 0 }, copy = { 0 };
	char err[512];
	size_t before = sc->wikis.len;
	bool first = !sc->discovered;

	if (discovery_run(disc, db, &list, err, sizeof(err)) != 0) {
		int64_t delay = retry_delay(streak->run.count + 1);
		streak_fail(streak, err, delay);
		return util_mono_ms() + delay;
	}
	streak_ok(streak);
	if (share_list(&list, &copy) != 0 || sched_set_wikis(sc->sched, &copy) != 0) {
		wiki_list_free(&copy);
		wiki_list_free(&list);
		log_msg(LOG_ERROR, "discovery: out of memory; keeping the previous wiki list");
		return util_mono_ms() + (int64_t)sc->cfg->discovery_interval * 1000;
	}
	if (carry_written(&sc->wikis, &list))
		sc->forget_due = true;
	wiki_list_free(&sc->wikis);
	sc->wikis = list;
	sc->discovered = true;
	if (servers_regroup(sc) != 0)
		log_msg(LOG_ERROR, "discovery: out of memory grouping wikis by database server; "
				   "some wait for the next discovery");
	if (sc->feed != NULL && feed_set_wikis(sc) != 0)
		log_msg(LOG_ERROR, "binary log feed: out of memory; keeping its previous wiki list");
	metrics_set(METRIC_WIKIS, 0, (double)sc->wikis.len);
	metrics_set(METRIC_WIKIS_SKIPPED, 0, (double)discovery_skipped(disc));
	log_discovery(before, sc->wikis.len, first);
	/* The old list and libmariadb's copy of the result were freed among the new
	 * list's blocks: give the free pages back, so that the resident set stays the size
	 * of one list (at 20,000 wikis, megabytes). */
	malloc_trim(0);
	return util_mono_ms() + (int64_t)sc->cfg->discovery_interval * 1000;
}

/* The coordination tables exist (created by whichever sidecar came first). */
static bool ensure_schema(struct scanner *sc, struct db *coord, struct failure_streak *streak)
{
	const char *names[] = { COORD_SCANNER_LEASE };
	char err[512];

	if (sc->schema_ready)
		return true;
	if (coord_ensure_schema(coord, sc->cfg, err, sizeof(err)) != 0 ||
	    coord_add_lease_rows(coord, sc->cfg, sc->cfg->mw_version, names, 1, 0, err,
				 sizeof(err)) != 0) {
		streak_fail(streak, err, retry_delay(streak->run.count + 1));
		return false;
	}
	streak_ok(streak);
	sc->schema_ready = true;
	sched_set_ready(sc->sched);
	{
		struct log_line l;
		log_begin(&l, LOG_INFO, "coordination schema ready");
		log_str(&l, "database", sc->cfg->coord_db);
		log_int(&l, "version", COORD_SCHEMA_VERSION);
		log_str(&l, "scope", sc->cfg->mw_version);
		log_end(&l);
	}
	return true;
}

static void log_scanner_role(const struct scanner *sc, bool holding)
{
	struct log_line l;

	metrics_set(METRIC_SCANNER, 0, holding ? 1 : 0);
	log_begin(&l, LOG_INFO, holding ? "scanner lease taken" : "scanner lease lost");
	log_int(&l, "token", (long long)sc->lease.token);
	log_str(&l, "next",
		holding ? "this sidecar scans the fleet's backlog"
			: "another sidecar scans; this one reads its results");
	log_end(&l);
}

/* Holds (acquires or renews) the fleet's scanner lease. True while this sidecar may
 * scan: the lease is confirmed and still trusted (lease.h) now. A pass is not bounded
 * by the trust: one that outlasts it still writes its figures, which the next
 * holder's scan overwrites. */
static bool hold_scanner_lease(struct scanner *sc, struct db *coord, struct failure_streak *streak)
{
	const struct config *cfg = sc->cfg;
	int64_t sent = util_mono_ms();
	char err[512];
	int rc;

	sc->lease.scope = cfg->mw_version;
	sc->lease.name = COORD_SCANNER_LEASE;
	sc->lease.slot = 0;
	sc->lease.holder = cfg->holder;
	if (sc->scanning) {
		if (!lease_renew_due(sent, sc->confirmed_ms, (int64_t)cfg->renew_interval * 1000))
			return true;
		rc = coord_renew(coord, cfg, &sc->lease, err, sizeof(err));
	} else {
		rc = coord_acquire(coord, cfg, &sc->lease, err, sizeof(err));
	}
	if (rc == 0 && sc->scanning) {
		/* Lost (expired while the database was away, say): take it again at once if
		 * it is free, rather than a scan interval later. */
		sc->scanning = false;
		log_scanner_role(sc, false);
		sent = util_mono_ms();
		rc = coord_acquire(coord, cfg, &sc->lease, err, sizeof(err));
	}
	if (rc < 0) {
		streak_fail(streak, err, retry_delay(streak->run.count + 1));
		if (sc->scanning &&
		    !lease_covers(sent,
				  lease_trusted_until(sc->confirmed_ms, cfg->lease_ttl,
						      cfg->safety_margin),
				  0)) {
			sc->scanning = false;
			log_scanner_role(sc, false);
		}
		return sc->scanning;
	}
	streak_ok(streak);
	if (rc == 1) {
		if (!sc->scanning)
			log_scanner_role(sc, true);
		sc->scanning = true;
		sc->confirmed_ms = sent;
	} else if (sc->scanning) {
		sc->scanning = false;
		log_scanner_role(sc, false);
	}
	return sc->scanning;
}

static bool scanner_stopping(struct scanner *sc)
{
	bool stop;

	pthread_mutex_lock(&sc->lock);
	stop = sc->stopping;
	pthread_mutex_unlock(&sc->lock);
	return stop;
}

/* Keeps the scan within [scan] queries_per_second on the wiki databases: waits until
 * `queries` statements started at `since` fit the rate (or the scanner stops). */
static void pace_scan(struct scanner *sc, int64_t since, int queries)
{
	int qps = sc->cfg->scan_queries_per_second;
	int64_t until;
	struct timespec ts;

	if (qps <= 0 || queries <= 0)
		return;
	until = since + (int64_t)queries * 1000 / qps;
	if (until <= util_mono_ms())
		return;
	ts = util_timespec(until);
	pthread_mutex_lock(&sc->lock);
	/* Not cut short by the feed's wakes: scan_part serves them between groups. */
	while (!sc->stopping && util_mono_ms() < until)
		pthread_cond_timedwait(&sc->wake, &sc->lock, &ts);
	pthread_mutex_unlock(&sc->lock);
}

static void run_woken(struct scanner *sc, struct db *coord);

/* Operators' pauses, for the fleet gauges. */
static int update_pause_metrics(struct scanner *sc, struct db *coord, char *err, size_t errlen)
{
	long long wikis;
	bool all;

	if (coord_pause_counts(coord, sc->cfg, sc->cfg->mw_version, &wikis, &all, err, errlen) != 0)
		return -EIO;
	metrics_set(METRIC_WIKIS_PAUSED, 0, (double)wikis);
	metrics_set(METRIC_ALL_PAUSED, 0, all ? 1 : 0);
	return 0;
}

/* Fleet gauges from the coordination table: every sidecar reports the same view, so an
 * alert on max() over the pods works even when the scanning pod is the one stuck. */
static int update_fleet_metrics(struct scanner *sc, struct db *coord, char *err, size_t errlen)
{
	struct coord_summary sum;
	int64_t now = util_mono_ms();

	if (coord_summary(coord, sc->cfg, sc->cfg->mw_version, &sum, err, errlen) != 0) {
		/* Unknown now, but at least as old as at the last read. */
		if (sc->fleet_read_ms > 0)
			metrics_set(METRIC_SCAN_AGE, 0,
				    sc->scan_age_s + (double)(now - sc->fleet_read_ms) / 1000.0);
		return -EIO;
	}
	metrics_set(METRIC_WIKIS_BACKLOG, 0, (double)sum.with_backlog);
	metrics_set(METRIC_WIKIS_BACKOFF, 0, (double)sum.backed_off);
	metrics_set(METRIC_WIKIS_PARKED, 0, (double)sum.parked);
	metrics_set(METRIC_OLDEST_AGE, 0,
		    sum.oldest_ready_age_ms < 0 ? 0 : (double)sum.oldest_ready_age_ms / 1000.0);
	metrics_set(METRIC_ORPHANED_CLAIMS, 0, (double)sum.orphaned_claims);
	metrics_set(METRIC_ORPHANED_AGE, 0,
		    sum.oldest_claim_age_ms < 0 ? 0 : (double)sum.oldest_claim_age_ms / 1000.0);
	/* No row yet: nothing was ever scanned, for as long as this sidecar has known of
	 * wikis to scan (0 only when there is nothing to scan). */
	if (sum.scan_age_ms >= 0)
		sc->scan_age_s = (double)sum.scan_age_ms / 1000.0;
	else
		sc->scan_age_s = sc->wikis.len > 0 ? (double)(now - sc->started_ms) / 1000.0 : 0;
	sc->fleet_read_ms = now;
	metrics_set(METRIC_SCAN_AGE, 0, sc->scan_age_s);
	return update_pause_metrics(sc, coord, err, errlen);
}

/* The wikis in scan order: the readable ones first, in groups; those unreadable in the
 * last scan at the end, one statement each, so that a broken table costs one statement
 * of its own (not a failed group and its retries) and a slow one (a locked table)
 * delays no other wiki's figures. Returns how many come first (grouped). */
static size_t scan_order(const struct scanner *sc, struct wiki *const *wikis, size_t n,
			 struct wiki **order)
{
	size_t first = 0, last = n;

	for (size_t i = 0; i < n; i++) {
		if (sc_was_unreadable(sc, wikis[i]->domain))
			order[--last] = wikis[i];
		else
			order[first++] = wikis[i];
	}
	return first;
}

/* What one chunk's scan tells the scanner: readability changes, and which wikis are
 * hot (jobs found: re-read every [scan] interval for a while). */
static void note_chunk(struct scanner *sc, struct server *sv, struct wiki *const *wikis,
		       const struct backlog *b, size_t n, int64_t now)
{
	for (size_t i = 0; i < n; i++) {
		sc_note_readability(sc, wikis[i], &b[i]);
		if ((b[i].oldest_ready_ms != 0 || b[i].orphaned_claims > 0) &&
		    hotset_touch(&sv->hot, wikis[i]->domain, now + HOT_KEEP_MS) != 0)
			log_msg(LOG_ERROR, "hot set: out of memory; the wiki waits for the sweep");
	}
}

/* Writes the rows of wikis[0..n) whose figures b[] the fleet needs (changes.h: new,
 * changed, with work, or due for a refresh) and records them as written; the others
 * cost no statement. A row the coordination database refuses for its values is
 * reported (log, metric) and left out, so it affects its own wiki only. 0, or -1 (err
 * set) when the write failed: then nothing is recorded, so the next scan writes them
 * again. */
static int publish_changes(struct db *coord, const struct config *cfg, struct wiki *const *wikis,
			   const struct backlog *b, size_t n, enum scan_depth depth,
			   const char *scan_started, char *err, size_t errlen)
{
	struct wiki **changed = calloc(n ? n : 1, sizeof(*changed));
	struct backlog *figures = calloc(n ? n : 1, sizeof(*figures));
	bool *refused = calloc(n ? n : 1, sizeof(*refused));
	int64_t now = util_mono_ms();
	size_t k = 0;
	int rc = -1, nrefused = 0;

	if (changed == NULL || figures == NULL || refused == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!changes_need_write(&wikis[i]->written, &b[i], depth, now))
			continue;
		changed[k] = wikis[i];
		figures[k++] = b[i];
	}
	if (k > 0)
		nrefused =
			coord_write_backlog(coord, cfg,
					    &(struct coord_scan){ cfg->mw_version, changed, figures,
								  k, scan_started, refused },
					    err, errlen);
	if (nrefused < 0)
		goto out;
	for (size_t i = 0, logged = 0; i < k; i++) {
		struct log_line l;
		if (!refused[i]) {
			changes_note_written(&changed[i]->written, &figures[i], depth, now);
			continue;
		}
		/* Not recorded as written: the next scan tries again. */
		log_begin(&l, LOG_WARN,
			  "backlog row refused by the coordination database; the other wikis"
			  " are written, this one is retried next scan");
		log_str(&l, "wiki", changed[i]->domain);
		log_str(&l, "types", figures[i].types);
		if (logged++ == 0) /* coord_write_backlog reports the first one's */
			log_str(&l, "error", err);
		log_end(&l);
	}
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_WRITTEN, (int64_t)k - nrefused);
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_REFUSED, nrefused);
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_UNCHANGED, (int64_t)(n - k));
	rc = 0;
out:
	free(changed);
	free(figures);
	free(refused);
	return rc;
}

int scanner_scan_publish(struct db *scan_db, struct db *coord, const struct config *cfg,
			 struct wiki *const *wikis, size_t n, int per_query, enum scan_depth depth,
			 const char *scan_started, struct backlog *b, struct scan_stats *stats,
			 char *err, size_t errlen)
{
	stats->queries = 0;
	if (scan_run_skipping(scan_db, wikis, n, per_query, depth, cfg->skip_types, b, stats, err,
			      errlen) != 0)
		return -EIO;
	if (publish_changes(coord, cfg, wikis, b, n, depth, scan_started, err, errlen) != 0)
		return -ECOMM;
	return 0;
}

/* Scans wikis[0..n) in statements of `per_query` wikis, writing each chunk of `group`
 * wikis as soon as it is read. A chunk whose write fails is skipped (the others are
 * still written) unless the coordination database no longer answers at all. Returns 0,
 * 1 when some chunk was not written, -EIO when the pass must stop (err set). */
static int scan_part(struct scanner *sc, struct server *sv, struct db *coord, struct wiki **wikis,
		     struct backlog *backlog, size_t n, int per_query, enum scan_depth depth,
		     const char *started, struct scan_tally *tally, char *err, size_t errlen)
{
	const struct config *cfg = sc->cfg;
	size_t group = (size_t)cfg->scan_wikis_per_query;
	struct scan_stats stats;
	char probe[32], why[300];
	int rc = 0;

	for (size_t from = 0; from < n && !scanner_stopping(sc); from += group) {
		size_t len = from + group < n ? group : n - from;
		int64_t group_start;
		int written;
		if (sc->feed != NULL)
			run_woken(sc, coord);
		group_start = util_mono_ms();
		written = scanner_scan_publish(sv->db, coord, cfg, wikis + from, len, per_query,
					       depth, started, backlog + from, &stats, err, errlen);
		if (written == -EIO)
			return -EIO;
		tally->cost_us += stats.db_us;
		tally->queries += stats.queries;
		for (size_t i = from; i < from + len; i++)
			tally->with_backlog += backlog[i].oldest_ready_ms != 0;
		pace_spend(&sv->pace, util_mono_ms(), stats.db_us);
		pace_scan(sc, group_start, stats.queries);
		note_chunk(sc, sv, wikis + from, backlog + from, len, util_mono_ms());
		if (written == 0)
			continue;
		snprintf(why, sizeof(why), "%s", err);
		if (coord_now(coord, probe, err, errlen) != 0)
			return -EIO;
		/* The database answers: something in this chunk's rows. Go on with the rest;
		 * the pass is reported failed (scan failed, with this error). */
		snprintf(err, errlen, "backlog of %zu wikis from %s not written: %s", len,
			 wikis[from]->domain, why);
		rc = 1;
	}
	return rc;
}

/* The coordination database's time now (coord_clock), from a reading at most
 * CLOCK_REREAD_MS old: one statement a second, not one per chunk of a sweep. */
static int coord_time(struct scanner *sc, struct db *coord, char out[32], char *err, size_t errlen)
{
	int64_t now = util_mono_ms();

	if (!sc->clock_read || now - sc->clock.mono_ms >= CLOCK_REREAD_MS) {
		struct coord_clock c;
		if (coord_clock_read(coord, &c, err, errlen) != 0)
			return -EIO;
		sc->clock = c;
		sc->clock_read = true;
		now = c.mono_ms;
	}
	coord_clock_at(&sc->clock, now, out);
	return 0;
}

/* Scans wikis[0..n) (readable ones grouped, the others one each) and writes their
 * backlog for the fleet. 0, 1 (some chunk not written), -EIO (stop; err set). */
static int scan_some(struct scanner *sc, struct server *sv, struct db *coord,
		     struct wiki *const *wikis, size_t n, enum scan_depth depth,
		     struct scan_tally *tally, char *err, size_t errlen)
{
	struct backlog *backlog = calloc(n ? n : 1, sizeof(*backlog));
	struct wiki **order = calloc(n ? n : 1, sizeof(*order));
	char started[32];
	size_t grouped;
	int rc = -EIO, tail;

	snprintf(err, errlen, "out of memory");
	if (backlog == NULL || order == NULL)
		goto out;
	grouped = scan_order(sc, wikis, n, order);
	/* Each chunk's own start: a wiki drained after it keeps its "drained" figures. */
	if (coord_time(sc, coord, started, err, errlen) != 0)
		goto out;
	rc = scan_part(sc, sv, coord, order, backlog, grouped, sc->cfg->scan_wikis_per_query, depth,
		       started, tally, err, errlen);
	if (rc >= 0) {
		tail = scan_part(sc, sv, coord, order + grouped, backlog + grouped, n - grouped, 1,
				 depth, started, tally, err, errlen);
		rc = tail < 0 ? tail : (rc > tail ? rc : tail);
	}
out:
	free(order);
	free(backlog);
	return rc;
}

/* The detection gauges, across the servers: the longest sweep and the most used
 * budget (what bounds a cold wiki's wait), the hot wikis of all. */
static void set_detection_metrics(const struct scanner *sc, int64_t now)
{
	double used = 0;
	int64_t period = 0;
	size_t hot = 0;

	for (size_t i = 0; i < sc->nservers; i++) {
		const struct server *sv = sc->servers[i];
		double u = pace_used(&sv->pace, now);
		used = u > used ? u : used;
		period = sv->period_ms > period ? sv->period_ms : period;
		hot += sv->hot.len;
	}
	metrics_set(METRIC_SCAN_BUDGET_USED, 0, used);
	metrics_set(METRIC_SWEEP_SECONDS, 0, (double)period / 1000.0);
	metrics_set(METRIC_HOT_WIKIS, 0, (double)hot);
}

/* The sweep took longer than SWEEP_STRETCHED_MS, or is back under it: logged on the
 * change only. */
static void log_sweep_stretch(struct scanner *sc, struct server *sv, int64_t period_ms)
{
	bool stretched = period_ms > SWEEP_STRETCHED_MS;
	struct log_line l;

	if (stretched == sv->sweep.stretched)
		return;
	sv->sweep.stretched = stretched;
	log_begin(&l, stretched ? LOG_WARN : LOG_INFO,
		  stretched ? "database budget stretches the sweep"
			    : "sweep back within its threshold");
	if (sv->key != NULL)
		log_str(&l, "server", sv->key);
	log_int(&l, "sweep_s", (period_ms + 500) / 1000);
	log_int(&l, "threshold_s", SWEEP_STRETCHED_MS / 1000);
	log_int(&l, "db_ms", sv->sweep.tally.cost_us / 1000);
	log_int(&l, "budget_percent", sc->cfg->scan_db_budget_percent);
	log_int(&l, "wikis", (long long)sv->wikis.len);
	if (stretched)
		log_str(&l, "next",
			"new jobs on cold wikis wait up to a sweep (at most [scan] "
			"max_sweep_seconds while the database keeps up); enable [binlog] for "
			"sub-second detection");
	log_end(&l);
}

/* Every server has completed a sweep since this sidecar took the lease: the fleet's
 * sweep is recorded as of the oldest of their starts (every row left unchanged since
 * is at least that fresh), and the wikis gone from discovery are forgotten. One server
 * (the usual farm): its own sweep, as it finishes. 0, or -EIO (err set). */
static int fleet_sweep_done(struct scanner *sc, struct db *coord, char *err, size_t errlen)
{
	const char *oldest = NULL;
	bool more = false;

	for (size_t i = 0; i < sc->nservers; i++) {
		if (!sc->servers[i]->swept)
			return 0;
		if (oldest == NULL || strcmp(sc->servers[i]->swept_db, oldest) < 0)
			oldest = sc->servers[i]->swept_db;
	}
	if (oldest == NULL)
		return 0;
	if (coord_note_sweep(coord, sc->cfg, sc->cfg->mw_version, oldest, (long long)sc->wikis.len,
			     err, errlen) != 0 ||
	    (sc->forget_due && coord_forget_unseen(coord, sc->cfg, sc->cfg->mw_version, oldest,
						   (const struct wiki *const *)sc->wikis.items,
						   sc->wikis.len, &more, err, errlen) != 0))
		return -EIO;
	sc->forget_due = more;
	return 0;
}

/* A sweep read every wiki of the server: recorded for the fleet, reported. */
static void sweep_finish(struct scanner *sc, struct server *sv, struct db *coord)
{
	int64_t now = util_mono_ms(), period = now - sv->sweep.started;
	char err[512];
	struct log_line l;

	sv->sweep.running = false;
	free(sv->sweep.after);
	sv->sweep.after = NULL;
	/* The budget is a ceiling, not a target: a farm swept in less than [scan] interval
	 * waits for it, as the hot set does. */
	sv->sweep.next_start = sv->sweep.started + (int64_t)sc->cfg->scan_interval * 1000;
	/* Only a sweep that wrote every chunk counts (forget_unseen forgets nothing
	 * another one missed). */
	if (!sv->sweep.incomplete) {
		sv->swept = true;
		memcpy(sv->swept_db, sv->sweep.started_db, sizeof(sv->swept_db));
		if (fleet_sweep_done(sc, coord, err, sizeof(err)) != 0) {
			streak_fail(&sv->streak, err, retry_delay(sv->streak.run.count + 1));
			return;
		}
		streak_ok(&sv->streak);
	}
	if (sv->sweep.depth == SCAN_FULL)
		sv->next_full_scan = sv->sweep.started + (int64_t)sc->cfg->scan_full_interval * 1000;
	sv->period_ms = period;
	sv->sweep_cost_us = sv->sweep.tally.cost_us;
	metrics_add(METRIC_SCANS, 0, 1);
	metrics_set(METRIC_SCAN_SECONDS, 0, (double)sv->sweep.tally.cost_us / 1e6);
	set_detection_metrics(sc, now);
	log_sweep_stretch(sc, sv, period);
	/* "scan", as when one pass read every wiki: what tools and tests count. */
	log_begin(&l, LOG_DEBUG, "scan");
	if (sv->key != NULL)
		log_str(&l, "server", sv->key);
	log_int(&l, "wikis", (long long)sv->wikis.len);
	log_int(&l, "with_backlog", (long long)sv->sweep.tally.with_backlog);
	log_int(&l, "queries", sv->sweep.tally.queries);
	log_int(&l, "hot", (long long)sv->hot.len);
	log_str(&l, "depth", sv->sweep.depth == SCAN_FULL ? "full" : "light");
	log_int(&l, "db_ms", sv->sweep.tally.cost_us / 1000);
	log_int(&l, "ms", period);
	log_end(&l);
}

/* Reads the server's sweep's next chunk ([scan] wikis_per_query wikis after the last
 * one read). 0, or -EIO when a database could not be reached (the sweep resumes
 * there). */
static int sweep_step(struct scanner *sc, struct server *sv, struct db *coord)
{
	size_t n = sv->wikis.len, from, len;
	char err[512];
	int rc;

	if (!sv->sweep.running) {
		if (coord_now(coord, sv->sweep.started_db, err, sizeof(err)) != 0)
			goto failed;
		sv->sweep.running = true;
		sv->sweep.started = util_mono_ms();
		memset(&sv->sweep.tally, 0, sizeof(sv->sweep.tally));
		sv->sweep.incomplete = false;
		/* Claims are read every [scan] full_interval (and in the first sweep). */
		sv->sweep.depth = sv->sweep.started >= sv->next_full_scan ? SCAN_FULL : SCAN_LIGHT;
	}
	from = sweep_position(&sv->wikis, sv->sweep.after);
	len = n - from < (size_t)sc->cfg->scan_wikis_per_query
		      ? n - from
		      : (size_t)sc->cfg->scan_wikis_per_query;
	if (len > 0) {
		char *after;
		rc = scan_some(sc, sv, coord, sv->wikis.items + from, len, sv->sweep.depth,
			       &sv->sweep.tally, err, sizeof(err));
		if (rc < 0)
			goto failed;
		if (rc > 0) {
			sv->sweep.incomplete = true;
			streak_fail(&sv->streak, err, (int64_t)sc->cfg->scan_interval * 1000);
		}
		after = strdup(sv->wikis.items[from + len - 1]->domain);
		if (after == NULL) {
			snprintf(err, sizeof(err), "out of memory");
			goto failed;
		}
		free(sv->sweep.after);
		sv->sweep.after = after;
	}
	if (from + len >= n) {
		sweep_finish(sc, sv, coord);
		sched_poke(sc->sched);
	}
	return 0;
failed:
	if (!scanner_stopping(sc))
		streak_fail(&sv->streak, err, retry_delay(sv->streak.run.count + 1));
	return -EIO;
}

/* Re-reads the server's hot set (light: no claims). 0 or -EIO. */
static int scan_hot(struct scanner *sc, struct server *sv, struct db *coord, int64_t *cost_us)
{
	struct wiki **hot;
	size_t n;
	struct scan_tally tally = { 0 };
	char err[512];
	int rc = 0;

	hotset_expire(&sv->hot, util_mono_ms());
	if (sv->hot.len == 0)
		return 0;
	hot = calloc(sv->hot.len, sizeof(*hot));
	if (hot == NULL)
		return 0;
	n = hotset_select(&sv->hot, &sv->wikis, util_mono_ms(), hot);
	if (n > 0)
		rc = scan_some(sc, sv, coord, hot, n, SCAN_LIGHT, &tally, err, sizeof(err));
	free(hot);
	*cost_us = tally.cost_us;
	if (rc < 0) {
		if (!scanner_stopping(sc))
			streak_fail(&sv->streak, err, retry_delay(sv->streak.run.count + 1));
		return -EIO;
	}
	sched_poke(sc->sched);
	return 0;
}

/* What the server's next sweep is expected to cost: the last complete sweep's, or the
 * running sweep's so far extrapolated to all the server's wikis when that is more (a
 * first sweep, a farm that grew, a database that slowed down). 0: no estimate yet. */
static int64_t sweep_cost_estimate(const struct server *sv)
{
	int64_t est = sv->sweep_cost_us;
	size_t done;

	if (!sv->sweep.running || sv->sweep.after == NULL)
		return est;
	done = sweep_position(&sv->wikis, sv->sweep.after);
	if (done > 0 && done <= sv->wikis.len) {
		int64_t projected = sv->sweep.tally.cost_us * (int64_t)sv->wikis.len / (int64_t)done;
		if (projected > est)
			est = projected;
	}
	return est;
}

/* The server's share of a database core from now on: [scan] db_budget_percent, or more
 * while a sweep would outlast [scan] max_sweep_seconds within it (pace_sweep_budget:
 * the 3-minute promise beats the budget, up to a quarter of a core; the hot set keeps
 * its part of the setting, the raise goes to the sweep). A reload's new
 * settings apply here too. Logged when raised and when back, on the change only. */
static void set_server_budget(struct scanner *sc, struct server *sv, int64_t now)
{
	double budget = sc->cfg->scan_db_budget_percent / 100.0;
	int64_t est = sweep_cost_estimate(sv);
	/* While the binary log feed follows this server's wikis (the default server's:
	 * feed_set_wikis), it sees their new jobs at once: the sweep is only the safety net
	 * for what the feed cannot see (delayed jobs, expired claims), and keeps the
	 * budget. Measured at 20,000 wikis: the floor cost 13 % of a core for nothing. */
	bool fed = sv->key == NULL && binlog_following(sc->feed);
	double share = pace_sweep_budget(budget, est,
					 fed ? 0 : (int64_t)sc->cfg->scan_max_sweep_seconds * 1000);
	bool raised = share > budget;
	struct log_line l;

	if (share != sv->pace.budget)
		pace_set_budget(&sv->pace, share, now);
	if (raised == sv->budget_raised)
		return;
	sv->budget_raised = raised;
	log_begin(&l, raised ? LOG_WARN : LOG_INFO,
		  raised ? "database budget raised to keep the sweep short"
			 : "database budget back to its setting");
	if (sv->key != NULL)
		log_str(&l, "server", sv->key);
	log_int(&l, "budget_percent", sc->cfg->scan_db_budget_percent);
	log_int(&l, "sweep_budget_percent", (long long)(share * 100 + 0.999));
	log_int(&l, "sweep_db_ms", est / 1000);
	log_int(&l, "max_sweep_s", sc->cfg->scan_max_sweep_seconds);
	log_int(&l, "wikis", (long long)sv->wikis.len);
	if (!raised && fed)
		log_str(&l, "why", "the binary log feed follows: it sees new jobs at once");
	if (raised)
		log_str(&l, "next",
			"a sweep costs more than the budget allows in max_sweep_seconds at this "
			"farm's size; enable [binlog], give the server table caches for its "
			"tables, or set max_sweep_seconds = 0 to keep the budget");
	log_end(&l);
}

/* One pass of a server's detection within its budget: the hot set when due, then the
 * sweep's next chunks while the budget has credit (for at most TICK_MS). Returns when
 * to come back (monotonic ms): after a failure, on the database's retry schedule.
 * (Returning "now" there made the scanner spin on a database that refuses at once,
 * tens of thousands of attempts a second, for as long as its lease was still
 * trusted.) */
static int64_t run_tick(struct scanner *sc, struct server *sv, struct db *coord)
{
	int64_t now = util_mono_ms(), deadline = now + TICK_MS, wait, next, hot_cost = 0;

	if (sv->wikis.len == 0)
		return now + (int64_t)sc->cfg->scan_interval * 1000;
	set_server_budget(sc, sv, now);
	metrics_set(METRIC_SCAN_BUDGET, 0, sc->cfg->scan_db_budget_percent / 100.0);
	if (now >= sv->next_hot && pace_wait_ms(&sv->pace, now) == 0) {
		if (scan_hot(sc, sv, coord, &hot_cost) != 0)
			return now + retry_delay(sv->streak.run.count);
		sv->next_hot = now + pace_hot_gap_ms(sc->cfg->scan_db_budget_percent / 100.0,
						     hot_cost,
						     (int64_t)sc->cfg->scan_interval * 1000);
	}
	while (!scanner_stopping(sc) && (now = util_mono_ms()) < deadline &&
	       (sv->sweep.running || now >= sv->sweep.next_start) &&
	       pace_wait_ms(&sv->pace, now) == 0) {
		if (sweep_step(sc, sv, coord) != 0)
			return now + retry_delay(sv->streak.run.count);
	}
	now = util_mono_ms();
	set_detection_metrics(sc, now);
	wait = pace_wait_ms(&sv->pace, now);
	/* The sooner of the hot set and the sweep, once the budget has credit again. */
	next = sv->sweep.running ? now : sv->sweep.next_start;
	if (sv->next_hot < next)
		next = sv->next_hot;
	return next > now + wait ? next : now + wait;
}

/* A new holder of the scanner lease starts every server's sweep from the start, with a
 * fresh budget (a burst: the first chunks are read at once) and its own hot set. */
static void detection_restart(struct scanner *sc)
{
	int64_t now = util_mono_ms();

	for (size_t i = 0; i < sc->nservers; i++)
		server_restart(sc->servers[i], sc->cfg, now);
	metrics_set(METRIC_SCAN_BUDGET, 0, sc->cfg->scan_db_budget_percent / 100.0);
	/* Another holder may have written (or forgotten) rows meanwhile. */
	forget_written(&sc->wikis);
	sc->forget_due = true;
}

/* The feed's wake (binlog.h), on its thread: the domain joins the set the scanner
 * rescans at once. */
static void scanner_wake(void *arg, const char *domain)
{
	struct scanner *sc = arg;
	char *copy;

	pthread_mutex_lock(&sc->lock);
	for (size_t i = 0; i < sc->nwoken; i++) {
		if (strcmp(sc->woken[i], domain) == 0) {
			pthread_mutex_unlock(&sc->lock);
			return;
		}
	}
	if (sc->nwoken < WAKE_MAX && (copy = strdup(domain)) != NULL) {
		char **p = realloc(sc->woken, (sc->nwoken + 1) * sizeof(*p));
		if (p != NULL) {
			sc->woken = p;
			sc->woken[sc->nwoken++] = copy;
		} else {
			free(copy);
		}
	}
	pthread_cond_signal(&sc->wake);
	pthread_mutex_unlock(&sc->lock);
}

static void free_domains(char **d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(d[i]);
	free(d);
}

static int wiki_domain_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(struct wiki *const *)elem)->domain);
}

static bool any_failed(const struct backlog *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i].failed)
			return true;
	return false;
}

/* Rescans the wikis the feed woke (and those due for a second look) and writes their
 * backlog for the fleet at once, so that a new job is seen in well under a second
 * rather than at the next scan. Failures are left to the next scan, which logs them.
 * The feed follows the default server only (feed_set_wikis): so do its wakes. */
static void run_woken(struct scanner *sc, struct db *coord)
{
	const struct config *cfg = sc->cfg; /* one config for the whole round (a reload) */
	struct server *sv = server_default(sc);
	char **domains = NULL, started[32], err[512];
	size_t nd = 0, n = 0, nrecheck = 0;
	struct wiki **order = NULL;
	struct backlog *backlog = NULL;
	struct scan_stats stats;
	int64_t t0 = util_mono_ms();

	pthread_mutex_lock(&sc->lock);
	if (sc->nwoken > 0 || (sc->nrecheck > 0 && t0 >= sc->recheck_at)) {
		domains = sc->woken;
		nd = sc->nwoken;
		sc->woken = NULL;
		sc->nwoken = 0;
	}
	pthread_mutex_unlock(&sc->lock);
	if (domains == NULL && nd == 0 && (sc->nrecheck == 0 || t0 < sc->recheck_at))
		return;
	/* The second looks join this round; a wiki found empty twice is left alone. */
	if (t0 >= sc->recheck_at && sc->nrecheck > 0) {
		char **all = realloc(domains, (nd + sc->nrecheck) * sizeof(*all));
		if (all != NULL) {
			domains = all;
			memcpy(domains + nd, sc->recheck, sc->nrecheck * sizeof(*all));
			nrecheck = sc->nrecheck;
			nd += nrecheck;
			free(sc->recheck);
		} else {
			free_domains(sc->recheck, sc->nrecheck);
		}
		sc->recheck = NULL;
		sc->nrecheck = 0;
	}
	order = calloc(nd ? nd : 1, sizeof(*order));
	backlog = calloc(nd ? nd : 1, sizeof(*backlog));
	if (order == NULL || backlog == NULL)
		goto out;
	for (size_t i = 0; i < nd; i++) {
		struct wiki **w = sv == NULL || sv->wikis.len == 0
					  ? NULL
					  : bsearch(domains[i], sv->wikis.items, sv->wikis.len,
						    sizeof(*sv->wikis.items), wiki_domain_cmp);
		bool dup = false;
		for (size_t j = 0; w != NULL && j < n; j++)
			dup = dup || order[j] == *w;
		if (w != NULL && !dup)
			order[n++] = *w;
	}
	if (n == 0 || coord_now(coord, started, err, sizeof(err)) != 0)
		goto out;
	for (size_t from = 0; from < n; from += (size_t)cfg->scan_wikis_per_query) {
		size_t len = n - from < (size_t)cfg->scan_wikis_per_query
				     ? n - from
				     : (size_t)cfg->scan_wikis_per_query;
		/* Full depth: the highest job_id, which unparks a parked wiki. Not
		 * scanner_scan_publish: a failed wiki is read again before anything is
		 * written, so the fleet never sees a passing error. */
		if (scan_run_skipping(sv->db, order + from, len, cfg->scan_wikis_per_query,
				      SCAN_FULL, cfg->skip_types, backlog + from, &stats, err,
				      sizeof(err)) != 0)
			goto out;
		if (any_failed(backlog + from, len)) {
			/* Its table was just written: a failure is most likely the scan
			 * connection's, lost in a server restart. Once more, reconnected. */
			pace_spend(&sv->pace, util_mono_ms(), stats.db_us);
			if (scan_run_skipping(sv->db, order + from, len, cfg->scan_wikis_per_query,
					      SCAN_FULL, cfg->skip_types, backlog + from, &stats,
					      err, sizeof(err)) != 0)
				goto out;
		}
		/* Within the budget too: a storm of wakes delays the sweep, not the server. */
		pace_spend(&sv->pace, util_mono_ms(), stats.db_us);
		note_chunk(sc, sv, order + from, backlog + from, len, util_mono_ms());
		if (publish_changes(coord, cfg, order + from, backlog + from, len, SCAN_FULL,
				    started, err, sizeof(err)) != 0)
			goto out;
	}
	sched_poke(sc->sched);
	for (size_t i = 0; i < n; i++) {
		char **p, *copy;
		bool second_look = false;
		if (backlog[i].oldest_ready_ms != 0 || backlog[i].failed)
			continue;
		for (size_t j = nd - nrecheck; j < nd; j++)
			second_look = second_look || strcmp(domains[j], order[i]->domain) == 0;
		if (second_look || (copy = strdup(order[i]->domain)) == NULL)
			continue;
		p = realloc(sc->recheck, (sc->nrecheck + 1) * sizeof(*p));
		if (p == NULL) {
			free(copy);
			continue;
		}
		sc->recheck = p;
		sc->recheck[sc->nrecheck++] = copy;
		sc->recheck_at = util_mono_ms() + WAKE_RECHECK_MS;
	}
	{
		struct log_line l;
		log_begin(&l, LOG_DEBUG, "woken wikis scanned");
		log_int(&l, "wikis", (long long)n);
		log_str(&l, "first", order[0]->domain);
		log_int(&l, "ms", util_mono_ms() - t0);
		log_end(&l);
	}
out:
	free_domains(domains, nd);
	free(order);
	free(backlog);
}

/* The binary log feed runs while this sidecar holds the scanner lease (and [binlog]
 * enabled = true): one per fleet. */
static void follow_binlog(struct scanner *sc, bool follow)
{
	if (!sc->cfg->binlog_enabled || follow == (sc->feed != NULL))
		return;
	if (!follow) {
		binlog_stop(sc->feed);
		sc->feed = NULL;
		return;
	}
	sc->feed = binlog_start(sc->cfg, NULL, scanner_wake, sc);
	if (sc->feed == NULL) {
		log_msg(LOG_ERROR, "binary log feed: cannot start its thread; detection by "
				   "scanning only");
		return;
	}
	if (feed_set_wikis(sc) != 0)
		log_msg(LOG_ERROR, "binary log feed: out of memory for the wiki list");
}

/* Ready when discovery has succeeded and the coordination database answers now. */
static void note_readiness(struct scanner *sc, struct db *coord, const struct failure_streak *disc,
			   struct failure_streak *coord_streak)
{
	char err[512];

	if (!sc->discovered || disc->run.count > 0) {
		note_ready(false, "platform database: discovery has not succeeded");
		return;
	}
	if (!sc->schema_ready || coord_streak->run.count > 0 ||
	    update_fleet_metrics(sc, coord, err, sizeof(err)) != 0) {
		note_ready(false, "coordination database does not answer");
		return;
	}
	note_ready(true, NULL);
}

/* Each server's detection pass when it is due; returns the soonest next one. */
static int64_t run_ticks(struct scanner *sc, struct db *coord)
{
	int64_t next = INT64_MAX;

	for (size_t i = 0; i < sc->nservers && !scanner_stopping(sc); i++) {
		struct server *sv = sc->servers[i];
		if (util_mono_ms() >= sv->next_tick)
			sv->next_tick = run_tick(sc, sv, coord);
		if (sv->next_tick < next)
			next = sv->next_tick;
	}
	return next;
}

static void *scanner_main(void *arg)
{
	struct scanner *sc = arg;
	const struct config *cfg = sc->cfg;
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct db *coord = db_new(&cfg->platform, "coordination");
	struct discovery *disc = discovery_new(cfg);
	struct failure_streak disc_streak = { "discovery failed", ERROR_DISCOVERY, { 0, 0 } };
	struct failure_streak coord_streak = { "coordination database failed",
					       ERROR_COORDINATION,
					       { 0, 0 } };
	int64_t next_discovery = 0, next_scan = 0, next_tick = INT64_MAX;

	db_thread_init();
	sc->started_ms = util_mono_ms();
	if (platform == NULL || coord == NULL || disc == NULL) {
		log_msg(LOG_ERROR, "scanner: out of memory; no discovery or scans will run");
		goto out;
	}
	pthread_mutex_lock(&sc->lock);
	while (!sc->stopping) {
		int64_t wake;
		struct timespec ts;

		bool due, was_scanning;

		pthread_mutex_unlock(&sc->lock);
		note_alive();
		if (util_mono_ms() >= next_discovery)
			next_discovery = run_discovery(sc, disc, platform, &disc_streak);
		/* Woken by the binary log feed, only its wikis are scanned; a new holder of
		 * the scanner lease starts every server's sweep at once. */
		due = util_mono_ms() >= next_scan;
		was_scanning = sc->scanning;
		if (ensure_schema(sc, coord, &coord_streak) &&
		    hold_scanner_lease(sc, coord, &coord_streak)) {
			follow_binlog(sc, true);
			if (!was_scanning)
				detection_restart(sc);
			next_tick = run_ticks(sc, coord);
			run_woken(sc, coord);
		} else {
			follow_binlog(sc, false);
			next_tick = INT64_MAX;
		}
		if (due) {
			note_readiness(sc, coord, &disc_streak, &coord_streak);
			next_scan = util_mono_ms() + READINESS_INTERVAL_MS;
		}
		wake = next_scan < next_tick ? next_scan : next_tick;
		if (sc->nrecheck > 0 && sc->recheck_at < wake)
			wake = sc->recheck_at;
		if (next_discovery < wake)
			wake = next_discovery;
		/* While the coordination database fails, come back on its retry schedule, not
		 * a scan interval later: prompt recovery whatever [scan] interval is. (A
		 * server's failed pass already comes back on its own: run_tick.) */
		if (coord_streak.run.count > 0) {
			int64_t retry = util_mono_ms() + retry_delay(coord_streak.run.count);
			if (retry < wake)
				wake = retry;
		}
		ts = util_timespec(wake);
		pthread_mutex_lock(&sc->lock);
		if (!sc->stopping && sc->nwoken == 0)
			pthread_cond_timedwait(&sc->wake, &sc->lock, &ts);
	}
	pthread_mutex_unlock(&sc->lock);
	binlog_stop(sc->feed);
	sc->feed = NULL;
	/* Hand the scanner role over now rather than after a TTL. */
	if (sc->scanning) {
		char err[256];
		coord_release(coord, cfg, &sc->lease, err, sizeof(err));
	}
out:
	for (size_t i = 0; i < sc->nservers; i++)
		server_free(sc->servers[i]);
	free(sc->servers);
	wiki_list_free(&sc->wikis);
	sc_forget_unreadable(sc);
	free_domains(sc->woken, sc->nwoken);
	free_domains(sc->recheck, sc->nrecheck);
	discovery_free(disc);
	db_free(coord);
	db_free(platform);
	db_thread_end();
	return NULL;
}

struct scanner *scanner_start(const struct config *cfg, struct sched *s)
{
	struct scanner *sc = calloc(1, sizeof(*sc));

	if (sc == NULL)
		return NULL;
	sc->cfg = cfg;
	sc->sched = s;
	pthread_mutex_init(&sc->lock, NULL);
	util_cond_init(&sc->wake);
	if (pthread_create(&sc->thread, NULL, scanner_main, sc) != 0) {
		pthread_cond_destroy(&sc->wake);
		pthread_mutex_destroy(&sc->lock);
		free(sc);
		return NULL;
	}
	return sc;
}

void scanner_stop(struct scanner *sc)
{
	if (sc == NULL)
		return;
	pthread_mutex_lock(&sc->lock);
	sc->stopping = true;
	pthread_cond_signal(&sc->wake);
	pthread_mutex_unlock(&sc->lock);
	pthread_join(sc->thread, NULL);
	pthread_cond_destroy(&sc->wake);
	pthread_mutex_destroy(&sc->lock);
	free(sc);
}

void scanner_set_config(struct scanner *sc, const struct config *cfg)
{
	atomic_store(&sc->cfg, cfg);
	/* Wake the loop: a new interval or pace applies now, not after the old wait. */
	pthread_mutex_lock(&sc->lock);
	pthread_cond_broadcast(&sc->wake);
	pthread_mutex_unlock(&sc->lock);
}
