/* db.c - see db.h.
 *
 * Every open connection is on one list, so that db_abort_at() can shut their sockets
 * down from another thread: a read blocked on a hung server then fails at once. A
 * connection leaves the list (under the lock) before it is closed, so the abort never
 * touches a descriptor that was closed and reused. */
#include "db.h"

#include <errno.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

struct db {
	const struct db_endpoint *ep;
	const char *name;
	MYSQL *conn;              /* NULL when not connected */
	int64_t max_statement_ms; /* db_set_statement_limits; 0: none */
	int lock_wait_s;          /* 0: none */
	bool limits_sent;         /* the session has the limits above */
	atomic_bool cut;          /* db_cut: no new connection */
	int failures;             /* connects failed or connections lost since the last success */
	int64_t retry_after_ms;   /* monotonic: no connect attempt before this */
	char last_error[256];
	struct db *prev, *next; /* the list of open connections, while conn != NULL */
};

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db *open_list;
static atomic_bool aborted;

static void open_list_add(struct db *db)
{
	pthread_mutex_lock(&open_lock);
	db->prev = NULL;
	db->next = open_list;
	if (open_list != NULL)
		open_list->prev = db;
	open_list = db;
	pthread_mutex_unlock(&open_lock);
}

static void open_list_remove(struct db *db)
{
	pthread_mutex_lock(&open_lock);
	if (db->prev != NULL)
		db->prev->next = db->next;
	else if (open_list == db)
		open_list = db->next;
	if (db->next != NULL)
		db->next->prev = db->prev;
	db->prev = db->next = NULL;
	pthread_mutex_unlock(&open_lock);
}

static void abort_all(void)
{
	atomic_store(&aborted, true);
	pthread_mutex_lock(&open_lock);
	for (struct db *db = open_list; db != NULL; db = db->next) {
		my_socket fd = mysql_get_socket(db->conn);
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&open_lock);
}

static void *abort_timer(void *arg)
{
	int64_t deadline = *(int64_t *)arg;
	struct timespec ts;

	free(arg);
	ts = util_timespec(deadline);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	abort_all();
	return NULL;
}

void db_abort_at(int64_t deadline_ms)
{
	int64_t *arg = malloc(sizeof(*arg));
	pthread_attr_t attr;
	pthread_t t;

	if (arg == NULL) {
		abort_all(); /* cannot wait: cut now rather than risk hanging */
		return;
	}
	*arg = deadline_ms;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, abort_timer, arg) != 0) {
		free(arg);
		abort_all();
	}
	pthread_attr_destroy(&attr);
}

int64_t db_retry_delay_ms(int failures)
{
	if (failures <= 1)
		return 0;
	return util_backoff_ms(250, DB_RETRY_MAX_MS, failures - 2);
}

void db_set_statement_limits(struct db *db, int64_t max_statement_ms, int lock_wait_s)
{
	if (db->max_statement_ms == max_statement_ms && db->lock_wait_s == lock_wait_s)
		return;
	db->max_statement_ms = max_statement_ms;
	db->lock_wait_s = lock_wait_s;
	db->limits_sent = false;
}

bool db_statement_timed_out(unsigned code)
{
	return code == ER_STATEMENT_TIMEOUT || code == ER_LOCK_WAIT_TIMEOUT ||
	       code == 3024; /* MySQL's ER_QUERY_TIMEOUT (max_execution_time) */
}

/* Sends the session's statement limits when they changed or the session is new.
 * Servers without a variable ignore that part (the error is not the caller's). */
static void send_limits(struct db *db)
{
	char sql[96];

	if (db->limits_sent || db->conn == NULL)
		return;
	db->limits_sent = true;
	if (db->max_statement_ms <= 0 && db->lock_wait_s <= 0)
		return;
	snprintf(sql, sizeof(sql), "SET SESSION max_statement_time = %.3f",
		 (double)db->max_statement_ms / 1000.0);
	mysql_real_query(db->conn, sql, strlen(sql));
	if (db->lock_wait_s > 0) {
		snprintf(sql, sizeof(sql), "SET SESSION lock_wait_timeout = %d", db->lock_wait_s);
		mysql_real_query(db->conn, sql, strlen(sql));
	}
}

