/* binlog.h - the push path: MariaDB's binary log tells which wiki just got a job.
 *
 * With [binlog] enabled (true, or auto with a [binlog] user), the holder of the scanner
 * lease runs a feed per followed server: a thread that follows the server's binary log
 * from its current position, as a replica would (libmariadb's mariadb_rpl_open /
 * mariadb_rpl_fetch), and calls the owner's wake function with a wiki's domain as soon
 * as a row is written to that wiki's job table:
 * - ROW format: a TABLE_MAP event naming (database, prefix + "job") followed by a
 *   write-rows event for that table id;
 * - STATEMENT / MIXED format: a QUERY event whose statement is an INSERT or REPLACE
 *   into that table, qualified or in the event's current database.
 * Compressed events (log_bin_compress) count the same: a compressed write-rows event
 * carries its table id uncompressed, and libmariadb inflates a compressed QUERY.
 * Claims (UPDATE) and deletions wake nothing. The server sends every event of every
 * table (a binlog dump cannot be filtered), so one feed per server per fleet, never one
 * per pod.
 *
 * Failures never stop the daemon: a missing grant (REPLICATION SLAVE, or REPLICATION
 * CLIENT / BINLOG MONITOR for SHOW MASTER STATUS), the binary log off, a purged
 * position, a lost connection, a server_id taken by another replica: the feed logs one
 * line saying so and tries again after [binlog] retry_interval (resuming where it
 * stopped when it can, else at the server's current position); a server whose log
 * cannot show job inserts is reported blind. Meanwhile its owner finds work by
 * sweeping (the states below). */
#ifndef JD_BINLOG_H
#define JD_BINLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "wiki.h"

struct binlog;

/* Called from the feed's thread, once per job-table write (the owner coalesces). */
typedef void (*binlog_wake_fn)(void *arg, const char *domain);

/* What a feed can promise, for its owner (the detector of its server) and `status`.
 * - STARTING: not yet following: logging in, or reconnecting after a lost connection or
 *   a purged position (it retries by itself). Its first state.
 * - FOLLOWING: the server accepted the position (an event of the log arrived after the
 *   dump started) and nothing known keeps job inserts out of what it reads: new jobs of
 *   its wikis wake them within about a millisecond of their commit.
 * - BLIND: the feed could read the log but job inserts would not be in it or not be
 *   readable: the server is a replica without log_slave_updates, or its binlog_format
 *   is one the feed does not know, or an event could not be decoded. Logged once per
 *   change ("binary log feed blind"); the connection is closed and the server checked
 *   again every [binlog] retry_interval.
 * - FAILED: an attempt failed for a reason the operator must fix (a missing grant, the
 *   binary log off, the server not allowed, another replica using its server_id, ...);
 *   logged ("binary log feed stopped") and retried every [binlog] retry_interval.
 * In every state but FOLLOWING the feed sees nothing: the owner sweeps the server at
 * full speed (no budget kept for the feed's sake).
 *
 * The catch-up contract: a feed that enters FOLLOWING from any other state (its start,
 * a reconnect after a lost connection, a purged position resumed at the server's
 * current position, blindness ended) may have missed job inserts since it last
 * followed, or since before it existed (a new holder of the scanner lease). The owner
 * must run a catch-up sweep of the server's wikis each time it sees that transition.
 * A reconnect the feed makes on its own while following (after a big event, to free
 * its buffers) resumes at the exact next event and stays FOLLOWING. So that a poll
 * cannot miss a quick FOLLOWING -> STARTING -> FOLLOWING, binlog_follows() counts the
 * entries into FOLLOWING: a new count means a catch-up is due even if every poll saw
 * FOLLOWING. */
enum binlog_state { BINLOG_STARTING, BINLOG_FOLLOWING, BINLOG_BLIND, BINLOG_FAILED };
struct binlog_status {
	enum binlog_state state;
	char why[256]; /* "" while FOLLOWING; else the reason, as the log line gave it */
};

