/* coord.c - see coord.h.
 *
 * Why these statements are safe:
 * - acquire is one UPDATE whose WHERE says "free or expired" by the database's clock;
 *   two pods racing for a lease both run it, InnoDB's row lock serialises them, and the
 *   second one's WHERE no longer matches. The token is bumped in the same statement
 *   (LAST_INSERT_ID(token + 1), read back with mysql_insert_id: no second round trip).
 * - renew and release also name holder and token, so a pod that lost its lease (and
 *   maybe got it back under a new token elsewhere) can never extend or end someone
 *   else's.
 * - the connection counts matched rows (CLIENT_FOUND_ROWS, db.h), so "1" means the
 *   condition held even when a value did not change. */
#include "coord.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "lanes.h"
#include "metrics.h"
#include "util.h"

/* Runs a statement built in sql; on success *matched holds the matched row count. */
static int exec(struct db *db, struct buf *sql, unsigned long long *matched, char *err,
		size_t errlen)
{
	unsigned code;
	unsigned long long unused;
	int rc;

	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		buf_release(sql);
		return -EIO;
	}
	rc = db_exec(db, sql->data, matched ? matched : &unused, &code, err, errlen);
	buf_release(sql);
	return rc;
}

/* Appends a quoted literal; the connection's escaping handles any byte. */
static int lit(struct db *db, struct buf *sql, const char *s, char *err, size_t errlen)
{
	return db_quote(db, sql, s, err, errlen);
}

/* Runs the SELECT built in sql (and releases sql); *row is its first row or NULL.
 * The caller frees *res (which may be NULL). */
static int query_row(struct db *db, struct buf *sql, MYSQL_RES **res, MYSQL_ROW *row, char *err,
		     size_t errlen)
{
	unsigned code;
	int rc;

	*row = NULL;
	*res = NULL;
	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		rc = -EIO;
	} else {
		rc = db_query(db, sql->data, res, &code, err, errlen);
	}
	buf_release(sql);
	if (rc == 0 && *res != NULL)
		*row = mysql_fetch_row(*res);
	return rc;
}

/* Runs the SELECT built in sql (and releases sql) and parses each row into an array of
 * `size`-byte elements: *out is calloc'ed (never NULL on success; the caller frees
 * it), *n its rows. *code: the error's number on failure. */
static int query_list(struct db *db, struct buf *sql, size_t size,
		      void (*parse)(MYSQL_ROW row, void *elem), void **out, size_t *n,
		      unsigned *code, char *err, size_t errlen)
{
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	char *list;
	size_t count = 0;

	*out = NULL;
	*n = 0;
	*code = 0;
	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		buf_release(sql);
		return -EIO;
	}
	if (db_query(db, sql->data, &res, code, err, errlen) != 0) {
		buf_release(sql);
		return -EIO;
	}
	buf_release(sql);
	list = calloc(res ? mysql_num_rows(res) + 1 : 1, size);
	if (list == NULL) {
		snprintf(err, errlen, "out of memory");
		if (res != NULL)
			mysql_free_result(res);
		return -EIO;
	}
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL)
		parse(row, list + size * count++);
	if (res != NULL)
		mysql_free_result(res);
	*out = list;
	*n = count;
	return 0;
}

/* A wiki that has work to hand out: a backlog, readable, not backed off, not parked.
 * The candidate lists and the lease acquire use the same words, so a wiki listed as a
 * candidate is one the acquire will take (unless someone else got there first). */
#define WIKI_RUNNABLE                                                                              \
	" w.oldest_ready_at IS NOT NULL AND w.scan_error IS NULL"                                  \
	" AND (w.backoff_until IS NULL OR w.backoff_until <= NOW(6))"                              \
	" AND (w.parked_until IS NULL OR w.parked_until <= NOW(6))"

#define JD_SCHEMA_TABLE                                                                            \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_schema ("                                              \
	" id TINYINT UNSIGNED NOT NULL PRIMARY KEY,"                                               \
	" version INT UNSIGNED NOT NULL,"                                                          \
	" migrated_at DATETIME(6) NOT NULL"                                                        \
	") ENGINE=InnoDB"
#define JD_WIKI_TABLE                                                                              \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_wiki ("                                                \
	" scope VARCHAR(64) NOT NULL,"                                                             \
	" domain VARCHAR(255) NOT NULL,"                                                           \
	" oldest_ready_at DATETIME(6) NULL,"                                                       \
	" ready_types INT UNSIGNED NOT NULL DEFAULT 0,"                                            \
	" max_job_id BIGINT UNSIGNED NOT NULL DEFAULT 0,"                                          \
	" scan_error VARCHAR(255) NULL,"                                                           \
	" seen_at DATETIME(6) NOT NULL,"                                                           \
	" last_served_at DATETIME(6) NULL,"                                                        \
	" drained_at DATETIME(6) NULL,"                                                            \
	" failures INT UNSIGNED NOT NULL DEFAULT 0,"                                               \
	" backoff_until DATETIME(6) NULL,"                                                         \
	" parked_until DATETIME(6) NULL,"                                                          \
	" parked_max_job_id BIGINT UNSIGNED NULL,"                                                 \
	" last_outcome VARCHAR(32) NULL,"                                                          \
	" last_holder VARCHAR(255) NULL,"                                                          \
	" last_batch_at DATETIME(6) NULL,"                                                         \
	" orphaned_claims INT UNSIGNED NOT NULL DEFAULT 0,"                                        \
	" oldest_claim_at DATETIME(6) NULL,"                                                       \
	" ready_type_names VARCHAR(255) NULL,"                                                     \
	" abandoned_jobs INT UNSIGNED NOT NULL DEFAULT 0,"                                         \
	" recent_drains TEXT NULL,"                                                                \
	" lanes_reduced TINYINT UNSIGNED NULL,"                                                    \
	" lanes_why VARCHAR(16) NULL,"                                                             \
	" lanes_changed_at DATETIME(6) NULL,"                                                      \
	" PRIMARY KEY (scope, domain),"                                                            \
	" KEY backlog (scope, oldest_ready_at)"                                                    \
	") ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin"
#define JD_LEASE_TABLE                                                                             \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_lease ("                                               \
	" scope VARCHAR(64) NOT NULL,"                                                             \
	" name VARCHAR(255) NOT NULL,"                                                             \
	" slot TINYINT UNSIGNED NOT NULL,"                                                         \
	" holder VARCHAR(255) NULL,"                                                               \
	" token BIGINT UNSIGNED NOT NULL DEFAULT 0,"                                               \
	" expires_at DATETIME(6) NULL,"                                                            \
	" acquired_at DATETIME(6) NULL,"                                                           \
	" PRIMARY KEY (scope, name, slot)"                                                         \
	") ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin"
/* Version 3: operators' pauses. domain COORD_ALL_WIKIS pauses the whole scope; a row
 * whose until_at has passed pauses nothing (pause and resume delete such rows). */
#define JD_PAUSE_TABLE                                                                             \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_pause ("                                               \
	" scope VARCHAR(64) NOT NULL,"                                                             \
	" domain VARCHAR(255) NOT NULL,"                                                           \
	" paused_by VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,"              \
	" reason VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',"      \
	" paused_at DATETIME(6) NOT NULL,"                                                         \
	" until_at DATETIME(6) NULL,"                                                              \
	" PRIMARY KEY (scope, domain)"                                                             \
	") ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin"

/* The last sweep that read every wiki of a scope (scanner.c, changes.h): a jd_wiki row
 * the scan found unchanged is not rewritten, so its figures are as fresh as this
 * sweep's start. Added within version 3 (CREATE TABLE IF NOT EXISTS): a sidecar of an
 * earlier release neither reads nor needs it. */
#define JD_SCAN_TABLE                                                                              \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_scan ("                                                \
	" scope VARCHAR(64) NOT NULL PRIMARY KEY,"                                                 \
	" sweep_started_at DATETIME(6) NOT NULL,"                                                  \
	" sweep_done_at DATETIME(6) NOT NULL,"                                                     \
	" wikis INT UNSIGNED NOT NULL DEFAULT 0"                                                   \
	") ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin"

/* What detection knows of each database server, as the scanner lease holder last
 * reported it (coord_write_server_reports). Added within version 3 like jd_scan: a
 * sidecar of an earlier release neither reads nor writes it, and `status` of this one
 * reads no rows while the table is missing. feed NULL: no feed on that server. */
