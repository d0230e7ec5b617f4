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

/* ---- the endpoint ---- */

int binlog_endpoint_for(const struct config *cfg, const char *server, struct binlog_endpoint *out)
{
	char canon[UTIL_DB_SERVER_MAX];
	const struct server_conf *sc;
	int port;

	memset(out, 0, sizeof(*out));
	out->ep = cfg->binlog;
	if (server == NULL || config_endpoint_is(&cfg->binlog, server))
		return 0;
	if (util_canon_db_server(server, canon, sizeof(canon)) != 0 || strcmp(canon, server) != 0 ||
	    util_parse_db_server(server, out->host, sizeof(out->host), &port) != 0)
		return -EINVAL;
	if (!config_server_allowed(cfg, server))
		return -EPERM;
	out->ep.host = out->host;
	out->ep.port = port;
	out->ep.socket = out->socket;
	/* A [server] section's feed login and TLS, when it names them: the server's own
	 * replication user, not [binlog]'s. */
	sc = config_server(cfg, server);
	if (sc != NULL) {
		out->ep.tls = sc->scan.tls;
		out->ep.tls_ca = sc->scan.tls_ca;
		if (sc->binlog_user[0] != '\0') {
			out->ep.user = sc->binlog_user;
			out->ep.password = sc->binlog_password;
		}
	}
	return 0;
}

/* ---- the feed ---- */

struct recent_map {
	unsigned long long table_id;
	char domain[256];
};

