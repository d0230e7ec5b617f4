/* metrics.h - the process's counters and gauges, exported as Prometheus text.
 *
 * Declared once, in METRICS below: each entry generates an id, a help text and its
 * label values. Updates are lock-free atomics, cheap enough for any hot path. Labels
 * are small fixed sets (outcomes, kinds): never per wiki, so a farm of thousands of
 * wikis has the same number of series as one of three. The one dynamic label is
 * `server`, a database server detection reads (SERVER_METRICS in metrics.c): bounded
 * by METRICS_SERVERS_MAX, replaced as a whole by metrics_set_servers. Leaf module
 * (libc + log). */
#ifndef JD_METRICS_H
#define JD_METRICS_H

#include <stdint.h>

#include "response.h"
#include "server_report.h"
#include "util.h"

/* Label value sets, X(id, value): each generates the enum callers pass as `label` and
 * the values the metric lists, so the two cannot drift apart. Append only: the order
 * is the series'. The outcome label is BATCH_OUTCOMES (response.h). */
#define METRIC_JOB_STATUSES(X) X(JOBS_OK, "ok") X(JOBS_FAILED, "failed")
#define METRIC_ERROR_KINDS(X)                                                                      \
	X(ERROR_DISCOVERY, "discovery")                                                            \
	X(ERROR_SCAN, "scan")                                                                      \
	X(ERROR_COORDINATION, "coordination")                                                      \
	X(ERROR_LEASE_LOST, "lease_lost")
#define METRIC_LEASE_OPS(X)                                                                        \
	X(LEASE_OP_ACQUIRE, "acquire") X(LEASE_OP_RENEW, "renew") X(LEASE_OP_RELEASE, "release")
#define METRIC_SCAN_ROWS(X)                                                                        \
	X(SCAN_ROW_WRITTEN, "written")                                                             \
	X(SCAN_ROW_UNCHANGED, "unchanged") X(SCAN_ROW_REFUSED, "refused")

#define METRIC_LABEL_ID(id, value) id,
#define METRIC_LABEL_VALUE(id, value) value,
enum metric_job_status { METRIC_JOB_STATUSES(METRIC_LABEL_ID) JOB_STATUS_COUNT };
enum metric_error_kind { METRIC_ERROR_KINDS(METRIC_LABEL_ID) ERROR_KIND_COUNT };
enum metric_lease_op { METRIC_LEASE_OPS(METRIC_LABEL_ID) LEASE_OP_COUNT };
enum metric_scan_row { METRIC_SCAN_ROWS(METRIC_LABEL_ID) SCAN_ROW_COUNT };

#define LABELS_OUTCOME BATCH_OUTCOMES(METRIC_LABEL_VALUE)
#define LABELS_JOB_STATUS METRIC_JOB_STATUSES(METRIC_LABEL_VALUE)
#define LABELS_ERROR_KIND METRIC_ERROR_KINDS(METRIC_LABEL_VALUE)
#define LABELS_LEASE_OP METRIC_LEASE_OPS(METRIC_LABEL_VALUE)
#define LABELS_SCAN_ROW METRIC_SCAN_ROWS(METRIC_LABEL_VALUE)
#define LABELS_NONE ""
/* A histogram's "labels" are its buckets' upper bounds (le), the last "+Inf". Around
 * the 3-minute promise: 180 is a bucket edge, so "within the promise" is one series. */
#define BUCKETS_WAIT_SECONDS                                                                       \
	"1", "5", "15", "30", "60", "90", "120", "180", "300", "600", "1800", "3600", "+Inf"

/* X(id, prometheus name, type, help, label name or "", label values...). A "histogram"
 * has the label "le" and its buckets' bounds as values; it is only observed. */
