/* binlog.c - see binlog.h. One thread, one replication connection.
 *
 * The call sequence and its pitfalls were checked against Debian 12's libmariadb
 * (Connector/C 3.3) and MariaDB 10.11 (../shared/BINLOG-FEED.md):
 * - mariadb_rpl_open succeeds even when the dump is refused; the refusal (missing
 *   grant 1227, purged position 1236) shows at the first fetch, as an error on the
 *   MYSQL handle, not on the replication handle;
 * - a fetch returning NULL has already freed the event it was given;
 * - every ROTATE after the first is parsed wrongly: read from its raw bytes;
 * - the "ignore heartbeats" flag never reaches the server: heartbeats are skipped here.
 * The binary log is written before InnoDB's commit completes, so the row a wake points
 * at may not be readable yet: the owner looks again (scanner.c). */
#include "binlog.h"

#include <errno.h>
#include <errmsg.h>
#include <fcntl.h>
#include <malloc.h>
#include <mysql.h> /* before mariadb_rpl.h, which uses its types */
#include <mariadb_rpl.h>
#include <mysqld_error.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* While the same failure repeats, its line is repeated at most this often. */
#define REPEAT_FAILURE_LOG_MS 600000
/* Table maps remembered per transaction: a job insert maps one table; triggers or
 * multi-table statements map a few more. */
#define RECENT_MAPS 16
/* libmariadb keeps a connection's read buffers at the size of the largest packet it
 * read (a 15 MB row event anywhere on the server left the feed at 60 MB for good): after
 * an event larger than this the feed reconnects at the next event, which frees them. */
#define FEED_BIG_EVENT_BYTES (1024 * 1024)

/* ---- (database, table) -> wiki ---- */

struct map_entry {
	char *db;
	char *table; /* prefix + "job" */
	char *domain;
};

struct binlog_map {
	struct map_entry *entries; /* sorted by (db, table) */
	size_t len;
};

static int entry_cmp(const void *a, const void *b)
{
	const struct map_entry *x = a, *y = b;
	int c = strcmp(x->db, y->db);

	return c != 0 ? c : strcmp(x->table, y->table);
}

void binlog_map_free(struct binlog_map *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->len; i++) {
		free(m->entries[i].db);
		free(m->entries[i].table);
		free(m->entries[i].domain);
	}
	free(m->entries);
	free(m);
}

struct binlog_map *binlog_map_new(const struct wiki_list *list)
{
	struct binlog_map *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->entries = calloc(list->len ? list->len : 1, sizeof(*m->entries));
	if (m->entries == NULL) {
		free(m);
		return NULL;
	}
	for (size_t i = 0; i < list->len; i++) {
		const struct wiki *w = list->items[i];
		struct map_entry *e = &m->entries[m->len++];
		e->db = strdup(w->dbname);
		e->domain = strdup(w->domain);
		if (asprintf(&e->table, "%sjob", w->table_prefix) < 0)
			e->table = NULL;
		if (e->db == NULL || e->domain == NULL || e->table == NULL) {
			binlog_map_free(m);
			return NULL;
		}
	}
	if (m->len > 1)
		qsort(m->entries, m->len, sizeof(*m->entries), entry_cmp);
	return m;
}

/* strcmp between a counted string and a C string. */
static int counted_cmp(const char *s, size_t n, const char *c)
{
	size_t cn = strlen(c);
	int r = memcmp(s, c, n < cn ? n : cn);

	if (r != 0)
		return r;
	return n < cn ? -1 : (n > cn ? 1 : 0);
}