void db_cut(struct db *db)
{
	if (db == NULL)
		return;
	atomic_store(&db->cut, true);
	pthread_mutex_lock(&open_lock);
	/* Only while on the list: its connection is open and cannot be closed meanwhile
	 * (db_close takes it off first, under this lock). */
	for (struct db *x = open_list; x != NULL; x = x->next) {
		my_socket fd;
		if (x != db)
			continue;
		fd = mysql_get_socket(db->conn);
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&open_lock);
}

/* Remembers a failure for the pacing of the next connect. */
static void note_failure(struct db *db, const char *err)
{
	db->failures++;
	db->retry_after_ms = util_mono_ms() + db_retry_delay_ms(db->failures);
	snprintf(db->last_error, sizeof(db->last_error), "%s", err);
}

struct db *db_new(const struct db_endpoint *ep, const char *name)
{
	struct db *db = calloc(1, sizeof(*db));

	if (db == NULL)
		return NULL;
	db->ep = ep;
	db->name = name;
	return db;
}

static void db_close(struct db *db)
{
	if (db->conn != NULL) {
		open_list_remove(db);
		mysql_close(db->conn);
		db->conn = NULL;
	}
}

void db_free(struct db *db)
{
	if (db == NULL)
		return;
	db_close(db);
	free(db);
}

unsigned long long db_insert_id(struct db *db)
{
	return db->conn ? mysql_insert_id(db->conn) : 0;
}

const char *db_client_version(void)
{
	return mysql_get_client_info();
}

int db_guard_auth(MYSQL *m)
{
	my_bool off = 0;

	/* Off by default; stated so that nothing else (an option file) turns it on. */
	if (mysql_optionsv(m, MYSQL_ENABLE_CLEARTEXT_PLUGIN, &off) != 0 ||
	    mysql_optionsv(m, MARIADB_OPT_RESTRICTED_AUTH, DB_AUTH_PLUGINS) != 0)
		return -EIO;
	return 0;
}

int db_apply_tls(MYSQL *m, const struct db_endpoint *ep)
{
	my_bool on = 1, verify = ep->tls == DB_TLS_VERIFY;

	if (ep->tls == DB_TLS_OFF)
		return 0;
	/* ENFORCE: no TLS offered is an error (CR_SSL_CONNECTION_ERROR), not clear text. */
	if (mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on) != 0 ||
	    mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify) != 0)
		return -EIO;
	if (verify && ep->tls_ca[0] != '\0' && mysql_optionsv(m, MYSQL_OPT_SSL_CA, ep->tls_ca) != 0)
		return -EIO;
	return 0;
}

int db_check_tls(MYSQL *m, const struct db_endpoint *ep)
{
	return ep->tls == DB_TLS_OFF || mysql_get_ssl_cipher(m) != NULL ? 0 : -EIO;
}

static const char *tls_name(int tls)
{
	return tls == DB_TLS_VERIFY ? " (tls = verify)" : tls == DB_TLS_ON ? " (tls = on)" : "";
}

