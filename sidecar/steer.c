/* steer.c - see steer.h.
 *
 * A pause is a row in jd_pause, not a message to the pods: pods that are down, or
 * start later, honour it just the same, and it survives every restart. A pause with
 * --for ends by itself (the row's until_at passes; nobody has to act). */
#include "steer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "discovery.h"
#include "exitcode.h"
#include "lanes.h"
#include "mwmaint.h"
#include "scan.h"
#include "util.h"
#include "wikistate.h"

/* Who paused: the operator's user name and where the command ran (the pod). */
static void operator_name(char *out, size_t len)
{
	const char *user = getenv("USER"), *host = getenv("POD_NAME");
	char hostbuf[256], uid[32];

	if (user == NULL || *user == '\0')
		user = getenv("LOGNAME");
	if (user == NULL || *user == '\0') {
		snprintf(uid, sizeof(uid), "uid%u", (unsigned)getuid());
		user = uid;
	}
	if (host == NULL || *host == '\0')
		host = getenv("HOSTNAME");
	if (host == NULL || *host == '\0') {
		if (gethostname(hostbuf, sizeof(hostbuf)) != 0)
			snprintf(hostbuf, sizeof(hostbuf), "unknown");
		hostbuf[sizeof(hostbuf) - 1] = '\0';
		host = hostbuf;
	}
	snprintf(out, len, "%s@%s", user, host);
}

/* The coordination database, with its schema (pause may be the first command run
 * against a new fleet). NULL on failure, reported. */
static struct db *open_coord(const struct config *cfg, const char *cmd)
{
	struct db *db = db_new(&cfg->platform, "coordination");
	char err[512];

	if (db == NULL) {
		fprintf(stderr, "jobdrainer %s: out of memory\n", cmd);
		return NULL;
	}
	if (coord_ensure_schema(db, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer %s: coordination database: %s\n", cmd, err);
		db_free(db);
		return NULL;
	}
	return db;
}

/* The wiki as discovery lists it (discovery_find: byte for byte), for a command about
 * it: CLI_OK with *out set (the caller frees it), CLI_NOT_FOUND when discovery does not
 * list it, CLI_FAILED when discovery failed; err says why. */
static int find_listed(const struct config *cfg, const char *domain, struct wiki **out, char *err,
		       size_t errlen)
{
	struct db *platform = db_new(&cfg->platform, "platform_db");
	struct discovery *disc = discovery_new(cfg);
	int rc = -ENOMEM;

	*out = NULL;
	if (platform != NULL && disc != NULL)
		rc = discovery_find(disc, platform, domain, out, err, errlen);
	else
		snprintf(err, errlen, "out of memory");
	discovery_free(disc);
	db_free(platform);
	return rc == 0 ? CLI_OK : rc == -ENOENT ? CLI_NOT_FOUND : CLI_FAILED;
}

static void print_pause(const struct coord_pause *p)
{
	char until[96], left[48];

	if (p->until[0]) {
		util_duration_text(p->remaining_s, left, sizeof(left));
		snprintf(until, sizeof(until), "until %s (in %s)", p->until, left);
	} else {
		snprintf(until, sizeof(until), "until resumed");
	}
	printf("  %-28s by %s, since %s, %s\n",
	       strcmp(p->domain, COORD_ALL_WIKIS) == 0 ? "(every wiki)" : p->domain, p->by,
	       p->since, until);
	if (p->reason[0])
		printf("  %-28s reason: %s\n", "", p->reason);
}

int steer_pause(const struct config *cfg, const char *domain, bool all, long long for_s,
		const char *reason)
{
	const char *name = all ? COORD_ALL_WIKIS : domain;
	struct coord_pause *p = NULL;
	struct wiki *w = NULL;
	struct db *db;
	char by[300], err[512];
	size_t n = 0;
	int rc = CLI_FAILED;

	if (!all && !util_is_domain(domain)) {
		fprintf(stderr, "jobdrainer pause: '%s' is not a wiki domain\n", domain);
		return CLI_USAGE;
	}
	if (reason != NULL && strlen(reason) > 255) {
		fprintf(stderr, "jobdrainer pause: --reason is longer than 255 bytes\n");
		return CLI_USAGE;
	}
	/* A pause under a name no sidecar drains (a typo, another case) would report
	 * success while the real wiki keeps draining. */
	if (!all && (rc = find_listed(cfg, domain, &w, err, sizeof(err))) != CLI_OK) {
		fprintf(stderr, "jobdrainer pause: %s\n", err);
		return rc;
	}
	wiki_free(w);
	rc = CLI_FAILED;
	db = open_coord(cfg, "pause");
	if (db == NULL)
		return CLI_FAILED;
	operator_name(by, sizeof(by));
	if (coord_pause_set(db, cfg, cfg->mw_version, name, by, reason ? reason : "", for_s, err,
			    sizeof(err)) != 0 ||
	    coord_pause_list(db, cfg, cfg->mw_version, all ? NULL : domain, &p, &n, err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer pause: %s\n", err);
		goto out;
	}
	printf("paused %s; every sidecar lets go of %s at its next batch\n",
	       all ? "every wiki of this scope" : domain, all ? "them" : "it");
	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].domain, name) == 0)
			print_pause(&p[i]);
	rc = CLI_OK;
