/* coord.h - the coordination database: per-wiki leases and the fleet's shared backlog.
 *
 * Tables (in [coordination] database, created and migrated by coord_ensure_schema):
 *   jd_schema  one row: the schema version;
 *   jd_wiki    one row per (scope, wiki): the scanner's backlog figures (with the
 *              orphaned claims, schema version 2) and the drain state every pod
 *              shares (last served, backoff, parked, last outcome);
 *   jd_lease   one row per (scope, name, slot): who holds it, a fencing token that
 *              grows with every acquire, and when it expires;
 *   jd_pause   one row per (scope, wiki) an operator paused (schema version 3): by
 *              whom, why, until when; wiki COORD_ALL_WIKIS pauses the whole scope.
 *   jd_scan    one row per scope: the last sweep that read every wiki (version 3);
 *   jd_server  one row per (scope, database server) detection reads (version 3): the
 *              scanner lease holder's last report of it (server_report.h), for
 *              `status`.
 * "scope" is the [discovery] version filter, so pods of different MediaWiki versions
 * keep separate books. Every time is the database's clock, in UTC.
 *
 * Statements are single and conditional; results say whether the condition held
 * (1), did not (0), or the database failed (-EIO, message in err). Library-like: the
 * caller logs. */
#ifndef JD_COORD_H
#define JD_COORD_H

#include <stdint.h>

#include "config.h"
#include "lanes.h"
#include "response.h"
#include "scan.h"
#include "server_report.h"
#include "wiki.h"

#define COORD_SCHEMA_VERSION 3
/* The lease row of the fleet's scanner, in jd_lease.name (never a valid domain). */
#define COORD_SCANNER_LEASE "*scanner*"
/* jd_pause.domain of a pause of every wiki of the scope (never a valid domain). */
#define COORD_ALL_WIKIS "*"

struct db; /* db.h: the connection stays opaque above it */

struct coord_lease {
	const char *scope;
	const char *name; /* a wiki's domain, or COORD_SCANNER_LEASE */
	int slot;
	const char *holder;
	uint64_t token; /* set by a successful acquire */
};

/* Creates or migrates the tables. Safe when many sidecars start at once: the work is
 * serialised with GET_LOCK and every statement is idempotent. */
int coord_ensure_schema(struct db *db, const struct config *cfg, char *err, size_t errlen);

/* Takes the lease if it is free or expired: token + 1, expiry NOW + ttl.
 * The lease row must exist (coord_add_lease_rows). */
int coord_acquire(struct db *db, const struct config *cfg, struct coord_lease *l, char *err,
		  size_t errlen);
/* Takes a wiki's lease like coord_acquire, and only while the wiki still has work to
 * hand out (a backlog; not backed off, parked or unreadable), checked in the same
 * statement. */
int coord_acquire_wiki(struct db *db, const struct config *cfg, struct coord_lease *l, char *err,
		       size_t errlen);
/* Extends the lease if this holder still has it under this token and it has not
 * expired. 0 means it is lost. */
int coord_renew(struct db *db, const struct config *cfg, const struct coord_lease *l, char *err,
		size_t errlen);
/* Gives a lease back (only under its token), with no change to the wiki's state. */
int coord_release(struct db *db, const struct config *cfg, const struct coord_lease *l, char *err,
		  size_t errlen);

/* What a drain came to, written to jd_wiki together with the release. */
struct coord_drain_report {
	enum batch_outcome outcome;
	int64_t backoff_ms; /* > 0: back the wiki off this long */
	bool count_failure; /* the outcome counts against the wiki (failures + 1) */
	bool park;          /* MediaWiki ran nothing although ready rows exist */
	bool drained;       /* none-ready: the backlog is gone as far as MediaWiki can tell */
	int batches, jobs;  /* of the whole drain, for recent_drains */
	int64_t ms;         /* the drain's duration */
};
/* Drains kept per wiki in jd_wiki.recent_drains (status --wiki). */
#define COORD_RECENT_DRAINS 8
int coord_release_wiki(struct db *db, const struct config *cfg, const struct coord_lease *l,
		       const struct coord_drain_report *r, char *err, size_t errlen);