const char *binlog_map_find(const struct binlog_map *m, const char *db, size_t dblen,
			    const char *table, size_t tablelen)
{
	size_t lo = 0, hi;

	if (m == NULL || db == NULL || table == NULL)
		return NULL;
	hi = m->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct map_entry *e = &m->entries[mid];
		int c = counted_cmp(db, dblen, e->db);
		if (c == 0)
			c = counted_cmp(table, tablelen, e->table);
		if (c == 0)
			return e->domain;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ---- INSERT statement -> table ---- */

static bool is_ident_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || c >= 0x80;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Skips blanks and comments: / * ... * /, "# ..." and "-- ..." to the end of the line.
 * Executable comments (/ *! ... * /) are skipped too: MediaWiki writes none. */
static const char *skip_space(const char *p, const char *end)
{
	for (;;) {
		while (p < end && is_blank(*p))
			p++;
		if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			const char *q = p + 2;
			while (end - q >= 2 && !(q[0] == '*' && q[1] == '/'))
				q++;
			p = end - q >= 2 ? q + 2 : end;
		} else if (p < end && (*p == '#' || (end - p >= 3 && p[0] == '-' && p[1] == '-' &&
						     is_blank(p[2])))) {
			while (p < end && *p != '\n')
				p++;
		} else {
			return p;
		}
	}
}

/* Consumes keyword kw (upper case) if it comes next as a whole word. */
static bool take_word(const char **pp, const char *end, const char *kw)
{
	const char *p = *pp;
	size_t n = strlen(kw);

	if ((size_t)(end - p) < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != kw[i])
			return false;
	}
	if (p + n < end && is_ident_char((unsigned char)p[n]))
		return false;
	*pp = skip_space(p + n, end);
	return true;
}

/* Reads one identifier, plain or quoted. */
static bool take_ident(const char **pp, const char *end, const char **s, size_t *n)
{
	const char *p = *pp;

	if (p < end && (*p == '`' || *p == '"')) {
		char q = *p;
		const char *start = ++p;
		while (p < end) {
			if (*p == q) {
				if (p + 1 < end && p[1] == q) {
					p += 2; /* an escaped quote */
					continue;
				}
				break;
			}
			p++;
		}
		if (p >= end || p == start)
			return false;
		*s = start;
		*n = (size_t)(p - start);
		*pp = skip_space(p + 1, end);
		return true;
	}
	*s = p;
	while (p < end && is_ident_char((unsigned char)*p))
		p++;
	if (p == *s)
		return false;
	*n = (size_t)(p - *s);
	*pp = skip_space(p, end);
	return true;
}

bool binlog_insert_target(const char *sql, size_t len, const char **db, size_t *dblen,
			  const char **table, size_t *tablelen)
{
	static const char *const modifiers[] = { "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY",
						 "IGNORE" };
	const char *end = sql + len, *p = skip_space(sql, end);
	const char *a, *b;
	size_t alen, blen;
	bool more = true;

	if (!take_word(&p, end, "INSERT") && !take_word(&p, end, "REPLACE"))
		return false;
	while (more) {
		more = false;
		for (size_t i = 0; i < sizeof(modifiers) / sizeof(modifiers[0]); i++)
			if (take_word(&p, end, modifiers[i]))
				more = true;
	}
	take_word(&p, end, "INTO");
	if (!take_ident(&p, end, &a, &alen))
		return false;
	if (p < end && *p == '.') {
		p = skip_space(p + 1, end);
		if (!take_ident(&p, end, &b, &blen))
			return false;
		*db = a;
		*dblen = alen;
		*table = b;
		*tablelen = blen;
		return true;
	}
	*db = NULL;
	*dblen = 0;
	*table = a;
	*tablelen = alen;
	return true;
}

/* ---- ROTATE from raw bytes ---- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define EVENT_HEADER_LEN 19

bool binlog_parse_rotate(const unsigned char *raw, size_t len, bool checksum, char *file,
			 size_t filelen, unsigned long long *pos)
{
	const unsigned char *ev, *body;
	uint32_t size;
	size_t namelen;
	unsigned long long v = 0;

	/* The packet's OK byte, then the event. */
	if (raw == NULL || len < 1 + EVENT_HEADER_LEN + 8 || raw[0] != 0)
		return false;
	ev = raw + 1;
	if (ev[4] != ROTATE_EVENT)
		return false;
	size = le32(ev + 9);
	if (size > len - 1 || size < EVENT_HEADER_LEN + 8 + (checksum ? 4u : 0u) + 1)
		return false;
	body = ev + EVENT_HEADER_LEN;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | body[i];
	namelen = size - EVENT_HEADER_LEN - 8 - (checksum ? 4 : 0);
	if (namelen >= filelen)
		return false;
	for (size_t i = 0; i < namelen; i++) {
		unsigned char c = body[8 + i];
		if (c <= ' ' || c >= 0x7f || c == '/' || c == '\'' || c == '\\')
			return false;
	}
	memcpy(file, body + 8, namelen);
	file[namelen] = '\0';
	*pos = v;
	return true;
}

