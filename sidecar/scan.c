/* scan.c - see scan.h. */
#include "scan.h"

#include <errno.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Identifiers were validated by discovery ([A-Za-z0-9_$]), so backquoting is safe.
 * Columns: wiki index, kind ('r' ready, 's' stale claim, 'm' max id), timestamp, max id. */
static void add_wiki_query(struct buf *sql, size_t idx, const struct wiki *w,
			   const char *stale_before)
{
	const char *d = w->dbname, *p = w->table_prefix;

	buf_addf(sql,
		 "(SELECT %zu, 'r', j.job_timestamp, NULL FROM `%s`.`%sjob` j"
		 " JOIN (SELECT job_cmd, MIN(job_id) AS id FROM `%s`.`%sjob`"
		 " WHERE job_token = '' GROUP BY job_cmd) m ON j.job_id = m.id)",
		 idx, d, p, d, p);
	if (stale_before == NULL)
		return; /* a light scan */
	buf_addf(sql, " UNION ALL (SELECT %zu, 'm', NULL, MAX(job_id) FROM `%s`.`%sjob`)", idx, d,
		 p);
	buf_addf(sql,
		 " UNION ALL (SELECT %zu, 's', MIN(j.job_timestamp), NULL FROM `%s`.`%sjob` j"
		 " WHERE j.job_cmd IN (SELECT c.job_cmd FROM (SELECT job_cmd, MAX(job_token) AS t"
		 " FROM `%s`.`%sjob` GROUP BY job_cmd) c WHERE c.t > '')"
		 " AND j.job_token > '' AND j.job_token_timestamp < '%s' HAVING COUNT(*) > 0)",
		 idx, d, p, d, p, stale_before);
}

/* Errors that belong to one wiki's tables, not to the database as a whole. */
static bool wiki_error(unsigned code)
{
	return code == ER_NO_SUCH_TABLE || code == ER_BAD_DB_ERROR ||
	       code == ER_TABLEACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR ||
	       code == ER_BAD_FIELD_ERROR || code == ER_COLUMNACCESS_DENIED_ERROR;
}

/* Runs the statement for wikis [from, to). 0 ok, 1 a wiki's own error (code/err set),
 * -EIO database failure. */
static int run_group(struct db *db, struct wiki *const *wikis, size_t from, size_t to,
		     enum scan_depth depth, struct backlog *out, struct scan_stats *stats,
		     struct buf *sql, char *err, size_t errlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	unsigned code;

	char stale_before[16];
	time_t cutoff = time(NULL) - SCAN_CLAIM_TTL_SECONDS;
	struct tm tm;

	gmtime_r(&cutoff, &tm);
	strftime(stale_before, sizeof(stale_before), "%Y%m%d%H%M%S", &tm);
	buf_reset(sql);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			buf_adds(sql, " UNION ALL ");
		add_wiki_query(sql, i, wikis[i], depth == SCAN_FULL ? stale_before : NULL);
	}
	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	stats->queries++;
	if (db_query(db, sql->data, &res, &code, err, errlen) != 0)
		return wiki_error(code) ? 1 : -EIO;
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		long long idx;
		int64_t queued;
		if (row[0] == NULL || row[1] == NULL ||
		    util_parse_int(row[0], (long long)from, (long long)to - 1, &idx))
			continue;
		if (row[1][0] == 'm') {
			long long max_id = 0;
			if (row[3] != NULL && util_parse_int(row[3], 0, INT64_MAX, &max_id) == 0)
				out[idx].max_job_id = (uint64_t)max_id;
			continue;
		}
		queued = scan_parse_mw_timestamp(row[2]);
		out[idx].ready_types++;
		/* An unreadable timestamp still means "ready work": count it as queued now. */
		if (queued == 0)
			queued = util_wall_ms();
		if (out[idx].oldest_ready_ms == 0 || queued < out[idx].oldest_ready_ms)
			out[idx].oldest_ready_ms = queued;
	}
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

int scan_run(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
	     enum scan_depth depth, struct backlog *out, struct scan_stats *stats, char *err,
	     size_t errlen)
{
	struct buf sql;
	int64_t start = util_mono_ms();
	int rc = 0;

	memset(out, 0, n * sizeof(*out));
	memset(stats, 0, sizeof(*stats));
	buf_init(&sql);
	for (size_t from = 0; from < n && rc == 0; from += (size_t)wikis_per_query) {
		size_t to = from + (size_t)wikis_per_query < n ? from + (size_t)wikis_per_query : n;
		rc = run_group(db, wikis, from, to, depth, out, stats, &sql, err, errlen);
		if (rc != 1)
			continue;
		/* One wiki's table is missing: find which, one at a time. */
		rc = 0;
		for (size_t i = from; i < to && rc == 0; i++) {
			char why[sizeof(out[i].error)];
			rc = run_group(db, wikis, i, i + 1, depth, out, stats, &sql, why, sizeof(why));
			if (rc == 1) {
				out[i].failed = true;
				memcpy(out[i].error, why, sizeof(why));
				rc = 0;
			} else if (rc != 0) {
				snprintf(err, errlen, "%s", why);
			}
		}
	}
	buf_release(&sql);
	stats->took_ms = util_mono_ms() - start;
	return rc;
}
