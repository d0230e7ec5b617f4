/* db.c - see db.h. */
#include "db.h"

#include <errno.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db {
	const struct db_endpoint *ep;
	const char *name;
	MYSQL *conn; /* NULL when not connected */
};

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

int db_connect(struct db *db, char *err, size_t errlen)
{
	const struct db_endpoint *ep = db->ep;
	unsigned int timeout;
	MYSQL *m;

	if (db->conn != NULL)
		return 0;
	m = mysql_init(NULL);
	if (m == NULL) {
		snprintf(err, errlen, "%s: out of memory", db->name);
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
		snprintf(err, errlen, "%s: cannot connect to %s:%d as %s: %s", db->name,
			 ep->socket[0] ? ep->socket : ep->host, ep->port, ep->user, mysql_error(m));
		mysql_close(m);
		return -EIO;
	}
	db->conn = m;
	return 0;
}

/* Errors after which the session is gone or unusable: reconnect next time. */
static bool connection_lost(unsigned code)
{
	return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
	       code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR ||
	       code == CR_COMMANDS_OUT_OF_SYNC || code == ER_CONNECTION_KILLED ||
	       code == ER_SERVER_SHUTDOWN || code == CR_SERVER_LOST_EXTENDED;
}

int db_query(struct db *db, const char *sql, MYSQL_RES **res, unsigned *errcode, char *err,
	     size_t errlen)
{
	unsigned code;

	*res = NULL;
	*errcode = 0;
	if (db_connect(db, err, errlen) != 0) {
		*errcode = CR_CONNECTION_ERROR;
		return -EIO;
	}
	if (mysql_real_query(db->conn, sql, strlen(sql)) == 0) {
		*res = mysql_store_result(db->conn);
		if (*res != NULL || mysql_field_count(db->conn) == 0)
			return 0;
	}
	code = mysql_errno(db->conn);
	*errcode = code;
	snprintf(err, errlen, "%s: %s (error %u)", db->name, mysql_error(db->conn), code);
	if (connection_lost(code))
		db_close(db);
	return -EIO;
}

int db_exec(struct db *db, const char *sql, unsigned long long *matched, unsigned *errcode,
	    char *err, size_t errlen)
{
	MYSQL_RES *res;

	*matched = 0;
	if (db_query(db, sql, &res, errcode, err, errlen) != 0)
		return -EIO;
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
		return -EIO;
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
