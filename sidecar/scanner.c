/* scanner.c - see scanner.h. One thread, two connections: the platform database for
 * discovery and the scan endpoint ([scan_db], possibly a replica) for job tables. */
#include "scanner.h"

#include <errno.h>
#include <mysql.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "discovery.h"
#include "log.h"
#include "scan.h"
#include "util.h"

/* While a failure persists, repeat its log line at most this often. */
#define REPEAT_FAILURE_LOG_MS 60000

struct scanner {
	const struct config *cfg;
	struct sched *sched;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
};

/* A run of failures of one kind: logged when it starts, then once a minute, and when
 * it ends. */
struct failure_streak {
	const char *what;
	int count;
	int64_t last_logged;
};

static void streak_fail(struct failure_streak *s, const char *err, int64_t retry_ms)
{
	int64_t now = util_mono_ms();
	struct log_line l;
	char next[48];

	s->count++;
	if (s->count > 1 && now - s->last_logged < REPEAT_FAILURE_LOG_MS)
		return;
	s->last_logged = now;
	snprintf(next, sizeof(next), "retrying in %llds", (long long)(retry_ms + 999) / 1000);
	log_begin(&l, LOG_ERROR, s->what);
	log_str(&l, "error", err);
	log_int(&l, "failures", s->count);
	log_str(&l, "next", next);
	log_end(&l);
}

static void streak_ok(struct failure_streak *s)
{
	struct log_line l;

	if (s->count == 0)
		return;
	log_begin(&l, LOG_INFO, "recovered");
	log_str(&l, "after", s->what);
	log_int(&l, "failures", s->count);
	log_end(&l);
	s->count = 0;
}

static int64_t retry_delay(const struct config *cfg, int failures)
{
	int64_t d = (int64_t)cfg->backoff_base * 1000;

	for (int i = 1; i < failures && d < (int64_t)cfg->backoff_max * 1000; i++)
		d *= 2;
	if (d > (int64_t)cfg->backoff_max * 1000)
		d = (int64_t)cfg->backoff_max * 1000;
	return d;
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

/* Returns when the next discovery is due (monotonic ms). */
static int64_t run_discovery(struct scanner *sc, struct discovery *disc, struct db *db,
			     struct failure_streak *streak, size_t *nwikis)
{
	struct wiki_list list = { 0 };
	char err[512];
	size_t before = *nwikis;
	bool first = streak->count == 0 && *nwikis == 0;

	if (discovery_run(disc, db, &list, err, sizeof(err)) != 0) {
		int64_t delay = retry_delay(sc->cfg, streak->count + 1);
		streak_fail(streak, err, delay);
		return util_mono_ms() + delay;
	}
	streak_ok(streak);
	*nwikis = list.len;
	if (sched_set_wikis(sc->sched, &list) != 0) {
		wiki_list_free(&list);
		log_msg(LOG_ERROR, "discovery: out of memory; keeping the previous wiki list");
	}
	log_discovery(before, *nwikis, first);
	return util_mono_ms() + (int64_t)sc->cfg->discovery_interval * 1000;
}

static void run_scan(struct scanner *sc, struct db *db, struct failure_streak *streak)
{
	struct wiki_list wikis = { 0 };
	struct backlog *backlog;
	struct scan_stats stats;
	struct log_line l;
	uint64_t generation;
	int64_t started = util_wall_ms();
	char err[512];
	size_t with_backlog = 0;

	if (sched_snapshot(sc->sched, &wikis, &generation) != 0 || wikis.len == 0) {
		wiki_list_free(&wikis);
		return;
	}
	backlog = calloc(wikis.len, sizeof(*backlog));
	if (backlog == NULL) {
		wiki_list_free(&wikis);
		return;
	}
	if (scan_run(db, wikis.items, wikis.len, sc->cfg->scan_wikis_per_query, backlog, &stats,
		     err, sizeof(err)) != 0) {
		streak_fail(streak, err, (int64_t)sc->cfg->scan_interval * 1000);
	} else {
		streak_ok(streak);
		sched_set_backlog(sc->sched, generation, backlog, wikis.len, started);
		for (size_t i = 0; i < wikis.len; i++)
			with_backlog += backlog[i].oldest_ready_ms != 0;
		log_begin(&l, LOG_DEBUG, "scan");
		log_int(&l, "wikis", (long long)wikis.len);
		log_int(&l, "with_backlog", (long long)with_backlog);
		log_int(&l, "queries", stats.queries);
		log_int(&l, "ms", stats.took_ms);
		log_end(&l);
	}
	free(backlog);
	wiki_list_free(&wikis);
}

static void *scanner_main(void *arg)
{
	struct scanner *sc = arg;
	const struct config *cfg = sc->cfg;
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct db *scan = db_new(&cfg->scan, "scan_db");
	struct discovery *disc = discovery_new(cfg);
	struct failure_streak disc_streak = { "discovery failed", 0, 0 };
	struct failure_streak scan_streak = { "scan failed", 0, 0 };
	int64_t next_discovery = 0;
	size_t nwikis = 0;

	mysql_thread_init();
	if (platform == NULL || scan == NULL || disc == NULL) {
		log_msg(LOG_ERROR, "scanner: out of memory; no discovery or scans will run");
		goto out;
	}
	pthread_mutex_lock(&sc->lock);
	while (!sc->stopping) {
		int64_t wake;
		struct timespec ts;

		pthread_mutex_unlock(&sc->lock);
		if (util_mono_ms() >= next_discovery)
			next_discovery = run_discovery(sc, disc, platform, &disc_streak, &nwikis);
		run_scan(sc, scan, &scan_streak);
		wake = util_mono_ms() + (int64_t)cfg->scan_interval * 1000;
		if (next_discovery < wake)
			wake = next_discovery;
		ts.tv_sec = (time_t)(wake / 1000);
		ts.tv_nsec = (long)(wake % 1000) * 1000000;
		pthread_mutex_lock(&sc->lock);
		if (!sc->stopping)
			pthread_cond_timedwait(&sc->wake, &sc->lock, &ts);
	}
	pthread_mutex_unlock(&sc->lock);
out:
	discovery_free(disc);
	db_free(scan);
	db_free(platform);
	mysql_thread_end();
	return NULL;
}

struct scanner *scanner_start(const struct config *cfg, struct sched *s)
{
	struct scanner *sc = calloc(1, sizeof(*sc));
	pthread_condattr_t attr;

	if (sc == NULL)
		return NULL;
	sc->cfg = cfg;
	sc->sched = s;
	pthread_mutex_init(&sc->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sc->wake, &attr);
	pthread_condattr_destroy(&attr);
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