/* ---- the feed ---- */

struct recent_map {
	unsigned long long table_id;
	char domain[256];
};

struct binlog {
	const struct config *cfg;
	binlog_wake_fn wake;
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under the lock: */
	bool stopping;
	struct binlog_map *map;
	MYSQL *conn;    /* while connected: binlog_stop cuts its socket */
	int stop_fd[2]; /* binlog_stop writes a byte: ends a login in progress */
	bool following; /* binlog_following */
	/* Owned by the thread: */
	uint32_t server_id;
	bool checksum;
	char file[256]; /* where to resume; "" = at the server's current position */
	unsigned long long pos;
	struct recent_map recent[RECENT_MAPS];
	int nrecent;
	int failures;
	bool resuming; /* reconnecting after a big event (FEED_BIG_EVENT_BYTES): quietly */
	const char *last_logged; /* the `why` of the last failure logged */
	int64_t last_logged_ms;
};

/* Why the feed stopped, in the words of its log line (compared by address: one line
 * per kind of failure). */
static const char WHY_GRANT[] = "missing grant: the feed's user needs REPLICATION SLAVE and "
				"REPLICATION CLIENT (BINLOG MONITOR)";
static const char WHY_PURGED[] = "the position is no longer in the binary log (purged) or "
				 "cannot be read; resuming at the server's current position";
static const char WHY_OFF[] = "the server's binary log is off (log_bin)";
static const char WHY_LOST[] = "connection lost or refused (server restarted or unreachable)";
/* 4052 and the like: another replica uses this server_id. */
static const char WHY_REFUSED[] = "replication connection refused";
static const char WHY_MEMORY[] = "out of memory";

/* What a failed attempt was, for its one log line and for where to resume. */
struct feed_error {
	unsigned code; /* MySQL error number, 0 for our own */
	char msg[256];
	const char *why;
	bool forget_position;
};

static bool feed_stopping(struct binlog *b)
{
	bool s;

	pthread_mutex_lock(&b->lock);
	s = b->stopping;
	pthread_mutex_unlock(&b->lock);
	return s;
}

static void set_error(struct feed_error *e, MYSQL *m, const char *what)
{
	unsigned code = mysql_errno(m);

	e->code = code;
	snprintf(e->msg, sizeof(e->msg), "%s: %s", what, mysql_error(m));
	switch (code) {
	case ER_SPECIFIC_ACCESS_DENIED_ERROR:
	case ER_ACCESS_DENIED_ERROR:
	case ER_DBACCESS_DENIED_ERROR:
		e->why = WHY_GRANT;
		break;
	case ER_MASTER_FATAL_ERROR_READING_BINLOG:
		e->why = WHY_PURGED;
		e->forget_position = true;
		break;
	case ER_NO_BINARY_LOGGING:
		e->why = WHY_OFF;
		e->forget_position = true;
		break;
	case CR_SERVER_LOST:
	case CR_SERVER_GONE_ERROR:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
		e->why = WHY_LOST;
		break;
	default:
		e->why = WHY_REFUSED;
		break;
	}
}

static uint32_t derive_server_id(const char *holder)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)holder; *p; p++)
		h = (h ^ *p) * 16777619u;
	return 1000000000u + h % 1000000000u;
}

/* Runs one statement whose result (if any) is discarded. */
static int run(MYSQL *m, const char *sql, struct feed_error *e)
{
	MYSQL_RES *res;

	if (mysql_query(m, sql) != 0) {
		set_error(e, m, sql);
		return -EIO;
	}
	res = mysql_store_result(m);
	mysql_free_result(res);
	return 0;
}

/* The server's settings and, when there is no position to resume from, its current
 * position. */