/* After an outage of this pod's MediaWiki (breaker closed): lifts the backoffs this
 * holder gave wikis in the last since_ms_ago for failures MediaWiki causes (5xx,
 * timeout, refused), so they drain at once. *cleared: how many. */
int coord_clear_outage_backoffs(struct db *db, const struct config *cfg, const char *scope,
				const char *holder, int64_t since_ms_ago, long long *cleared,
				char *err, size_t errlen);

/* The wiki's consecutive failures, read right after acquiring it, and the age now of
 * its oldest ready job as the last scan saw it (*ready_age_ms -1: none recorded). */
int coord_wiki_failures(struct db *db, const struct config *cfg, const char *scope,
			const char *domain, int *failures, long long *ready_age_ms, char *err,
			size_t errlen);

/* The wiki's lane reduction (lanes.h) as its jd_wiki row holds it; st->reduced -1 when
 * there is none (or no row). */
int coord_wiki_lanes(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     struct lanes_state *st, char *err, size_t errlen);

/* Records that the wiki may use `lanes` lanes from now, for `why`, unless another
 * reduction happened within LANES_DECREASE_HOLD_MS: 1 recorded, 0 held, -EIO. */
int coord_reduce_lanes(struct db *db, const struct config *cfg, const char *scope,
		       const char *domain, int lanes, enum lanes_why why, char *err, size_t errlen);

/* Wikis whose lease `slot` is free, with a backlog, not backed off, not parked, in
 * order: the longest wait first, where a wiki's wait starts at the later of its oldest
 * ready job and its last service. Appends up to `limit` domains to out (NUL-separated
 * strings in a buf) and sets *count. */
int coord_candidates(struct db *db, const struct config *cfg, const char *scope, int slot,
		     int limit, struct buf *out, int *count, char *err, size_t errlen);

/* A wiki an idle worker may join in an extra lane (lanes.h). */
struct coord_busy_wiki {
	char domain[256];
	int lanes_held;           /* its lease slots held now */
	struct lanes_state lanes; /* its reduction, if any */
};

/* Runnable wikis (as for candidates) whose oldest ready job has waited
 * LANES_JOIN_AGE_MS and whose slot-0 lease is held by a holder that finished a batch
 * in the last progress_ms (it renewed the lease since taking it, that recently: a
 * renew comes after a batch), the oldest backlog first: where spare workers may help.
 * A first lane stuck in a request that does not come back (a wiki whose MediaWiki
 * hangs) shows no such progress, so it never draws the fleet's idle workers in after
 * it. Fills up to `limit` of out, *count of them. */
int coord_busy_wikis(struct db *db, const struct config *cfg, const char *scope, int limit,
		     int64_t progress_ms, struct coord_busy_wiki *out, int *count, char *err,
		     size_t errlen);

/* Ensures lease rows exist for these names and slot (INSERT IGNORE). */
int coord_add_lease_rows(struct db *db, const struct config *cfg, const char *scope,
			 const char *const *names, size_t n, int slot, char *err, size_t errlen);

/* The database's current time (UTC) as "YYYY-MM-DD HH:MM:SS.ffffff". */
int coord_now(struct db *db, char out[32], char *err, size_t errlen);

/* The database's clock read once and carried forward on the local monotonic clock, so
 * that a pass of many scan statements asks for it once instead of once per statement.
 * Never ahead of the database's own: the local time of the reading is taken after its
 * answer arrived (late by at most one round trip, the safe side for "scanned after"). */
struct coord_clock {
	int64_t db_us;   /* the database's NOW(6), µs since the epoch (UTC) */
	int64_t mono_ms; /* util_mono_ms() once the answer was in */
};
int coord_clock_read(struct db *db, struct coord_clock *c, char *err, size_t errlen);
/* The database's time at monotonic mono_ms, formatted as coord_now does. */
void coord_clock_at(const struct coord_clock *c, int64_t mono_ms, char out[32]);