#define JD_SERVER_TABLE                                                                            \
	"CREATE TABLE IF NOT EXISTS `%s`.jd_server ("                                              \
	" scope VARCHAR(64) NOT NULL,"                                                             \
	" server VARCHAR(255) NOT NULL,"                                                           \
	" reported_by VARCHAR(255) NOT NULL,"                                                      \
	" wikis INT UNSIGNED NOT NULL DEFAULT 0,"                                                  \
	" down TINYINT UNSIGNED NOT NULL DEFAULT 0,"                                               \
	" down_why VARCHAR(255) NULL,"                                                             \
	" sweep_ms BIGINT UNSIGNED NOT NULL DEFAULT 0,"                                            \
	" budget_used DOUBLE NOT NULL DEFAULT 0,"                                                  \
	" hot INT UNSIGNED NOT NULL DEFAULT 0,"                                                    \
	" unreadable INT UNSIGNED NOT NULL DEFAULT 0,"                                             \
	" feed TINYINT NULL,"                                                                      \
	" feed_why VARCHAR(255) NULL,"                                                             \
	" updated_at DATETIME(6) NOT NULL,"                                                        \
	" PRIMARY KEY (scope, server)"                                                             \
	") ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin"

/* A pause in force holds jd_wiki row w: its own or the scope's. */
#define WIKI_PAUSED                                                                                \
	" EXISTS (SELECT 1 FROM `%s`.jd_pause p WHERE p.scope = w.scope"                           \
	" AND p.domain IN (w.domain, '" COORD_ALL_WIKIS "')"                                       \
	" AND (p.until_at IS NULL OR p.until_at > NOW(6)))"
/* No pause in force for jd_wiki row w: neither its own nor the scope's. */
#define WIKI_NOT_PAUSED " AND NOT" WIKI_PAUSED

int coord_ensure_schema(struct db *db, const struct config *cfg, char *err, size_t errlen)
{
	const char *d = cfg->coord_db;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	struct buf sql;
	unsigned code;
	int rc = -EIO;
	long long version;
	bool locked = false;
	buf_init(&sql);
	/* One sidecar at a time creates or migrates; the others wait, then find it done. */
	buf_addf(&sql, "SELECT GET_LOCK('jobdrainer_schema_%s', 30)", d);
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	row = res ? mysql_fetch_row(res) : NULL;
	if (row == NULL || row[0] == NULL || strcmp(row[0], "1") != 0) {
		snprintf(err, errlen, "timed out waiting for another sidecar's schema migration");
		goto out;
	}
	locked = true;
	mysql_free_result(res);
	res = NULL;
	buf_reset(&sql);
	buf_addf(&sql, "CREATE DATABASE IF NOT EXISTS `%s`", d);
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	for (int i = 0; i < 6; i++) {
		buf_reset(&sql);
		if (i == 0)
			buf_addf(&sql, JD_SCHEMA_TABLE, d);
		else if (i == 1)
			buf_addf(&sql, JD_WIKI_TABLE, d);
		else if (i == 2)
			buf_addf(&sql, JD_LEASE_TABLE, d);
		else if (i == 3)
			buf_addf(&sql, JD_PAUSE_TABLE, d);
		else if (i == 4)
			buf_addf(&sql, JD_SCAN_TABLE, d);
		else
			buf_addf(&sql, JD_SERVER_TABLE, d);
		if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
			goto out;
	}
	/* Version 1 was the first schema. Version 2 adds jd_wiki's orphaned-claim columns
	 * (the CREATE above has them for a new database; the ALTER is idempotent). Version
	 * 3 adds jd_pause (CREATE TABLE IF NOT EXISTS above) and jd_wiki's ready_type_names
	 * (the job types a scan saw ready, for the job-type lists), abandoned_jobs and
	 * recent_drains (for status --wiki); within version 3 (a release before it
	 * neither reads nor writes them) the lanes_* columns (a wiki's lanes reduced after
	 * contention, lanes.h) and the tables jd_scan and jd_server. A later release adds
	 * "ALTER ...; version = 4" steps here. */
	buf_reset(&sql);
	buf_addf(&sql,
		 "ALTER TABLE `%s`.jd_wiki"
		 " ADD COLUMN IF NOT EXISTS orphaned_claims INT UNSIGNED NOT NULL DEFAULT 0,"
		 " ADD COLUMN IF NOT EXISTS oldest_claim_at DATETIME(6) NULL,"
		 " ADD COLUMN IF NOT EXISTS ready_type_names VARCHAR(255) NULL,"
		 " ADD COLUMN IF NOT EXISTS abandoned_jobs INT UNSIGNED NOT NULL DEFAULT 0,"
		 " ADD COLUMN IF NOT EXISTS recent_drains TEXT NULL,"
		 " ADD COLUMN IF NOT EXISTS lanes_reduced TINYINT UNSIGNED NULL,"
		 " ADD COLUMN IF NOT EXISTS lanes_why VARCHAR(16) NULL,"
		 " ADD COLUMN IF NOT EXISTS lanes_changed_at DATETIME(6) NULL",
		 d);
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	buf_reset(&sql);
	buf_addf(&sql,
		 "INSERT INTO `%s`.jd_schema (id, version, migrated_at) VALUES (1, %d, NOW(6)) "
		 "ON DUPLICATE KEY UPDATE migrated_at = IF(version < VALUES(version), NOW(6),"
		 " migrated_at), version = GREATEST(version, VALUES(version))",
		 d, COORD_SCHEMA_VERSION);
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	buf_reset(&sql);
	buf_addf(&sql, "SELECT version FROM `%s`.jd_schema WHERE id = 1", d);
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	row = res ? mysql_fetch_row(res) : NULL;
	if (row == NULL || row[0] == NULL ||
	    util_parse_int(row[0], 0, COORD_SCHEMA_VERSION, &version) != 0) {
		snprintf(err, errlen,
			 "coordination schema version %s is newer than this release knows (%d): "
			 "upgrade this sidecar",
			 row && row[0] ? row[0] : "?", COORD_SCHEMA_VERSION);
		goto out;
	}
	rc = 0;
out:
	if (res != NULL)
		mysql_free_result(res);
	if (locked) {
		char ignored[128];
		buf_reset(&sql);
		buf_addf(&sql, "DO RELEASE_LOCK('jobdrainer_schema_%s')", d);
		if (db_query(db, sql.data, &res, &code, ignored, sizeof(ignored)) == 0 && res)
			mysql_free_result(res);
	}
	buf_release(&sql);
	return rc;
}

/* "<t>scope = '...' AND <t>name = '...' AND <t>slot = N", t a table alias prefix. */
static int lease_where_in(struct db *db, struct buf *sql, const char *t,
			  const struct coord_lease *l, char *err, size_t errlen)
{
	buf_addf(sql, " WHERE %sscope = ", t);
	if (lit(db, sql, l->scope, err, errlen) != 0)
		return -EIO;
	buf_addf(sql, " AND %sname = ", t);
	if (lit(db, sql, l->name, err, errlen) != 0)
		return -EIO;
	buf_addf(sql, " AND %sslot = %d", t, l->slot);
	return 0;
}

static int lease_where(struct db *db, struct buf *sql, const struct coord_lease *l, char *err,
		       size_t errlen)
{
	return lease_where_in(db, sql, "", l, err, errlen);
}

static int holder_and_token(struct db *db, struct buf *sql, const struct coord_lease *l, char *err,
			    size_t errlen)
{
	buf_adds(sql, " AND holder = ");
	if (lit(db, sql, l->holder, err, errlen) != 0)
		return -EIO;
	buf_addf(sql, " AND token = %llu", (unsigned long long)l->token);
	return 0;
}

/* One UPDATE takes the lease if it is free or expired; for a wiki it also requires,
 * in the same statement, that the wiki still has work nobody holds back (a backlog, no
 * backoff, not parked): a candidate list read a moment ago may be stale, and a wiki
 * another sidecar has just drained must not cost an empty batch. */
static int acquire(struct db *db, const struct config *cfg, struct coord_lease *l, bool wiki,
		   char *err, size_t errlen)
{
	const char *d = cfg->coord_db;
	struct buf sql;
	unsigned long long matched;

	buf_init(&sql);
	if (wiki)
		buf_addf(&sql,
			 "UPDATE `%s`.jd_lease l JOIN `%s`.jd_wiki w"
			 " ON w.scope = l.scope AND w.domain = l.name SET l.holder = ",
			 d, d);
	else
		buf_addf(&sql, "UPDATE `%s`.jd_lease l SET l.holder = ", d);
	if (lit(db, &sql, l->holder, err, errlen) != 0)
		goto fail;
	buf_addf(&sql,
		 ", l.token = LAST_INSERT_ID(l.token + 1), l.acquired_at = NOW(6),"
		 " l.expires_at = NOW(6) + INTERVAL %d SECOND",
		 cfg->lease_ttl);
	if (lease_where_in(db, &sql, "l.", l, err, errlen) != 0)
		goto fail;
	buf_adds(&sql, " AND (l.expires_at IS NULL OR l.expires_at < NOW(6))");
	if (wiki)
		buf_addf(&sql, " AND" WIKI_RUNNABLE WIKI_NOT_PAUSED, d);
	metrics_add(METRIC_LEASE_OPS, LEASE_OP_ACQUIRE, 1);
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	if (matched == 0)
		return 0;
	l->token = db_insert_id(db);
	return 1;
fail:
	buf_release(&sql);
	return -EIO;
}