static int read_server_state(struct binlog *b, MYSQL *m, char *format, size_t formatlen,
			     struct feed_error *e)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	long long pos;
	bool log_bin;

	if (mysql_query(m, "SELECT @@global.log_bin, @@global.binlog_checksum, "
			   "@@global.binlog_format") != 0 ||
	    (res = mysql_store_result(m)) == NULL) {
		set_error(e, m, "reading the server's binlog settings");
		return -EIO;
	}
	row = mysql_fetch_row(res);
	log_bin = row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0;
	b->checksum = row != NULL && row[1] != NULL && strcmp(row[1], "NONE") != 0;
	snprintf(format, formatlen, "%s", row != NULL && row[2] != NULL ? row[2] : "?");
	mysql_free_result(res);
	if (!log_bin) {
		e->code = 0;
		snprintf(e->msg, sizeof(e->msg), "log_bin is OFF on the server");
		e->why = WHY_OFF;
		e->forget_position = true;
		return -EIO;
	}
	if (b->file[0] != '\0')
		return 0;
	if (mysql_query(m, "SHOW MASTER STATUS") != 0 || (res = mysql_store_result(m)) == NULL) {
		set_error(e, m, "SHOW MASTER STATUS");
		return -EIO;
	}
	row = mysql_fetch_row(res);
	if (row == NULL || row[0] == NULL || row[1] == NULL ||
	    util_parse_int(row[1], 4, INT64_MAX, &pos) != 0 || strlen(row[0]) >= sizeof(b->file)) {
		mysql_free_result(res);
		e->code = 0;
		snprintf(e->msg, sizeof(e->msg), "SHOW MASTER STATUS returned no position");
		e->why = WHY_OFF;
		return -EIO;
	}
	snprintf(b->file, sizeof(b->file), "%s", row[0]);
	b->pos = (unsigned long long)pos;
	mysql_free_result(res);
	return 0;
}

/* mysql_real_connect, but over libmariadb's non-blocking API: there is no socket to
 * cut until the login is done, so it waits on the server and on binlog_stop's pipe at
 * once. A server that accepts and never answers would otherwise hold the exit for
 * connect_timeout. 0, or -1 (the error on m, or stopping). */
static int login(struct binlog *b, MYSQL *m, const struct db_endpoint *ep)
{
	MYSQL *ret = NULL;
	int status;

	if (mysql_options(m, MYSQL_OPT_NONBLOCK, 0) != 0)
		return -1;
	status = mysql_real_connect_start(&ret, m, ep->socket[0] ? NULL : ep->host, ep->user,
					  ep->password[0] ? ep->password : NULL, NULL,
					  (unsigned)ep->port, ep->socket[0] ? ep->socket : NULL, 0);
	while (status != 0) {
		struct pollfd fds[2] = {
			{ .fd = mysql_get_socket(m),
			  .events = (short)((status & MYSQL_WAIT_READ ? POLLIN : 0) |
					    (status & MYSQL_WAIT_WRITE ? POLLOUT : 0) |
					    (status & MYSQL_WAIT_EXCEPT ? POLLPRI : 0)) },
			{ .fd = b->stop_fd[0], .events = POLLIN },
		};
		int wait = status & MYSQL_WAIT_TIMEOUT ? (int)mysql_get_timeout_value_ms(m) : -1;
		int n = poll(fds, 2, wait);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (fds[1].revents != 0)
			return -1; /* stopping: mysql_close abandons the login */
		status = 0;
		if (n == 0)
			status |= MYSQL_WAIT_TIMEOUT;
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
			status |= MYSQL_WAIT_READ;
		if (fds[0].revents & POLLOUT)
			status |= MYSQL_WAIT_WRITE;
		if (fds[0].revents & POLLPRI)
			status |= MYSQL_WAIT_EXCEPT;
		status = mysql_real_connect_cont(&ret, m, status);
	}
	return ret != NULL ? 0 : -1;
}

