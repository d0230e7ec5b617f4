/* scan.c - see scan.h. */
#include "scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "jobtype.h"
#include "util.h"

/* Reads n decimal digits; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int64_t scan_parse_mw_timestamp(const char *ts)
{
	static const int days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct tm tm;
	int year, mon, mday, hour, min, sec;

	if (ts == NULL || strlen(ts) != 14)
		return 0;
	year = digits(ts, 4);
	mon = digits(ts + 4, 2);
	mday = digits(ts + 6, 2);
	hour = digits(ts + 8, 2);
	min = digits(ts + 10, 2);
	sec = digits(ts + 12, 2);
	if (year < 1970 || mon < 1 || mon > 12 || mday < 1 || mday > days[mon - 1] ||
	    hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm) * 1000;
}

/* MediaWiki's timestamp format for the wall-clock time `seconds_ago` before now. */
static void mw_timestamp_ago(int seconds_ago, char out[16])
{
	time_t t = time(NULL) - seconds_ago;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* Identifiers were validated by discovery ([A-Za-z0-9_$]), so backquoting is safe.
 * Columns: wiki index, kind ('r' ready, 'm' max id, 'c' claims), timestamp, number,
 * timestamp. A 'c' row covers the claims older than orphan_before: the oldest claim's
 * time, their count, and the oldest queue time among those older than stale_before
 * (MediaWiki recycles those on pop: ready work). Claims are looked at only for job
 * types that have claimed rows at all, found through the (job_cmd, job_token) index. */
static void add_wiki_query(struct buf *sql, size_t idx, const struct wiki *w,
			   const char *stale_before, const char *orphan_before)
{
	const char *d = w->dbname, *p = w->table_prefix;

	buf_addf(sql,
		 "(SELECT %zu, 'r', j.job_timestamp, NULL, NULL, j.job_cmd FROM `%s`.`%sjob` j"
		 " JOIN (SELECT job_cmd, MIN(job_id) AS id FROM `%s`.`%sjob`"
		 " WHERE job_token = '' GROUP BY job_cmd) m ON j.job_id = m.id)",
		 idx, d, p, d, p);
	if (stale_before == NULL)
		return; /* a light scan */
	buf_addf(sql, " UNION ALL (SELECT %zu, 'm', NULL, MAX(job_id), NULL, NULL FROM `%s`.`%sjob`)",
		 idx, d, p);
	buf_addf(sql,
		 " UNION ALL (SELECT %zu, 'c', MIN(j.job_token_timestamp), COUNT(*),"
		 " MIN(IF(j.job_token_timestamp < '%s', j.job_timestamp, NULL)),"
		 " SUM(j.job_attempts >= %d) FROM `%s`.`%sjob` j"
		 " WHERE j.job_cmd IN (SELECT c.job_cmd FROM (SELECT job_cmd, MAX(job_token) AS t"
		 " FROM `%s`.`%sjob` GROUP BY job_cmd) c WHERE c.t > '')"
		 " AND j.job_token > '' AND j.job_token_timestamp < '%s' HAVING COUNT(*) > 0)",
		 idx, stale_before, SCAN_MAX_ATTEMPTS, d, p, d, p, orphan_before);
}

/* Notes a ready job type for the job-type lists (jobtype.h), while it fits. */
static void note_type(struct backlog *b, const char *type)
{
	size_t have = strlen(b->types), n = strlen(type);

	if (n == 0 || n > JOBTYPE_MAX || have + n + 2 > sizeof(b->types))
		return;
	snprintf(b->types + have, sizeof(b->types) - have, "%s%s", have ? " " : "", type);
}

/* Counts a ready (or recycled) job queued at the MediaWiki timestamp ts. */
static void note_ready(struct backlog *b, const char *ts)
{
	int64_t queued = scan_parse_mw_timestamp(ts);

	b->ready_types++;
	/* An unreadable timestamp still means "ready work": count it as queued now. */
	if (queued == 0)
		queued = util_wall_ms();
	if (b->oldest_ready_ms == 0 || queued < b->oldest_ready_ms)
		b->oldest_ready_ms = queued;
}

/* Runs the statement for wikis [from, to). 0 ok, 1 the statement failed (err set; the
 * wikis' own problem), -EIO the database cannot be reached or out of memory. */
static int run_group(struct db *db, struct wiki *const *wikis, size_t from, size_t to,
		     enum scan_depth depth, const char *skip, struct backlog *out,
		     struct scan_stats *stats, struct buf *sql, char *err, size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	unsigned code;
	char stale_before[16], orphan_before[16];
	bool full = depth == SCAN_FULL;
	int rc;

	mw_timestamp_ago(SCAN_CLAIM_TTL_SECONDS, stale_before);
	mw_timestamp_ago(SCAN_ORPHAN_AFTER_SECONDS, orphan_before);
	buf_reset(sql);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			buf_adds(sql, " UNION ALL ");
		add_wiki_query(sql, i, wikis[i], full ? stale_before : NULL, orphan_before);
	}
	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	stats->queries++;
	rc = db_query(db, sql->data, &res, &code, err, errlen);
	if (rc == -ENOTCONN)
		return -EIO;
	if (rc != 0)
		return 1;
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		long long idx, num = 0;
		if (row[0] == NULL || row[1] == NULL ||
		    util_parse_int(row[0], (long long)from, (long long)to - 1, &idx))
			continue;
		if (row[3] != NULL && util_parse_int(row[3], 0, INT64_MAX, &num) != 0)
			num = 0;
		if (row[1][0] == 'm') {
			out[idx].max_job_id = (uint64_t)num;
		} else if (row[1][0] == 'c') {
			out[idx].orphaned_claims = num > INT32_MAX ? INT32_MAX : (int)num;
			out[idx].oldest_claim_ms = scan_parse_mw_timestamp(row[2]);
			if (row[5] != NULL && util_parse_int(row[5], 0, INT32_MAX, &num) == 0)
				out[idx].abandoned = (int)num;
			if (row[4] != NULL)
				note_ready(&out[idx], row[4]);
		} else if (row[5] == NULL || jobtype_match(skip, row[5]) < 0) {
			/* A type left to other runners is no backlog of ours. */
			note_ready(&out[idx], row[2]);
			if (row[5] != NULL)
				note_type(&out[idx], row[5]);
		}
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

static void mark_failed(struct backlog *b, const char *why)
{
	b->failed = true;
	snprintf(b->error, sizeof(b->error), "%s", why);
}

int scan_run(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
	     enum scan_depth depth, struct backlog *out, struct scan_stats *stats, char *err,
	     size_t errlen)
{
	return scan_run_skipping(db, wikis, n, wikis_per_query, depth, "", out, stats, err,
				 errlen);
}

int scan_run_skipping(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
		      enum scan_depth depth, const char *skip, struct backlog *out,
		      struct scan_stats *stats, char *err, size_t errlen)
{
	struct buf sql;
	int64_t start = util_mono_ms();
	int rc = 0;

	memset(out, 0, n * sizeof(*out));
	memset(stats, 0, sizeof(*stats));
	for (size_t i = 0; i < n; i++)
		out[i].orphaned_claims = depth == SCAN_FULL ? 0 : -1;
	buf_init(&sql);
	for (size_t from = 0; from < n && rc >= 0; from += (size_t)wikis_per_query) {
		size_t to = from + (size_t)wikis_per_query < n ? from + (size_t)wikis_per_query : n;
		char why[sizeof(out[0].error)];
		rc = run_group(db, wikis, from, to, depth, skip, out, stats, &sql, why,
			       sizeof(why));
		if (rc == 1 && to - from == 1) {
			mark_failed(&out[from], why);
			rc = 0;
		} else if (rc == 1) {
			/* Some wiki of the group failed it: find which, one at a time. */
			rc = 0;
			for (size_t i = from; i < to && rc >= 0; i++) {
				rc = run_group(db, wikis, i, i + 1, depth, skip, out, stats, &sql,
					       why, sizeof(why));
				if (rc == 1) {
					mark_failed(&out[i], why);
					rc = 0;
				}
			}
		}
		if (rc < 0)
			snprintf(err, errlen, "%s", why);
	}
	buf_release(&sql);
	stats->took_ms = util_mono_ms() - start;
	return rc < 0 ? -EIO : 0;
}

/* Appends one type's row of the status --wiki statement. */
static int add_type_query(struct db *db, struct buf *sql, const struct wiki *w,
			  const char *type, char *err, size_t errlen)
{
	const char *d = w->dbname, *p = w->table_prefix;
	struct buf t;
	int rc;

	buf_init(&t);
	rc = db_quote(db, &t, type, err, errlen);
	if (rc == 0 && !t.failed)
		buf_addf(sql,
			 "(SELECT %s, r.n, o.ts, c.n, c.a FROM"
			 " (SELECT COUNT(*) n FROM (SELECT 1 FROM `%s`.`%sjob` WHERE job_cmd = %s"
			 " AND job_token = '' LIMIT %d) x) r"
			 " JOIN (SELECT COUNT(*) n, COALESCE(SUM(job_attempts >= %d), 0) a FROM"
			 " (SELECT job_attempts FROM `%s`.`%sjob` WHERE job_cmd = %s AND job_token > ''"
			 " LIMIT %d) y) c"
			 " LEFT JOIN (SELECT job_timestamp ts FROM `%s`.`%sjob` WHERE job_cmd = %s"
			 " AND job_token = '' ORDER BY job_id LIMIT 1) o ON 1)",
			 t.data, d, p, t.data, SCAN_VIEW_READY_CAP, SCAN_MAX_ATTEMPTS, d, p, t.data,
			 SCAN_VIEW_CLAIMED_CAP, d, p, t.data);
	buf_release(&t);
	return rc;
}

int scan_wiki_types(struct db *db, const struct wiki *w, struct scan_type_row **out,
		    size_t *n, char *err, size_t errlen)
{
	struct scan_type_row *rows = NULL;
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	unsigned code;
	size_t count = 0;
	int rc = -EIO;

	*out = NULL;
	*n = 0;
	buf_init(&sql);
	buf_addf(&sql, "SELECT DISTINCT job_cmd FROM `%s`.`%sjob` ORDER BY job_cmd LIMIT %d",
		 w->dbname, w->table_prefix, SCAN_VIEW_TYPES);
	if (sql.failed || db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	rows = calloc(SCAN_VIEW_TYPES + 1, sizeof(*rows));
	if (rows == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	buf_reset(&sql);
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		if (row[0] == NULL)
			continue;
		if (count > 0)
			buf_adds(&sql, " UNION ALL ");
		if (add_type_query(db, &sql, w, row[0], err, errlen) != 0)
			goto out;
		count++;
	}
	if (res != NULL)
		mysql_free_result(res);
	res = NULL;
	if (count == 0) {
		rc = 0;
		goto out;
	}
	buf_adds(&sql, " ORDER BY 1");
	if (sql.failed || db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	count = 0;
	while (res != NULL && count < SCAN_VIEW_TYPES && (row = mysql_fetch_row(res)) != NULL) {
		struct scan_type_row *r = &rows[count++];
		long long v;
		snprintf(r->type, sizeof(r->type), "%s", row[0] ? row[0] : "");
		r->ready = row[1] && util_parse_int(row[1], 0, INT64_MAX, &v) == 0 ? v : 0;
		r->oldest_ready_ms = scan_parse_mw_timestamp(row[2]);
		r->claimed = row[3] && util_parse_int(row[3], 0, INT64_MAX, &v) == 0 ? v : 0;
		r->abandoned = row[4] && util_parse_int(row[4], 0, INT64_MAX, &v) == 0 ? v : 0;
	}
	rc = 0;
out:
	if (res != NULL)
		mysql_free_result(res);
	buf_release(&sql);
	if (rc != 0 || count == 0) {
		free(rows);
		rows = NULL;
		count = 0;
	}
	*out = rows;
	*n = count;
	return rc;
}
