/* discovery.c - see discovery.h.
 *
 * The version filter reaches the query as the session variable @jobdrainer_version
 * (set, escaped, just before it), so the query text itself never needs splicing. */
#include "discovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "log.h"

struct discovery {
	const struct config *cfg;
	/* Problems logged by the previous run: each is logged again only after it went
	 * away and came back, not on every refresh. */
	char **reported;
	size_t nreported;
};

struct discovery *discovery_new(const struct config *cfg)
{
	struct discovery *d = calloc(1, sizeof(*d));

	if (d != NULL)
		d->cfg = cfg;
	return d;
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void discovery_free(struct discovery *d)
{
	if (d == NULL)
		return;
	free_strings(d->reported, d->nreported);
	free(d);
}

struct problems {
	char **items;
	size_t len, cap;
};

static bool was_reported(const struct discovery *d, const char *key)
{
	for (size_t i = 0; i < d->nreported; i++)
		if (strcmp(d->reported[i], key) == 0)
			return true;
	return false;
}

/* Logs a bad row unless the previous run logged the same problem. */
static void bad_row(struct discovery *d, struct problems *now, unsigned long rowno,
		    const char *domain, const char *why)
{
	struct log_line l;
	char *key;

	if (asprintf(&key, "%lu|%s|%s", domain ? 0UL : rowno, domain ? domain : "", why) < 0)
		return;
	if (!was_reported(d, key)) {
		log_begin(&l, LOG_WARN, "discovery: wiki skipped");
		if (domain != NULL)
			log_str(&l, "wiki", domain);
		else
			log_int(&l, "row", (long long)rowno);
		log_str(&l, "reason", why);
		log_str(&l, "next", "skipped until the row is fixed");
		log_end(&l);
	}
	if (now->len == now->cap) {
		size_t cap = now->cap ? now->cap * 2 : 8;
		char **p = realloc(now->items, cap * sizeof(*p));
		if (p == NULL) {
			free(key);
			return;
		}
		now->items = p;
		now->cap = cap;
	}
	now->items[now->len++] = key;
}

static int by_domain(const void *a, const void *b)
{
	return strcmp((*(struct wiki *const *)a)->domain, (*(struct wiki *const *)b)->domain);
}

/* The row's database server (the optional fifth column), NULL for [scan_db]'s: a
 * missing column, NULL and '' all mean the default. */
static const char *row_server(MYSQL_ROW row, unsigned ncols)
{
	return ncols >= 5 && row[4] != NULL && row[4][0] != '\0' ? row[4] : NULL;
}

/* Checks one row; NULL if good, else why not (in why[whylen] when it names a value).
 * canon: the row's server as util_canon_db_server writes it, "" for [scan_db]'s. */
static const char *check_row(const struct config *cfg, MYSQL_ROW row, unsigned ncols,
			     char canon[UTIL_DB_SERVER_MAX], char *why, size_t whylen)
{
	const char *server = row_server(row, ncols);

	if (row[0] == NULL)
		return "domain is NULL";
	if (!util_is_domain(row[0]))
		return "domain is not a valid host name";
	if (row[1] == NULL)
		return "database name is NULL";
	if (!util_is_db_name(row[1]))
		return "database name is not a plain identifier ([A-Za-z0-9_$], 1-64)";
	if (row[2] == NULL)
		return "table prefix is NULL";
	if (!util_is_table_prefix(row[2]))
		return "table prefix is not a plain identifier ([A-Za-z0-9_], 0-50)";
	if (row[3] == NULL || row[3][0] == '\0')
		return "secret key is missing or empty";
	canon[0] = '\0';
	if (server == NULL)
		return NULL;
	if (util_canon_db_server(server, canon, UTIL_DB_SERVER_MAX) != 0)
		return "database server is not host or host:port (a host name or IPv4 address)";
	/* The trust boundary: the scan logs in with [scan_db]'s credentials, so only to
	 * servers the operator named. Checked before any connection is made. */
	if (!config_server_allowed(cfg, canon)) {
		snprintf(why, whylen,
			 "database server %s is not in [scan] allowed_servers nor a [server] section: "
			 "not connected to",
			 canon);
		return why;
	}
	/* [scan_db]'s own server under its address: the default, one server, one budget. */
	if (cfg->scan.socket[0] == '\0' && config_endpoint_is(&cfg->scan, canon))
		canon[0] = '\0';
	return NULL;
}

static int append_wiki(struct wiki_list *out, size_t *cap, MYSQL_ROW row, const char *canon)
{
	struct wiki w = { .domain = row[0],
			  .dbname = row[1],
			  .table_prefix = row[2],
			  .secret = row[3],
			  .db_server = canon[0] ? (char *)canon : NULL };
	struct wiki *copy = wiki_dup(&w);

	if (copy == NULL)
		return -ENOMEM;
	if (out->len == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct wiki **p = realloc(out->items, ncap * sizeof(*p));
		if (p == NULL) {
			wiki_free(copy);
			return -ENOMEM;
		}
		out->items = p;
		*cap = ncap;
	}
	out->items[out->len++] = copy;
	return 0;
}

/* Sorted by domain, a duplicate is next to its first: keep the first, report the rest. */
static void drop_duplicates(struct discovery *d, struct problems *now, struct wiki_list *list)
{
	size_t kept = 0;

	if (list->len == 0)
		return; /* qsort's array must not be NULL, even when empty */
	qsort(list->items, list->len, sizeof(list->items[0]), by_domain);
	for (size_t i = 0; i < list->len; i++) {
		if (kept > 0 && strcmp(list->items[kept - 1]->domain, list->items[i]->domain) == 0) {
			bad_row(d, now, 0, list->items[i]->domain,
				"duplicate domain: another row already names it");
			wiki_free(list->items[i]);
			continue;
		}
		list->items[kept++] = list->items[i];
	}
	list->len = kept;
}

/* libmariadb keeps the whole result in buffers it frees without clearing: wipe the
 * secret column of every row first, so freed memory holds no wiki's secret. */
static void clear_secrets(MYSQL_RES *res)
{
	MYSQL_ROW row;

	mysql_data_seek(res, 0);
	while ((row = mysql_fetch_row(res)) != NULL) {
		unsigned long *len = mysql_fetch_lengths(res);
		if (row[3] != NULL && len != NULL)
			explicit_bzero(row[3], len[3]);
	}
}

int discovery_run(struct discovery *d, struct db *db, struct wiki_list *out, char *err,
		  size_t errlen)
{
	struct problems now = { 0 };
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	unsigned code, ncols;
	unsigned long rowno = 0;
	size_t cap = 0;
	int rc = -EIO;

	out->items = NULL;
	out->len = 0;
	buf_init(&sql);
	buf_adds(&sql, "SET @jobdrainer_version = ");
	if (db_quote(db, &sql, d->cfg->mw_version, err, errlen) != 0)
		goto out;
	if (db_query(db, sql.data, &res, &code, err, errlen) != 0)
		goto out;
	if (db_query(db, d->cfg->discovery_query, &res, &code, err, errlen) != 0)
		goto out;
	if (res == NULL || (ncols = mysql_num_fields(res)) < 4) {
		snprintf(err, errlen,
			 "discovery query returns %u columns; it must return 4: domain, database, "
			 "table prefix, secret key (and optionally a fifth: database server)",
			 res ? mysql_num_fields(res) : 0);
		goto out;
	}
	while ((row = mysql_fetch_row(res)) != NULL) {
		char canon[UTIL_DB_SERVER_MAX], buf[UTIL_DB_SERVER_MAX + 128];
		const char *why = check_row(d->cfg, row, ncols, canon, buf, sizeof(buf));
		rowno++;
		if (why != NULL) {
			bad_row(d, &now, rowno, row[0] && util_is_domain(row[0]) ? row[0] : NULL,
				why);
			continue;
		}
		if (append_wiki(out, &cap, row, canon) != 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	drop_duplicates(d, &now, out);
	rc = 0;
out:
	if (res != NULL && mysql_num_fields(res) >= 4)
		clear_secrets(res);
	if (res != NULL)
		mysql_free_result(res);
	buf_release(&sql);
	if (rc != 0) {
		wiki_list_free(out);
		free_strings(now.items, now.len);
		return rc;
	}
	free_strings(d->reported, d->nreported);
	d->reported = now.items;
	d->nreported = now.len;
	return 0;
}

/* The same host name to DNS (case, one trailing dot), though not the same wiki key. */
static bool same_host(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

int discovery_find(struct discovery *d, struct db *db, const char *domain, struct wiki **out,
		   char *err, size_t errlen)
{
	struct wiki_list list = { 0 };
	const char *near = NULL;
	int rc = -ENOENT;

	*out = NULL;
	if (discovery_run(d, db, &list, err, errlen) != 0)
		return -EIO;
	for (size_t i = 0; i < list.len && rc == -ENOENT; i++) {
		if (strcmp(list.items[i]->domain, domain) != 0) {
			if (near == NULL && same_host(list.items[i]->domain, domain))
				near = list.items[i]->domain;
			continue;
		}
		*out = wiki_dup(list.items[i]);
		rc = *out != NULL ? 0 : -ENOMEM;
	}
	if (rc == -ENOENT && near != NULL)
		snprintf(err, errlen,
			 "discovery does not list %s; it lists %s (domains match exactly, as "
			 "discovery lists them)",
			 domain, near);
	else if (rc == -ENOENT)
		snprintf(err, errlen,
			 "discovery does not list %s (unknown, deleted, bad row, or another "
			 "MediaWiki version)",
			 domain);
	else if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	wiki_list_free(&list);
	return rc;
}

size_t discovery_skipped(const struct discovery *d)
{
	return d->nreported;
}
