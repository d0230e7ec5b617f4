/* scanner.h - the thread that keeps the fleet's picture of the farm current.
 *
 * Every sidecar runs discovery on the platform database every [discovery] interval
 * (its workers need the wikis' secrets). One sidecar at a time, the holder of the
 * scanner lease, also scans every wiki's job table every [scan] interval and writes
 * the backlog to the coordination database, where every sidecar's scheduler reads it;
 * if it dies, another takes the lease over within one lease TTL. The job tables are
 * read by one detector per database server (detector.h), each on its own thread; the
 * scanner keeps discovery, the lease, the server list and readiness. It also creates
 * the coordination schema at start. Database failures are logged with what happens next
 * and retried; the last good picture stays in use meanwhile. */
#ifndef JD_SCANNER_H
#define JD_SCANNER_H

#include "config.h"
#include "sched.h"

struct scanner;

/* Starts the thread; NULL on failure. */
struct scanner *scanner_start(const struct config *cfg, struct sched *s);

/* The scanner's health, which httpd serves on /healthz and /readyz: the scanner loop
 * writes it every turn, anyone reads it. One per process; readable from any thread,
 * also before the scanner starts (then: never turned, not ready, "starting"). */
struct scanner_health {
	int64_t last_turn_ms; /* monotonic: the loop's last turn, 0: none yet */
	bool ready;           /* discovery has succeeded and the coordination database answers */
	char why[256];        /* when not ready, why */
};
void scanner_health(struct scanner_health *out);

/* Stops and joins the thread and the detectors' (their statements in flight are cut),
 * then frees. Accepts NULL. */
void scanner_stop(struct scanner *sc);
/* A reload: scan interval, pacing, groups and skip_types of cfg apply from the next
 * pass (the caller keeps cfg alive until exit). */
void scanner_set_config(struct scanner *sc, const struct config *cfg);

#endif