/* One scan of some wikis, as written to jd_wiki. */
struct coord_scan {
	const char *scope;
	struct wiki *const *wikis;
	const struct backlog *backlog; /* backlog[i] is wikis[i]'s */
	size_t n;
	/* coord_now() from before the scan: a wiki drained after it keeps its drained
	 * state. */
	const char *started;
	/* NULL: all rows or none. Else n flags: a row the server refuses (a value it
	 * cannot store) is left out and flagged, the others are written one by one. */
	bool *refused;
};
/* Writes one scan (from the scanner lease holder, or `drain --wiki`); a parked wiki
 * with a new job (max_job_id grew) is unparked. Returns 0, -EIO (err set), or with
 * scan->refused the number of rows refused (err: the first one's error). */
int coord_write_backlog(struct db *db, const struct config *cfg, const struct coord_scan *scan,
			char *err, size_t errlen);

/* Deletes the rows of wikis gone from discovery: not among listed[0..n) (sorted by
 * domain) and not written since scan_started, unless their lease is still held; then
 * the unheld lease rows of wikis without a row. A bounded number per call: *more says
 * whether some gone wiki's row is left for the next call. */
int coord_forget_unseen(struct db *db, const struct config *cfg, const char *scope,
			const char *scan_started, const struct wiki *const *listed, size_t n,
			bool *more, char *err, size_t errlen);

/* Records a sweep that read (and wrote where changed) every wiki: jd_scan. */
int coord_note_sweep(struct db *db, const struct config *cfg, const char *scope,
		     const char *sweep_started, long long wikis, char *err, size_t errlen);

/* How often the scanner lease holder reports its servers (coord_write_server_reports,
 * metrics_set_servers), and the age at which a jd_server row says that it stopped:
 * three reports missed (a holder that lost the lease or hangs; the next holder
 * rewrites the rows within COORD_SERVER_REPORT_MS of taking over). */
#define COORD_SERVER_REPORT_MS 5000
#define COORD_SERVER_STALE_MS (3 * COORD_SERVER_REPORT_MS)

/* Writes the scope's jd_server rows: one per report (updated_at: the database's
 * clock, reported_by: cfg->holder), and deletes the rows of servers not among them
 * (n 0: every row of the scope). Two statements: a reader between them sees a departed
 * server's row a moment longer. Text the columns cannot store (bytes >= 0x80) is
 * written as '?'. 0 or -EIO (err set). */
int coord_write_server_reports(struct db *db, const struct config *cfg, const char *scope,
			       const struct server_report *r, size_t n, char *err, size_t errlen);

/* One jd_server row, for `status`. */
struct coord_server_row {
	struct server_report report; /* down_why, feed_why "" when none; feed -1: no feed */
	char reported_by[256];       /* the holder that wrote it */
	long long age_ms;            /* since it was written, by the database's clock */
};
/* The scope's jd_server rows, by server name. *out is malloc'ed (free it; it may be
 * NULL when *n is 0). A coordination database that has no jd_server yet (only sidecars
 * of an earlier release have run against it) has no rows: 0 with *n 0. */
int coord_read_server_reports(struct db *db, const struct config *cfg, const char *scope,
			      struct coord_server_row **out, size_t *n, char *err, size_t errlen);

/* The job types the last scan saw ready on a wiki (blank-separated, "" if none or
 * unknown) and that scan's start (DB time), which changes with every scan. */
int coord_wiki_types(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     char *types, size_t typeslen, char seen[32], char *err, size_t errlen);

/* Renews a wiki's lease like coord_renew, and only while no pause holds the wiki
 * (its own or the scope's): 0 means lost or paused (coord_pause_list tells which). */
int coord_renew_wiki(struct db *db, const struct config *cfg, const struct coord_lease *l,
		     char *err, size_t errlen);

/* An operator's pause, as jd_pause holds it. Times are UTC, ISO 8601. */
struct coord_pause {
	char domain[256]; /* COORD_ALL_WIKIS: the whole scope */
	char by[256];
	char reason[256];
	char since[32];
	char until[32];        /* "": until resumed */
	long long remaining_s; /* -1: until resumed */
	long long age_s;       /* since it was set */
};

/* Pauses a wiki (or COORD_ALL_WIKIS) for for_s seconds (0: until resumed), replacing
 * any pause it had. Workers holding it let go at their next batch. */