static MYSQL *feed_connect(struct binlog *b, struct feed_error *e)
{
	const struct db_endpoint *ep = &b->cfg->binlog;
	/* Longer than the heartbeat period: a silent server is a dead one. */
	unsigned int timeout = (unsigned)ep->connect_timeout;
	unsigned int rw = (unsigned)b->cfg->binlog_heartbeat * 3 + 5;
	MYSQL *m = mysql_init(NULL);

	if (m == NULL) {
		snprintf(e->msg, sizeof(e->msg), "mysql_init");
		e->why = WHY_MEMORY;
		return NULL;
	}
	if (db_guard_auth(m) != 0) {
		snprintf(e->msg, sizeof(e->msg), "cannot restrict authentication plugins");
		e->why = WHY_REFUSED;
		mysql_close(m);
		return NULL;
	}
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rw);
	mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &rw);
	mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (login(b, m, ep) != 0) {
		if (!feed_stopping(b))
			set_error(e, m, "connecting");
		mysql_close(m);
		return NULL;
	}
	pthread_mutex_lock(&b->lock);
	if (b->stopping) {
		pthread_mutex_unlock(&b->lock);
		mysql_close(m);
		return NULL;
	}
	b->conn = m;
	pthread_mutex_unlock(&b->lock);
	return m;
}

static void feed_disconnect(struct binlog *b, MYSQL *m)
{
	pthread_mutex_lock(&b->lock);
	b->conn = NULL;
	pthread_mutex_unlock(&b->lock);
	mysql_close(m);
}

static void wake_domain(struct binlog *b, const char *domain)
{
	metrics_add(METRIC_BINLOG_WAKES, 0, 1);
	b->wake(b->arg, domain);
}

/* A TABLE_MAP for a job table: remember its id until the transaction ends. */
static void note_table_map(struct binlog *b, const MARIADB_RPL_EVENT *ev)
{
	const struct st_mariadb_rpl_table_map_event *t = &ev->event.table_map;
	const char *domain;
	struct recent_map *r;

	pthread_mutex_lock(&b->lock);
	domain = binlog_map_find(b->map, t->database.str, t->database.length, t->table.str,
				 t->table.length);
	if (domain != NULL) {
		r = &b->recent[b->nrecent < RECENT_MAPS ? b->nrecent++ : RECENT_MAPS - 1];
		r->table_id = t->table_id;
		snprintf(r->domain, sizeof(r->domain), "%s", domain);
	}
	pthread_mutex_unlock(&b->lock);
}

static void note_rows_written(struct binlog *b, const MARIADB_RPL_EVENT *ev)
{
	for (int i = 0; i < b->nrecent; i++) {
		if (b->recent[i].table_id == ev->event.rows.table_id) {
			wake_domain(b, b->recent[i].domain);
			return;
		}
	}
}

static void note_query(struct binlog *b, const MARIADB_RPL_EVENT *ev)
{
	const struct st_mariadb_rpl_query_event *q = &ev->event.query;
	const char *db, *table, *domain;
	size_t dblen, tablelen;
	char copy[256];

	if (q->statement.str == NULL || !binlog_insert_target(q->statement.str, q->statement.length,
							      &db, &dblen, &table, &tablelen))
		return;
	if (db == NULL) {
		db = q->database.str;
		dblen = q->database.length;
	}
	copy[0] = '\0';
	pthread_mutex_lock(&b->lock);
	domain = binlog_map_find(b->map, db, dblen, table, tablelen);
	if (domain != NULL)
		snprintf(copy, sizeof(copy), "%s", domain);
	pthread_mutex_unlock(&b->lock);
	if (copy[0] != '\0')
		wake_domain(b, copy);
}

static void log_following(struct binlog *b, const char *format)
{
	struct log_line l;

	log_begin(&l, b->resuming ? LOG_DEBUG : LOG_INFO, "binary log feed following");
	log_str(&l, "file", b->file);
	log_int(&l, "position", (long long)b->pos);
	log_str(&l, "binlog_format", format);
	log_int(&l, "server_id", (long long)b->server_id);
	if (b->failures > 0)
		log_int(&l, "after_failures", b->failures);
	log_str(&l, "next", "wikis are woken as jobs are written; scans stay as the safety net");
	log_end(&l);
	b->failures = 0;
	b->last_logged = NULL;
	b->resuming = false;
	metrics_set(METRIC_BINLOG_FOLLOWING, 0, 1);
	pthread_mutex_lock(&b->lock);
	b->following = true;
	pthread_mutex_unlock(&b->lock);
}

