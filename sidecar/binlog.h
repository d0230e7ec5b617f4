/* binlog.h - the push path: MariaDB's binary log tells which wiki just got a job.
 *
 * With [binlog] enabled = true, the holder of the scanner lease (scanner.c) runs one
 * feed: a thread that follows the server's binary log from its current position, as a
 * replica would (libmariadb's mariadb_rpl_open / mariadb_rpl_fetch), and calls the
 * owner's wake function with a wiki's domain as soon as a row is written to that wiki's
 * job table:
 * - ROW format: a TABLE_MAP event naming (database, prefix + "job") followed by a
 *   write-rows event for that table id;
 * - STATEMENT / MIXED format: a QUERY event whose statement is an INSERT or REPLACE
 *   into that table, qualified or in the event's current database.
 * Claims (UPDATE) and deletions wake nothing. The server sends every event of every
 * table (a binlog dump cannot be filtered), so one feed per fleet, never one per pod.
 *
 * Failures never stop the daemon: a missing grant (REPLICATION SLAVE, or REPLICATION
 * CLIENT / BINLOG MONITOR for SHOW MASTER STATUS), the binary log off, a purged
 * position, a lost connection: the feed logs one line saying so, the scanner keeps
 * finding work by scanning, and the feed tries again after [binlog] retry_interval
 * (resuming where it stopped when it can, else at the server's current position). */
#ifndef JD_BINLOG_H
#define JD_BINLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "wiki.h"

struct binlog;

/* Called from the feed's thread, once per job-table write (the owner coalesces). */
typedef void (*binlog_wake_fn)(void *arg, const char *domain);

/* Starts the feed's thread; NULL on failure (out of memory, no thread). */
struct binlog *binlog_start(const struct config *cfg, binlog_wake_fn wake, void *arg);

/* Stops the thread (cutting a fetch in progress) and frees. Accepts NULL. */
void binlog_stop(struct binlog *b);

/* True while the feed follows the binary log (from its first event after connecting
 * until it stops or fails): new jobs on its wikis wake them at once. Any thread; false
 * for NULL. */
bool binlog_following(struct binlog *b);
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
