/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "db.h"
#include "discovery.h"
#include "drain.h"
#include "limiter.h"
#include "log.h"
#include "runjobs.h"
#include "scan.h"
#include "publish.h"
#include "scanner.h"
#include "sched.h"
#include "steer.h"
#include "util.h"
#include "wikistate.h"

/* The one rule both status views share (wikistate.h). */
static const char *state_of(const struct coord_wiki_status *w)
{
	struct wikistate_facts f = {
		.scan_error = w->scan_error,
		.paused = w->paused,
		.holder = w->holder,
		.backoff_s = w->backoff_s,
		.failures = w->failures,
		.last_outcome = w->last_outcome,
		.parked = w->parked,
		.oldest_ready_age_s = w->age_s,
	};

	return wikistate_name(wikistate_of(&f, NULL, 0));
}

/* The status view being printed. */
struct status_view {
	bool json, all;
	json_t *jwikis; /* with json */
	size_t shown;
};

/* One row of the status view (coord_fleet_status's order: the most urgent first). */
static void show_wiki(const struct coord_wiki_status *w, void *arg)
{
	struct status_view *view = arg;
	const char *state = state_of(w);
	char age[48], last[48], claim_age[48];

	/* Orphaned claims are trouble even on a wiki with nothing else to do. */
	if (!view->all && strcmp(state, "idle") == 0 && w->orphans <= 0)
		return;
	view->shown++;
	if (view->json) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:s?, s:s?, s:i, s:I, s:I, s:s?, s:I,"
				      " s:I}",
				      "wiki", w->domain, "state", state, "oldest_ready_age_s",
				      (json_int_t)w->age_s, "ready_types", w->ready_types, "holder",
				      w->holder ? w->holder : w->last_holder, "last_outcome",
				      w->last_outcome, "failures", w->failures, "backoff_s",
				      (json_int_t)(w->backoff_s > 0 ? w->backoff_s : 0),
				      "last_batch_s", (json_int_t)w->last_batch_s, "error",
				      w->scan_error, "orphaned_claims", (json_int_t)w->orphans,
				      "orphaned_claims_oldest_age_s", (json_int_t)w->orphan_age_s);
		json_array_append_new(view->jwikis, o);
		return;
	}
	util_duration_text(w->age_s, age, sizeof(age));
	util_duration_text(w->last_batch_s, last, sizeof(last));
	util_duration_text(w->orphan_age_s, claim_age, sizeof(claim_age));
	printf("%-28s %-10s %8s %-32s %-13s %4d %9s %8lld %9s\n", w->domain, state, age,
	       w->holder ? w->holder : (w->last_holder ? w->last_holder : "-"),
	       w->last_outcome ? w->last_outcome : "-", w->failures, last, w->orphans, claim_age);
}

/* A server row the scanner lease holder has not rewritten for three reports: it lost
 * the lease without a successor yet, or it hangs. */
static bool server_row_stale(const struct coord_server_row *s)
{
	return s->age_ms > COORD_SERVER_STALE_MS;
}

/* The feed column: its state's name, "-" without a feed. */
static const char *feed_text(int feed)
{
	const char *name = server_report_feed_name(feed);

	return feed < 0 ? "-" : (name ? name : "unknown");
}

/* The detection part of `status`: each database server as the scanner lease holder
 * last reported it, then a line for each thing that needs a look (down, a feed not
 * following, a report gone stale). */
