/* detector.h - one database server's detection, on a thread of its own.
 *
 * A detector reads the job tables of the wikis discovery places on one database server
 * ([scan_db]'s, or one a discovery row names) and writes their backlog for the fleet:
 * woken wikis first (the binary-log feed's wakes, coalesced), then the hot set (wikis
 * that had jobs recently, every [scan] interval), then the sweep's next chunks, and at
 * the sweep's end, once each, the wikis whose table could not be read. It owns that
 * server's scan connection, a coordination-database connection of its own for the
 * rows it publishes (MYSQL handles are not shared between threads), its budget
 * (pace.h: [scan] db_budget_percent and queries_per_second, wakes included), its hot
 * set, its unreadable wikis, its wake queue and the server's binary-log feed. It never
 * calls back into the scanner: the scanner tells it what to do (detector_set_*) and
 * asks how it is doing (detector_report, detector_swept), both under its lock, neither
 * waiting on a statement.
 *
 * Why a thread per server: a statement on a hung server or behind a locked table cannot
 * be interrupted from the thread that waits on it without killing its connection, and
 * deadlines short enough to keep one server from holding another would also cut a
 * healthy big sweep's statements. With a thread each, a stuck statement holds only its
 * own server's wikis, and the scanner's thread (discovery, the scanner lease) never
 * runs a wiki-table statement at all, so the lease is renewed on time whatever a
 * server does. The number is bounded: [scan] allowed_servers lists at most 64 servers
 * besides [scan_db]'s, so at most 65 threads.
 *
 * Inside one server, isolation is the statement limits' (db_set_statement_limits): a
 * SELECT behind LOCK TABLES ... WRITE gives up after a short lock wait, a statement
 * after a few times the server's recent statement time; a wiki whose own statement
 * timed out is not read again in that sweep and waits at its tail with the other
 * unreadable wikis. A connection lost mid-statement is the server's failure ("scan
 * failed" with server=, retried on the database's schedule; the sweep resumes where it
 * stopped), never its wikis'.
 *
 * The decisions (what to read next, when, within what budget, whose failure) take
 * their clock and their reads and writes from struct detector_io, so the unit tests
 * drive a detector with a fake clock and a fake server (detector_turn). */
#ifndef JD_DETECTOR_H
#define JD_DETECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "scan.h"
#include "server_report.h"
#include "wiki.h"

struct sched; /* sched.h */
struct detector;

/* What a detector's decisions act through. detector_new with io NULL: the real ones
 * (the server's scan connection, its own coordination connection, util_mono_ms). */
struct detector_io {
	int64_t (*now)(void *arg); /* monotonic ms */
	/* Reads wikis[0..n), per_query wikis a statement, into out (scan_run_skipping: a
	 * wiki's own failure is in out[i], timed_out when the statement limits stopped
	 * it). 0, or -EIO (err set): the server failed (unreachable, connection lost):
	 * nothing read. stats: the statements sent and their database time. */
	int (*scan)(void *arg, struct wiki *const *wikis, size_t n, int per_query,
		    enum scan_depth depth, struct backlog *out, struct scan_stats *stats, char *err,
		    size_t errlen);
	/* Writes what the fleet needs of b[0..n) (publish_backlog), scan_started being the
	 * coordination clock before the scan. 0; 1: these rows were not written (the
	 * database answers: something in them); -EIO: the coordination database does not
	 * answer. */
	int (*publish)(void *arg, struct wiki *const *wikis, const struct backlog *b, size_t n,
		       enum scan_depth depth, const char *scan_started, char *err, size_t errlen);
	/* The coordination database's time now, as coord_now formats it. 0 or -EIO. */
	int (*clock)(void *arg, char out[32], char *err, size_t errlen);
	void *arg;
};

/* A detector for the wikis whose db_server is `server` (NULL: [scan_db] as
 * configured), inactive and without wikis; its thread is not started (detector_start).
 * sched is poked when rows were written (may be NULL). NULL on failure (out of memory,
 * a server not allowed). */
struct detector *detector_new(const struct config *cfg, const char *server, struct sched *sched,
			      const struct detector_io *io);
/* Starts its thread: 0 or -errno. */
int detector_start(struct detector *d);
/* Stops it: sets stop, cuts a statement or read in progress on its connections
 * (db_cut), stops its feed, joins its thread and frees it. Prompt whatever its server
 * does. Accepts NULL and a detector never started. */
void detector_stop(struct detector *d);

/* The server's wikis after a discovery (sorted by domain; the detector takes its own
 * references), picked up at its next turn: each wiki keeps its state (what was written,
 * unreadable, a pending wake). */
int detector_set_wikis(struct detector *d, const struct wiki_list *wikis);
/* The scanner lease is held (true) or lost (false). Inactive, a detector reads nothing
 * and stops its feed; becoming active starts afresh: a sweep at once, a fresh budget,
 * every row written again (another holder may have written meanwhile). */
void detector_set_active(struct detector *d, bool active);
/* A reload: the settings apply from its next turn (cfg stays alive until exit). */
void detector_set_config(struct detector *d, const struct config *cfg);
/* A copy of its state (as of its last turn). Any thread. */
void detector_report(struct detector *d, struct server_report *out);
/* Whether it completed a sweep (every chunk written) since it was last made active;
 * then *since is that sweep's start, coordination clock (coord_now's format). */
bool detector_swept(struct detector *d, char since[32]);

/* The feed's wake (binlog_wake_fn): domain joins the wake set (a set: wakes of one
 * wiki coalesce). Any thread; an unknown domain is ignored. */
void detector_wake(void *arg, const char *domain);

/* One turn of its decisions: what is due now is read and published. Returns when the
 * next turn is due (monotonic ms, the io's clock). Its thread calls it; unit tests call
 * it directly on a detector never started. */
int64_t detector_turn(struct detector *d);

/* A run of failures of one kind, logged when it starts, then once a minute, and when it
 * ends; each counts in jobdrainer_errors_total{kind}. The scanner's too. */
struct detector_streak {
	const char *what;
	enum metric_error_kind metric_kind;
	struct log_streak run;
};
/* A failure: server (NULL: none) and what happens next (retrying in retry_ms) logged. */
void detector_streak_fail(struct detector_streak *s, const char *server, const char *err,
			  int64_t now_ms, int64_t retry_ms);
void detector_streak_ok(struct detector_streak *s, const char *server);

#endif