out:
	free(p);
	db_free(db);
	return rc;
}

int steer_resume(const struct config *cfg, const char *domain, bool all)
{
	const char *name = all ? COORD_ALL_WIKIS : domain;
	struct coord_pause *p = NULL;
	struct wiki *w = NULL;
	struct db *db;
	char err[512], unlisted[512] = "";
	bool was = false;
	size_t n = 0;
	int rc = CLI_FAILED;

	if (!all) {
		rc = find_listed(cfg, domain, &w, unlisted, sizeof(unlisted));
		wiki_free(w);
		if (rc == CLI_FAILED) {
			fprintf(stderr, "jobdrainer resume: %s\n", unlisted);
			return rc;
		}
		if (rc == CLI_OK)
			unlisted[0] = '\0';
		rc = CLI_FAILED;
	}
	db = open_coord(cfg, "resume");
	if (db == NULL)
		return CLI_FAILED;
	if (coord_pause_clear(db, cfg, cfg->mw_version, name, &was, err, sizeof(err)) != 0 ||
	    coord_pause_list(db, cfg, cfg->mw_version, all ? NULL : domain, &p, &n, err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer resume: %s\n", err);
		goto out;
	}
	/* A pause outlives its wiki's listing (deleted, or moved to another version): its
	 * own row is lifted all the same; any other unlisted name is refused. */
	if (unlisted[0] && !was) {
		fprintf(stderr, "jobdrainer resume: %s\n", unlisted);
		rc = CLI_NOT_FOUND;
		goto out;
	}
	if (all)
		printf("%s\n", was ? "resumed: the pause of every wiki is lifted"
				   : "every wiki was not paused; nothing to lift");
	else
		printf("%s: %s%s\n", domain, was ? "resumed" : "was not paused on its own",
		       unlisted[0]
			       ? " (discovery does not list it: its pause is lifted all the same)"
			       : "");
	/* What still holds: the scope's pause over this wiki, or wikis paused one by one
	 * (resume --all lifts only the scope's pause: those were paused for a reason). */
	if (n > 0)
		printf("still paused:\n");
	for (size_t i = 0; i < n; i++)
		print_pause(&p[i]);
	rc = CLI_OK;
out:
	free(p);
	db_free(db);
	return rc;
}

void steer_print_pauses(struct db *db, const struct config *cfg)
{
	struct coord_pause *p = NULL;
	char err[512];
	size_t n = 0;

	if (coord_pause_list(db, cfg, cfg->mw_version, NULL, &p, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer status: pauses cannot be read: %s\n", err);
		return;
	}
	if (n > 0)
		printf("paused (no batches until resumed or the time is up):\n");
	for (size_t i = 0; i < n; i++)
		print_pause(&p[i]);
	if (n > 0)
		printf("\n");
	free(p);
}

json_t *steer_pauses_json(struct db *db, const struct config *cfg)
{
	struct coord_pause *p = NULL;
	json_t *arr;
	char err[512];
	size_t n = 0;

	if (coord_pause_list(db, cfg, cfg->mw_version, NULL, &p, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer status: pauses cannot be read: %s\n", err);
		return NULL;
	}
	arr = json_array();
	for (size_t i = 0; arr != NULL && i < n; i++) {
		bool every = strcmp(p[i].domain, COORD_ALL_WIKIS) == 0;
		json_array_append_new(arr,
				      json_pack("{s:s?, s:b, s:s, s:s, s:s, s:s?, s:I}", "wiki",
						every ? NULL : p[i].domain, "all", every, "by",
						p[i].by, "reason", p[i].reason, "since", p[i].since,
						"until", p[i].until[0] ? p[i].until : NULL,
						"remaining_s", (json_int_t)p[i].remaining_s));
	}
	free(p);
	return arr;
}

/* ---- status --wiki ------------------------------------------------------------------ */

/* The wiki's state and why, from its books and pauses: the rule `status` uses too. */
static const char *wiki_state(const struct coord_wiki_detail *d, const struct coord_pause *p,
			      size_t np, char *why, size_t len)
{
	struct wikistate_facts f = {
		.scan_error = d->scan_error,
		.paused = np > 0,
		.paused_by = np > 0 ? p[0].by : NULL,
		.pause_reason = np > 0 ? p[0].reason : NULL,
		.holder = d->holder,
		.backoff_s = d->backoff_s,
		.failures = d->failures,
		.last_outcome = d->last_outcome,
		.parked = d->parked_s > 0,
		.oldest_ready_age_s = d->oldest_ready_age_s,
	};

	return wikistate_name(wikistate_of(&f, why, len));
}

static json_t *drains_json(const char *recent)
{
	json_t *arr = json_array();
	char copy[2048], *save = NULL;

	snprintf(copy, sizeof(copy), "%s", recent);
	for (char *e = strtok_r(copy, ";", &save); e != NULL && arr != NULL;
	     e = strtok_r(NULL, ";", &save)) {
		char at[32], holder[256], outcome[32];
		long long batches, jobs, ms;
		if (sscanf(e, "%31s %255s %31s %lld %lld %lld", at, holder, outcome, &batches,
			   &jobs, &ms) != 6)
			continue;
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "at", at,
						     "holder", holder, "outcome", outcome,
						     "batches", (json_int_t)batches, "jobs",
						     (json_int_t)jobs, "ms", (json_int_t)ms));
	}
	return arr;
}

static json_t *types_json(const struct scan_type_row *t, size_t n, int64_t now_ms)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n && arr != NULL; i++)
		json_array_append_new(
			arr, json_pack("{s:s, s:I, s:b, s:I, s:b, s:I, s:I}", "type", t[i].type,
				       "ready", (json_int_t)t[i].ready, "ready_at_least",
				       t[i].ready >= SCAN_VIEW_READY_CAP, "claimed",
				       (json_int_t)t[i].claimed, "claimed_at_least",
				       t[i].claimed >= SCAN_VIEW_CLAIMED_CAP, "abandoned",
				       (json_int_t)t[i].abandoned, "oldest_ready_age_s",
				       (json_int_t)(t[i].oldest_ready_ms
							    ? (now_ms - t[i].oldest_ready_ms) / 1000
							    : -1)));
	return arr;
}

