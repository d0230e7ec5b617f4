/* db.h - one MySQL/MariaDB connection, reconnected explicitly.
 *
 * No MYSQL_OPT_RECONNECT: after a lost connection the next call reconnects, so the
 * owner always knows that session state (user variables, locks) was lost. A handle
 * belongs to one thread at a time. Library-like: returns errors with a message, the
 * owner logs. */
#ifndef JD_DB_H
#define JD_DB_H

#include <mysql.h>
#include <stdbool.h>

#include "config.h"

struct db;

/* name is for messages only ("platform_db", "scan_db"). The connection uses
 * CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, not only those it changed,
 * so a conditional UPDATE's count answers "did the condition hold". */
struct db *db_new(const struct db_endpoint *ep, const char *name);
void db_free(struct db *db);

/* Connects if not connected. Returns 0 or -EIO with a message in err. */
int db_connect(struct db *db, char *err, size_t errlen);

/* Runs one statement (connecting first if needed) and returns its whole result in
 * *res (NULL for statements without one). On failure returns -EIO and the message in
 * err; when the connection was lost it is closed, and the next call reconnects.
 * *errcode gets MySQL's error number (0 on success). */
int db_query(struct db *db, const char *sql, MYSQL_RES **res, unsigned *errcode, char *err,
	     size_t errlen);

/* Like db_query for statements without a result; *matched gets the rows the statement
 * matched (see CLIENT_FOUND_ROWS above). */
int db_exec(struct db *db, const char *sql, unsigned long long *matched, unsigned *errcode,
	    char *err, size_t errlen);

/* Appends s as a quoted SQL string literal, escaped for this connection's charset
 * (connects first). Returns 0 or -EIO. */
int db_quote(struct db *db, struct buf *out, const char *s, char *err, size_t errlen);

/* The value of the last LAST_INSERT_ID(expr) on this connection (0 if none). */
unsigned long long db_insert_id(struct db *db);

/* "mariadb 10.11.x" style client library version, for the start-up line. */
const char *db_client_version(void);

#endif