#define METRICS(X)                                                                                 \
	X(BATCHES, "jobdrainer_batches_total", "counter", "RunJobs batches, by outcome",           \
	  "outcome", LABELS_OUTCOME)                                                               \
	X(JOBS, "jobdrainer_jobs_total", "counter", "Jobs MediaWiki ran in our batches", "status", \
	  LABELS_JOB_STATUS)                                                                       \
	X(ERRORS, "jobdrainer_errors_total", "counter", "Errors, by kind", "kind",                 \
	  LABELS_ERROR_KIND)                                                                       \
	X(LEASE_OPS, "jobdrainer_lease_operations_total", "counter",                               \
	  "Lease statements sent to the coordination database", "op", LABELS_LEASE_OP)             \
	X(SCANS, "jobdrainer_scans_total", "counter",                                              \
	  "Backlog scans this sidecar ran (as the scanner lease holder)", "", LABELS_NONE)         \
	X(SCAN_SECONDS, "jobdrainer_scan_duration_seconds", "gauge",                               \
	  "Database time (statement wall time) of the last complete sweep", "", LABELS_NONE)       \
	X(SWEEP_SECONDS, "jobdrainer_scan_sweep_period_seconds", "gauge",                          \
	  "Wall time of the last complete sweep of every wiki (the budget sets it)", "",           \
	  LABELS_NONE)                                                                             \
	X(SCAN_BUDGET, "jobdrainer_scan_db_budget_ratio", "gauge",                                 \
	  "Share of one database core detection may use ([scan] db_budget_percent)", "",           \
	  LABELS_NONE)                                                                             \
	X(SCAN_BUDGET_USED, "jobdrainer_scan_db_budget_used_ratio", "gauge",                       \
	  "Share of one database core the scan statements used over the last minute", "",          \
	  LABELS_NONE)                                                                             \
	X(HOT_WIKIS, "jobdrainer_scan_hot_wikis", "gauge",                                         \
	  "Wikis re-read every [scan] interval (jobs or activity in the last minutes)", "",        \
	  LABELS_NONE)                                                                             \
	X(LEASES_HELD, "jobdrainer_leases_held", "gauge", "Wiki leases this sidecar holds", "",    \
	  LABELS_NONE)                                                                             \
	X(SCANNER, "jobdrainer_scanner_lease_held", "gauge",                                       \
	  "1 if this sidecar holds the scanner lease", "", LABELS_NONE)                            \
	X(IN_FLIGHT, "jobdrainer_batches_in_flight", "gauge", "RunJobs requests in flight", "",    \
	  LABELS_NONE)                                                                             \
	X(CONCURRENCY, "jobdrainer_concurrency_limit", "gauge",                                    \
	  "Current limit on batches in flight (adaptive, 1..workers)", "", LABELS_NONE)            \
	X(BREAKER_OPEN, "jobdrainer_mediawiki_breaker_open", "gauge",                              \
	  "1 while local MediaWiki is considered down and draining is paused", "", LABELS_NONE)    \
	X(WIKIS, "jobdrainer_wikis", "gauge", "Wikis discovery returned", "", LABELS_NONE)         \
	X(WIKIS_SKIPPED, "jobdrainer_wikis_skipped", "gauge",                                      \
	  "Discovery rows skipped (a bad value, a server not allowed): see the log", "",           \
	  LABELS_NONE)                                                                             \
	X(WIKIS_BACKLOG, "jobdrainer_wikis_with_backlog", "gauge",                                 \
	  "Wikis of this scope with ready jobs (fleet view)", "", LABELS_NONE)                     \
	X(WIKIS_BACKOFF, "jobdrainer_wikis_backed_off", "gauge",                                   \
	  "Wikis in backoff after failures (fleet view)", "", LABELS_NONE)                         \
	X(WIKIS_PARKED, "jobdrainer_wikis_parked", "gauge",                                        \
	  "Wikis parked with only jobs MediaWiki will not run (fleet view)", "", LABELS_NONE)      \
	X(OLDEST_AGE, "jobdrainer_oldest_ready_job_age_seconds", "gauge",                          \
	  "Age of the oldest ready job across the fleet's wikis", "", LABELS_NONE)                 \
	X(READY, "jobdrainer_ready", "gauge", "1 when the databases answer", "", LABELS_NONE)      \
	X(SCAN_AGE, "jobdrainer_scan_age_seconds", "gauge",                                        \
	  "Seconds since the start of the fleet's oldest backlog figure still standing (fleet "    \
	  "view: every pod reads it from the coordination database)",                              \
	  "", LABELS_NONE)                                                                         \
	X(ORPHANED_CLAIMS, "jobdrainer_orphaned_claims", "gauge",                                  \
	  "Job rows claimed more than 5 minutes ago, left by runners that are gone (fleet "        \
	  "view, from the last full scan)",                                                        \
	  "", LABELS_NONE)                                                                         \
	X(ORPHANED_AGE, "jobdrainer_orphaned_claims_oldest_age_seconds", "gauge",                  \
	  "Age of the oldest orphaned claim across the fleet (0: none)", "", LABELS_NONE)          \
	X(BINLOG_FOLLOWING, "jobdrainer_binlog_following", "gauge",                                \
	  "Binary log feeds of this sidecar that follow ([binlog]; 1 with one feed)", "",          \
	  LABELS_NONE)                                                                             \
	X(BINLOG_WAKES, "jobdrainer_binlog_wakes_total", "counter",                                \
	  "Job-table writes the binary log feed reported", "", LABELS_NONE)                        \
	X(BATCH_WAIT, "jobdrainer_batch_oldest_job_wait_seconds", "histogram",                     \
	  "Per batch sent: age of its wiki's oldest ready job as the last scan saw it, when "      \
	  "the batch started (an upper bound on how long the batch's jobs waited)",                \
	  "le", BUCKETS_WAIT_SECONDS)                                                              \
	X(WIKIS_PAUSED, "jobdrainer_wikis_paused", "gauge",                                        \
	  "Wikis an operator paused one by one (fleet view; `status` says who and why)", "",       \
	  LABELS_NONE)                                                                             \
	X(ALL_PAUSED, "jobdrainer_all_wikis_paused", "gauge",                                      \
	  "1 while an operator's pause --all holds every wiki of this scope", "", LABELS_NONE)     \
	X(SCAN_ROWS, "jobdrainer_scan_rows_total", "counter",                                      \
	  "Wikis' scanned figures: written to the coordination database, or left out as "          \
	  "unchanged",                                                                             \
	  "row", LABELS_SCAN_ROW)

