/* scanner.c - see scanner.h. One thread: a connection to the platform database for
 * discovery and one to the coordination database for the scanner lease, the fleet's
 * figures and the record of complete sweeps. The job tables are read by one detector
 * per database server (detector.h), each on a thread of its own: this thread never
 * runs a wiki-table statement, so the lease is renewed on time whatever a server does.
 * It keeps the server list (a detector per server discovery names, started and stopped
 * as servers come and go), tells the detectors when the lease is held or lost, and
 * collects their reports. */
#include "scanner.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord.h"
#include "db.h"
#include "detector.h"
#include "discovery.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* The fleet gauges, readiness and the detectors' reports are refreshed this often. */
#define READINESS_INTERVAL_MS 5000
/* The loop turns at least this often: the scanner lease's renewal and the fleet's
 * sweep record are checked every turn (both cost nothing until due). */
#define TURN_MS 1000

/* One database server's detector, by the wikis' db_server key. */
struct server {
	char *key; /* NULL: [scan_db] as configured */
	struct detector *d;
	struct wiki_list wikis; /* this discovery's, while grouping */
	size_t room;            /* servers_regroup: its wikis, counted first */
};

struct scanner {
	const struct config *_Atomic cfg; /* swapped by scanner_set_config (a reload) */
	const struct config *applied;     /* the one the detectors were given */
	struct sched *sched;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	/* Owned by the thread: */
	struct wiki_list wikis; /* from the last good discovery, sorted by domain */
	struct server *servers;
	size_t nservers;
	bool forget_due; /* a wiki left discovery (or a new holder): rows to forget */
	/* When forget_due was set, coordination clock ("": not read yet): only a fleet sweep
	 * started after it ran on the new wiki list (the detectors take it at their next
	 * turn, on their own threads), so only such a sweep can tell a gone wiki's row
	 * from one written a moment ago. */
	char forget_since[32];
	bool forget_again; /* more wikis left after forget_since: another round is due */
	bool discovered;
	bool schema_ready;
	struct coord_lease lease; /* the fleet's scanner lease */
	bool scanning;            /* this sidecar holds it */
	int64_t confirmed_ms;
	char noted_sweep[32];  /* the fleet's sweep last recorded (its oldest start) */
	int64_t started_ms;    /* monotonic: when the thread started */
	int64_t fleet_read_ms; /* monotonic: the last good read of the fleet's figures */
	double scan_age_s;     /* the scan age read then */
};

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