bool binlog_following(struct binlog *b)
{
	bool following;

	if (b == NULL)
		return false;
	pthread_mutex_lock(&b->lock);
	following = b->following;
	pthread_mutex_unlock(&b->lock);
	return following;
}

static void handle_event(struct binlog *b, const MARIADB_RPL_EVENT *ev)
{
	switch (ev->event_type) {
	case ROTATE_EVENT: {
		char file[sizeof(b->file)];
		unsigned long long pos;
		if (binlog_parse_rotate(ev->raw_data, ev->raw_data_size, b->checksum, file,
					sizeof(file), &pos)) {
			memcpy(b->file, file, sizeof(file));
			b->pos = pos;
		}
		return;
	}
	case GTID_EVENT:
	case XID_EVENT:
		b->nrecent = 0;
		break;
	case TABLE_MAP_EVENT:
		note_table_map(b, ev);
		break;
	case WRITE_ROWS_EVENT_V1:
	case WRITE_ROWS_EVENT:
	case WRITE_ROWS_COMPRESSED_EVENT_V1:
	case WRITE_ROWS_COMPRESSED_EVENT:
		note_rows_written(b, ev);
		break;
	case QUERY_EVENT:
		note_query(b, ev);
		break;
	default:
		break;
	}
	/* Where the next event starts: resuming there after a lost connection replays
	 * nothing and skips nothing. Artificial events and the format description sent
	 * at a mid-file start carry no position of this file. */
	if (ev->next_event_pos != 0 && !(ev->flags & LOG_EVENT_ARTIFICIAL_F) &&
	    ev->event_type != FORMAT_DESCRIPTION_EVENT)
		b->pos = ev->next_event_pos;
}

/* One attempt: connect, start the dump, follow until an error or stop. Returns 0 when
 * stopped, -EAGAIN after a big event (resume at once), -EIO with e filled on failure. */
static int follow(struct binlog *b, struct feed_error *e)
{
	MYSQL *m;
	MARIADB_RPL *rpl = NULL;
	MARIADB_RPL_EVENT *ev = NULL;
	char format[32], sql[160];
	bool announced = false;
	int rc = -EIO;

	m = feed_connect(b, e);
	if (m == NULL)
		return feed_stopping(b) ? 0 : -EIO;
	if (read_server_state(b, m, format, sizeof(format), e) != 0)
		goto out;
	rpl = mariadb_rpl_init(m);
	if (rpl == NULL) {
		set_error(e, m, "mariadb_rpl_init");
		goto out;
	}
	/* Without the checksum statement the server refuses the dump (error 1236). */
	snprintf(sql, sizeof(sql),
		 "SET @master_binlog_checksum= @@global.binlog_checksum,"
		 " @mariadb_slave_capability= 4, @master_heartbeat_period= %llu",
		 (unsigned long long)b->cfg->binlog_heartbeat * 1000000000ull);
	if (run(m, sql, e) != 0)
		goto out;
	if (mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, b->file, strlen(b->file)) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, (unsigned long)b->pos) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, (unsigned int)b->server_id) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, 0u) != 0 || mariadb_rpl_open(rpl) != 0) {
		set_error(e, m, "starting the binlog dump");
		goto out;
	}
	/* Resumed after a big event, maybe inside a transaction: its table maps stand. */
	if (!b->resuming)
		b->nrecent = 0;
	for (;;) {
		ev = mariadb_rpl_fetch(rpl, ev);
		if (ev == NULL) {
			/* The event was freed by the failed fetch. */
			if (feed_stopping(b))
				rc = 0;
			else
				set_error(e, m, "reading the binary log");
			break;
		}
		if (!announced) {
			/* The dump is accepted only once an event arrives (open always
			 * succeeds). */
			log_following(b, format);
			announced = true;
		}
		if (ev->event_type == HEARTBEAT_LOG_EVENT)
			continue;
		handle_event(b, ev);
		if (ev->raw_data_size > FEED_BIG_EVENT_BYTES) {
			mariadb_free_rpl_event(ev);
			b->resuming = true;
			rc = -EAGAIN;
			break;
		}
	}