static void print_detection(const struct coord_server_row *rows, size_t n)
{
	if (n == 0) {
		printf("detection: no database server reported (no scanner lease holder of "
		       "this release so far)\n\n");
		return;
	}
	printf("detection (per database server, as the scanner lease holder reports it):\n");
	printf("%-32s %6s %5s %10s %-5s %7s %7s %-10s %9s\n", "SERVER", "WIKIS", "HOT",
	       "UNREADABLE", "STATE", "SWEEP", "BUDGET", "FEED", "REPORTED");
	for (size_t i = 0; i < n; i++) {
		const struct server_report *r = &rows[i].report;
		char sweep[48], age[48];
		if (r->sweep_ms <= 0)
			snprintf(sweep, sizeof(sweep), "-");
		else if (r->sweep_ms < 60000)
			snprintf(sweep, sizeof(sweep), "%.1fs", (double)r->sweep_ms / 1000.0);
		else
			util_duration_text(r->sweep_ms / 1000, sweep, sizeof(sweep));
		util_duration_text(rows[i].age_ms / 1000, age, sizeof(age));
		printf("%-32s %6zu %5zu %10zu %-5s %7s %6.1f%% %-10s %5s ago\n", r->server,
		       r->wikis, r->hot, r->unreadable, r->down ? "down" : "up", sweep,
		       r->budget_used * 100.0, feed_text(r->feed), age);
	}
	for (size_t i = 0; i < n; i++) {
		const struct server_report *r = &rows[i].report;
		char age[48];
		if (r->down)
			printf("  %s: down: %s\n", r->server, r->down_why[0] ? r->down_why : "?");
		if (r->feed >= 0 && r->feed != SERVER_REPORT_FEED_FOLLOWING)
			printf("  %s: feed %s%s%s\n", r->server, feed_text(r->feed),
			       r->feed_why[0] ? ": " : "", r->feed_why);
		if (server_row_stale(&rows[i])) {
			util_duration_text(rows[i].age_ms / 1000, age, sizeof(age));
			printf("  %s: stale: no report for %s; its reporter %s stopped (the scanner "
			       "lease lost or the sidecar hung): this row may be out of date\n",
			       r->server, age, rows[i].reported_by);
		}
	}
	printf("\n");
}

static json_t *detection_json(const struct coord_server_row *rows, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++) {
		const struct server_report *r = &rows[i].report;
		json_t *o = json_pack(
			"{s:s, s:I, s:I, s:I, s:b, s:s?, s:o, s:f, s:s?, s:s?, s:s, s:f, s:b}",
			"server", r->server, "wikis", (json_int_t)r->wikis, "hot_wikis",
			(json_int_t)r->hot, "unreadable_wikis", (json_int_t)r->unreadable, "up",
			!r->down, "down_why", r->down && r->down_why[0] ? r->down_why : NULL,
			"sweep_period_s",
			r->sweep_ms > 0 ? json_real((double)r->sweep_ms / 1000.0) : json_null(),
			"db_budget_used_ratio", r->budget_used, "feed",
			r->feed < 0 ? NULL : feed_text(r->feed), "feed_why",
			r->feed >= 0 && r->feed_why[0] ? r->feed_why : NULL, "reported_by",
			rows[i].reported_by, "report_age_s", (double)rows[i].age_ms / 1000.0,
			"stale", server_row_stale(&rows[i]));
		json_array_append_new(arr, o);
	}
	return arr;
}