int coord_acquire(struct db *db, const struct config *cfg, struct coord_lease *l, char *err,
		  size_t errlen)
{
	return acquire(db, cfg, l, false, err, errlen);
}

int coord_acquire_wiki(struct db *db, const struct config *cfg, struct coord_lease *l, char *err,
		       size_t errlen)
{
	return acquire(db, cfg, l, true, err, errlen);
}

/* Extends a lease still held with the same token; unless_paused: only while no pause
 * holds the wiki (its own or the scope's). 1 renewed, 0 lost (or paused), -EIO. */
static int renew(struct db *db, const struct config *cfg, const struct coord_lease *l,
		 bool unless_paused, char *err, size_t errlen)
{
	struct buf sql;
	unsigned long long matched;

	buf_init(&sql);
	buf_addf(&sql, "UPDATE `%s`.jd_lease SET expires_at = NOW(6) + INTERVAL %d SECOND",
		 cfg->coord_db, cfg->lease_ttl);
	if (lease_where(db, &sql, l, err, errlen) != 0 ||
	    holder_and_token(db, &sql, l, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " AND expires_at > NOW(6)");
	/* The pause check reads jd_pause by its primary key: no cost worth a second trip. */
	if (unless_paused)
		buf_addf(&sql,
			 " AND NOT EXISTS (SELECT 1 FROM `%s`.jd_pause p"
			 " WHERE p.scope = jd_lease.scope AND p.domain IN (jd_lease.name, '" COORD_ALL_WIKIS
			 "')"
			 " AND (p.until_at IS NULL OR p.until_at > NOW(6)))",
			 cfg->coord_db);
	metrics_add(METRIC_LEASE_OPS, LEASE_OP_RENEW, 1);
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	return matched > 0 ? 1 : 0;
}

int coord_renew(struct db *db, const struct config *cfg, const struct coord_lease *l, char *err,
		size_t errlen)
{
	return renew(db, cfg, l, false, err, errlen);
}

int coord_release(struct db *db, const struct config *cfg, const struct coord_lease *l, char *err,
		  size_t errlen)
{
	struct buf sql;
	unsigned long long matched;

	buf_init(&sql);
	buf_addf(&sql, "UPDATE `%s`.jd_lease SET holder = NULL, expires_at = NULL", cfg->coord_db);
	if (lease_where(db, &sql, l, err, errlen) != 0 ||
	    holder_and_token(db, &sql, l, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	metrics_add(METRIC_LEASE_OPS, LEASE_OP_RELEASE, 1);
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	return matched > 0 ? 1 : 0;
}

/* Keeps the wiki's last COORD_RECENT_DRAINS drains in jd_wiki.recent_drains, newest
 * first: "time holder outcome batches jobs ms;..." (no extra statement: part of the
 * release; the holder is the literal, as for last_holder). */
static int add_recent_drain(struct db *db, struct buf *sql, const struct coord_lease *l,
			    const struct coord_drain_report *r, char *err, size_t errlen)
{
	buf_adds(sql, ", w.recent_drains = SUBSTRING_INDEX(CONCAT(DATE_FORMAT(NOW(),"
		      " '%Y-%m-%dT%H:%i:%SZ'), ' ', ");
	if (lit(db, sql, l->holder, err, errlen) != 0)
		return -EIO;
	buf_addf(sql, ", ' %s %d %d %lld;', COALESCE(w.recent_drains, '')), ';', %d)",
		 outcome_name(r->outcome), r->batches, r->jobs, (long long)r->ms,
		 COORD_RECENT_DRAINS);
	return 0;
}

int coord_release_wiki(struct db *db, const struct config *cfg, const struct coord_lease *l,
		       const struct coord_drain_report *r, char *err, size_t errlen)
{
	struct buf sql;
	unsigned long long matched;

	buf_init(&sql);
	/* One statement: the lease ends and the wiki's state is written only if this
	 * holder still had it under this token. (A multi-table UPDATE does not promise
	 * an order of assignments across tables: last_holder gets the literal.) */
	buf_addf(&sql,
		 "UPDATE `%s`.jd_lease l JOIN `%s`.jd_wiki w ON w.scope = l.scope AND w.domain = l.name"
		 " SET w.last_served_at = NOW(6), w.last_batch_at = NOW(6), w.last_outcome = '%s',"
		 " l.holder = NULL, l.expires_at = NULL, w.last_holder = ",
		 cfg->coord_db, cfg->coord_db, outcome_name(r->outcome));
	if (lit(db, &sql, l->holder, err, errlen) != 0)
		goto fail;
	if (r->count_failure)
		buf_adds(&sql, ", w.failures = w.failures + 1");
	else if (r->outcome == OUTCOME_DRAINED || r->outcome == OUTCOME_MORE)
		buf_adds(&sql, ", w.failures = 0");
	if (r->backoff_ms > 0)
		buf_addf(&sql, ", w.backoff_until = NOW(6) + INTERVAL %lld MICROSECOND",
			 (long long)r->backoff_ms * 1000);
	if (r->drained)
		buf_adds(&sql, ", w.oldest_ready_at = NULL, w.drained_at = NOW(6)");
	if (r->park)
		buf_addf(&sql,
			 ", w.parked_until = NOW(6) + INTERVAL %d SECOND,"
			 " w.parked_max_job_id = w.max_job_id",
			 cfg->park_interval);
	if (add_recent_drain(db, &sql, l, r, err, errlen) != 0)
		goto fail;
	buf_adds(&sql, " WHERE l.scope = ");
	if (lit(db, &sql, l->scope, err, errlen) != 0)
		goto fail;
	buf_adds(&sql, " AND l.name = ");
	if (lit(db, &sql, l->name, err, errlen) != 0)
		goto fail;
	buf_addf(&sql, " AND l.slot = %d AND l.holder = ", l->slot);
	if (lit(db, &sql, l->holder, err, errlen) != 0)
		goto fail;
	buf_addf(&sql, " AND l.token = %llu", (unsigned long long)l->token);
	metrics_add(METRIC_LEASE_OPS, LEASE_OP_RELEASE, 1);
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	return matched > 0 ? 1 : 0;
fail:
	buf_release(&sql);
	return -EIO;
}

/* Runs a SELECT whose first column is a domain; appends each to out. */
static int collect_names(struct db *db, struct buf *sql, struct buf *out, int *count, char *err,
			 size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	unsigned code;

	*count = 0;
	if (sql->failed) {
		buf_release(sql);
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	if (db_query(db, sql->data, &res, &code, err, errlen) != 0) {
		buf_release(sql);
		return -EIO;
	}
	buf_release(sql);
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		if (row[0] == NULL)
			continue;
		buf_add(out, row[0], strlen(row[0]) + 1);
		(*count)++;
	}
	if (res != NULL)
		mysql_free_result(res);
	return out->failed ? -EIO : 0;
}

/* Starts "SELECT w.domain ... WHERE <this scope's runnable wikis>", joined with each
 * wiki's lease `slot` as l. */
static int select_runnable(struct db *db, const struct config *cfg, const char *scope, int slot,
			   struct buf *sql, char *err, size_t errlen)
{
	const char *d = cfg->coord_db;

	buf_addf(sql,
		 "SELECT w.domain FROM `%s`.jd_wiki w JOIN `%s`.jd_lease l"
		 " ON l.scope = w.scope AND l.name = w.domain AND l.slot = %d"
		 " WHERE w.scope = ",
		 d, d, slot);
	if (lit(db, sql, scope, err, errlen) != 0)
		return -EIO;
	buf_addf(sql, " AND" WIKI_RUNNABLE WIKI_NOT_PAUSED, d);
	return 0;
}

int coord_candidates(struct db *db, const struct config *cfg, const char *scope, int slot,
		     int limit, struct buf *out, int *count, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	if (select_runnable(db, cfg, scope, slot, &sql, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_addf(&sql,
		 " AND (l.expires_at IS NULL OR l.expires_at < NOW(6))"
		 " AND (w.last_batch_at IS NULL OR w.last_batch_at <= NOW(6) - INTERVAL %lld MICROSECOND)"
		 " ORDER BY GREATEST(w.oldest_ready_at, COALESCE(w.last_served_at, w.oldest_ready_at)),"
		 " w.domain LIMIT %d",
		 (long long)cfg->wiki_min_interval_ms * 1000, limit);
	return collect_names(db, &sql, out, count, err, errlen);
}

/* A number of a status row; dflt when NULL (or not a number). */
static long long row_num(const char *s, long long dflt)
{
	long long v = dflt;

	if (s != NULL && util_parse_int(s, INT64_MIN, INT64_MAX, &v) != 0)
		v = dflt;
	return v;
}

/* Copies a column into a fixed buffer ("" for NULL). */
static void col(char *out, size_t len, const char *v)
{
	snprintf(out, len, "%s", v ? v : "");
}

/* The lanes columns of a jd_wiki row, as selected by LANES_COLUMNS. */
#define LANES_COLUMNS                                                                              \
	" w.lanes_reduced, TIMESTAMPDIFF(MICROSECOND, w.lanes_changed_at, NOW(6)) DIV 1000,"       \
	" w.lanes_why"

/* cols NULL: no row, so no reduction. */
static void lanes_from_row(MYSQL_ROW cols, struct lanes_state *st)
{
	long long v;

	st->reduced = -1;
	st->since_change_ms = 0;
	st->why = LANES_ELASTIC;
	if (cols == NULL || cols[0] == NULL || cols[1] == NULL ||
	    util_parse_int(cols[0], 0, 255, &v) != 0)
		return;
	st->reduced = (int)v;
	if (util_parse_int(cols[1], LLONG_MIN, LLONG_MAX, &v) == 0)
		st->since_change_ms = v < 0 ? 0 : v;
	st->why = lanes_why_parse(cols[2]);
}

/* The count of a wiki's lease slots held now, for row w. */
#define LANES_HELD                                                                                 \
	" (SELECT COUNT(*) FROM `%s`.jd_lease x WHERE x.scope = w.scope AND x.name = w.domain"     \
	" AND x.expires_at > NOW(6))"

int coord_busy_wikis(struct db *db, const struct config *cfg, const char *scope, int limit,
		     int64_t progress_ms, struct coord_busy_wiki *out, int *count, char *err,
		     size_t errlen)
{
	const char *d = cfg->coord_db;
	MYSQL_RES *res;
	MYSQL_ROW row;
	unsigned code;
	struct buf sql;

	*count = 0;
	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT w.domain," LANES_HELD "," LANES_COLUMNS " FROM `%s`.jd_wiki w JOIN"
		 " `%s`.jd_lease l ON l.scope = w.scope AND l.name = w.domain AND l.slot = 0"
		 " WHERE w.scope = ",
		 d, d, d);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_addf(&sql,
		 " AND" WIKI_RUNNABLE WIKI_NOT_PAUSED
		 " AND l.expires_at > l.acquired_at + INTERVAL %d SECOND"
		 " AND l.expires_at >= NOW(6) + INTERVAL %lld MICROSECOND"
		 " AND w.oldest_ready_at <= NOW(6) - INTERVAL %d MICROSECOND"
		 " ORDER BY w.oldest_ready_at, w.domain LIMIT %d",
		 d, cfg->lease_ttl, ((long long)cfg->lease_ttl * 1000 - progress_ms) * 1000,
		 LANES_JOIN_AGE_MS * 1000, limit);
	if (sql.failed) {
		buf_release(&sql);
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_release(&sql);
	while (res != NULL && *count < limit && (row = mysql_fetch_row(res)) != NULL) {
		struct coord_busy_wiki *b = &out[*count];
		if (row[0] == NULL)
			continue;
		snprintf(b->domain, sizeof(b->domain), "%s", row[0]);
		b->lanes_held = (int)row_num(row[1], 0);
		lanes_from_row(row + 2, &b->lanes);
		(*count)++;
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_add_lease_rows(struct db *db, const struct config *cfg, const char *scope,
			 const char *const *names, size_t n, int slot, char *err, size_t errlen)
{
	struct buf sql;

	if (n == 0)
		return 0;
	buf_init(&sql);
	buf_addf(&sql, "INSERT IGNORE INTO `%s`.jd_lease (scope, name, slot) VALUES ",
		 cfg->coord_db);
	for (size_t i = 0; i < n; i++) {
		buf_adds(&sql, i ? ",(" : "(");
		if (lit(db, &sql, scope, err, errlen) != 0)
			goto fail;
		buf_adds(&sql, ",");
		if (lit(db, &sql, names[i], err, errlen) != 0)
			goto fail;
		buf_addf(&sql, ",%d)", slot);
	}
	return exec(db, &sql, NULL, err, errlen);
fail:
	buf_release(&sql);
	return -EIO;
}

int coord_now(struct db *db, char out[32], char *err, size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	struct buf sql;
	int rc;

	buf_init(&sql);
	buf_adds(&sql, "SELECT NOW(6)");
	if (query_row(db, &sql, &res, &row, err, errlen) != 0)
		return -EIO;
	if (row == NULL || row[0] == NULL) {
		snprintf(err, errlen, "SELECT NOW(6) returned nothing");
	} else {
		snprintf(out, 32, "%s", row[0]);
	}
	rc = row && row[0] ? 0 : -EIO; /* row points into res */
	if (res != NULL)
		mysql_free_result(res);
	return rc;
}

int coord_clock_read(struct db *db, struct coord_clock *c, char *err, size_t errlen)
{
	char now[32];
	struct tm tm = { 0 };
	int usec = 0, used = 0;

	if (coord_now(db, now, err, errlen) != 0)
		return -EIO;
	c->mono_ms = util_mono_ms();
	if (sscanf(now, "%d-%d-%d %d:%d:%d.%6d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec, &used) != 7 ||
	    now[used] != '\0') {
		snprintf(err, errlen, "SELECT NOW(6) returned '%s', not a time", now);
		return -EIO;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	c->db_us = (int64_t)timegm(&tm) * 1000000 + usec;
	return 0;
}

void coord_clock_at(const struct coord_clock *c, int64_t mono_ms, char out[32])
{
	int64_t us = c->db_us + (mono_ms - c->mono_ms) * 1000;
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	char date[24];

	gmtime_r(&secs, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(out, 32, "%.19s.%06u", date, (unsigned)(us % 1000000) % 1000000u);
}

static void add_datetime(struct buf *sql, int64_t epoch_ms)
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	buf_addf(sql, "'%04d-%02d-%02d %02d:%02d:%02d'", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Whether a failed write was refused for what its rows hold (a value a column cannot
 * store, a trigger's or a constraint's refusal), not for the server's state: a lost
 * connection, a lock wait or a time limit would fail each row alone just as well. */
static bool refused_for_values(unsigned code)
{
	return !db_connection_lost(code) && code != ER_LOCK_WAIT_TIMEOUT &&
	       code != ER_LOCK_DEADLOCK && code != ER_STATEMENT_TIMEOUT &&
	       code != ER_QUERY_INTERRUPTED;
}

/* s in an ASCII column: its first len - 1 bytes at most (s need not end within them)
 * copied into out (of len bytes), each byte >= 0x80 written as '?', so that a message
 * from a server or a wiki table stays readable and storable. */
static const char *ascii_text(const char *s, char *out, size_t len)
{
	snprintf(out, len, "%.*s", (int)len - 1, s);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	return out;
}

/* coord_write_backlog's statements: 0, 1 when the server refused the write for the
 * rows' values (refused_for_values; err set), -EIO (err set). */
static int write_rows(struct db *db, const struct config *cfg, const struct coord_scan *scan,
		      char *err, size_t errlen)
{
	const char *scope = scan->scope, *scan_started = scan->started;
	struct wiki *const *wikis = scan->wikis;
	const struct backlog *b = scan->backlog;
	size_t n = scan->n;
	struct buf sql;
	const char **names;
	unsigned code;
	int rc;

	if (n == 0)
		return 0;
	names = calloc(n, sizeof(*names));
	if (names == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = wikis[i]->domain;
	rc = coord_add_lease_rows(db, cfg, scope, names, n, 0, err, errlen);
	free(names);
	if (rc != 0)
		return rc;

	buf_init(&sql);
	buf_addf(&sql,
		 "INSERT INTO `%s`.jd_wiki (scope, domain, oldest_ready_at, ready_types, max_job_id,"
		 " scan_error, seen_at, orphaned_claims, oldest_claim_at, ready_type_names,"
		 " abandoned_jobs) VALUES ",
		 cfg->coord_db);
	for (size_t i = 0; i < n; i++) {
		buf_adds(&sql, i ? ",(" : "(");
		if (lit(db, &sql, scope, err, errlen) != 0 ||
		    (buf_adds(&sql, ","), lit(db, &sql, wikis[i]->domain, err, errlen)) != 0)
			goto fail;
		buf_adds(&sql, ",");
		if (b[i].oldest_ready_ms != 0 && !b[i].failed)
			add_datetime(&sql, b[i].oldest_ready_ms);
		else
			buf_adds(&sql, "NULL");
		buf_addf(&sql, ",%d,%llu,", b[i].ready_types, (unsigned long long)b[i].max_job_id);
		if (b[i].failed) {
			char msg[sizeof(b[i].error)];
			if (lit(db, &sql, ascii_text(b[i].error, msg, sizeof(msg)), err, errlen) !=
			    0)
				goto fail;
		} else {
			buf_adds(&sql, "NULL");
		}
		buf_addf(&sql, ",'%s',%d,", scan_started,
			 b[i].orphaned_claims > 0 ? b[i].orphaned_claims : 0);
		if (b[i].orphaned_claims > 0 && b[i].oldest_claim_ms != 0)
			add_datetime(&sql, b[i].oldest_claim_ms);
		else
			buf_adds(&sql, "NULL");
		buf_adds(&sql, ",");
		if (lit(db, &sql, b[i].types, err, errlen) != 0)
			goto fail;
		buf_addf(&sql, ",%d)", b[i].abandoned > 0 ? b[i].abandoned : 0);
	}
	/* MariaDB applies these left to right: parked_until reads the old parked_max_job_id
	 * and the new max_job_id before max_job_id itself is updated. A light scan reads no
	 * max_job_id (0): it keeps the stored one and unparks nothing. */
	buf_addf(&sql,
		 " ON DUPLICATE KEY UPDATE"
		 " oldest_ready_at = IF(drained_at IS NOT NULL AND drained_at > '%s',"
		 " oldest_ready_at, VALUES(oldest_ready_at)),"
		 " parked_until = IF(parked_max_job_id IS NOT NULL"
		 " AND VALUES(max_job_id) > parked_max_job_id, NULL, parked_until),"
		 " parked_max_job_id = IF(parked_until IS NULL, NULL, parked_max_job_id),"
		 " ready_types = VALUES(ready_types),"
		 " max_job_id = IF(VALUES(max_job_id) = 0, max_job_id, VALUES(max_job_id)),"
		 " scan_error = VALUES(scan_error), seen_at = VALUES(seen_at),"
		 " ready_type_names = VALUES(ready_type_names)",
		 scan_started);
	/* A light scan reads no claims (orphaned_claims -1): the stored figures stay. */
	if (b[0].orphaned_claims >= 0)
		buf_adds(&sql, ", orphaned_claims = VALUES(orphaned_claims),"
			       " oldest_claim_at = VALUES(oldest_claim_at),"
			       " abandoned_jobs = VALUES(abandoned_jobs)");
	if (sql.failed) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	rc = db_exec(db, sql.data, &(unsigned long long){ 0 }, &code, err, errlen);
	buf_release(&sql);
	if (rc == -EIO && refused_for_values(code))
		return 1;
	return rc == 0 ? 0 : -EIO;
fail:
	buf_release(&sql);
	return -EIO;
}

int coord_write_backlog(struct db *db, const struct config *cfg, const struct coord_scan *scan,
			char *err, size_t errlen)
{
	struct coord_scan one = *scan;
	char why[256];
	int rc = write_rows(db, cfg, scan, err, errlen), refused = 0;

	if (rc <= 0 || scan->refused == NULL || scan->n == 0)
		return rc == 0 ? 0 : -EIO;
	/* One row the server will not store fails the whole statement, and with it every
	 * wiki of the chunk: written one by one, only that row's own wiki goes unwritten. */
	for (size_t i = 0; i < scan->n; i++) {
		one.wikis = scan->wikis + i;
		one.backlog = scan->backlog + i;
		one.n = 1;
		rc = write_rows(db, cfg, &one, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s", why);
			return -EIO;
		}
		scan->refused[i] = rc == 1;
		if (rc == 1 && refused++ == 0)
			snprintf(err, errlen, "%s", why);
	}
	return refused;
}

/* At most this many gone wikis' lease rows go per pass: a large departure is spread
 * over a few passes instead of one long statement. */
#define PRUNE_LEASES_PER_PASS 500

/* Deletes the unheld lease rows (any slot) of wikis that have no jd_wiki row any more,
 * so jd_lease does not grow as wikis come and go. The names are read first (a plain
 * read takes no locks), then deleted by key, so the acquires and the backlog writes
 * running meanwhile never wait on a scan of the whole table. A wiki that came back in
 * between loses an unheld row, which the next scan's coord_add_lease_rows recreates. */
static int prune_leases(struct db *db, const struct config *cfg, const char *scope, char *err,
			size_t errlen)
{
	const char *d = cfg->coord_db;
	struct buf sql, names;
	const char *name;
	int count, rc = -EIO;

	buf_init(&sql);
	buf_init(&names);
	buf_addf(&sql,
		 "SELECT DISTINCT l.name FROM `%s`.jd_lease l LEFT JOIN `%s`.jd_wiki w"
		 " ON w.scope = l.scope AND w.domain = l.name"
		 " WHERE w.domain IS NULL AND l.name <> '" COORD_SCANNER_LEASE "'"
		 " AND (l.expires_at IS NULL OR l.expires_at < NOW(6)) AND l.scope = ",
		 d, d);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		goto out;
	}
	buf_addf(&sql, " LIMIT %d", PRUNE_LEASES_PER_PASS);
	if (collect_names(db, &sql, &names, &count, err, errlen) != 0)
		goto out;
	if (count == 0) {
		rc = 0;
		goto out;
	}
	buf_addf(&sql,
		 "DELETE FROM `%s`.jd_lease WHERE (expires_at IS NULL OR expires_at < NOW(6))"
		 " AND scope = ",
		 d);
	if (lit(db, &sql, scope, err, errlen) != 0)
		goto fail;
	buf_adds(&sql, " AND name IN (");
	name = names.data;
	for (int i = 0; i < count; i++, name += strlen(name) + 1) {
		buf_adds(&sql, i ? "," : "");
		if (lit(db, &sql, name, err, errlen) != 0)
			goto fail;
	}
	buf_adds(&sql, ")");
	rc = exec(db, &sql, NULL, err, errlen);
	goto out;
fail:
	buf_release(&sql);
out:
	buf_release(&names);
	return rc;
}

/* At most this many gone wikis' rows go per pass (the rest: next pass). */
#define FORGET_WIKIS_PER_PASS 500

static int wiki_domain_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(const struct wiki *const *)elem)->domain);
}

int coord_forget_unseen(struct db *db, const struct config *cfg, const char *scope,
			const char *scan_started, const struct wiki *const *listed, size_t n,
			bool *more, char *err, size_t errlen)
{
	const char *d = cfg->coord_db, *name;
	struct buf sql, stale, gone;
	unsigned long long deleted = 0;
	int count, ngone = 0, rc = -EIO;

	*more = false;
	buf_init(&sql);
	buf_init(&stale);
	buf_init(&gone);
	/* Rows not written since the sweep began: unchanged ones, and those of gone wikis;
	 * the names tell which is which. */
	buf_addf(&sql, "SELECT domain FROM `%s`.jd_wiki WHERE seen_at < '%s' AND scope = ", d,
		 scan_started);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		goto out;
	}
	if (collect_names(db, &sql, &stale, &count, err, errlen) != 0)
		goto out;
	name = stale.data;
	for (int i = 0; i < count; i++, name += strlen(name) + 1) {
		if (n > 0 && bsearch(name, listed, n, sizeof(*listed), wiki_domain_cmp) != NULL)
			continue;
		if (ngone == FORGET_WIKIS_PER_PASS) {
			*more = true;
			break;
		}
		buf_add(&gone, name, strlen(name) + 1);
		ngone++;
	}
	if (gone.failed) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (ngone > 0) {
		/* Unless a lease on it is still held (a batch in flight): then next time. */
		buf_addf(&sql,
			 "DELETE w FROM `%s`.jd_wiki w LEFT JOIN `%s`.jd_lease l"
			 " ON l.scope = w.scope AND l.name = w.domain AND l.slot = 0"
			 " WHERE w.seen_at < '%s' AND (l.expires_at IS NULL OR l.expires_at < NOW(6))"
			 " AND w.scope = ",
			 d, d, scan_started);
		if (lit(db, &sql, scope, err, errlen) != 0)
			goto fail;
		buf_adds(&sql, " AND w.domain IN (");
		name = gone.data;
		for (int i = 0; i < ngone; i++, name += strlen(name) + 1) {
			buf_adds(&sql, i ? "," : "");
			if (lit(db, &sql, name, err, errlen) != 0)
				goto fail;
		}
		buf_adds(&sql, ")");
		if (exec(db, &sql, &deleted, err, errlen) != 0)
			goto out;
		if (deleted < (unsigned long long)ngone)
			*more = true;
	}
	rc = prune_leases(db, cfg, scope, err, errlen);
	goto out;
fail:
	buf_release(&sql);
out:
	buf_release(&stale);
	buf_release(&gone);
	return rc;
}

int coord_note_sweep(struct db *db, const struct config *cfg, const char *scope,
		     const char *sweep_started, long long wikis, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	buf_addf(&sql,
		 "INSERT INTO `%s`.jd_scan (scope, sweep_started_at, sweep_done_at, wikis)"
		 " VALUES (",
		 cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_addf(&sql,
		 ", '%s', NOW(6), %lld) ON DUPLICATE KEY UPDATE"
		 " sweep_started_at = VALUES(sweep_started_at),"
		 " sweep_done_at = VALUES(sweep_done_at), wikis = VALUES(wikis)",
		 sweep_started, wikis);
	return exec(db, &sql, NULL, err, errlen);
}

/* Appends s as an ASCII literal (ascii_text), or NULL when it is empty. */
static int lit_ascii_or_null(struct db *db, struct buf *sql, const char *s, char *err, size_t errlen)
{
	char text[256];

	if (s[0] == '\0') {
		buf_adds(sql, "NULL");
		return 0;
	}
	return lit(db, sql, ascii_text(s, text, sizeof(text)), err, errlen);
}

/* One jd_server row's values, "(scope, server, ...)". */
static int add_server_row(struct db *db, struct buf *sql, const char *scope, const char *holder,
			  const struct server_report *r, char *err, size_t errlen)
{
	char server[sizeof(r->server)], by[256];
	double used = isfinite(r->budget_used) && r->budget_used > 0 ? r->budget_used : 0;

	buf_adds(sql, "(");
	if (lit(db, sql, scope, err, errlen) != 0 ||
	    (buf_adds(sql, ","),
	     lit(db, sql, ascii_text(r->server, server, sizeof(server)), err, errlen)) != 0 ||
	    (buf_adds(sql, ","), lit(db, sql, ascii_text(holder, by, sizeof(by)), err, errlen)) != 0)
		return -EIO;
	buf_addf(sql, ",%llu,%d,", (unsigned long long)r->wikis, r->down ? 1 : 0);
	if (lit_ascii_or_null(db, sql, r->down ? r->down_why : "", err, errlen) != 0)
		return -EIO;
	buf_addf(sql, ",%lld,%.6f,%llu,%llu,", (long long)(r->sweep_ms > 0 ? r->sweep_ms : 0), used,
		 (unsigned long long)r->hot, (unsigned long long)r->unreadable);
	if (r->feed < 0 || r->feed > 127)
		buf_adds(sql, "NULL,NULL");
	else if ((buf_addf(sql, "%d,", r->feed),
		  lit_ascii_or_null(db, sql, r->feed_why, err, errlen)) != 0)
		return -EIO;
	buf_adds(sql, ",NOW(6))");
	return 0;
}

int coord_write_server_reports(struct db *db, const struct config *cfg, const char *scope,
			       const struct server_report *r, size_t n, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	if (n > 0) {
		buf_addf(&sql,
			 "INSERT INTO `%s`.jd_server (scope, server, reported_by, wikis, down,"
			 " down_why, sweep_ms, budget_used, hot, unreadable, feed, feed_why,"
			 " updated_at) VALUES ",
			 cfg->coord_db);
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				buf_adds(&sql, ",");
			if (add_server_row(db, &sql, scope, cfg->holder, &r[i], err, errlen) != 0)
				goto fail;
		}
		buf_adds(&sql, " ON DUPLICATE KEY UPDATE reported_by = VALUES(reported_by),"
			       " wikis = VALUES(wikis), down = VALUES(down),"
			       " down_why = VALUES(down_why), sweep_ms = VALUES(sweep_ms),"
			       " budget_used = VALUES(budget_used), hot = VALUES(hot),"
			       " unreadable = VALUES(unreadable), feed = VALUES(feed),"
			       " feed_why = VALUES(feed_why), updated_at = VALUES(updated_at)");
		if (exec(db, &sql, NULL, err, errlen) != 0)
			return -EIO;
	}
	/* The servers gone from the list: their rows would read as a holder that stopped
	 * reporting them. */
	buf_addf(&sql, "DELETE FROM `%s`.jd_server WHERE scope = ", cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		char server[sizeof(r[i].server)];
		buf_adds(&sql, i ? "," : " AND server NOT IN (");
		if (lit(db, &sql, ascii_text(r[i].server, server, sizeof(server)), err, errlen) != 0)
			goto fail;
	}
	if (n > 0)
		buf_adds(&sql, ")");
	return exec(db, &sql, NULL, err, errlen);
fail:
	buf_release(&sql);
	return -EIO;
}

/* A jd_server row as coord_read_server_reports selects it (query_list's parse). */
static void server_row_parse(MYSQL_ROW row, void *elem)
{
	struct coord_server_row *s = elem;
	struct server_report *r = &s->report;

	col(r->server, sizeof(r->server), row[0]);
	col(s->reported_by, sizeof(s->reported_by), row[1]);
	r->wikis = (size_t)row_num(row[2], 0);
	r->down = row_num(row[3], 0) != 0;
	col(r->down_why, sizeof(r->down_why), row[4]);
	r->sweep_ms = row_num(row[5], 0);
	r->budget_used = row[6] != NULL ? strtod(row[6], NULL) : 0;
	r->hot = (size_t)row_num(row[7], 0);
	r->unreadable = (size_t)row_num(row[8], 0);
	r->feed = (int)row_num(row[9], -1);
	col(r->feed_why, sizeof(r->feed_why), row[10]);
	s->age_ms = row_num(row[11], 0);
}

int coord_read_server_reports(struct db *db, const struct config *cfg, const char *scope,
			      struct coord_server_row **out, size_t *n, char *err, size_t errlen)
{
	struct buf sql;
	unsigned code;
	void *list;

	*out = NULL;
	*n = 0;
	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT server, reported_by, wikis, down, down_why, sweep_ms, budget_used, hot,"
		 " unreadable, feed, feed_why,"
		 " TIMESTAMPDIFF(MICROSECOND, updated_at, NOW(6)) DIV 1000"
		 " FROM `%s`.jd_server WHERE scope = ",
		 cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " ORDER BY server LIMIT 1000");
	if (query_list(db, &sql, sizeof(**out), server_row_parse, &list, n, &code, err, errlen) != 0)
		/* Only earlier releases have run here: nothing was reported. */
		return code == ER_NO_SUCH_TABLE ? 0 : -EIO;
	*out = list;
	return 0;
}

/* Reads columns `cols` of one jd_wiki row (the table is `w`, as in LANES_COLUMNS); *row
 * is NULL when there is none. The caller frees *res (which may be NULL). */
static int wiki_row(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		    const char *cols, MYSQL_RES **res, MYSQL_ROW *row, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	buf_addf(&sql, "SELECT %s FROM `%s`.jd_wiki w WHERE w.scope = ", cols, cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0 ||
	    (buf_adds(&sql, " AND w.domain = "), lit(db, &sql, domain, err, errlen)) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	return query_row(db, &sql, res, row, err, errlen);
}

int coord_wiki_failures(struct db *db, const struct config *cfg, const char *scope,
			const char *domain, int *failures, long long *ready_age_ms, char *err,
			size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	*failures = 0;
	*ready_age_ms = -1;
	if (wiki_row(db, cfg, scope, domain,
		     "failures, TIMESTAMPDIFF(MICROSECOND, oldest_ready_at, NOW(6)) DIV 1000", &res,
		     &row, err, errlen) != 0)
		return -EIO;
	if (row != NULL && row[0] != NULL) {
		long long v = 0;
		util_parse_int(row[0], 0, 1000000, &v);
		*failures = (int)v;
	}
	if (row != NULL && row[1] != NULL) {
		long long v = 0;
		/* A job stamped ahead of the database's clock has waited no time yet. */
		if (util_parse_int(row[1], LLONG_MIN, LLONG_MAX, &v) == 0)
			*ready_age_ms = v < 0 ? 0 : v;
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_wiki_lanes(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     struct lanes_state *st, char *err, size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	lanes_from_row(NULL, st);
	if (wiki_row(db, cfg, scope, domain, LANES_COLUMNS, &res, &row, err, errlen) != 0)
		return -EIO;
	lanes_from_row(row, st);
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_reduce_lanes(struct db *db, const struct config *cfg, const char *scope,
		       const char *domain, int lanes, enum lanes_why why, char *err, size_t errlen)
{
	const char *name = lanes_why_name(why);
	struct buf sql;
	unsigned long long matched;

	buf_init(&sql);
	buf_addf(&sql,
		 "UPDATE `%s`.jd_wiki SET lanes_reduced = %d, lanes_why = '%s',"
		 " lanes_changed_at = NOW(6) WHERE scope = ",
		 cfg->coord_db, lanes, name != NULL ? name : "locks");
	if (lit(db, &sql, scope, err, errlen) != 0 ||
	    (buf_adds(&sql, " AND domain = "), lit(db, &sql, domain, err, errlen)) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	/* The hold, in the statement: of the lanes that saw one episode, one halves. */
	buf_addf(&sql,
		 " AND (lanes_changed_at IS NULL OR lanes_changed_at <= NOW(6) - INTERVAL %d"
		 " MICROSECOND)",
		 LANES_DECREASE_HOLD_MS * 1000);
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	return matched > 0 ? 1 : 0;
}

int coord_renew_wiki(struct db *db, const struct config *cfg, const struct coord_lease *l,
		     char *err, size_t errlen)
{
	return renew(db, cfg, l, true, err, errlen);
}

/* "scope = '...'" and, unless domain is NULL, "AND domain = '...'". */
static int pause_where(struct db *db, struct buf *sql, const char *scope, const char *domain,
		       char *err, size_t errlen)
{
	buf_adds(sql, " WHERE scope = ");
	if (lit(db, sql, scope, err, errlen) != 0)
		return -EIO;
	if (domain == NULL)
		return 0;
	buf_adds(sql, " AND domain = ");
	return lit(db, sql, domain, err, errlen);
}

int coord_pause_set(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		    const char *by, const char *reason, long long for_s, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	buf_addf(&sql,
		 "REPLACE INTO `%s`.jd_pause (scope, domain, paused_by, reason, paused_at, until_at)"
		 " VALUES (",
		 cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0 ||
	    (buf_adds(&sql, ","), lit(db, &sql, domain, err, errlen)) != 0 ||
	    (buf_adds(&sql, ","), lit(db, &sql, by, err, errlen)) != 0 ||
	    (buf_adds(&sql, ","), lit(db, &sql, reason, err, errlen)) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	if (for_s > 0)
		buf_addf(&sql, ", NOW(6), NOW(6) + INTERVAL %lld SECOND)", for_s);
	else
		buf_adds(&sql, ", NOW(6), NULL)");
	return exec(db, &sql, NULL, err, errlen);
}

int coord_pause_clear(struct db *db, const struct config *cfg, const char *scope,
		      const char *domain, bool *was_paused, char *err, size_t errlen)
{
	struct buf sql;
	unsigned long long matched = 0;

	*was_paused = false;
	buf_init(&sql);
	buf_addf(&sql, "DELETE FROM `%s`.jd_pause", cfg->coord_db);
	if (pause_where(db, &sql, scope, domain, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " AND (until_at IS NULL OR until_at > NOW(6))");
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	*was_paused = matched > 0;
	/* Expired rows pause nothing, and nobody else deletes them. */
	buf_init(&sql);
	buf_addf(&sql, "DELETE FROM `%s`.jd_pause", cfg->coord_db);
	if (pause_where(db, &sql, scope, NULL, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " AND until_at <= NOW(6)");
	return exec(db, &sql, NULL, err, errlen);
}

/* A jd_pause row as coord_pause_list selects it (query_list's parse). */
static void pause_row_parse(MYSQL_ROW row, void *elem)
{
	struct coord_pause *p = elem;
	long long v = -1;

	snprintf(p->domain, sizeof(p->domain), "%s", row[0] ? row[0] : "");
	snprintf(p->by, sizeof(p->by), "%s", row[1] ? row[1] : "");
	snprintf(p->reason, sizeof(p->reason), "%s", row[2] ? row[2] : "");
	snprintf(p->since, sizeof(p->since), "%s", row[3] ? row[3] : "");
	snprintf(p->until, sizeof(p->until), "%s", row[4] ? row[4] : "");
	p->remaining_s = -1;
	if (row[5] != NULL && util_parse_int(row[5], INT64_MIN, INT64_MAX, &v) == 0)
		p->remaining_s = v < 0 ? 0 : v;
	p->age_s = 0;
	if (row[6] != NULL && util_parse_int(row[6], INT64_MIN, INT64_MAX, &v) == 0)
		p->age_s = v;
}

int coord_pause_list(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     struct coord_pause **out, size_t *n, char *err, size_t errlen)
{
	struct buf sql;
	unsigned code;
	void *list;

	*out = NULL;
	*n = 0;
	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT domain, paused_by, reason, DATE_FORMAT(paused_at, '%%Y-%%m-%%dT%%H:%%i:%%SZ'),"
		 " DATE_FORMAT(until_at, '%%Y-%%m-%%dT%%H:%%i:%%SZ'),"
		 " TIMESTAMPDIFF(SECOND, NOW(6), until_at), TIMESTAMPDIFF(SECOND, paused_at, NOW(6))"
		 " FROM `%s`.jd_pause",
		 cfg->coord_db);
	if (pause_where(db, &sql, scope, NULL, err, errlen) != 0)
		goto fail;
	if (domain != NULL) {
		buf_adds(&sql, " AND domain IN ('" COORD_ALL_WIKIS "', ");
		if (lit(db, &sql, domain, err, errlen) != 0)
			goto fail;
		buf_adds(&sql, ")");
	}
	/* The scope's pause first, then by domain; bounded: a list for people to read. */
	buf_adds(&sql, " AND (until_at IS NULL OR until_at > NOW(6))"
		       " ORDER BY domain <> '" COORD_ALL_WIKIS "' , domain LIMIT 1000");
	if (query_list(db, &sql, sizeof(**out), pause_row_parse, &list, n, &code, err, errlen) != 0)
		return -EIO;
	*out = list;
	return 0;
fail:
	buf_release(&sql);
	return -EIO;
}

int coord_pause_counts(struct db *db, const struct config *cfg, const char *scope, long long *wikis,
		       bool *all, char *err, size_t errlen)
{
	struct buf sql;
	MYSQL_RES *res;
	MYSQL_ROW row;

	*wikis = 0;
	*all = false;
	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT COALESCE(SUM(domain <> '" COORD_ALL_WIKIS "'), 0),"
		 " COALESCE(MAX(domain = '" COORD_ALL_WIKIS "'), 0) FROM `%s`.jd_pause",
		 cfg->coord_db);
	if (pause_where(db, &sql, scope, NULL, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " AND (until_at IS NULL OR until_at > NOW(6))");
	if (query_row(db, &sql, &res, &row, err, errlen) != 0)
		return -EIO;
	if (row != NULL) {
		long long v = 0;
		if (row[0] != NULL && util_parse_int(row[0], 0, INT64_MAX, &v) == 0)
			*wikis = v;
		*all = row[1] != NULL && strcmp(row[1], "1") == 0;
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_wiki_types(struct db *db, const struct config *cfg, const char *scope, const char *domain,
		     char *types, size_t typeslen, char seen[32], char *err, size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	types[0] = '\0';
	seen[0] = '\0';
	if (wiki_row(db, cfg, scope, domain, "ready_type_names, seen_at", &res, &row, err,
		     errlen) != 0)
		return -EIO;
	if (row != NULL) {
		snprintf(types, typeslen, "%s", row[0] ? row[0] : "");
		snprintf(seen, 32, "%s", row[1] ? row[1] : "");
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_wiki_detail(struct db *db, const struct config *cfg, const char *scope,
		      const char *domain, struct coord_wiki_detail *out, char *err, size_t errlen)
{
	struct buf sql;
	MYSQL_RES *res;
	MYSQL_ROW row;
	const char *d = cfg->coord_db;

	memset(out, 0, sizeof(*out));
	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT TIMESTAMPDIFF(SECOND, w.oldest_ready_at, NOW(6)), w.ready_types,"
		 " w.ready_type_names, w.scan_error, TIMESTAMPDIFF(SECOND,"
		 " GREATEST(w.seen_at, COALESCE(s.sweep_started_at, w.seen_at)), NOW(6)),"
		 " TIMESTAMPDIFF(SECOND, NOW(6), w.backoff_until), w.failures,"
		 " TIMESTAMPDIFF(SECOND, NOW(6), w.parked_until), w.last_outcome, w.last_holder,"
		 " TIMESTAMPDIFF(SECOND, w.last_batch_at, NOW(6)), w.orphaned_claims,"
		 " w.abandoned_jobs, w.recent_drains,"
		 " IF(l.expires_at > NOW(6), l.holder, NULL), TIMESTAMPDIFF(SECOND, NOW(6), l.expires_at),"
		 " l.token, TIMESTAMPDIFF(SECOND, l.acquired_at, NOW(6))," LANES_HELD
		 "," LANES_COLUMNS " FROM `%s`.jd_wiki w LEFT JOIN `%s`.jd_lease l"
		 " ON l.scope = w.scope AND l.name = w.domain AND l.slot = 0"
		 " LEFT JOIN `%s`.jd_scan s ON s.scope = w.scope WHERE w.scope = ",
		 d, d, d, d);
	if (lit(db, &sql, scope, err, errlen) != 0 ||
	    (buf_adds(&sql, " AND w.domain = "), lit(db, &sql, domain, err, errlen)) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	if (query_row(db, &sql, &res, &row, err, errlen) != 0)
		return -EIO;
	out->found = row != NULL;
	/* A wiki not scanned yet has no row: nothing ready, never drained, no reduction. */
	out->oldest_ready_age_s = out->scan_age_s = out->last_batch_s = -1;
	lanes_from_row(NULL, &out->lanes);
	if (row != NULL) {
		out->oldest_ready_age_s = row_num(row[0], -1);
		out->ready_types = (int)row_num(row[1], 0);
		col(out->ready_type_names, sizeof(out->ready_type_names), row[2]);
		col(out->scan_error, sizeof(out->scan_error), row[3]);
		out->scan_age_s = row_num(row[4], -1);
		out->backoff_s = row_num(row[5], 0);
		out->failures = (int)row_num(row[6], 0);
		out->parked_s = row_num(row[7], 0);
		col(out->last_outcome, sizeof(out->last_outcome), row[8]);
		col(out->last_holder, sizeof(out->last_holder), row[9]);
		out->last_batch_s = row_num(row[10], -1);
		out->orphaned_claims = row_num(row[11], 0);
		out->abandoned_jobs = row_num(row[12], 0);
		col(out->recent_drains, sizeof(out->recent_drains), row[13]);
		col(out->holder, sizeof(out->holder), row[14]);
		out->lease_s = row[14] ? row_num(row[15], 0) : 0;
		out->lease_token = row_num(row[16], 0);
		out->lease_age_s = row[14] ? row_num(row[17], 0) : 0;
		out->lanes_held = (int)row_num(row[18], 0);
		lanes_from_row(row + 19, &out->lanes);
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_abandoned_wikis(struct db *db, const struct config *cfg, const char *scope, int limit,
			  struct buf *out, int *count, char *err, size_t errlen)
{
	struct buf sql;

	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT CONCAT(domain, ' ', abandoned_jobs) FROM `%s`.jd_wiki"
		 " WHERE abandoned_jobs > 0 AND scope = ",
		 cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_addf(&sql, " ORDER BY abandoned_jobs DESC, domain LIMIT %d", limit);
	return collect_names(db, &sql, out, count, err, errlen);
}

int coord_fleet_status(struct db *db, const struct config *cfg, const char *scope,
		       void (*each)(const struct coord_wiki_status *w, void *arg), void *arg,
		       char *err, size_t errlen)
{
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	unsigned code;
	int rc;

	buf_init(&sql);
	buf_addf(&sql,
		 "SELECT w.domain, TIMESTAMPDIFF(SECOND, w.oldest_ready_at, NOW(6)), w.ready_types,"
		 " IF(l.expires_at > NOW(6), l.holder, NULL),"
		 " TIMESTAMPDIFF(SECOND, NOW(6), l.expires_at),"
		 " TIMESTAMPDIFF(SECOND, NOW(6), w.backoff_until), w.parked_until > NOW(6),"
		 " w.failures, w.last_outcome, w.last_holder,"
		 " TIMESTAMPDIFF(SECOND, w.last_batch_at, NOW(6)), w.scan_error,"
		 " w.orphaned_claims, TIMESTAMPDIFF(SECOND, w.oldest_claim_at, NOW(6))," WIKI_PAUSED
		 " FROM `%s`.jd_wiki w LEFT JOIN `%s`.jd_lease l"
		 " ON l.scope = w.scope AND l.name = w.domain AND l.slot = 0 WHERE w.scope = ",
		 cfg->coord_db, cfg->coord_db, cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	buf_adds(&sql, " ORDER BY (w.oldest_ready_at IS NULL OR w.parked_until > NOW(6)) ,"
		       " (w.backoff_until > NOW(6) OR w.scan_error IS NOT NULL) DESC,"
		       " w.oldest_ready_at, w.domain");
	if (sql.failed) {
		snprintf(err, errlen, "out of memory");
		rc = -EIO;
	} else {
		rc = db_query(db, sql.data, &res, &code, err, errlen);
	}
	buf_release(&sql);
	while (rc == 0 && res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		long long orphans = row_num(row[12], 0);
		struct coord_wiki_status w = {
			.domain = row[0],
			.age_s = row_num(row[1], -1),
			.ready_types = (int)row_num(row[2], -1),
			.holder = row[3],
			.lease_s = row[3] ? row_num(row[4], -1) : -1,
			.backoff_s = row_num(row[5], -1),
			.parked = row[6] && strcmp(row[6], "1") == 0,
			.failures = (int)row_num(row[7], -1),
			.last_outcome = row[8],
			.last_holder = row[9],
			.last_batch_s = row_num(row[10], -1),
			.scan_error = row[11],
			.orphans = orphans,
			.orphan_age_s = orphans > 0 ? row_num(row[13], -1) : -1,
			.paused = row[14] && strcmp(row[14], "1") == 0,
		};
		each(&w, arg);
	}
	if (res != NULL)
		mysql_free_result(res);
	return rc == 0 ? 0 : -EIO;
}

int coord_summary(struct db *db, const struct config *cfg, const char *scope,
		  struct coord_summary *out, char *err, size_t errlen)
{
	struct buf sql;
	MYSQL_RES *res;
	MYSQL_ROW row;

	memset(out, 0, sizeof(*out));
	buf_init(&sql);
	/* Parked and paused wikis' old rows are not a backlog anyone may run: left out of
	 * the age (paused ones show in jobdrainer_wikis_paused instead).
	 * The scan age: how old the fleet's oldest figure is. A row is rewritten (seen_at)
	 * when its figures change; one left unchanged by the last complete sweep is as
	 * fresh as that sweep's start (jd_scan). */
	buf_addf(&sql,
		 "SELECT COUNT(*), SUM(oldest_ready_at IS NOT NULL AND scan_error IS NULL"
		 " AND (parked_until IS NULL OR parked_until <= NOW(6))),"
		 " TIMESTAMPDIFF(MICROSECOND, MIN(IF(parked_until > NOW(6) OR scan_error IS NOT NULL"
		 " OR NOT (1" WIKI_NOT_PAUSED "), NULL, oldest_ready_at)), NOW(6)),"
		 " SUM(backoff_until > NOW(6)), SUM(parked_until > NOW(6)), SUM(scan_error IS NOT NULL),"
		 " TIMESTAMPDIFF(MICROSECOND, GREATEST(MIN(seen_at),"
		 " COALESCE(MAX(s.sweep_started_at), MIN(seen_at))), NOW(6)), SUM(orphaned_claims),"
		 " TIMESTAMPDIFF(MICROSECOND, MIN(IF(orphaned_claims > 0, oldest_claim_at, NULL)),"
		 " NOW(6))"
		 " FROM `%s`.jd_wiki w LEFT JOIN `%s`.jd_scan s ON s.scope = w.scope"
		 " WHERE w.scope = ",
		 cfg->coord_db, cfg->coord_db, cfg->coord_db);
	if (lit(db, &sql, scope, err, errlen) != 0) {
		buf_release(&sql);
		return -EIO;
	}
	if (query_row(db, &sql, &res, &row, err, errlen) != 0)
		return -EIO;
	if (row != NULL) {
		long long v[9] = { 0 };
		for (int i = 0; i < 9; i++)
			if (row[i] != NULL)
				util_parse_int(row[i], INT64_MIN, INT64_MAX, &v[i]);
		out->wikis = v[0];
		out->with_backlog = v[1];
		out->oldest_ready_age_ms = row[2] ? v[2] / 1000 : -1;
		out->backed_off = v[3];
		out->parked = v[4];
		out->unreadable = v[5];
		out->scan_age_ms = row[6] ? v[6] / 1000 : -1;
		out->orphaned_claims = v[7];
		out->oldest_claim_age_ms = row[8] ? v[8] / 1000 : -1;
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int coord_clear_outage_backoffs(struct db *db, const struct config *cfg, const char *scope,
				const char *holder, int64_t since_ms_ago, long long *cleared,
				char *err, size_t errlen)
{
	struct buf sql;
	unsigned long long matched = 0;

	*cleared = 0;
	buf_init(&sql);
	/* Only failures MediaWiki itself causes (a dead PHP answers 5xx, times out or
	 * refuses): a wiki backed off for its own garbage or secret stays backed off. */
	buf_addf(&sql,
		 "UPDATE `%s`.jd_wiki SET backoff_until = NULL, failures = 0"
		 " WHERE backoff_until > NOW(6)"
		 " AND last_batch_at >= NOW(6) - INTERVAL %lld MICROSECOND"
		 " AND last_outcome IN ('server_error', 'timeout', 'refused') AND scope = ",
		 cfg->coord_db, (long long)since_ms_ago * 1000);
	if (lit(db, &sql, scope, err, errlen) != 0)
		goto fail;
	buf_adds(&sql, " AND last_holder = ");
	if (lit(db, &sql, holder, err, errlen) != 0)
		goto fail;
	if (exec(db, &sql, &matched, err, errlen) != 0)
		return -EIO;
	*cleared = (long long)matched;
	return 0;
fail:
	buf_release(&sql);
	return -EIO;
}