/* Starts a feed's thread; NULL on failure (out of memory, no thread).
 * server: the wikis' db_server key (canonical "host:port", as discovery gives it), or
 * NULL for [binlog]'s own endpoint (the default server). A named server is followed
 * with [binlog]'s user and password (binlog_endpoint_for) and only if config allows it
 * (config_server_allowed); a server it does not allow gets a feed that stays FAILED
 * and never connects. Each feed announces a server_id of its own: [binlog] server_id
 * (or one derived from the holder name) for the default server, one derived from the
 * holder and the server name for a named one. cfg must outlive the feed. */
struct binlog *binlog_start(const struct config *cfg, const char *server, binlog_wake_fn wake,
			    void *arg);

/* Stops the thread (cutting a fetch or a login in progress) and frees. Accepts NULL. */
void binlog_stop(struct binlog *b);

/* The feed's state and why (above). Any thread. NULL b (no feed: it could not be
 * started) reads as BINLOG_FAILED, why "no feed". */
void binlog_status(struct binlog *b, struct binlog_status *out);
/* state == BINLOG_FOLLOWING; false for NULL. Any thread. */
bool binlog_following(struct binlog *b);
/* How many times the feed entered FOLLOWING (the catch-up contract above); 0 for NULL. */
unsigned long binlog_follows(struct binlog *b);

/* The endpoint a feed of `server` logs in to (binlog_start's server; NULL: [binlog]'s
 * own). [binlog]'s endpoint when server is NULL or names [binlog]'s own host:port;
 * else that host and port with [binlog]'s user, password and timeouts, over TCP. The
 * one place that decides a feed's credentials. ep.host points into out: use out where
 * it is, do not copy it. 0; -EPERM when config does not allow the server (nothing may
 * connect there); -EINVAL when server is not a canonical "host:port". */
struct binlog_endpoint {
	struct db_endpoint ep;
	char host[UTIL_DB_SERVER_MAX];
	char socket[1]; /* "": a named server is reached over TCP */
};
int binlog_endpoint_for(const struct config *cfg, const char *server, struct binlog_endpoint *out);

/* The wikis whose job tables wake them (a copy is kept; call after each discovery).
 * Returns 0 or -ENOMEM (the previous list stays). */
int binlog_set_wikis(struct binlog *b, const struct wiki_list *list);

/* ---- parsing, exported for the unit tests ---- */

/* (database, table) -> wiki, for the job tables of a wiki list. */
struct binlog_map;

struct binlog_map *binlog_map_new(const struct wiki_list *list);
void binlog_map_free(struct binlog_map *m);

/* The domain whose job table is db.table (lengths given: the event's strings are not
 * NUL-terminated), or NULL. Exact, case-sensitive match, as MariaDB compares table
 * names on Linux. */
const char *binlog_map_find(const struct binlog_map *m, const char *db, size_t dblen,
			    const char *table, size_t tablelen);

/* The table an INSERT or REPLACE statement writes to. Skips comments (MediaWiki
 * prefixes its statements with one) and the statement's modifiers (IGNORE,
 * LOW_PRIORITY, ...). Returns true with *table (and *db, NULL when unqualified)
 * pointing into sql; false for any other statement. Identifiers may be quoted with
 * backticks or double quotes; an identifier holding an escaped quote is returned with
 * its escape (it can match no wiki's table: their names are plain identifiers). */
bool binlog_insert_target(const char *sql, size_t len, const char **db, size_t *dblen,
			  const char **table, size_t *tablelen);

/* The name and position a ROTATE event's raw bytes (libmariadb's raw_data, which starts
 * with the packet's OK byte) announce; checksum: the events carry a 4-byte CRC32.
 * Read from the bytes because libmariadb 3.3 parses every ROTATE after the first
 * wrongly. Returns true when the event is well formed and the name plain. */
bool binlog_parse_rotate(const unsigned char *raw, size_t len, bool checksum, char *file,
			 size_t filelen, unsigned long long *pos);

#endif