struct binlog {
	const struct config *cfg;
	char server[UTIL_DB_SERVER_MAX]; /* binlog_start's server; "" for [binlog]'s own */
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
	enum binlog_state state;
	char why[256];
	unsigned long follows; /* entries into FOLLOWING */
	/* Owned by the thread: */
	struct binlog_endpoint endpoint;
	int endpoint_rc; /* binlog_endpoint_for's: the server is not followed unless 0 */
	uint32_t server_id;
	unsigned id_salt; /* bumped when another replica takes the id (WHY_CLASH) */
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
static const char WHY_CLASH[] = "another replica uses this server_id (both would knock each "
				"other off for ever): taking another";
static const char WHY_UNREADABLE[] = "an event the feed cannot decode; resuming at the "
				     "server's current position";
static const char WHY_NOT_ALLOWED[] = "the server is not allowed ([scan] allowed_servers): "
				      "no connection is made";
static const char WHY_NOT_CANONICAL[] = "the server name is not a canonical host:port";
static const char WHY_REFUSED[] = "replication connection refused";
static const char WHY_MEMORY[] = "out of memory";

/* What a failed attempt was, for its one log line and for where to resume. */
struct feed_error {
	unsigned code; /* MySQL error number, 0 for our own */
	char msg[UTIL_DB_SERVER_MAX + 64];
	const char *why;
	enum binlog_state state; /* STARTING: it recovers by itself; BLIND; FAILED */
	bool forget_position;
	bool clash; /* WHY_CLASH: take another server_id */
};

/* How an attempt (follow) ended. */
enum follow_end { FOLLOW_STOPPED, FOLLOW_AGAIN, FOLLOW_FAILED, FOLLOW_BLIND };

static bool feed_stopping(struct binlog *b)
{
	bool s;

	pthread_mutex_lock(&b->lock);
	s = b->stopping;
	pthread_mutex_unlock(&b->lock);
	return s;
}

/* The one place the state changes: the gauge counts the feeds that follow. */
static void set_state(struct binlog *b, enum binlog_state state, const char *why)
{
	pthread_mutex_lock(&b->lock);
	if (state == BINLOG_FOLLOWING && b->state != BINLOG_FOLLOWING) {
		b->follows++;
		metrics_add(METRIC_BINLOG_FOLLOWING, 0, 1);
	} else if (state != BINLOG_FOLLOWING && b->state == BINLOG_FOLLOWING) {
		metrics_add(METRIC_BINLOG_FOLLOWING, 0, -1);
	}
	b->state = state;
	snprintf(b->why, sizeof(b->why), "%s", why != NULL ? why : "");
	pthread_mutex_unlock(&b->lock);
}

static void set_error(struct feed_error *e, MYSQL *m, const char *what)
{
	unsigned code = mysql_errno(m);
	const char *text = mysql_error(m);

	e->code = code;
	e->state = BINLOG_FAILED;
	snprintf(e->msg, sizeof(e->msg), "%s: %s", what, text);
	switch (code) {
	case ER_SPECIFIC_ACCESS_DENIED_ERROR:
	case ER_ACCESS_DENIED_ERROR:
	case ER_DBACCESS_DENIED_ERROR:
		e->why = WHY_GRANT;
		break;
	case ER_MASTER_FATAL_ERROR_READING_BINLOG:
		/* The server says "same server_id" with 1236 too (MySQL's wording). */
		if (strstr(text, "same server_uuid/server_id") != NULL) {
			e->why = WHY_CLASH;
			e->clash = true;
			break;
		}
		e->why = WHY_PURGED;
		e->state = BINLOG_STARTING;
		e->forget_position = true;
		break;
	case ER_SLAVE_SAME_ID:
		/* A newer connection with our id took our dump: the server ended ours. */
		e->why = WHY_CLASH;
		e->clash = true;
		break;
	case ER_NO_BINARY_LOGGING:
		e->why = WHY_OFF;
		e->forget_position = true;
		break;
	case CR_BINLOG_ERROR:
		/* libmariadb could not parse or inflate an event: no way past it but to
		 * resume at the server's current position (the owner's catch-up sweep finds
		 * what was in between). */
		e->why = WHY_UNREADABLE;
		e->state = BINLOG_BLIND;
		e->forget_position = true;
		break;
	case CR_SERVER_LOST:
	case CR_SERVER_GONE_ERROR:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
		e->why = WHY_LOST;
		e->state = BINLOG_STARTING;
		break;
	default:
		e->why = WHY_REFUSED;
		break;
	}
}

static void set_own_error(struct feed_error *e, const char *why, enum binlog_state state,
			  const char *msg)
{
	e->code = 0;
	e->why = why;
	e->state = state;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

/* FNV-1a over the holder, and for a named server or a new salt (WHY_CLASH) over those
 * too: the default server's feed keeps the id it always had. Distinct per holder (a new
 * scanner lease holder never knocks off the old one's feed while it winds down) and per
 * server. */
static uint32_t derive_server_id(const char *holder, const char *server, unsigned salt)
{
	uint32_t h = 2166136261u;
	char extra[UTIL_DB_SERVER_MAX + 16];

	for (const unsigned char *p = (const unsigned char *)holder; *p; p++)
		h = (h ^ *p) * 16777619u;
	if (server[0] != '\0' || salt != 0) {
		snprintf(extra, sizeof(extra), "\n%s\n%u", server, salt);
		for (const unsigned char *p = (const unsigned char *)extra; *p; p++)
			h = (h ^ *p) * 16777619u;
	}
	return 1000000000u + h % 1000000000u;
}

static uint32_t feed_server_id(const struct binlog *b)
{
	if (b->server[0] == '\0' && b->id_salt == 0 && b->cfg->binlog_server_id > 0)
		return (uint32_t)b->cfg->binlog_server_id;
	return derive_server_id(b->cfg->holder, b->server, b->id_salt);
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

/* What the server is, as far as the feed cares (read_server_state). */
struct server_state {
	char format[32]; /* @@binlog_format */
	bool log_slave_updates;
	bool read_only;
	bool slave_pos; /* @@gtid_slave_pos is set: it has applied replicated events */
};

/* The server's settings and, when there is no position to resume from, its current
 * position. */
static int read_server_state(struct binlog *b, MYSQL *m, struct server_state *st,
			     struct feed_error *e)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	long long pos;
	bool log_bin;

	if (mysql_query(m, "SELECT @@global.log_bin, @@global.binlog_checksum, "
			   "@@global.binlog_format, @@global.log_slave_updates, "
			   "@@global.read_only, @@global.gtid_slave_pos <> ''") != 0 ||
	    (res = mysql_store_result(m)) == NULL) {
		set_error(e, m, "reading the server's binlog settings");
		return -EIO;
	}
	row = mysql_fetch_row(res);
	log_bin = row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0;
	b->checksum = row != NULL && row[1] != NULL && strcmp(row[1], "NONE") != 0;
	snprintf(st->format, sizeof(st->format), "%s", row != NULL && row[2] != NULL ? row[2] : "?");
	st->log_slave_updates = row != NULL && row[3] != NULL && strcmp(row[3], "1") == 0;
	st->read_only = row != NULL && row[4] != NULL && strcmp(row[4], "1") == 0;
	st->slave_pos = row != NULL && row[5] != NULL && strcmp(row[5], "1") == 0;
	mysql_free_result(res);
	if (!log_bin) {
		set_own_error(e, WHY_OFF, BINLOG_FAILED, "log_bin is OFF on the server");
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
		set_own_error(e, WHY_OFF, BINLOG_FAILED, "SHOW MASTER STATUS returned no position");
		return -EIO;
	}
	snprintf(b->file, sizeof(b->file), "%s", row[0]);
	b->pos = (unsigned long long)pos;
	mysql_free_result(res);
	return 0;
}

/* Whether the server replicates from another: SHOW ALL SLAVES STATUS has rows. That
 * needs REPLICA MONITOR (or SUPER), which the feed's user need not have: then the
 * replica is told by what anyone may read, a running replication SQL thread
 * (Slaves_running), or read_only with replicated transactions applied. */
static bool is_replica(MYSQL *m, const struct server_state *st, char *how, size_t howlen)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	bool replica = false;

	if (mysql_query(m, "SHOW ALL SLAVES STATUS") == 0 && (res = mysql_store_result(m)) != NULL) {
		replica = mysql_num_rows(res) > 0;
		mysql_free_result(res);
		snprintf(how, howlen, "SHOW ALL SLAVES STATUS has rows");
		return replica;
	}
	if (mysql_query(m, "SHOW GLOBAL STATUS LIKE 'Slaves_running'") == 0 &&
	    (res = mysql_store_result(m)) != NULL) {
		row = mysql_fetch_row(res);
		replica = row != NULL && row[1] != NULL && strcmp(row[1], "0") != 0;
		mysql_free_result(res);
	}
	if (replica) {
		snprintf(how, howlen, "Slaves_running > 0");
		return true;
	}
	snprintf(how, howlen, "read_only with gtid_slave_pos set");
	return st->read_only && st->slave_pos;
}

/* Why job inserts would not reach what the feed reads, or NULL (why holds the words). */
static const char *blind_reason(MYSQL *m, const struct server_state *st, char *why, size_t whylen)
{
	char how[64];

	if (strcmp(st->format, "ROW") != 0 && strcmp(st->format, "MIXED") != 0 &&
	    strcmp(st->format, "STATEMENT") != 0) {
		snprintf(why, whylen, "binlog_format %s is not one the feed reads", st->format);
		return why;
	}
	if (!st->log_slave_updates && is_replica(m, st, how, sizeof(how))) {
		snprintf(why, whylen,
			 "the server is a replica (%s) and log_slave_updates is OFF: its binary "
			 "log gets none of the primary's inserts; follow the primary, or a replica "
			 "with log_slave_updates",
			 how);
		return why;
	}
	return NULL;
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
	const struct db_endpoint *ep = &b->endpoint.ep;
	/* Longer than the heartbeat period: a silent server is a dead one. */
	unsigned int timeout = (unsigned)ep->connect_timeout;
	unsigned int rw = (unsigned)b->cfg->binlog_heartbeat * 3 + 5;
	MYSQL *m = mysql_init(NULL);

	if (m == NULL) {
		set_own_error(e, WHY_MEMORY, BINLOG_FAILED, "mysql_init");
		return NULL;
	}
	if (db_guard_auth(m) != 0 || db_apply_tls(m, ep) != 0) {
		set_own_error(e, WHY_REFUSED, BINLOG_FAILED,
			      "cannot restrict authentication plugins or set TLS");
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
	/* tls = on against a server without TLS: libmariadb logged in in clear; nothing
	 * more is sent (db.h). */
	if (db_check_tls(m, ep) != 0) {
		set_own_error(e, WHY_REFUSED, BINLOG_FAILED, "the server offers no TLS (tls = on)");
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

static void log_server(struct binlog *b, struct log_line *l)
{
	if (b->server[0] != '\0')
		log_str(l, "server", b->server);
}

/* The server accepted the position: FOLLOWING, logged once per entry (a quiet
 * reconnect after a big event is already following). */
static void enter_following(struct binlog *b, const struct server_state *st)
{
	struct log_line l;

	b->resuming = false;
	if (binlog_following(b))
		return;
	log_begin(&l, LOG_INFO, "binary log feed following");
	log_server(b, &l);
	log_str(&l, "file", b->file);
	log_int(&l, "position", (long long)b->pos);
	log_str(&l, "binlog_format", st->format);
	log_int(&l, "server_id", (long long)b->server_id);
	if (b->failures > 0)
		log_int(&l, "after_failures", b->failures);
	log_str(&l, "next",
		"wikis are woken as jobs are written; a catch-up sweep covers the "
		"time before; scans stay as the safety net");
	log_end(&l);
	b->failures = 0;
	b->last_logged = NULL;
	set_state(b, BINLOG_FOLLOWING, NULL);
}

/* BLIND, logged once per change of reason. */
static void enter_blind(struct binlog *b, const char *why)
{
	struct binlog_status cur;
	struct log_line l;
	char next[128];

	binlog_status(b, &cur);
	if (cur.state == BINLOG_BLIND && strcmp(cur.why, why) == 0)
		return;
	snprintf(next, sizeof(next),
		 "the sweep takes over at full speed; checking the server again every %ds",
		 b->cfg->binlog_retry_interval);
	log_begin(&l, LOG_WARN, "binary log feed blind");
	log_server(b, &l);
	log_str(&l, "why", why);
	log_str(&l, "next", next);
	log_end(&l);
	b->last_logged = NULL;
	set_state(b, BINLOG_BLIND, why);
}

bool binlog_following(struct binlog *b)
{
	bool following;

	if (b == NULL)
		return false;
	pthread_mutex_lock(&b->lock);
	following = b->state == BINLOG_FOLLOWING;
	pthread_mutex_unlock(&b->lock);
	return following;
}

void binlog_status(struct binlog *b, struct binlog_status *out)
{
	if (b == NULL) {
		out->state = BINLOG_FAILED;
		snprintf(out->why, sizeof(out->why), "no feed");
		return;
	}
	pthread_mutex_lock(&b->lock);
	out->state = b->state;
	snprintf(out->why, sizeof(out->why), "%s", b->why);
	pthread_mutex_unlock(&b->lock);
}

unsigned long binlog_follows(struct binlog *b)
{
	unsigned long n;

	if (b == NULL)
		return 0;
	pthread_mutex_lock(&b->lock);
	n = b->follows;
	pthread_mutex_unlock(&b->lock);
	return n;
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
	/* A compressed write-rows event keeps its post-header (the table id) uncompressed:
	 * libmariadb reads the id without inflating anything (checked on 10.11, which
	 * writes the V1 code 166 under log_bin_compress). */
	case WRITE_ROWS_EVENT_V1:
	case WRITE_ROWS_EVENT:
	case WRITE_ROWS_COMPRESSED_EVENT_V1:
	case WRITE_ROWS_COMPRESSED_EVENT:
		note_rows_written(b, ev);
		break;
	/* QUERY_COMPRESSED arrives inflated (MARIADB_RPL_UNCOMPRESS), in the same fields. */
	case QUERY_EVENT:
	case QUERY_COMPRESSED_EVENT:
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

/* Whether an event left libmariadb's buffers big (FEED_BIG_EVENT_BYTES): its packet, or
 * a compressed statement's inflated copy. */
static bool big_event(const MARIADB_RPL_EVENT *ev)
{
	return ev->raw_data_size > FEED_BIG_EVENT_BYTES ||
	       (ev->event_type == QUERY_COMPRESSED_EVENT &&
		ev->event.query.statement.length > FEED_BIG_EVENT_BYTES);
}

/* Starts the dump at b->file:b->pos. 0, or -EIO with e filled. */
static int open_dump(struct binlog *b, MYSQL *m, MARIADB_RPL *rpl, struct feed_error *e)
{
	char sql[160];

	/* Without the checksum statement the server refuses the dump (error 1236). */
	snprintf(sql, sizeof(sql),
		 "SET @master_binlog_checksum= @@global.binlog_checksum,"
		 " @mariadb_slave_capability= 4, @master_heartbeat_period= %llu",
		 (unsigned long long)b->cfg->binlog_heartbeat * 1000000000ull);
	if (run(m, sql, e) != 0)
		return -EIO;
	b->server_id = feed_server_id(b);
	/* MARIADB_RPL_UNCOMPRESS: libmariadb inflates QUERY_COMPRESSED (log_bin_compress)
	 * into the event's statement (checked with 3.3.20 on 10.11, up to 57 KB). */
	if (mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, b->file, strlen(b->file)) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, (unsigned long)b->pos) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, (unsigned int)b->server_id) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, 0u) != 0 ||
	    mariadb_rpl_optionsv(rpl, MARIADB_RPL_UNCOMPRESS, 1u) != 0 ||
	    mariadb_rpl_open(rpl) != 0) {
		set_error(e, m, "starting the binlog dump");
		return -EIO;
	}
	return 0;
}

/* One attempt: connect, check the server, start the dump, follow until an error or
 * stop. */
static enum follow_end follow(struct binlog *b, struct feed_error *e)
{
	struct server_state st = { 0 };
	MYSQL *m;
	MARIADB_RPL *rpl = NULL;
	MARIADB_RPL_EVENT *ev = NULL;
	enum follow_end end = FOLLOW_FAILED;
	bool accepted = false;
	char why[256];