static bool same_server(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* Whether some wiki of the old list is gone from the new one (both sorted by
 * domain): its row is to be forgotten once a fleet sweep completes. */
static bool some_gone(const struct wiki_list *old, const struct wiki_list *now)
{
	size_t j = 0, kept = 0;

	for (size_t i = 0; i < now->len; i++) {
		int cmp = 1;
		while (j < old->len &&
		       (cmp = strcmp(old->items[j]->domain, now->items[i]->domain)) < 0)
			j++;
		if (j < old->len && cmp == 0) {
			kept++;
			j++;
		}
	}
	return kept < old->len;
}

static void log_server(const char *msg, const char *key)
{
	struct log_line l;

	log_begin(&l, LOG_INFO, msg);
	log_str(&l, "server", key);
	log_end(&l);
}

/* The server of key, created (its detector started, active if this sidecar scans)
 * when create; NULL when absent or out of memory. */
static struct server *server_of(struct scanner *sc, const char *key, bool create)
{
	struct server *p;
	struct detector *d;

	for (size_t i = 0; i < sc->nservers; i++)
		if (same_server(sc->servers[i].key, key))
			return &sc->servers[i];
	if (!create || (p = realloc(sc->servers, (sc->nservers + 1) * sizeof(*p))) == NULL)
		return NULL;
	sc->servers = p;
	p = &sc->servers[sc->nservers];
	memset(p, 0, sizeof(*p));
	if ((key != NULL && (p->key = strdup(key)) == NULL) ||
	    (d = detector_new(sc->applied, key, sc->sched, NULL)) == NULL) {
		free(p->key);
		return NULL;
	}
	if (detector_start(d) != 0) {
		detector_stop(d);
		free(p->key);
		return NULL;
	}
	detector_set_active(d, sc->scanning);
	p->d = d;
	if (key != NULL)
		log_server("database server added to the scan", key);
	sc->nservers++;
	return p;
}

/* Groups sc->wikis by their database server and hands each detector its list: a
 * server keeps its detector (connection, budget, sweep position, hot set) across
 * discoveries; the detector of a server no wiki names any more is stopped. Each
 * server's list is counted first and allocated once. -ENOMEM: some wikis are in no
 * group until the next discovery. */
static int servers_regroup(struct scanner *sc)
{
	size_t kept = 0;
	int rc = 0;

	for (size_t i = 0; i < sc->wikis.len; i++) {
		struct server *sv = server_of(sc, sc->wikis.items[i]->db_server, true);
		if (sv == NULL)
			rc = -ENOMEM;
		else
			sv->room++;
	}
	for (size_t i = 0; i < sc->nservers; i++) {
		struct server *sv = &sc->servers[i];
		if (sv->room > 0 &&
		    (sv->wikis.items = calloc(sv->room, sizeof(*sv->wikis.items))) == NULL)
			rc = -ENOMEM;
	}
	for (size_t i = 0; i < sc->wikis.len; i++) {
		struct server *sv = server_of(sc, sc->wikis.items[i]->db_server, false);
		if (sv != NULL && sv->wikis.items != NULL && sv->wikis.len < sv->room)
			sv->wikis.items[sv->wikis.len++] = sc->wikis.items[i];
	}
	for (size_t i = 0; i < sc->nservers; i++) {
		struct server sv = sc->servers[i];
		bool listed = sv.room > 0;
		if (sv.wikis.len > 0 && detector_set_wikis(sv.d, &sv.wikis) != 0)
			rc = -ENOMEM;
		/* Borrowed from sc->wikis: the detector took references of its own. */
		free(sv.wikis.items);
		sv.wikis = (struct wiki_list){ 0 };
		sv.room = 0;
		if (listed) {
			sc->servers[kept++] = sv;
			continue;
		}
		if (sv.key != NULL)
			log_server("database server left the scan: no wiki names it", sv.key);
		detector_stop(sv.d);
		free(sv.key);
	}
	sc->nservers = kept;
	return rc;
}

/* Refreshes sc->wikis (kept for scanning) and the scheduler's copy. Returns when the
 * next discovery is due (monotonic ms). */
static int64_t run_discovery(struct scanner *sc, struct discovery *disc, struct db *db,
			     struct detector_streak *streak)
{
	struct wiki_list list = { 0 }, copy = { 0 };
	char err[512];
	size_t before = sc->wikis.len;
	bool first = !sc->discovered;

	if (discovery_run(disc, db, &list, err, sizeof(err)) != 0) {
		int64_t delay = retry_delay(streak->run.count + 1);
		detector_streak_fail(streak, NULL, err, util_mono_ms(), delay);
		return util_mono_ms() + delay;
	}
	detector_streak_ok(streak, NULL);
	if (share_list(&list, &copy) != 0 || sched_set_wikis(sc->sched, &copy) != 0) {
		wiki_list_free(&copy);
		wiki_list_free(&list);
		log_msg(LOG_ERROR, "discovery: out of memory; keeping the previous wiki list");
		return util_mono_ms() + (int64_t)sc->cfg->discovery_interval * 1000;
	}
	if (some_gone(&sc->wikis, &list)) {
		if (sc->forget_due && sc->forget_since[0] != '\0') {
			sc->forget_again = true; /* after the round under way */
		} else {
			sc->forget_due = true;
			sc->forget_since[0] = '\0';
		}
	}
	wiki_list_free(&sc->wikis);
	sc->wikis = list;
	sc->discovered = true;
	if (servers_regroup(sc) != 0)
		log_msg(LOG_ERROR, "discovery: out of memory grouping wikis by database server; "
				   "some wait for the next discovery");
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
static bool ensure_schema(struct scanner *sc, struct db *coord, struct detector_streak *streak)
{
	const char *names[] = { COORD_SCANNER_LEASE };
	char err[512];

	if (sc->schema_ready)
		return true;
	if (coord_ensure_schema(coord, sc->cfg, err, sizeof(err)) != 0 ||
	    coord_add_lease_rows(coord, sc->cfg, sc->cfg->mw_version, names, 1, 0, err,
				 sizeof(err)) != 0) {
		detector_streak_fail(streak, NULL, err, util_mono_ms(),
				     retry_delay(streak->run.count + 1));
		return false;
	}
	detector_streak_ok(streak, NULL);
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
static bool hold_scanner_lease(struct scanner *sc, struct db *coord, struct detector_streak *streak)
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
		detector_streak_fail(streak, NULL, err, util_mono_ms(),
				     retry_delay(streak->run.count + 1));
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
	detector_streak_ok(streak, NULL);
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

/* Every detector has completed a sweep since this sidecar took the lease: the fleet's
 * sweep is recorded as of the oldest of their starts (every row left unchanged since
 * is at least that fresh), once per new oldest start, and the wikis gone from
 * discovery are forgotten by the first such sweep that started after they left
 * (forget_since). 0, or -EIO (err set). */
static int fleet_sweep_done(struct scanner *sc, struct db *coord, char *err, size_t errlen)
{
	char oldest[32] = "", since[32];
	bool more = false, forget;

	if (sc->forget_due && sc->forget_since[0] == '\0' &&
	    coord_now(coord, sc->forget_since, err, errlen) != 0)
		return -EIO;
	for (size_t i = 0; i < sc->nservers; i++) {
		if (!detector_swept(sc->servers[i].d, since))
			return 0;
		if (oldest[0] == '\0' || strcmp(since, oldest) < 0)
			memcpy(oldest, since, sizeof(oldest));
	}
	if (oldest[0] == '\0' || strcmp(oldest, sc->noted_sweep) == 0)
		return 0;
	forget = sc->forget_due && strcmp(oldest, sc->forget_since) >= 0;
	if (coord_note_sweep(coord, sc->cfg, sc->cfg->mw_version, oldest, (long long)sc->wikis.len,
			     err, errlen) != 0 ||
	    (forget && coord_forget_unseen(coord, sc->cfg, sc->cfg->mw_version, oldest,
					   (const struct wiki *const *)sc->wikis.items,
					   sc->wikis.len, &more, err, errlen) != 0))
		return -EIO;
	memcpy(sc->noted_sweep, oldest, sizeof(sc->noted_sweep));
	if (forget) {
		/* Wikis that left since forget_since: a round of their own, from a clock
		 * read after they left. */
		sc->forget_due = more || sc->forget_again;
		if (sc->forget_again)
			sc->forget_since[0] = '\0';
		sc->forget_again = false;
	}
	return 0;
}

/* The detectors' reports, every READINESS_INTERVAL_MS while this sidecar holds the
 * scanner lease, to where an operator looks (server_report.h): the per-server series
 * and the unlabelled detection gauges across the servers (the most used budget and the
 * longest sweep bound a cold wiki's wait; the hot wikis of all), and the jd_server
 * rows `status` prints. A sidecar that does not scan reports no server: its detectors
 * read nothing, and the holder's rows stand (or show stale). */
static void publish_reports(struct scanner *sc, struct db *coord)
{
	struct server_report *r;
	double used = 0;
	int64_t period = 0;
	size_t hot = 0;
	char err[512];

	if (!sc->scanning) {
		metrics_set_servers(NULL, 0);
		return;
	}
	r = calloc(sc->nservers ? sc->nservers : 1, sizeof(*r));
	if (r == NULL)
		return;
	for (size_t i = 0; i < sc->nservers; i++) {
		detector_report(sc->servers[i].d, &r[i]);
		used = r[i].budget_used > used ? r[i].budget_used : used;
		period = r[i].sweep_ms > period ? r[i].sweep_ms : period;
		hot += r[i].hot;
	}
	metrics_set(METRIC_SCAN_BUDGET, 0, sc->cfg->scan_db_budget_percent / 100.0);
	metrics_set(METRIC_SCAN_BUDGET_USED, 0, used);
	metrics_set(METRIC_SWEEP_SECONDS, 0, (double)period / 1000.0);
	metrics_set(METRIC_HOT_WIKIS, 0, (double)hot);
	metrics_set_servers(r, sc->nservers);
	/* A failure here is the coordination database's: its own streak reports it. */
	if (coord_write_server_reports(coord, sc->cfg, sc->cfg->mw_version, r, sc->nservers, err,
				       sizeof(err)) != 0) {
		struct log_line l;
		log_begin(&l, LOG_DEBUG, "server reports not written; again in 5 s");
		log_str(&l, "error", err);
		log_end(&l);
	}
	free(r);
}

/* Ready when discovery has succeeded and the coordination database answers now. */
static void note_readiness(struct scanner *sc, struct db *coord, const struct detector_streak *disc,
			   struct detector_streak *coord_streak)
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

/* The lease held or lost: every detector is told (a new holder's detectors start
 * afresh: detector_set_active), and the fleet's sweep record starts over. */
static void set_scanning(struct scanner *sc, bool scanning, bool was)
{
	if (scanning && !was) {
		sc->forget_due = true;
		sc->forget_since[0] = '\0';
		sc->forget_again = false;
		sc->noted_sweep[0] = '\0';
	}
	for (size_t i = 0; i < sc->nservers; i++)
		detector_set_active(sc->servers[i].d, scanning);
}

/* A reload reaches the detectors once. */
static void pass_config(struct scanner *sc)
{
	const struct config *cfg = sc->cfg;

	if (cfg == sc->applied)
		return;
	sc->applied = cfg;
	for (size_t i = 0; i < sc->nservers; i++)
		detector_set_config(sc->servers[i].d, cfg);
}

static void *scanner_main(void *arg)
{
	struct scanner *sc = arg;
	const struct config *cfg = sc->cfg;
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct db *coord = db_new(&cfg->platform, "coordination");
	struct discovery *disc = discovery_new(cfg);
	struct detector_streak disc_streak = { "discovery failed", ERROR_DISCOVERY, { 0, 0 } };
	struct detector_streak coord_streak = { "coordination database failed",
						ERROR_COORDINATION,
						{ 0, 0 } };
	int64_t next_discovery = 0, next_report = 0;

	db_thread_init();
	sc->started_ms = util_mono_ms();
	sc->applied = cfg;
	if (platform == NULL || coord == NULL || disc == NULL) {
		log_msg(LOG_ERROR, "scanner: out of memory; no discovery or scans will run");
		goto out;
	}
	pthread_mutex_lock(&sc->lock);
	while (!sc->stopping) {
		int64_t wake;
		struct timespec ts;
		bool was_scanning, scanning;
		char err[512];

		pthread_mutex_unlock(&sc->lock);
		note_alive();
		pass_config(sc);
		if (util_mono_ms() >= next_discovery)
			next_discovery = run_discovery(sc, disc, platform, &disc_streak);
		was_scanning = sc->scanning;
		scanning = ensure_schema(sc, coord, &coord_streak) &&
			   hold_scanner_lease(sc, coord, &coord_streak);
		set_scanning(sc, scanning, was_scanning);
		if (scanning && fleet_sweep_done(sc, coord, err, sizeof(err)) != 0)
			detector_streak_fail(&coord_streak, NULL, err, util_mono_ms(),
					     retry_delay(coord_streak.run.count + 1));
		if (util_mono_ms() >= next_report) {
			publish_reports(sc, coord);
			note_readiness(sc, coord, &disc_streak, &coord_streak);
			next_report = util_mono_ms() + READINESS_INTERVAL_MS;
		}
		wake = util_mono_ms() + TURN_MS;
		if (next_report < wake)
			wake = next_report;
		if (next_discovery < wake)
			wake = next_discovery;
		/* While the coordination database fails, come back on its retry schedule:
		 * prompt recovery whatever the intervals are. */
		if (coord_streak.run.count > 0) {
			int64_t retry = util_mono_ms() + retry_delay(coord_streak.run.count);
			if (retry < wake)
				wake = retry;
		}
		ts = util_timespec(wake);
		pthread_mutex_lock(&sc->lock);
		if (!sc->stopping)
			pthread_cond_timedwait(&sc->wake, &sc->lock, &ts);
	}
	pthread_mutex_unlock(&sc->lock);
	/* The detectors first (cut, joined), so nothing is written after the release. */
	for (size_t i = 0; i < sc->nservers; i++)
		detector_stop(sc->servers[i].d);
	/* Hand the scanner role over now rather than after a TTL. */
	if (sc->scanning) {
		char err[256];
		coord_release(coord, cfg, &sc->lease, err, sizeof(err));
	}
out:
	for (size_t i = 0; i < sc->nservers; i++)
		free(sc->servers[i].key);
	free(sc->servers);
	wiki_list_free(&sc->wikis);
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
	/* Wake the loop: the detectors get the new settings now, not after the old wait. */
	pthread_mutex_lock(&sc->lock);
	pthread_cond_broadcast(&sc->wake);
	pthread_mutex_unlock(&sc->lock);
}
