/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "db.h"
#include "discovery.h"
#include "limiter.h"
#include "jobtype.h"
#include "log.h"
#include "runjobs.h"
#include "scan.h"
#include "scanner.h"
#include "sched.h"
#include "steer.h"
#include "util.h"

static const char *state_of(const struct coord_wiki_status *w)
{
	if (w->scan_error != NULL)
		return "unreadable";
	if (w->lease_s > 0)
		return "draining";
	if (w->backoff_s > 0)
		return "backoff";
	if (w->parked)
		return "parked";
	if (w->age_s >= 0)
		return "waiting";
	return "idle";
}

static void age_text(long long s, char *out, size_t len)
{
	if (s < 0)
		snprintf(out, len, "-");
	else if (s < 120)
		snprintf(out, len, "%llds", s);
	else if (s < 7200)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
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
	age_text(w->age_s, age, sizeof(age));
	age_text(w->last_batch_s, last, sizeof(last));
	age_text(w->orphan_age_s, claim_age, sizeof(claim_age));
	printf("%-28s %-10s %8s %-32s %-13s %4d %9s %8lld %9s\n", w->domain, state, age,
	       w->holder ? w->holder : (w->last_holder ? w->last_holder : "-"),
	       w->last_outcome ? w->last_outcome : "-", w->failures, last, w->orphans, claim_age);
}