/* "lanes: 2 in use of 4 allowed (elastic, max_workers_per_wiki = 4)", or with a
 * reduction, when it was made and when the next lane comes back. */
static void print_lanes(const struct config *cfg, const struct coord_wiki_detail *d)
{
	int cap = cfg->max_workers_per_wiki, allowed = lanes_allowed(cap, &d->lanes);
	enum lanes_why why = lanes_reason(cap, &d->lanes);
	char a[48], b[48];

	printf("  lanes: %d in use of %d allowed (%s, max_workers_per_wiki = %d)", d->lanes_held,
	       allowed, lanes_why_text(why), cap);
	if (why == LANES_LOCKS || why == LANES_REPLICA) {
		util_duration_text(d->lanes.since_change_ms / 1000, a, sizeof(a));
		util_duration_text((LANES_RECOVER_MS - d->lanes.since_change_ms % LANES_RECOVER_MS +
				    999) / 1000,
				   b, sizeof(b));
		printf("; reduced %s ago, one more in %s", a, b);
	}
	putchar('\n');
}

/* ---- requeueing abandoned jobs -------------------------------------------------------- */

/* The releases to spell manageJobs for: the one [discovery] version names, or, when it
 * names none, both forms (1.40 and later first). Returns how many (1 or 2). */
static int requeue_releases(const struct config *cfg, int out[2])
{
	out[0] = mwmaint_release(cfg->mw_version);
	if (out[0] >= 0)
		return 1;
	out[0] = MWMAINT_RUN_PHP_SINCE;
	out[1] = MWMAINT_RUN_PHP_SINCE - 1;
	return 2;
}

