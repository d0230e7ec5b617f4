/* db.h - one MySQL/MariaDB connection, reconnected explicitly.
 *
 * No MYSQL_OPT_RECONNECT: after a lost connection the next call reconnects, so the
 * owner always knows that session state (user variables, locks) was lost. A handle
 * belongs to one thread at a time. Library-like: returns errors with a message, the
 * owner logs.
 *
 * Reconnect pacing is this module's rule, the same for every connection of the
 * process (scanner, workers, commands): the first reconnect after a loss is immediate,
 * later attempts wait db_retry_delay_ms() (doubling, at most DB_RETRY_MAX_MS), so a
 * database that went away is retried every few seconds however long it was gone, and
 * never on a wiki's backoff schedule. A write refused because the server is read-only
 * (error 1290: an old primary after a failover) counts as a lost connection: the
 * connection is closed and the next call reconnects, to wherever the address now
 * leads. */
#ifndef JD_DB_H
#define JD_DB_H

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct db;

/* name is for messages only ("platform_db", "scan_db"). The connection uses
 * CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, not only those it changed,
 * so a conditional UPDATE's count answers "did the condition hold". */
struct db *db_new(const struct db_endpoint *ep, const char *name);
void db_free(struct db *db);

/* Connects if not connected. Returns 0, or -ENOTCONN with a message in err when the
 * server cannot be reached (or the last failure was too recent: see pacing above, or
 * the process is shutting down: db_abort_at). */
int db_connect(struct db *db, char *err, size_t errlen);

/* Runs one statement (connecting first if needed) and returns its whole result in
 * *res (NULL for statements without one). On failure returns -ENOTCONN when no
 * connection could be made (the statement never reached the server), else -EIO, with
 * the message in err; when the connection was lost during the statement it is closed,
 * and the next call reconnects. *errcode gets MySQL's error number (0 on success). */
int db_query(struct db *db, const char *sql, MYSQL_RES **res, unsigned *errcode, char *err,
	     size_t errlen);

/* Like db_query for statements without a result; *matched gets the rows the statement
 * matched (see CLIENT_FOUND_ROWS above). */
int db_exec(struct db *db, const char *sql, unsigned long long *matched, unsigned *errcode,
	    char *err, size_t errlen);

/* The authentication plugins any connection of the process may use: those that never
 * hand the server the password (challenge-response). A server that asks for
 * mysql_clear_password or dialog (which send it as typed), or for sha256_password /
 * caching_sha2_password (encrypted to a key the server itself supplies), gets no
 * answer: the login fails before the password leaves. Servers are a trust boundary
 * (discovery names them); one rule for every connection, set by db_guard_auth. */
#define DB_AUTH_PLUGINS "mysql_native_password,client_ed25519"
/* Applies DB_AUTH_PLUGINS to m before mysql_real_connect (db_connect does; so does the
 * binary log feed's own connection). 0, or -EIO when the client library cannot
 * restrict them (then do not connect). */
int db_guard_auth(MYSQL *m);

/* Applies ep's TLS (config.h enum db_tls) to m before mysql_real_connect; after it,
 * db_check_tls must accept m. db_connect does both, for every connection of the
 * process; the binary log feed's own MYSQL calls both too.
 *   off:    nothing (plain TCP: loopback and in-cluster farms).
 *   verify: TLS required, the certificate must chain to ep->tls_ca (the system's CAs
 *           when empty) and name the host connected to. A server that offers no TLS,
 *           or a certificate that fails, ends the connect with an error before the
 *           login is sent.
 *   on:     TLS, the certificate not checked (against passive listeners only). The
 *           client library (Connector/C 3.3) falls back to clear text when the server
 *           offers no TLS and the certificate is not verified, so db_check_tls
 *           refuses such a connection right after the login (a challenge-response:
 *           DB_AUTH_PLUGINS) and the session's set-up, before any statement that
 *           reads or writes data; only verify refuses before the login.
 * 0, or -EIO when the client library refuses an option (then do not connect). */
int db_apply_tls(MYSQL *m, const struct db_endpoint *ep);
/* 0, or -EIO when ep asks for TLS and m's connection has none (close it). */
int db_check_tls(MYSQL *m, const struct db_endpoint *ep);

/* Errors after which the session is gone or unusable (the connection is closed). */
bool db_connection_lost(unsigned code);

/* Asks the server to stop any statement of this connection after max_statement_ms
 * (MariaDB's max_statement_time) and any wait for a table's metadata lock after
 * lock_wait_s (lock_wait_timeout: what a SELECT behind LOCK TABLES ... WRITE waits
 * on), so that a statement stuck behind a lock ends on the server with an error of its
 * own (db_statement_timed_out) instead of running into the client's query_timeout.
 * Applied at every (re)connect, and before the next statement when changed on an open
 * connection; a server without these variables keeps only the client's timeout.
 * max_statement_ms 0: no statement limit. The owner's thread only. */
void db_set_statement_limits(struct db *db, int64_t max_statement_ms, int lock_wait_s);

/* Whether error `code` is a statement stopped by those limits (or MySQL's
 * max_execution_time): the statement's own failure, the connection is fine. */
bool db_statement_timed_out(unsigned code);

/* Cuts db from another thread: a statement or read in progress fails at once (its
 * socket is shut down) and no new connection is made, so that the owner thread, told
 * to stop, returns promptly whatever the server does. A connect in progress ends
 * within the endpoint's connect_timeout. The handle stays the owner's to free. */
void db_cut(struct db *db);

/* Delay before retrying after `failures` consecutive database failures: 0 for the
 * first, then 250 ms doubling up to DB_RETRY_MAX_MS. */
#define DB_RETRY_MAX_MS 4000
int64_t db_retry_delay_ms(int failures);

/* From monotonic time `deadline_ms` on, every connection of the process is cut
 * (its socket shut down, so a statement waiting on a hung server returns at once) and
 * no new one is made: bounds the shutdown path whatever the database does. Called
 * once, when shutdown starts. */
void db_abort_at(int64_t deadline_ms);

/* Appends s as a quoted SQL string literal, escaped for this connection's charset
 * (connects first). Returns 0 or -EIO. */
int db_quote(struct db *db, struct buf *out, const char *s, char *err, size_t errlen);

/* The value of the last LAST_INSERT_ID(expr) on this connection (0 if none). */
unsigned long long db_insert_id(struct db *db);

/* Every thread that uses a connection calls db_thread_init first and db_thread_end
 * before it exits (the client library's per-thread state). */
void db_thread_init(void);
void db_thread_end(void);

/* "mariadb 10.11.x" style client library version, for the start-up line. */
const char *db_client_version(void);

#endif