#define METRIC_ID(id, ...) METRIC_##id,
enum metric_id { METRICS(METRIC_ID) METRIC_COUNT };
#undef METRIC_ID

/* Adds delta to the series `label` (an index into the metric's label values; 0 for a
 * metric without labels). */
void metrics_add(enum metric_id m, int label, int64_t delta);
/* Sets a gauge. Fractions are kept to the millionth. */
void metrics_set(enum metric_id m, int label, double value);
double metrics_get(enum metric_id m, int label);
/* Counts value in a histogram: the first bucket whose bound is >= value, and its sum. */
void metrics_observe(enum metric_id m, double value);

/* The per-server gauges, label `server`: X(prometheus name, help, value of r, a const
 * struct server_report *); a value below 0 leaves that server's series out (not known
 * yet). METRIC_FEED_STATE follows them, the usual enum-as-gauge: label `state` too, one
 * series per SERVER_REPORT_FEED_STATES, 1 for the feed's; none without a feed. */
#define METRICS_PER_SERVER(X)                                                                      \
	X("jobdrainer_scan_server_up",                                                             \
	  "1 while detection reaches the database server, 0 while it is down (`status` says why)", \
	  r->down ? 0 : 1)                                                                         \
	X("jobdrainer_scan_server_sweep_period_seconds",                                           \
	  "Wall time of the last complete sweep of the server's wikis (absent before the first)",  \
	  r->sweep_ms > 0 ? (double)r->sweep_ms / 1000.0 : -1)                                     \
	X("jobdrainer_scan_server_db_budget_used_ratio",                                           \
	  "Share of one core of the server that detection used over the last minute",              \
	  r->budget_used)                                                                          \
	X("jobdrainer_scan_server_wikis", "Wikis detection reads on the server", (double)r->wikis) \
	X("jobdrainer_scan_server_hot_wikis", "Wikis of the server re-read every [scan] interval", \
	  (double)r->hot)                                                                          \
	X("jobdrainer_scan_server_unreadable_wikis",                                               \
	  "Wikis of the server whose job table cannot be read", (double)r->unreadable)

#define METRIC_FEED_STATE "jobdrainer_binlog_feed_state"
#define METRIC_FEED_STATE_HELP                                                                     \
	"1 for the state the server's binary log feed is in (starting, following, blind: it "      \
	"cannot see job inserts, failed)"

/* The per-server series: one set per database server detection reads. [scan]
 * allowed_servers holds at most 64, plus [scan_db]'s own. */
#define METRICS_SERVERS_MAX 65
/* Replaces the per-server series with these n servers' (a server missing from the list
 * loses its series; at most METRICS_SERVERS_MAX are kept, the first ones). The scanner
 * lease holder calls it after each report; (NULL, 0) when it stops holding the lease,
 * so that only the holder exports them. Thread-safe; r is copied. */
void metrics_set_servers(const struct server_report *r, size_t n);

/* Appends every series in the Prometheus text format (version 0.0.4). */
void metrics_render(struct buf *out);

#endif