static const char *release_text(int release, int n)
{
	if (n == 1)
		return "";
	return release >= MWMAINT_RUN_PHP_SINCE ? "MediaWiki 1.40 and later: " : "MediaWiki 1.39: ";
}

/* Per type with abandoned rows: MediaWiki's command that pushes them again. */
static void print_requeue(const struct config *cfg, const struct wiki *w,
			  const struct scan_type_row *t, size_t nt)
{
	char id[200], cmd[512];
	int rel[2], nrel = requeue_releases(cfg, rel);
	bool any = false;

	mwmaint_wiki_id(w, id, sizeof(id));
	for (size_t i = 0; i < nt; i++) {
		if (t[i].abandoned <= 0)
			continue;
		if (!any)
			printf("\n  to run its abandoned jobs again (MediaWiki's manageJobs, in a MediaWiki "
			       "container of its release; once per type):\n");
		any = true;
		for (int r = 0; r < nrel; r++) {
			mwmaint_requeue(cmd, sizeof(cmd), rel[r], id, t[i].type);
			printf("    %s%s\n", release_text(rel[r], nrel), cmd);
		}
	}
	if (any)
		printf("  (--wiki is its wiki ID; where the settings pick the wiki by domain, as on "
		       "Wikibase Cloud, run it as env WBS_DOMAIN=%s php ... without --wiki; see "
		       "docs/operations.md)\n",
		       w->domain);
}

static json_t *requeue_json(const struct config *cfg, const struct wiki *w,
			    const struct scan_type_row *t, size_t nt)
{
	json_t *arr = json_array();
	char id[200], cmd[512];
	int rel[2], nrel = requeue_releases(cfg, rel);

	mwmaint_wiki_id(w, id, sizeof(id));
	for (size_t i = 0; i < nt && arr != NULL; i++) {
		json_t *cmds = json_array();
		if (t[i].abandoned <= 0 || cmds == NULL) {
			json_decref(cmds);
			continue;
		}
		for (int r = 0; r < nrel; r++) {
			mwmaint_requeue(cmd, sizeof(cmd), rel[r], id, t[i].type);
			json_array_append_new(cmds,
					      json_pack("{s:s, s:s}", "mediawiki",
							rel[r] >= MWMAINT_RUN_PHP_SINCE ? "1.40+"
											: "1.39",
							"command", cmd));
		}
		json_array_append_new(arr,
				      json_pack("{s:s, s:I, s:o}", "type", t[i].type, "abandoned",
						(json_int_t)t[i].abandoned, "commands", cmds));
	}
	return arr;
}

