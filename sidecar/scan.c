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

int scan_endpoint_for(const struct config *cfg, const char *server, struct scan_endpoint *out)
{
	static char none[] = "";
	const struct db_endpoint *login;
	char canon[UTIL_DB_SERVER_MAX];

	out->ep = cfg->scan;
	snprintf(out->name, sizeof(out->name), "scan_db");
	if (server == NULL)
		return 0;
	/* Discovery skips such rows first; this is the only way to a connection. */
	if (util_canon_db_server(server, canon, sizeof(canon)) != 0 ||
	    !config_server_allowed(cfg, canon) ||
	    util_parse_db_server(canon, out->host, sizeof(out->host), &out->ep.port) != 0)
		return -EINVAL;
	/* Whose credentials go there is config's rule; config_load refuses an allowed
	 * server without any, so NULL here is a rule changed in one place only. */
	if ((login = config_scan_login(cfg, canon)) == NULL)
		return -EACCES;
	out->ep.user = login->user;
	out->ep.password = login->password;
	out->ep.tls = login->tls;
	out->ep.tls_ca = login->tls_ca;
	out->ep.host = out->host;
	/* A server elsewhere: TCP, whatever [scan_db] uses locally ("" is none), and no
	 * default database ([scan_db]'s may not exist there: the scan names each table
	 * with its database). */
	out->ep.socket = none;
	out->ep.database = none;
	snprintf(out->name, sizeof(out->name), "scan_db %s", server);
	return 0;
}

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
	if (year < 1970 || mon < 1 || mon > 12 || mday < 1 || mday > days[mon - 1] || hour < 0 ||
	    hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
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
 * One table open per wiki: GROUP BY (job_cmd, job_token) with MIN and MAX of job_id is
 * a loose scan of MediaWiki's index (job_cmd, job_token, job_id) ("Using index for
 * group-by"): one index dive per group, whatever the backlog. The groups are one per
 * job type with ready rows (job_token '') and one per claim (MediaWiki claims one row
 * per claim token). Columns: wiki index, job_token, MIN(job_id), MAX(job_id), job_cmd. */
static void add_wiki_query(struct buf *sql, size_t idx, const struct wiki *w)
{
	buf_addf(sql,
		 "(SELECT %zu, job_token, MIN(job_id), MAX(job_id), job_cmd FROM `%s`.`%sjob`"
		 " GROUP BY job_cmd, job_token)",
		 idx, w->dbname, w->table_prefix);
}

/* Notes a ready job type (its list form, jobtype.h) for the job-type lists, while it
 * fits. */
static void note_type(struct backlog *b, const char *type)
{
	size_t have = strlen(b->types), n = strlen(type);

	if (n == 0 || have + n + 2 > sizeof(b->types))
		return;
	snprintf(b->types + have, sizeof(b->types) - have, "%s%s", have ? " " : "", type);
}

/* What the first statement pointed at, to be read once more: the oldest ready job of a
 * type, by primary key (for its queue time), or in a full scan the rows of one claim
 * (job_cmd, job_token), through the same index (for their claim times). */
struct lookup {
	size_t idx;
	unsigned long long id;
	bool claimed;
	bool answered;
	char cmd_hex[2 * 60 + 1];   /* job_cmd is VARBINARY(60) */
	char token_hex[2 * 32 + 1]; /* job_token VARBINARY(32) */
};

struct lookups {
	struct lookup *items;
	size_t len, cap;
};

/* Binary-safe SQL literal material: hex digits (for X'...'), cut at outlen. */
static void to_hex(const char *p, unsigned long len, char *out, size_t outlen)
{
	static const char digits[] = "0123456789abcdef";
	size_t o = 0;

	for (unsigned long i = 0; i < len && o + 2 < outlen; i++) {
		out[o++] = digits[(unsigned char)p[i] >> 4];
		out[o++] = digits[(unsigned char)p[i] & 15];
	}
	out[o] = '\0';
}

static int lookups_add(struct lookups *l, size_t idx, unsigned long long id, bool claimed,
		       MYSQL_ROW row, const unsigned long *lengths)
{
	if (l->len == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct lookup *p = realloc(l->items, cap * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	l->items[l->len] = (struct lookup){ .idx = idx, .id = id, .claimed = claimed };
	if (claimed) {
		to_hex(row[4], lengths[4], l->items[l->len].cmd_hex,
		       sizeof(l->items[l->len].cmd_hex));
		to_hex(row[1], lengths[1], l->items[l->len].token_hex,
		       sizeof(l->items[l->len].token_hex));
	}
	l->len++;
	return 0;
}

/* The second statement, for the wikis with rows to look up only (usually the few with
 * a backlog): the oldest ready rows by primary key, and in a full scan the claimed rows
 * by (job_cmd, job_token). Columns: wiki index, job_id, job_timestamp, job_token,
 * job_token_timestamp, job_attempts. */
static void add_lookup_query(struct buf *sql, const struct lookups *l, struct wiki *const *wikis)
{
	for (size_t i = 0, end; i < l->len; i = end) {
		size_t idx = l->items[i].idx;
		const struct wiki *w = wikis[idx];
		int ids = 0;
		for (end = i; end < l->len && l->items[end].idx == idx; end++) {
			ids += !l->items[end].claimed;
		}
		buf_adds(sql, sql->len ? " UNION ALL " : "");
		buf_addf(sql,
			 "(SELECT %zu, job_id, job_timestamp, job_token, job_token_timestamp,"
			 " job_attempts FROM `%s`.`%sjob` WHERE ",
			 idx, w->dbname, w->table_prefix);
		if (ids > 0) {
			buf_adds(sql, "job_id IN (");
			for (size_t j = i, n = 0; j < end; j++)
				if (!l->items[j].claimed)
					buf_addf(sql, "%s%llu", n++ ? "," : "", l->items[j].id);
			buf_adds(sql, ")");
		}
		for (size_t j = i, n = 0; j < end; j++) {
			if (!l->items[j].claimed)
				continue;
			buf_addf(sql, "%s(job_cmd = X'%s' AND job_token = X'%s')",
				 ids > 0 || n++ ? " OR " : "", l->items[j].cmd_hex,
				 l->items[j].token_hex);
		}
		buf_adds(sql, ")");
	}
}

/* The oldest ready (or recycled) job was queued at ms (0: unknown, counted as now). */
static void note_oldest(struct backlog *b, int64_t queued)
{
	/* An unreadable timestamp still means "ready work": count it as queued now. */
	if (queued == 0)
		queued = util_wall_ms();
	if (b->oldest_ready_ms == 0 || queued < b->oldest_ready_ms)
		b->oldest_ready_ms = queued;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Whose failure a statement's was (scan.h). */
#define SENT_FAILED 1    /* the wikis' (err set) */
#define SENT_TIMED_OUT 2 /* the wikis', stopped by the session's limits (db.h) */

/* Sends one statement and counts what it cost: 0, SENT_FAILED, SENT_TIMED_OUT, or -EIO
 * (the server's failure: it cannot be reached, or the connection was lost during the
 * statement). */
static int send(struct db *db, const char *sql, MYSQL_RES **res, struct scan_stats *stats,
		char *err, size_t errlen)
{
	int64_t t0 = mono_us();
	unsigned code;
	int rc;

	stats->queries++;
	rc = db_query(db, sql, res, &code, err, errlen);
	/* A failed statement of index dives was waiting (on a lock, for the server's time
	 * limit or the read timeout), which costs the server next to nothing: charged
	 * SCAN_FAILED_COST_US at most, or one locked table would stall every sweep. */
	t0 = mono_us() - t0;
	stats->db_us += rc != 0 && t0 > SCAN_FAILED_COST_US ? SCAN_FAILED_COST_US : t0;
	if (rc == 0)
		return 0;
	/* A connection lost mid-statement (2013, 2006, killed) is the server's: a wiki's
	 * table cannot cut a connection, and a statement stuck on a lock ends on the server
	 * (its limits, db_set_statement_limits) before the client's read timeout. */
	if (rc == -ENOTCONN || db_connection_lost(code))
		return -EIO;
	return db_statement_timed_out(code) ? SENT_TIMED_OUT : SENT_FAILED;
}

/* Reads the looked-up rows into out: queue times, and in a full scan claims. */
static int run_lookups(struct db *db, struct wiki *const *wikis, size_t from, size_t to, bool full,
		       struct lookups *l, struct backlog *out, struct scan_stats *stats,
		       struct buf *sql, char *err, size_t errlen)
{
	char stale_before[16], orphan_before[16];
	bool *stale_counted;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	if (l->len == 0)
		return 0;
	mw_timestamp_ago(SCAN_CLAIM_TTL_SECONDS, stale_before);
	mw_timestamp_ago(SCAN_ORPHAN_AFTER_SECONDS, orphan_before);
	buf_reset(sql);
	add_lookup_query(sql, l, wikis);
	stale_counted = calloc(to - from, sizeof(*stale_counted));
	if (sql->failed || stale_counted == NULL) {
		free(stale_counted);
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	rc = send(db, sql->data, &res, stats, err, errlen);
	while (rc == 0 && res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		long long idx, id, attempts;
		struct backlog *b;
		if (row[0] == NULL || row[1] == NULL ||
		    util_parse_int(row[0], (long long)from, (long long)to - 1, &idx) != 0 ||
		    util_parse_int(row[1], 0, INT64_MAX, &id) != 0)
			continue;
		b = &out[idx];
		for (size_t i = 0; i < l->len; i++)
			if (l->items[i].idx == (size_t)idx &&
			    l->items[i].id == (unsigned long long)id)
				l->items[i].answered = true;
		if (row[3] == NULL || row[3][0] == '\0') {
			note_oldest(b, scan_parse_mw_timestamp(row[2]));
			continue;
		}
		/* A claimed row. MediaWiki recycles one claimed longer than its claim TTL
		 * on pop: ready work. */
		if (!full || row[4] == NULL || strcmp(row[4], orphan_before) >= 0)
			continue;
		b->orphaned_claims++;
		/* At MediaWiki's retry limit: never run again, only pruned (status shows it). */
		if (row[5] != NULL && util_parse_int(row[5], 0, INT32_MAX, &attempts) == 0 &&
		    attempts >= SCAN_MAX_ATTEMPTS)
			b->abandoned++;
		if (b->oldest_claim_ms == 0 || scan_parse_mw_timestamp(row[4]) < b->oldest_claim_ms)
			b->oldest_claim_ms = scan_parse_mw_timestamp(row[4]);
		if (strcmp(row[4], stale_before) < 0) {
			if (!stale_counted[idx - (long long)from])
				b->ready_types++;
			stale_counted[idx - (long long)from] = true;
			note_oldest(b, scan_parse_mw_timestamp(row[2]));
		}
	}
	if (res != NULL)
		mysql_free_result(res);
	free(stale_counted);
	if (rc != 0)
		return rc;
	/* A ready row gone (run) or claimed between the two statements: its type had
	 * ready work a moment ago; count it as queued now rather than lose it. */
	for (size_t i = 0; i < l->len; i++)
		if (!l->items[i].claimed && !l->items[i].answered)
			note_oldest(&out[l->items[i].idx], 0);
	return 0;
}

/* Runs the statements for wikis [from, to). 0 ok, SENT_FAILED or SENT_TIMED_OUT a
 * statement failed (err set; the wikis' own problem), -EIO the server failed or out of
 * memory. */
static int run_group(struct db *db, struct wiki *const *wikis, size_t from, size_t to,
		     enum scan_depth depth, const char *skip, struct backlog *out,
		     struct scan_stats *stats, struct buf *sql, char *err, size_t errlen)
{
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	struct lookups l = { 0 };
	bool full = depth == SCAN_FULL;
	int rc;

	buf_reset(sql);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			buf_adds(sql, " UNION ALL ");
		add_wiki_query(sql, i, wikis[i]);
	}
	if (sql->failed) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	rc = send(db, sql->data, &res, stats, err, errlen);
	if (rc != 0)
		return rc;
	while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
		long long idx, min_id = 0, max_id = 0;
		unsigned long *lengths = mysql_fetch_lengths(res);
		char type[JOBTYPE_MAX + 1];
		bool claimed;
		if (row[0] == NULL || row[1] == NULL || row[4] == NULL || lengths == NULL ||
		    util_parse_int(row[0], (long long)from, (long long)to - 1, &idx) != 0 ||
		    row[2] == NULL || util_parse_int(row[2], 0, INT64_MAX, &min_id) != 0)
			continue;
		if (row[3] != NULL && util_parse_int(row[3], 0, INT64_MAX, &max_id) == 0 &&
		    (uint64_t)max_id > out[idx].max_job_id)
			out[idx].max_job_id = (uint64_t)max_id;
		claimed = row[1][0] != '\0';
		/* job_cmd is whatever bytes a wiki stored: from here on the type is its list
		 * form, which any column and list can hold (a longer one is counted, not
		 * named). */
		if (jobtype_encode(row[4], lengths[4], type, sizeof(type)) < 0)
			type[0] = '\0';
		/* A ready type left to other runners ([drain] skip_types) is no backlog of
		 * ours: neither counted nor looked up. */
		if (!claimed && type[0] != '\0' && jobtype_match(skip, type) >= 0)
			continue;
		if (!claimed) {
			out[idx].ready_types++;
			note_type(&out[idx], type);
		}
		/* Claims are read in a full scan only: an hour old to count as work. */
		if ((!claimed || full) && lookups_add(&l, (size_t)idx, (unsigned long long)min_id,
						      claimed, row, lengths) != 0)
			rc = -ENOMEM;
	}
	if (res != NULL)
		mysql_free_result(res);
	if (rc != 0) {
		free(l.items);
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	rc = run_lookups(db, wikis, from, to, full, &l, out, stats, sql, err, errlen);
	free(l.items);
	return rc;
}

static void mark_failed(struct backlog *b, int sent, const char *why)
{
	b->failed = true;
	b->timed_out = sent == SENT_TIMED_OUT;
	snprintf(b->error, sizeof(b->error), "%s", why);
}

int scan_run(struct db *db, struct wiki *const *wikis, size_t n, int wikis_per_query,
	     enum scan_depth depth, struct backlog *out, struct scan_stats *stats, char *err,
	     size_t errlen)
{
	return scan_run_skipping(db, wikis, n, wikis_per_query, depth, "", out, stats, err, errlen);
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
		rc = run_group(db, wikis, from, to, depth, skip, out, stats, &sql, why, sizeof(why));
		if (rc > 0 && to - from == 1) {
			mark_failed(&out[from], rc, why);
			rc = 0;
		} else if (rc > 0) {
			/* Some wiki of the group failed it: find which, one at a time. Each runs
			 * once on its own; one whose own statement timed out is marked so and
			 * not run again in this pass (its owner reads it at the sweep's tail). */
			rc = 0;
			for (size_t i = from; i < to && rc >= 0; i++) {
				rc = run_group(db, wikis, i, i + 1, depth, skip, out, stats, &sql,
					       why, sizeof(why));
				if (rc > 0) {
					mark_failed(&out[i], rc, why);
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
static int add_type_query(struct db *db, struct buf *sql, const struct wiki *w, const char *type,
			  char *err, size_t errlen)
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

int scan_wiki_types(struct db *db, const struct wiki *w, struct scan_type_row **out, size_t *n,
		    char *err, size_t errlen)
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
		unsigned long *lengths = mysql_fetch_lengths(res);
		long long v;
		/* Shown as the lists hold it: any job_cmd prints and goes into JSON. */
		if (row[0] == NULL || lengths == NULL ||
		    jobtype_encode(row[0], lengths[0], r->type, sizeof(r->type)) < 0)
			snprintf(r->type, sizeof(r->type), "?");
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