	if (b->endpoint_rc != 0) {
		set_own_error(e, b->endpoint_rc == -EPERM ? WHY_NOT_ALLOWED : WHY_NOT_CANONICAL,
			      BINLOG_FAILED, b->server);
		return FOLLOW_FAILED;
	}
	m = feed_connect(b, e);
	if (m == NULL)
		return feed_stopping(b) ? FOLLOW_STOPPED : FOLLOW_FAILED;
	if (read_server_state(b, m, &st, e) != 0)
		goto out;
	if (blind_reason(m, &st, why, sizeof(why)) != NULL) {
		/* Reading every event of a log that holds no job insert costs the server
		 * for nothing: close, look again later. */
		enter_blind(b, why);
		end = FOLLOW_BLIND;
		goto out;
	}
	rpl = mariadb_rpl_init(m);
	if (rpl == NULL) {
		set_error(e, m, "mariadb_rpl_init");
		goto out;
	}
	if (open_dump(b, m, rpl, e) != 0)
		goto out;
	/* Resumed after a big event, maybe inside a transaction: its table maps stand. */
	if (!b->resuming)
		b->nrecent = 0;
	for (;;) {
		ev = mariadb_rpl_fetch(rpl, ev);
		if (ev == NULL) {
			/* The event was freed by the failed fetch. */
			if (!feed_stopping(b))
				set_error(e, m, "reading the binary log");
			break;
		}
		if (ev->event_type == HEARTBEAT_LOG_EVENT)
			continue;
		/* mariadb_rpl_open always succeeds; the server refuses a position (1236) or
		 * a user (1227) at the first fetch instead, before any event of the file.
		 * The artificial ROTATE comes first either way; the next event is read from
		 * the file. */
		if (!accepted &&
		    !(ev->event_type == ROTATE_EVENT && (ev->flags & LOG_EVENT_ARTIFICIAL_F))) {
			enter_following(b, &st);
			accepted = true;
		}
		handle_event(b, ev);
		if (big_event(ev)) {
			struct log_line l;
			log_begin(&l, LOG_DEBUG, "binary log feed reconnecting after a big event");
			log_server(b, &l);
			log_int(&l, "bytes", (long long)ev->raw_data_size);
			log_str(&l, "file", b->file);
			log_int(&l, "position", (long long)b->pos);
			log_end(&l);
			mariadb_free_rpl_event(ev);
			b->resuming = true;
			end = FOLLOW_AGAIN;
			break;
		}
	}
out:
	if (rpl != NULL)
		mariadb_rpl_close(rpl);
	feed_disconnect(b, m);
	/* The big buffers are free now; give their pages back. */
	if (end == FOLLOW_AGAIN)
		malloc_trim(0);
	return feed_stopping(b) ? FOLLOW_STOPPED : end;
}

/* One line per failure; the same kind of failure again (a restarting server first
 * drops the connection, then refuses new ones) only every REPEAT_FAILURE_LOG_MS. */
static void log_failure(struct binlog *b, const struct feed_error *e, const char *next)
{
	int64_t now = util_mono_ms();
	struct log_line l;

	b->failures++;
	if (b->last_logged == e->why && now - b->last_logged_ms < REPEAT_FAILURE_LOG_MS)
		return;
	b->last_logged = e->why;
	b->last_logged_ms = now;
	log_begin(&l, LOG_WARN, "binary log feed stopped");
	log_server(b, &l);
	log_str(&l, "why", e->why != NULL ? e->why : WHY_REFUSED);
	log_str(&l, "error", e->msg);
	if (e->code != 0)
		log_int(&l, "code", e->code);
	log_int(&l, "failures", b->failures);
	log_str(&l, "next", next);
	log_end(&l);
}

/* A failed attempt: where to resume, which id to announce, the line and the state. */
static void feed_failed(struct binlog *b, struct feed_error *e)
{
	char next[160];
	int n;

	b->resuming = false;
	if (e->forget_position)
		b->file[0] = '\0';
	n = snprintf(next, sizeof(next), "detection by scanning only; retrying the feed in %ds",
		     b->cfg->binlog_retry_interval);
	if (e->clash) {
		/* The other replica stays with the id; taking a new one ends the
		 * knocking-off at once (retrying with the same id would go on for ever). */
		b->id_salt++;
		snprintf(next + n, sizeof(next) - (size_t)n, " as server_id %u",
			 (unsigned)feed_server_id(b));
	}
	log_failure(b, e, next);
	set_state(b, e->state, e->why);
}

static void *feed_main(void *arg)
{
	struct binlog *b = arg;

	mysql_thread_init();
	while (!feed_stopping(b)) {
		struct feed_error e = { 0 };
		int64_t until;
		struct timespec ts;

		switch (follow(b, &e)) {
		case FOLLOW_STOPPED:
			continue;
		case FOLLOW_AGAIN:
			continue;
		case FOLLOW_BLIND:
			b->resuming = false;
			break;
		case FOLLOW_FAILED:
			feed_failed(b, &e);
			break;
		}
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

struct binlog *binlog_start(const struct config *cfg, const char *server, binlog_wake_fn wake,
			    void *arg)
{
	struct binlog *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->cfg = cfg;
	b->wake = wake;
	b->arg = arg;
	snprintf(b->server, sizeof(b->server), "%s", server != NULL ? server : "");
	b->endpoint_rc = binlog_endpoint_for(cfg, server, &b->endpoint);
	b->state = BINLOG_STARTING;
	snprintf(b->why, sizeof(b->why), "connecting");
	b->server_id = feed_server_id(b);
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
	set_state(b, BINLOG_STARTING, "stopped");
	binlog_map_free(b->map);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