static void print_wiki_text(const struct config *cfg, const struct wiki *w, const char *state,
			    const char *why, const struct coord_wiki_detail *d,
			    const struct coord_pause *p, size_t np, const struct scan_type_row *t,
			    size_t nt, int64_t now_ms)
{
	char a[48], b[48];

	printf("%s: %s (%s)\n", w->domain, state, why);
	if (d->holder[0]) {
		util_duration_text(d->lease_age_s, a, sizeof(a));
		util_duration_text(d->lease_s, b, sizeof(b));
		printf("  lease: held by %s (token %lld) for %s, expires in %s unless renewed\n",
		       d->holder, d->lease_token, a, b);
	} else {
		printf("  lease: free%s%s\n", d->last_holder[0] ? "; last held by " : "",
		       d->last_holder);
	}
	print_lanes(cfg, d);
	if (d->last_batch_s >= 0) {
		util_duration_text(d->last_batch_s, a, sizeof(a));
		printf("  last drain ended %s ago: %s; %d failure(s) in a row\n", a,
		       d->last_outcome, d->failures);
	}
	if (d->backoff_s > 0) {
		util_duration_text(d->backoff_s, a, sizeof(a));
		printf("  backoff: %s more\n", a);
	}
	if (d->parked_s > 0) {
		util_duration_text(d->parked_s, a, sizeof(a));
		printf("  parked: %s more, or until a new job arrives\n", a);
	}
	for (size_t i = 0; i < np; i++)
		print_pause(&p[i]);
	util_duration_text(d->scan_age_s < 0 ? 0 : d->scan_age_s, a, sizeof(a));
	printf("  fleet scan: %s ago; %lld orphaned claims, %lld abandoned jobs (full scan)\n\n", a,
	       d->orphaned_claims, d->abandoned_jobs);
	printf("  %-40s %8s %8s %9s %12s\n", "TYPE", "READY", "CLAIMED", "ABANDONED",
	       "OLDEST_READY");
	for (size_t i = 0; i < nt; i++) {
		char ready[24], claimed[24];
		snprintf(ready, sizeof(ready), "%s%lld",
			 t[i].ready >= SCAN_VIEW_READY_CAP ? ">=" : "", t[i].ready);
		snprintf(claimed, sizeof(claimed), "%s%lld",
			 t[i].claimed >= SCAN_VIEW_CLAIMED_CAP ? ">=" : "", t[i].claimed);
		if (t[i].oldest_ready_ms)
			util_duration_text((now_ms - t[i].oldest_ready_ms) / 1000, a, sizeof(a));
		else
			snprintf(a, sizeof(a), "-");
		printf("  %-40s %8s %8s %9lld %12s\n", t[i].type, ready, claimed, t[i].abandoned, a);
	}
	if (nt == 0)
		printf("  (no rows in its job table)\n");
	print_requeue(cfg, w, t, nt);
	if (d->recent_drains[0]) {
		char copy[2048], *save = NULL;
		printf("\n  recent drains (newest first): time holder outcome batches jobs ms\n");
		snprintf(copy, sizeof(copy), "%s", d->recent_drains);
		for (char *e = strtok_r(copy, ";", &save); e; e = strtok_r(NULL, ";", &save))
			printf("  %s\n", e);
	}
}