int db_connect(struct db *db, char *err, size_t errlen)
{
	const struct db_endpoint *ep = db->ep;
	unsigned int timeout;
	MYSQL *m;

	if (db->conn != NULL)
		return 0;
	if (atomic_load(&aborted) || atomic_load(&db->cut)) {
		snprintf(err, errlen, "%s: not connecting: shutting down", db->name);
		return -ENOTCONN;
	}
	if (db->failures > 0 && util_mono_ms() < db->retry_after_ms) {
		snprintf(err, errlen, "%s: reconnecting in %.1fs; last error: %s", db->name,
			 (double)(db->retry_after_ms - util_mono_ms()) / 1000.0, db->last_error);
		return -ENOTCONN;
	}
	m = mysql_init(NULL);
	if (m == NULL) {
		snprintf(err, errlen, "%s: out of memory", db->name);
		return -EIO;
	}
	if (db_guard_auth(m) != 0) {
		snprintf(err, errlen,
			 "%s: the client library cannot restrict authentication plugins", db->name);
		mysql_close(m);
		return -EIO;
	}
	if (db_apply_tls(m, ep) != 0) {
		snprintf(err, errlen, "%s: the client library refused the TLS options%s", db->name,
			 tls_name(ep->tls));
		mysql_close(m);
		return -EIO;
	}
	timeout = (unsigned)ep->connect_timeout;
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	timeout = (unsigned)ep->query_timeout;
	mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* Job timestamps are UTC; so is every time this process compares them with. */
	mysql_options(m, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	if (mysql_real_connect(m, ep->socket[0] ? NULL : ep->host, ep->user,
			       ep->password[0] ? ep->password : NULL,
			       ep->database[0] ? ep->database : NULL, (unsigned)ep->port,
			       ep->socket[0] ? ep->socket : NULL, CLIENT_FOUND_ROWS) == NULL) {
		snprintf(err, errlen, "%s: cannot connect to %s:%d as %s%s: %s", db->name,
			 ep->socket[0] ? ep->socket : ep->host, ep->port, ep->user,
			 tls_name(ep->tls), mysql_error(m));
		mysql_close(m);
		note_failure(db, err);
		return -ENOTCONN;
	}
	if (db_check_tls(m, ep) != 0) {
		snprintf(err, errlen,
			 "%s: %s:%d offers no TLS%s: refused after the login, before any query "
			 "(tls = verify refuses before the login)",
			 db->name, ep->socket[0] ? ep->socket : ep->host, ep->port,
			 tls_name(ep->tls));
		mysql_close(m);
		note_failure(db, err);
		return -ENOTCONN;
	}
	db->conn = m;
	open_list_add(db);
	db->limits_sent = false;
	send_limits(db);
	return 0;
}

bool db_connection_lost(unsigned code)
{
	return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
	       code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR ||
	       code == CR_COMMANDS_OUT_OF_SYNC || code == ER_CONNECTION_KILLED ||
	       code == ER_SERVER_SHUTDOWN || code == CR_SERVER_LOST_EXTENDED ||
	       code == ER_OPTION_PREVENTS_STATEMENT; /* read-only: see db.h */
}

int db_query(struct db *db, const char *sql, MYSQL_RES **res, unsigned *errcode, char *err,
	     size_t errlen)
{
	unsigned code;

	*res = NULL;
	*errcode = 0;
	if (db_connect(db, err, errlen) != 0) {
		*errcode = CR_CONNECTION_ERROR;
		return -ENOTCONN;
	}
	send_limits(db);
	if (mysql_real_query(db->conn, sql, strlen(sql)) == 0) {
		*res = mysql_store_result(db->conn);
		if (*res != NULL || mysql_field_count(db->conn) == 0) {
			db->failures = 0;
			return 0;
		}
	}
	code = mysql_errno(db->conn);
	*errcode = code;
	/* The code first: a message cut to fit a column still names it. */
	snprintf(err, errlen, "%s: error %u: %s", db->name, code, mysql_error(db->conn));
	if (db_connection_lost(code)) {
		db_close(db);
		note_failure(db, err);
	}
	return -EIO;
}

int db_exec(struct db *db, const char *sql, unsigned long long *matched, unsigned *errcode,
	    char *err, size_t errlen)
{
	MYSQL_RES *res;

	int rc;

	*matched = 0;
	rc = db_query(db, sql, &res, errcode, err, errlen);
	if (rc != 0)
		return rc;
	if (res != NULL)
		mysql_free_result(res);
	else
		*matched = mysql_affected_rows(db->conn);
	return 0;
}

int db_quote(struct db *db, struct buf *out, const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);
	char *tmp;

	if (db_connect(db, err, errlen) != 0)
		return -ENOTCONN;
	tmp = malloc(2 * n + 1);
	if (tmp == NULL) {
		snprintf(err, errlen, "%s: out of memory", db->name);
		return -EIO;
	}
	mysql_real_escape_string(db->conn, tmp, s, (unsigned long)n);
	buf_addf(out, "'%s'", tmp);
	free(tmp);
	return 0;
}

void db_thread_init(void)
{
	mysql_thread_init();
}

void db_thread_end(void)
{
	mysql_thread_end();
}
