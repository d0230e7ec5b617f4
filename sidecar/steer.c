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

#include "cli.h"
#include "coord.h"
#include "util.h"

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

static void duration_text(long long s, char *out, size_t len)
{
	if (s < 120)
		snprintf(out, len, "%llds", s);
	else if (s < 7200)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
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

static void print_pause(const struct coord_pause *p)
{
	char until[96], left[48];

	if (p->until[0]) {
		duration_text(p->remaining_s, left, sizeof(left));
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
	struct db *db;
	char err[512];
	bool was = false;
	size_t n = 0;
	int rc = CLI_FAILED;

	db = open_coord(cfg, "resume");
	if (db == NULL)
		return CLI_FAILED;
	if (coord_pause_clear(db, cfg, cfg->mw_version, name, &was, err, sizeof(err)) != 0 ||
	    coord_pause_list(db, cfg, cfg->mw_version, all ? NULL : domain, &p, &n, err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "jobdrainer resume: %s\n", err);
		goto out;
	}
	if (all)
		printf("%s\n", was ? "resumed: the pause of every wiki is lifted"
				   : "every wiki was not paused; nothing to lift");
	else
		printf("%s: %s\n", domain, was ? "resumed" : "was not paused on its own");
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
		json_array_append_new(arr, json_pack("{s:s?, s:b, s:s, s:s, s:s, s:s?, s:I}",
						     "wiki", every ? NULL : p[i].domain, "all",
						     every, "by", p[i].by, "reason", p[i].reason,
						     "since", p[i].since, "until",
						     p[i].until[0] ? p[i].until : NULL,
						     "remaining_s", (json_int_t)p[i].remaining_s));
	}
	free(p);
	return arr;
}
