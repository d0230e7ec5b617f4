/* scanner.h - the thread that keeps the scheduler's picture of the farm current:
 * discovery on the platform database every [discovery] interval, and a backlog scan
 * of every wiki's job table every [scan] interval. Database failures are logged with
 * what happens next and retried; the last good picture stays in use meanwhile. */
#ifndef JD_SCANNER_H
#define JD_SCANNER_H

#include "config.h"
#include "sched.h"

struct scanner;

/* Starts the thread; NULL on failure. */
struct scanner *scanner_start(const struct config *cfg, struct sched *s);

/* Stops and joins the thread (a query in flight finishes first), then frees. Accepts
 * NULL. */
void scanner_stop(struct scanner *sc);

#endif