int cli_status(const struct config *cfg, bool json, bool all)
{
	struct db *db = db_new(&cfg->platform, "coordination");
	struct status_view view = { json, all, json ? json_array() : NULL, 0 };
	char err[512];
	struct coord_summary sum;
	int rc = CLI_FAILED;

	if (db == NULL)
		goto out;
	if (coord_summary(db, cfg, cfg->mw_version, &sum, err, sizeof(err)) != 0)
		goto fail;
	if (!json) {
		char scanned[48];
		age_text(sum.scan_age_ms < 0 ? -1 : sum.scan_age_ms / 1000, scanned,
			 sizeof(scanned));
		printf("scope %s: %lld wikis, %lld with backlog, %lld backed off, %lld parked, "
		       "%lld unreadable, %lld orphaned claims; scanned %s ago\n\n",
		       cfg->mw_version[0] ? cfg->mw_version : "(all versions)", sum.wikis,
		       sum.with_backlog, sum.backed_off, sum.parked, sum.unreadable,
		       sum.orphaned_claims, sum.scan_age_ms < 0 ? "never, so far" : scanned);
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
	db_free(db);
	return rc;
}

/* Finds one wiki through discovery: 0 (*out set, the caller frees it), -ENOENT when
 * discovery does not list it, -EIO when discovery failed, -ENOMEM; err says which. */
static int find_wiki(const struct config *cfg, struct db *platform, const char *domain,
		     struct wiki **out, char *err, size_t errlen)
{
	struct discovery *disc = discovery_new(cfg);
	struct wiki_list list = { 0 };
	int rc = -ENOENT;

	*out = NULL;
	if (disc == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (discovery_run(disc, platform, &list, err, errlen) != 0) {
		discovery_free(disc);
		return -EIO;
	}
	for (size_t i = 0; i < list.len && rc == -ENOENT; i++) {
		if (strcmp(list.items[i]->domain, domain) != 0)
			continue;
		*out = wiki_dup(list.items[i]);
		rc = *out != NULL ? 0 : -ENOMEM;
	}
	if (rc == -ENOENT)
		snprintf(err, errlen,
			 "discovery does not list %s (unknown, deleted, bad row, or "
			 "another MediaWiki version)",
			 domain);
	else if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	wiki_list_free(&list);
	discovery_free(disc);
	return rc;
}

/* SIGINT/SIGTERM during `drain`: the first stops after the batch in flight (the lease
 * is released as usual), a second cuts the batch short. */
static atomic_bool drain_stop, drain_abort;

static void on_drain_signal(int sig)
{
	(void)sig;
	if (atomic_load(&drain_stop))
		atomic_store(&drain_abort, true);
	atomic_store(&drain_stop, true);
}

static void catch_drain_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_drain_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void print_batch(int n, const struct batch_result *r, const struct health_verdict *v)
{
	printf("batch %d:%s%s outcome=%s reached=%s jobs_ok=%d jobs_failed=%d http_status=%ld "
	       "ms=%lld%s%s%s%s\n",
	       n, r->type[0] ? " type=" : "", r->type, outcome_name(r->outcome),
	       r->reached[0] ? r->reached : "-", r->jobs_ok, r->jobs_failed, r->http_status,
	       r->took_ms, r->detail[0] ? " detail=" : "", r->detail,
	       v->fault != FAULT_NONE ? " why=" : "", v->fault != FAULT_NONE ? v->why : "");
	fflush(stdout);
}

/* The same batch loop as a daemon worker (pacing, a lease confirmed right before each
 * batch, the evidence rules, the report policy), on one wiki, in the foreground. */
static int drain_leased(const struct config *cfg, struct sched_worker *sw, struct limiter *lim,
			struct runjobs *rj, struct sched_ticket *t)
{
	struct health_verdict v = { .fault = FAULT_NONE };
	struct batch_result r = { .outcome = OUTCOME_ABORTED };
	int ok = 0, failed = 0;
	int64_t t0 = util_mono_ms(), backoff = 0;
	bool more = true, interrupted = false, next_type;
	char type[JOBTYPE_MAX + 1];

	while (more) {
		if (atomic_load(&drain_stop) || limiter_pace(lim) != 0 || atomic_load(&drain_stop)) {
			interrupted = true;
			break;
		}
		if (!sched_confirm(sw, t)) {
			printf("%s: lease lost or unconfirmed; stopping\n", t->wiki->domain);
			break;
		}
		/* The job-type lists hold here too ([drain] priority_types, skip_types). */
		if (!sched_batch_type(sw, t, type, sizeof(type))) {
			sched_only_skipped_types(t, &r);
			printf("%s: only job types of [drain] skip_types are ready\n",
			       t->wiki->domain);
			break;
		}
		/* The workers' batch size rule (sched_batch_size). This process serves no
		 * other wiki, so none waits on it, whatever the fleet's rows say: a backlog's
		 * batches grow to [mediawiki] maxjobs_alone while they stay quick. */
		runjobs_set_maxjobs(rj, sched_batch_size(cfg, t, false));
		runjobs_batch_typed(rj, t->wiki, (unsigned long long)t->lease.token, type, &r);
		next_type = sched_type_answered(t, cfg, &r);
		sched_batch_ran(t, &r);
		ok += r.jobs_ok;
		failed += r.jobs_failed;
		limiter_report(lim, &r, t->wiki->domain, false, &v);
		print_batch(t->batches, &r, &v);
		/* The workers' rule, without the time slice: the operator asked for this wiki. */
		more = sched_keep_draining(t, &r, &v, limiter_breaker_open(lim)) ||
		       (next_type && !limiter_breaker_open(lim));
		/* The wiki's interval in short steps: a signal handler cannot wake sched_hold. */
		for (int64_t left = cfg->wiki_min_interval_ms; more && left > 0; left -= 200)
			more = !atomic_load(&drain_stop) &&
			       sched_hold(sw, t, left < 200 ? left : 200);
	}
	if (atomic_load(&drain_stop))
		interrupted = true;
	sched_done(sw, t, &r, t->batches > 0 ? v.fault : FAULT_NONE, &backoff);
	printf("%s: %d batches, %d jobs ok, %d failed, %.1f s, last outcome %s%s%s\n",
	       t->wiki->domain, t->batches, ok, failed, (double)(util_mono_ms() - t0) / 1000.0,
	       outcome_name(r.outcome), r.outcome == OUTCOME_DRAINED ? " (queue drained)" : "",
	       interrupted ? " (interrupted; lease released)" : "");
	if (backoff > 0)
		printf("%s: backed off for %llds\n", t->wiki->domain,
		       (long long)(backoff + 999) / 1000);
	if (interrupted)
		return CLI_OK;
	return (r.outcome == OUTCOME_DRAINED || r.outcome == OUTCOME_MORE) && v.fault == FAULT_NONE
		       ? CLI_OK
		       : CLI_FAILED;
}

int cli_drain(const struct config *cfg, const char *domain)
{
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct db *coord = db_new(&cfg->platform, "coordination");
	struct db *scan = NULL; /* at the wiki's own server: after find_wiki */
	struct scan_endpoint scan_ep;
	struct runjobs *rj = runjobs_new(cfg, &drain_abort);
	struct limiter *lim = limiter_new(cfg);
	struct sched *s = sched_new(cfg);
	struct sched_worker *sw = s ? sched_worker_new(s, 0) : NULL;
	struct sched_ticket t;
	struct backlog backlog = { 0 };
	struct scan_stats stats;
	struct wiki *w = NULL;
	char err[512], started[32];
	int rc = CLI_FAILED;

	catch_drain_signals();
	if (platform == NULL || coord == NULL || rj == NULL || lim == NULL || sw == NULL) {
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
	    scanner_scan_publish(scan, coord, cfg, &w, 1, 1, SCAN_FULL, started, &backlog, &stats,
				 err, sizeof(err)) != 0)
		goto fail;
	if (backlog.failed) {
		snprintf(err, sizeof(err), "cannot read its job table: %s", backlog.error);
		goto fail;
	}
	printf("%s: %s\n", domain,
	       backlog.oldest_ready_ms ? "has ready jobs" : "no ready jobs found by the scan");
	switch (sched_take(sw, w, &t, err, sizeof(err))) {
	case 1:
		break;
	case 0:
		snprintf(err, sizeof(err), "another sidecar holds its lease; try again later");
		rc = CLI_BUSY;
		goto fail;
	default:
		goto fail;
	}
	printf("%s: lease taken (token %llu) as %s\n", domain, (unsigned long long)t.lease.token,
	       cfg->holder);
	fflush(stdout);
	rc = drain_leased(cfg, sw, lim, rj, &t);
	goto out;
fail:
	fprintf(stderr, "jobdrainer drain: %s: %s\n", domain, err);
out:
	wiki_free(w);
	sched_worker_free(sw);
	sched_free(s);
	limiter_free(lim);
	runjobs_free(rj);
	db_free(scan);
	db_free(coord);
	db_free(platform);
	return rc;
}
