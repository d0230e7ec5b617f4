/* scan.h - backlog scan: the oldest ready job of each wiki, cheaply.
 *
 * Per wiki one table open: a loose scan of MediaWiki's index (job_cmd, job_token,
 * job_id), grouped by (job_cmd, job_token), gives the ready job types (their names and
 * smallest ready job_id), the claimed rows (one group per claim token) and the highest
 * job_id (which tells "new jobs arrived"), one index dive per group whatever the
 * backlog. Only the wikis that have ready rows (or, in a full scan, claims) are then
 * read once more: by primary key the queue time of each type's oldest ready job, and by
 * (job_cmd, job_token) the claimed rows' claim times and attempts, since a claim older
 * than MediaWiki's claim TTL counts as work (a pop makes MediaWiki recycle it) and one
 * older than SCAN_ORPHAN_AFTER_SECONDS is reported as orphaned (its runner is most
 * likely gone; MediaWiki leaves it claimed until its claimTTL), abandoned if it reached
 * SCAN_MAX_ATTEMPTS. Many wikis go into one UNION ALL statement, so N wikis cost
 * N / wikis_per_query round trips.
 *
 * Whose failure is it: a statement that could not reach the server, or whose
 * connection was lost during it (2013, 2006, a KILL CONNECTION, a server shutting
 * down), is the server's failure (the scan stops: nothing more can be read there, and
 * no wiki is blamed). Any other failure, whatever its error code (a missing or
 * discarded table, a broken view, a denied grant, a statement stopped by the session's
 * limits behind a locked table), belongs to the wikis of that statement: a group is
 * then retried one wiki at a time, and a wiki whose own statement fails is marked
 * failed with the error (timed_out when the limits stopped it), while the scan goes on
 * with the next wiki. A locked table reaches the client as the server's lock or
 * statement time limit (db_set_statement_limits), never as the client's read timeout,
 * which therefore means a server that stopped answering. */
#ifndef JD_SCAN_H
#define JD_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "jobtype.h"
#include "wiki.h"

struct db; /* db.h */

/* Where a wiki's job table is read: [scan_db], or, when discovery names the wiki's own
 * database server, that server with [scan_db]'s timeouts and the login (user,
 * password, TLS) config_scan_login gives for it: its [server] section's, or
 * [scan_db]'s where the operator set them for all. One owner for the rule: the
 * scanner, `drain --wiki` and `status --wiki` all connect through it. */
struct scan_endpoint {
	struct db_endpoint ep; /* db_new(&.ep, .name): keep this struct while the db lives */
	char host[254];
	char name[280]; /* for messages: "scan_db" or "scan_db 10.0.0.7:3306" */
};
/* Fills *out for a wiki whose db_server is `server` (NULL: [scan_db] as configured).
 * 0, or -EINVAL when server is not host[:port] or not allowed (config_server_allowed;
 * discovery skips such rows first), -EACCES when it has no login (config_load refuses
 * such a file: not reached). */
int scan_endpoint_for(const struct config *cfg, const char *server, struct scan_endpoint *out);

/* What a scan reads. The oldest ready job and the highest job_id come with every scan;
 * claim times (stale claims are an hour old by definition) are read in a full scan
 * only, so a light scan never looks up claimed rows. */
enum scan_depth { SCAN_LIGHT, SCAN_FULL };

struct backlog {
	int64_t oldest_ready_ms; /* wall-clock ms (UTC) the oldest ready job was queued; 0: none */
	int ready_types;         /* job types with ready (or stale claimed) rows */
	uint64_t max_job_id;     /* highest job_id: grows with every new job (0: none) */
	int orphaned_claims;     /* rows claimed > SCAN_ORPHAN_AFTER_SECONDS ago (-1: not read) */
	int64_t oldest_claim_ms; /* wall-clock ms of the oldest such claim; 0: none */
	int abandoned;           /* of those, rows at MediaWiki's retry limit (full scan) */
	char types[256];         /* its ready job types (their list form, jobtype.h), blank-
				  * separated, as many as fit */
	bool failed;             /* this wiki's job table could not be read */
	bool timed_out;          /* ...because its own statement was stopped by the session's
				  * limits (a locked table, db_statement_timed_out) */
	char error[160];         /* why, when failed */
};

struct scan_stats {
	int queries; /* statements sent */
	int64_t took_ms;
	int64_t db_us; /* their wall time, sent to last row read: the database's time
			    * (a failed one: SCAN_FAILED_COST_US at most) */
};

/* Fills out[0..n-1] for wikis[0..n-1]. Returns 0, or -EIO with err when the database
 * itself could not be reached: then out is incomplete and must be ignored. */
int scan_run(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
	     enum scan_depth depth, struct backlog *out, struct scan_stats *stats, char *err,
	     size_t errlen);

/* scan_run, leaving out ready rows of the job types `skip` matches ([drain]
 * skip_types, jobtype.h): they are no backlog of this fleet. */
int scan_run_skipping(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
		      enum scan_depth depth, const char *skip, struct backlog *out,
		      struct scan_stats *stats, char *err, size_t errlen);

/* One job type of one wiki, for status --wiki. Counts stop at the caps below (a
 * count equal to its cap means "at least"). */
struct scan_type_row {
	char type[3 * JOBTYPE_MAX + 1]; /* its list form (jobtype.h) */
	long long ready;                /* job_token = '' */
	long long claimed;              /* job_token <> '' */
	long long abandoned;            /* of the claimed rows looked at: attempts at the limit */
	int64_t oldest_ready_ms;        /* wall-clock ms (UTC) the oldest ready row was queued; 0 */
};
#define SCAN_VIEW_TYPES 100
#define SCAN_VIEW_READY_CAP 100000
#define SCAN_VIEW_CLAIMED_CAP 10000

/* Reads one wiki's job table by type, through MediaWiki's indexes only: the types
 * (a loose index scan), then per type the ready rows counted up to SCAN_VIEW_READY_CAP
 * (an index range of (job_cmd, job_token), no row reads), the oldest ready row (the
 * first entry of (job_cmd, job_token, job_id)), and the claimed rows up to
 * SCAN_VIEW_CLAIMED_CAP with their attempts (one row read each). On a wiki with a
 * million rows that is at most 100,000 index entries and 10,000 rows per type.
 * *out (malloc'ed, the caller frees it) holds *n rows sorted by type. */
int scan_wiki_types(struct db *db, const struct wiki *w, struct scan_type_row **out, size_t *n,
		    char *err, size_t errlen);

/* JobQueueDB's default maxTries: a claimed row with this many attempts is abandoned
 * (never retried; pruned after 7 days). */
#define SCAN_MAX_ATTEMPTS 3

/* What a failed statement is charged against the budget at most (us). */
#define SCAN_FAILED_COST_US 10000

/* MediaWiki's default claimTTL: a claimed job older than this is recycled on pop. */
#define SCAN_CLAIM_TTL_SECONDS 3600
/* A claim older than this is reported as orphaned: a batch lasts at most maxtime +
 * timeout_allowance (45 s by default, at most minutes), so a claim this old has most
 * likely lost its runner (a killed request, a database crash mid-batch). */
#define SCAN_ORPHAN_AFTER_SECONDS 300

/* MediaWiki's job_timestamp (YYYYMMDDHHMMSS, UTC) as ms since the epoch; 0 if bad. */
int64_t scan_parse_mw_timestamp(const char *ts);

#endif