int coord_pause_set(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		    const char *by, const char *reason, long long for_s, char *err, size_t errlen);
/* Lifts a pause (and deletes every expired one). *was_paused: a row was deleted. */
int coord_pause_clear(struct db *db, const struct config *cfg, const char *scope,
		      const char *domain, bool *was_paused, char *err, size_t errlen);
/* The pauses in force: every one of the scope (domain NULL), or those that hold
 * domain (its own and the scope's). *out is malloc'ed (free it), scope's first. */
int coord_pause_list(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     struct coord_pause **out, size_t *n, char *err, size_t errlen);
/* For metrics: wikis paused one by one, and whether the whole scope is. */
int coord_pause_counts(struct db *db, const struct config *cfg, const char *scope, long long *wikis,
		       bool *all, char *err, size_t errlen);

/* One wiki's books, for status --wiki. Ages and remaining times in seconds. */
struct coord_wiki_detail {
	bool found;
	long long oldest_ready_age_s; /* -1: no backlog */
	int ready_types;
	char ready_type_names[256];
	char scan_error[256];
	long long scan_age_s; /* since the scan that wrote the row started */
	long long backoff_s;  /* > 0: backed off this much longer */
	int failures;
	long long parked_s; /* > 0: parked this much longer */
	char last_outcome[32];
	char last_holder[256];
	long long last_batch_s; /* -1: never */
	long long orphaned_claims, abandoned_jobs;
	char recent_drains[2048]; /* "time holder outcome batches jobs ms;...", newest first */
	char holder[256];         /* "" unless the slot-0 lease is held */
	long long lease_s, lease_token, lease_age_s;
	int lanes_held;           /* lease slots held now (its lanes in use) */
	struct lanes_state lanes; /* its reduction, if any (lanes.h) */
};
int coord_wiki_detail(struct db *db, const struct config *cfg, const char *scope,
		      const char *domain, struct coord_wiki_detail *out, char *err, size_t errlen);

/* Wikis with rows at MediaWiki's retry limit (from the last full scan), most first:
 * appends "domain count" strings to out (NUL-separated), up to limit. */
int coord_abandoned_wikis(struct db *db, const struct config *cfg, const char *scope, int limit,
			  struct buf *out, int *count, char *err, size_t errlen);

/* The fleet at a glance, for metrics. */
struct coord_summary {
	long long wikis, with_backlog, backed_off, parked, unreadable;
	long long oldest_ready_age_ms; /* -1: no runnable backlog */
	long long scan_age_ms;         /* since the start of the oldest scan still standing;
					* -1: no wiki was ever written */
	long long orphaned_claims;     /* rows claimed > SCAN_ORPHAN_AFTER_SECONDS ago */
	long long oldest_claim_age_ms; /* the oldest of them; -1: none */
};
int coord_summary(struct db *db, const struct config *cfg, const char *scope,
		  struct coord_summary *out, char *err, size_t errlen);

/* One wiki of the fleet, for `jobdrainer status`. Times are seconds, -1 when there is
 * none; strings are NULL when there is none. */
struct coord_wiki_status {
	const char *domain;
	const char *holder;       /* of a lease (slot 0) not expired */
	const char *last_outcome; /* of the last drain, and by whom */
	const char *last_holder;
	const char *scan_error; /* its job table cannot be read */
	long long age_s;        /* oldest ready job */
	long long backoff_s;    /* > 0: backed off this much longer */
	long long lease_s;      /* > 0: lease held this much longer */
	long long last_batch_s; /* since the last batch */
	int failures, ready_types;
	long long orphans;      /* rows claimed > SCAN_ORPHAN_AFTER_SECONDS ago */
	long long orphan_age_s; /* the oldest of them */
	bool parked;
	bool paused; /* a pause in force holds it (its own or the scope's) */
};
/* Calls each() for every wiki of the scope, most urgent first: work waiting the
 * longest, then trouble (backoff, unreadable), then the rest. The row is valid during
 * the call only. */
int coord_fleet_status(struct db *db, const struct config *cfg, const char *scope,
		       void (*each)(const struct coord_wiki_status *w, void *arg), void *arg,
		       char *err, size_t errlen);

#endif
