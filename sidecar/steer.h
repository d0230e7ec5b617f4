/* steer.h - operator commands that steer the running fleet through the coordination
 * tables (kubectl exec ... jobdrainer ...):
 *   pause --wiki DOMAIN | --all [--for DURATION] [--reason TEXT]
 *   resume --wiki DOMAIN | --all
 *   status --wiki DOMAIN [--json]   one wiki's view, by job type
 * and the pause and abandoned-jobs sections of `status`. Every pod honours a pause at its
 * next batch. They print to stdout, errors to stderr, and return the process exit code
 * (exitcode.h). */
#ifndef JD_STEER_H
#define JD_STEER_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "db.h"

/* The longest --for: a pause meant to last longer is one without --for. */
#define STEER_PAUSE_MAX_S (366LL * 86400)

/* domain NULL with all: the whole scope. for_s 0: until resumed. */
int steer_pause(const struct config *cfg, const char *domain, bool all, long long for_s,
		const char *reason);
int steer_resume(const struct config *cfg, const char *domain, bool all);

/* For `status`: prints the pauses in force (text), or returns them as a JSON array
 * (NULL when they cannot be read: the message went to stderr). */
void steer_print_pauses(struct db *db, const struct config *cfg);
json_t *steer_pauses_json(struct db *db, const struct config *cfg);

/* status --wiki DOMAIN [--json]: one wiki's books, pauses and job table by type. */
int steer_status_wiki(const struct config *cfg, const char *domain, bool json);

/* For `status`: the wikis with abandoned jobs (MediaWiki's job_attempts at its retry
 * limit), from the last full scan. */
void steer_print_abandoned(struct db *db, const struct config *cfg);
json_t *steer_abandoned_json(struct db *db, const struct config *cfg);

#endif