out:
	metrics_set(METRIC_BINLOG_FOLLOWING, 0, 0);
	pthread_mutex_lock(&b->lock);
	b->following = false;
	pthread_mutex_unlock(&b->lock);
	if (rpl != NULL)
		mariadb_rpl_close(rpl);
	feed_disconnect(b, m);
	/* The big buffers are free now; give their pages back. */
	if (rc == -EAGAIN)
		malloc_trim(0);
	return feed_stopping(b) ? 0 : rc;
}

/* One line per failure; the same kind of failure again (a restarting server first
 * drops the connection, then refuses new ones) only every REPEAT_FAILURE_LOG_MS. */
static void log_failure(struct binlog *b, const struct feed_error *e)
{
	int64_t now = util_mono_ms();
	struct log_line l;
	char next[96];

	b->failures++;
	if (b->last_logged == e->why && now - b->last_logged_ms < REPEAT_FAILURE_LOG_MS)
		return;
	b->last_logged = e->why;
	b->last_logged_ms = now;
	snprintf(next, sizeof(next), "detection by scanning only; retrying the feed in %ds",
		 b->cfg->binlog_retry_interval);
	log_begin(&l, LOG_WARN, "binary log feed stopped");
	log_str(&l, "why", e->why != NULL ? e->why : WHY_REFUSED);
	log_str(&l, "error", e->msg);
	if (e->code != 0)
		log_int(&l, "code", e->code);
	log_int(&l, "failures", b->failures);
	log_str(&l, "next", next);
	log_end(&l);
}

static void *feed_main(void *arg)
{
	struct binlog *b = arg;

	mysql_thread_init();
	while (!feed_stopping(b)) {
		struct feed_error e = { 0 };
		int64_t until;
		struct timespec ts;

		int rc = follow(b, &e);
		if (rc == 0)
			break;
		if (rc == -EAGAIN)
			continue;
		b->resuming = false;
		if (e.forget_position)
			b->file[0] = '\0';
		log_failure(b, &e);
		until = util_mono_ms() + (int64_t)b->cfg->binlog_retry_interval * 1000;
		ts = util_timespec(until);
		pthread_mutex_lock(&b->lock);
		while (!b->stopping && util_mono_ms() < until)
			pthread_cond_timedwait(&b->cond, &b->lock, &ts);
		pthread_mutex_unlock(&b->lock);
	}
	mysql_thread_end();
	return NULL;
}

int binlog_set_wikis(struct binlog *b, const struct wiki_list *list)
{
	struct binlog_map *m = binlog_map_new(list), *old;

	if (m == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&b->lock);
	old = b->map;
	b->map = m;
	pthread_mutex_unlock(&b->lock);
	binlog_map_free(old);
	return 0;
}

struct binlog *binlog_start(const struct config *cfg, binlog_wake_fn wake, void *arg)
{
	struct binlog *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->cfg = cfg;
	b->wake = wake;
	b->arg = arg;
	b->server_id = cfg->binlog_server_id > 0 ? (uint32_t)cfg->binlog_server_id
						 : derive_server_id(cfg->holder);
	if (pipe2(b->stop_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	util_cond_init(&b->cond);
	if (pthread_create(&b->thread, NULL, feed_main, b) != 0) {
		close(b->stop_fd[0]);
		close(b->stop_fd[1]);
		pthread_cond_destroy(&b->cond);
		pthread_mutex_destroy(&b->lock);
		free(b);
		return NULL;
	}
	return b;
}

void binlog_stop(struct binlog *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	/* A fetch waits for the next event or heartbeat: cut it now. */
	if (b->conn != NULL) {
		my_socket fd = mysql_get_socket(b->conn);
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
	/* ... and a login in progress (login()). */
	if (write(b->stop_fd[1], "x", 1) < 0) {
		/* The pipe holds a byte already: the login sees it. */
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->thread, NULL);
	close(b->stop_fd[0]);
	close(b->stop_fd[1]);
	metrics_set(METRIC_BINLOG_FOLLOWING, 0, 0);
	binlog_map_free(b->map);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