int cli_status(const struct config *cfg, bool json, bool all)
{
	struct db *db = db_new(&cfg->platform, "coordination");
	struct status_view view = { json, all, json ? json_array() : NULL, 0 };
	char err[512];
	struct coord_summary sum;
	struct coord_server_row *servers = NULL;
	size_t nservers = 0;
	int rc = CLI_FAILED;

	if (db == NULL)
		goto out;
	if (coord_summary(db, cfg, cfg->mw_version, &sum, err, sizeof(err)) != 0 ||
	    coord_read_server_reports(db, cfg, cfg->mw_version, &servers, &nservers, err,
				      sizeof(err)) != 0)
		goto fail;
	if (!json) {
		char scanned[64], age[48];
		util_duration_text(sum.scan_age_ms / 1000, age, sizeof(age));
		snprintf(scanned, sizeof(scanned), "scanned %s ago", age);
		printf("scope %s: %lld wikis, %lld with backlog, %lld backed off, %lld parked, "
		       "%lld unreadable, %lld orphaned claims; %s\n\n",
		       cfg->mw_version[0] ? cfg->mw_version : "(all versions)", sum.wikis,
		       sum.with_backlog, sum.backed_off, sum.parked, sum.unreadable,
		       sum.orphaned_claims, sum.scan_age_ms < 0 ? "never scanned so far" : scanned);
		print_detection(servers, nservers);
		steer_print_pauses(db, cfg);
		steer_print_abandoned(db, cfg);
		printf("%-28s %-10s %8s %-32s %-13s %4s %9s %8s %9s\n", "WIKI", "STATE", "OLDEST",
		       "HOLDER", "LAST", "FAIL", "LAST_RUN", "ORPHANED", "CLAIM_AGE");
	}
	if (coord_fleet_status(db, cfg, cfg->mw_version, show_wiki, &view, err, sizeof(err)) != 0)
		goto fail;
	if (json) {
		json_t *root = json_pack(
			"{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "scope",
			cfg->mw_version, "wikis", (json_int_t)sum.wikis, "with_backlog",
			(json_int_t)sum.with_backlog, "backed_off", (json_int_t)sum.backed_off,
			"parked", (json_int_t)sum.parked, "oldest_ready_age_s",
			(json_int_t)(sum.oldest_ready_age_ms < 0 ? -1
								 : sum.oldest_ready_age_ms / 1000),
			"unreadable", (json_int_t)sum.unreadable, "scan_age_s",
			(json_int_t)(sum.scan_age_ms < 0 ? -1 : sum.scan_age_ms / 1000),
			"orphaned_claims", (json_int_t)sum.orphaned_claims,
			"orphaned_claims_oldest_age_s",
			(json_int_t)(sum.oldest_claim_age_ms < 0 ? -1
								 : sum.oldest_claim_age_ms / 1000),
			"wikis_shown", view.jwikis);
		view.jwikis = NULL;
		json_object_set_new(root, "paused", steer_pauses_json(db, cfg));
		json_object_set_new(root, "abandoned", steer_abandoned_json(db, cfg));
		json_object_set_new(root, "detection", detection_json(servers, nservers));
		json_dumpf(root, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(root);
	} else if (view.shown == 0) {
		printf("(no wiki with a backlog, a failure or a lease; --all lists every wiki)\n");
	}
	rc = CLI_OK;
	goto out;
fail:
	fprintf(stderr, "jobdrainer status: %s\n", err);
out:
	json_decref(view.jwikis);
	free(servers);
	db_free(db);
	return rc;
}

/* Finds one wiki as discovery lists it (discovery_find): 0 (*out set, the caller
 * frees it), -ENOENT when discovery does not list it, -EIO, -ENOMEM; err says which. */
static int find_wiki(const struct config *cfg, struct db *platform, const char *domain,
		     struct wiki **out, char *err, size_t errlen)
{
	struct discovery *disc = discovery_new(cfg);
	int rc;

	*out = NULL;
	if (disc == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = discovery_find(disc, platform, domain, out, err, errlen);
	discovery_free(disc);
	return rc;
}

/* SIGINT/SIGTERM during `drain`, handled as the daemon handles them: blocked in every
 * thread and taken by one with sigwait. The first stops every lane after its batch in
 * flight (sched_stop: the leases are released as usual), a second cuts the batches
 * short (drain_abort, which each lane's RunJobs client watches). */
static atomic_bool drain_abort;

struct drain_signals {
	pthread_t thread;
	bool started;
	atomic_bool done; /* the lanes have finished: the thread leaves */
	struct sched *s;
	struct limiter *lim;
	sigset_t set;
};

static void *drain_signal_main(void *arg)
{
	struct drain_signals *ds = arg;
	struct timespec tick = { 0, 200 * 1000000L };
	int stops = 0;

	while (!atomic_load(&ds->done)) {
		int sig = sigtimedwait(&ds->set, NULL, &tick);
		if (sig != SIGINT && sig != SIGTERM)
			continue; /* the tick: look at done again */
		if (stops++ == 0) {
			fprintf(stderr, "jobdrainer drain: stopping after the batches in flight "
					"(again to cut them short)\n");
			sched_stop(ds->s);
			limiter_stop(ds->lim);
		} else {
			atomic_store(&drain_abort, true);
		}
	}
	return NULL;
}

/* Blocks the signals in this thread (so in the lanes it starts) and starts the one
 * that takes them. */
static void drain_signals_start(struct drain_signals *ds, struct sched *s, struct limiter *lim)
{
	memset(ds, 0, sizeof(*ds));
	ds->s = s;
	ds->lim = lim;
	sigemptyset(&ds->set);
	sigaddset(&ds->set, SIGINT);
	sigaddset(&ds->set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ds->set, NULL);
	ds->started = pthread_create(&ds->thread, NULL, drain_signal_main, ds) == 0;
}

static void drain_signals_stop(struct drain_signals *ds)
{
	atomic_store(&ds->done, true);
	if (ds->started)
		pthread_join(ds->thread, NULL);
}

/* One lane of `drain --wiki`: a lease slot of the wiki, its own coordination
 * connection, RunJobs client and ticket; the lanes share the pod's limiter. */
struct drain_lane {
	const struct config *_Atomic cfg;
	struct sched *s;
	struct limiter *lim;
	struct wiki *wiki;
	int slot;
	int lanes; /* how many the operator asked for: the lanes' cap */
	pthread_t thread;
	bool started;
	int rc;
	int jobs_ok, jobs_failed;
};

/* "lane N: " before a line when there are several lanes, else "". */
static const char *lane_prefix(const struct drain_lane *ln, char *buf, size_t len)
{
	if (ln->lanes <= 1)
		buf[0] = '\0';
	else
		snprintf(buf, len, "lane %d: ", ln->slot + 1);
	return buf;
}

/* drain.h's hook: every batch, as it ends. */
static void print_batch(void *arg, const struct sched_ticket *t, const struct batch_result *r,
			const struct health_verdict *v, bool more)
{
	char pfx[32];

	(void)more;
	printf("%sbatch %d:%s%s outcome=%s reached=%s jobs_ok=%d jobs_failed=%d http_status=%ld "
	       "ms=%lld maxjobs=%d%s%s%s%s\n",
	       lane_prefix(arg, pfx, sizeof(pfx)), t->batches, r->type[0] ? " type=" : "", r->type,
	       outcome_name(r->outcome), r->reached[0] ? r->reached : "-", r->jobs_ok,
	       r->jobs_failed, r->http_status, r->took_ms, t->maxjobs,
	       r->detail[0] ? " detail=" : "", r->detail, v->fault != FAULT_NONE ? " why=" : "",
	       v->fault != FAULT_NONE ? v->why : "");
	fflush(stdout);
}

/* The daemon's drain loop (drain.h) on one wiki, in the foreground, without the fleet's
 * rules: the operator asked for this wiki. Prints each batch and how the drain ended. */
static int drain_leased(struct drain_lane *ln, struct sched_worker *sw, struct runjobs *rj,
			struct sched_ticket *t)
{
	struct drain_params p = {
		.cfg = &ln->cfg,
		.sw = sw,
		.rj = rj,
		.lim = ln->lim,
		.fleet = false,
		.batch_done = print_batch,
		.arg = ln,
	};
	struct drain_result d;
	char pfx[32];
	bool skipped;

	lane_prefix(ln, pfx, sizeof(pfx));
	t->lanes_cap = ln->lanes;
	drain_wiki(&p, t, &d);
	ln->jobs_ok = d.jobs_ok;
	ln->jobs_failed = d.jobs_failed;
	skipped = t->batches == 0 && d.last.outcome == OUTCOME_DRAINED;
	if (skipped)
		printf("%s%s: only job types of [drain] skip_types are ready\n", pfx,
		       t->wiki->domain);
	else if (t->batches == 0 && !d.stopped)
		printf("%s%s: lease lost or unconfirmed; stopping\n", pfx, t->wiki->domain);
	printf("%s%s: %d batches, %d jobs ok, %d failed, %.1f s, last outcome %s%s%s\n", pfx,
	       t->wiki->domain, t->batches, d.jobs_ok, d.jobs_failed, (double)d.ms / 1000.0,
	       outcome_name(d.last.outcome),
	       d.last.outcome == OUTCOME_DRAINED ? " (queue drained)" : "",
	       d.stopped ? " (interrupted; lease released)" : "");
	if (d.backoff_ms > 0)
		printf("%s%s: backed off for %llds\n", pfx, t->wiki->domain,
		       (long long)(d.backoff_ms + 999) / 1000);
	if (d.stopped || skipped)
		return CLI_OK;
	return (d.last.outcome == OUTCOME_DRAINED || d.last.outcome == OUTCOME_MORE) &&
			       d.verdict.fault == FAULT_NONE
		       ? CLI_OK
		       : CLI_FAILED;
}

/* Takes the lane's lease slot: 1 taken (t filled), or ln->rc says why not (said). */
static int drain_lane_take(struct drain_lane *ln, struct sched_worker *sw, struct sched_ticket *t)
{
	char err[512], pfx[32];

	lane_prefix(ln, pfx, sizeof(pfx));
	switch (sched_take(sw, ln->wiki, ln->slot, t, err, sizeof(err))) {
	case 1:
		printf("%s%s: lease taken (slot %d, token %llu) as %s\n", pfx, ln->wiki->domain,
		       ln->slot, (unsigned long long)t->lease.token, ln->cfg->holder);
		fflush(stdout);
		return 1;
	case 0:
		if (ln->slot == 0)
			snprintf(err, sizeof(err),
				 "another sidecar holds its lease; try again later");
		else
			snprintf(err, sizeof(err), "another sidecar holds lease slot %d", ln->slot);
		ln->rc = CLI_BUSY;
		break;
	default:
		ln->rc = CLI_FAILED;
		break;
	}
	fprintf(stderr, "jobdrainer drain: %s%s: %s\n", pfx, ln->wiki->domain, err);
	return 0;
}

/* One lane from start to end: ln->rc says how it went. */
static void drain_lane_run(struct drain_lane *ln, void (*once_taken)(struct drain_lane *))
{
	struct sched_worker *sw = sched_worker_new(ln->s, ln->slot);
	struct runjobs *rj = runjobs_new(ln->cfg, &drain_abort);
	struct sched_ticket t;

	ln->rc = CLI_FAILED;
	if (sw == NULL || rj == NULL)
		fprintf(stderr, "jobdrainer drain: %s: out of memory\n", ln->wiki->domain);
	else if (drain_lane_take(ln, sw, &t) == 1) {
		if (once_taken != NULL)
			once_taken(ln);
		ln->rc = drain_leased(ln, sw, rj, &t);
	}
	runjobs_free(rj);
	sched_worker_free(sw);
}

static void *drain_lane_main(void *arg)
{
	db_thread_init();
	drain_lane_run(arg, NULL);
	db_thread_end();
	return NULL;
}

/* Once lane 1 holds slot 0: the other lanes, each in a thread of its own. */
static void start_other_lanes(struct drain_lane *first)
{
	for (int i = 1; i < first->lanes; i++) {
		first[i].started =
			pthread_create(&first[i].thread, NULL, drain_lane_main, &first[i]) == 0;
		if (!first[i].started)
			fprintf(stderr, "jobdrainer drain: lane %d: could not start a thread\n",
				i + 1);
	}
}

/* Lane 1 takes slot 0 in this thread first: a busy slot 0 means another sidecar drains
 * the wiki, and then no lane starts. Then the others start, each under its own slot;
 * one that cannot take its slot (a daemon's extra lane holds it) says so and leaves
 * the rest running. */
static int drain_lanes(const struct config *cfg, struct sched *s, struct limiter *lim,
		       struct wiki *w, int lanes)
{
	struct drain_lane *ln = calloc((size_t)lanes, sizeof(*ln));
	struct drain_signals ds;
	int ok = 0, failed = 0, rc;

	if (ln == NULL) {
		fprintf(stderr, "jobdrainer drain: %s: out of memory\n", w->domain);
		return CLI_FAILED;
	}
	for (int i = 0; i < lanes; i++)
		ln[i] = (struct drain_lane){
			.cfg = cfg, .s = s, .lim = lim, .wiki = w, .slot = i, .lanes = lanes
		};
	drain_signals_start(&ds, s, lim);
	drain_lane_run(&ln[0], start_other_lanes);
	rc = ln[0].rc;
	for (int i = 0; i < lanes; i++) {
		if (i > 0 && ln[i].started) {
			pthread_join(ln[i].thread, NULL);
			if (rc == CLI_OK && ln[i].rc == CLI_FAILED)
				rc = CLI_FAILED;
		}
		ok += ln[i].jobs_ok;
		failed += ln[i].jobs_failed;
	}
	if (lanes > 1)
		printf("%s: %d lanes, %d jobs ok, %d failed\n", w->domain, lanes, ok, failed);
	drain_signals_stop(&ds);
	free(ln);
	return rc;
}

int cli_drain(const struct config *cfg, const char *domain, int lanes)
{
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct db *coord = db_new(&cfg->platform, "coordination");
	struct db *scan = NULL; /* at the wiki's own server: after find_wiki */
	struct scan_endpoint scan_ep;
	struct limiter *lim = limiter_new(cfg);
	struct sched *s = sched_new(cfg);
	struct backlog backlog = { 0 };
	struct scan_stats stats;
	struct wiki *w = NULL;
	char err[512], started[32];
	int rc = CLI_FAILED;

	if (platform == NULL || coord == NULL || lim == NULL || s == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	switch (find_wiki(cfg, platform, domain, &w, err, sizeof(err))) {
	case 0:
		break;
	case -ENOENT:
		rc = CLI_NOT_FOUND;
		goto fail;
	default:
		goto fail;
	}
	if (scan_endpoint_for(cfg, w->db_server, &scan_ep) != 0) {
		/* Discovery refuses such rows first: only a rule changed in one place. */
		snprintf(err, sizeof(err), "database server '%s' is not host[:port] or not allowed",
			 w->db_server);
		goto fail;
	}
	if ((scan = db_new(&scan_ep.ep, scan_ep.name)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	/* A fresh look at its queue, written for the fleet like a scan would. */
	if (coord_ensure_schema(coord, cfg, err, sizeof(err)) != 0 ||
	    coord_now(coord, started, err, sizeof(err)) != 0 ||
	    publish_scan(scan, coord, cfg, &w, 1, 1, SCAN_FULL, started, &backlog, &stats, err,
			 sizeof(err)) != 0)
		goto fail;
	if (backlog.failed) {
		snprintf(err, sizeof(err), "cannot read its job table: %s", backlog.error);
		goto fail;
	}
	printf("%s: %s\n", domain,
	       backlog.oldest_ready_ms ? "has ready jobs" : "no ready jobs found by the scan");
	fflush(stdout);
	rc = drain_lanes(cfg, s, lim, w, lanes);
	goto out;
fail:
	fprintf(stderr, "jobdrainer drain: %s: %s\n", domain, err);
out:
	wiki_free(w);
	sched_free(s);
	limiter_free(lim);
	db_free(scan);
	db_free(coord);
	db_free(platform);
	return rc;
}