int steer_status_wiki(const struct config *cfg, const char *domain, bool json)
{
	struct coord_wiki_detail d;
	struct coord_pause *p = NULL;
	struct scan_type_row *t = NULL;
	struct wiki *w = NULL;
	struct db *coord = NULL, *scan = NULL;
	struct scan_endpoint scan_ep; /* the wiki's own server's, when discovery names one */
	char err[512], why[1024];
	size_t np = 0, nt = 0;
	int64_t now_ms = util_wall_ms();
	const char *state;
	int rc = CLI_FAILED;

	rc = find_listed(cfg, domain, &w, err, sizeof(err));
	if (rc != CLI_OK)
		goto fail;
	rc = CLI_FAILED;
	coord = open_coord(cfg, "status");
	if (coord == NULL)
		goto out;
	if (scan_endpoint_for(cfg, w->db_server, &scan_ep) != 0 ||
	    (scan = db_new(&scan_ep.ep, scan_ep.name)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (coord_wiki_detail(coord, cfg, cfg->mw_version, domain, &d, err, sizeof(err)) != 0 ||
	    coord_pause_list(coord, cfg, cfg->mw_version, domain, &p, &np, err, sizeof(err)) != 0 ||
	    scan_wiki_types(scan, w, &t, &nt, err, sizeof(err)) != 0)
		goto fail;
	state = wiki_state(&d, p, np, why, sizeof(why));
	if (!d.found)
		snprintf(why, sizeof(why), "not scanned yet by the fleet");
	if (json) {
		json_t *pauses = json_array();
		for (size_t i = 0; i < np && pauses != NULL; i++)
			json_array_append_new(pauses,
					      json_pack("{s:b, s:s, s:s, s:s, s:s?}", "all",
							strcmp(p[i].domain, COORD_ALL_WIKIS) == 0,
							"by", p[i].by, "reason", p[i].reason,
							"since", p[i].since, "until",
							p[i].until[0] ? p[i].until : NULL));
		json_t *root = json_pack(
			"{s:s, s:s, s:s, s:{s:s?, s:I, s:I, s:I}, s:s?, s:s?, s:I, s:i, s:I, s:I,"
			" s:o, s:I, s:s?, s:I, s:I, s:o, s:o}",
			"wiki", domain, "state", state, "why", why, "lease", "holder",
			d.holder[0] ? d.holder : NULL, "token", (json_int_t)d.lease_token,
			"expires_in_s", (json_int_t)d.lease_s, "held_for_s",
			(json_int_t)d.lease_age_s, "last_holder",
			d.last_holder[0] ? d.last_holder : NULL, "last_outcome",
			d.last_outcome[0] ? d.last_outcome : NULL, "last_batch_s",
			(json_int_t)d.last_batch_s, "failures", d.failures, "backoff_s",
			(json_int_t)(d.backoff_s > 0 ? d.backoff_s : 0), "parked_s",
			(json_int_t)(d.parked_s > 0 ? d.parked_s : 0), "paused", pauses,
			"scan_age_s", (json_int_t)d.scan_age_s, "scan_error",
			d.scan_error[0] ? d.scan_error : NULL, "orphaned_claims",
			(json_int_t)d.orphaned_claims, "abandoned_jobs",
			(json_int_t)d.abandoned_jobs, "types", types_json(t, nt, now_ms),
			"recent_drains", drains_json(d.recent_drains));
		if (root != NULL)
			json_object_set_new(root, "requeue_abandoned", requeue_json(cfg, w, t, nt));
		if (root != NULL)
			json_object_set_new(
				root, "lanes",
				json_pack("{s:i, s:i, s:i, s:s}", "in_use", d.lanes_held, "allowed",
					  lanes_allowed(cfg->max_workers_per_wiki, &d.lanes), "max",
					  cfg->max_workers_per_wiki, "why",
					  lanes_why_text(lanes_reason(cfg->max_workers_per_wiki,
								      &d.lanes))));
		if (root == NULL) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		json_dumpf(root, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(root);
	} else {
		print_wiki_text(cfg, w, state, why, &d, p, np, t, nt, now_ms);
	}
	rc = CLI_OK;
	goto out;
fail:
	fprintf(stderr, "jobdrainer status: %s: %s\n", domain, err);
out:
	free(t);
	free(p);
	wiki_free(w);
	db_free(scan);
	db_free(coord);
	return rc;
}

/* ---- the fleet's wikis with abandoned jobs ------------------------------------------ */

/* Up to this many in `status`; the rest are counted. */
#define ABANDONED_SHOWN 20

/* The list for both forms of `status`; false (reported) when it cannot be read. */
static bool read_abandoned(struct db *db, const struct config *cfg, struct buf *names, int *n)
{
	char err[512];

	buf_init(names);
	if (coord_abandoned_wikis(db, cfg, cfg->mw_version, ABANDONED_SHOWN, names, n, err,
				  sizeof(err)) == 0)
		return true;
	fprintf(stderr, "jobdrainer status: abandoned jobs cannot be read: %s\n", err);
	buf_release(names);
	return false;
}

void steer_print_abandoned(struct db *db, const struct config *cfg)
{
	struct buf names;
	int n = 0;
	size_t off = 0;

	if (!read_abandoned(db, cfg, &names, &n))
		return;
	if (n > 0)
		printf("abandoned jobs (claimed, at MediaWiki's retry limit of %d attempts; never "
		       "run again; status --wiki DOMAIN shows their types and how to run them again):\n",
		       SCAN_MAX_ATTEMPTS);
	for (int i = 0; i < n; i++) {
		const char *e = names.data + off;
		off += strlen(e) + 1;
		printf("  %s\n", e);
	}
	if (n > 0)
		printf("\n");
	buf_release(&names);
}

json_t *steer_abandoned_json(struct db *db, const struct config *cfg)
{
	struct buf names;
	json_t *arr;
	int n = 0;
	size_t off = 0;

	if (!read_abandoned(db, cfg, &names, &n))
		return NULL;
	arr = json_array();
	for (int i = 0; i < n && arr != NULL; i++) {
		const char *e = names.data + off, *sp = strrchr(e, ' ');
		long long count = 0;
		off += strlen(e) + 1;
		if (sp == NULL || util_parse_int(sp + 1, 0, INT64_MAX, &count) != 0)
			continue;
		json_array_append_new(arr, json_pack("{s:s%, s:I}", "wiki", e, (size_t)(sp - e),
						     "abandoned_jobs", (json_int_t)count));
	}
	buf_release(&names);
	return arr;
}
