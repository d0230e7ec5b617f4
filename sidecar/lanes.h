/* lanes.h - how many workers of the fleet may drain one wiki at once.
 *
 * A wiki's first lane is its slot-0 lease (sched.h). While no other wiki waits, idle
 * workers anywhere in the fleet may join a wiki with a backlog in further lease slots,
 * up to [drain] max_workers_per_wiki lanes, and leave after their batch as soon as another
 * wiki waits; a wiki gets a second lane only once its first is behind (its oldest ready
 * job has waited LANES_JOIN_AGE_MS) and still making progress (coord_busy_wikis). JobQueueDB's default (random) claim order makes concurrent runners of one
 * wiki safe; what they can still cost is contention, which MediaWiki reports: a batch
 * that stops at replica-lag-limit, or jobs that fail on a lock another lane holds
 * (response_is_contention). Then the wiki gets fewer lanes for a while: additive
 * increase, multiplicative decrease, per wiki and fleet-wide (the reduction lives in
 * its jd_wiki row, coord_wiki_lanes):
 * - contention halves the lanes the wiki may use now (never below one), at most once
 *   per LANES_DECREASE_HOLD_MS, since every lane of the wiki sees the same episode;
 * - each LANES_RECOVER_MS without a new reduction gives one lane back, up to the cap.
 * Pure functions; leaf module (libc + response.h), unit-tested. */
#ifndef JD_LANES_H
#define JD_LANES_H

#include <stdbool.h>
#include <stdint.h>

#include "response.h"

/* An idle worker joins a wiki only once its oldest ready job (as the last scan saw it)
 * has waited this long: the first lane is behind. A wiki whose few jobs one batch clears
 * gets no second lane, whose batch would find nothing left and cost a MediaWiki
 * start-up. */
#define LANES_JOIN_AGE_MS 5000
/* A reduction's halving holds this long before another can halve again. */
#define LANES_DECREASE_HOLD_MS 10000
/* One lane comes back each time this passes without a new reduction. */
#define LANES_RECOVER_MS 30000

/* Why a wiki has the lanes it has (status --wiki, logs). */
enum lanes_why {
	LANES_ELASTIC, /* up to the cap, as idle workers allow */
	LANES_CAPPED,  /* max_workers_per_wiki = 1: one lane, by configuration */
	LANES_LOCKS,   /* reduced after jobs failed on locks */
	LANES_REPLICA, /* reduced after MediaWiki stopped at replica-lag-limit */
};

/* A wiki's reduction as its jd_wiki row holds it: reduced < 0 for none. */
struct lanes_state {
	int reduced;             /* the lanes allowed right after the last reduction */
	int64_t since_change_ms; /* how long ago that was */
	enum lanes_why why;      /* LANES_LOCKS or LANES_REPLICA while reduced */
};

/* The lanes the wiki may use now, out of cap (max_workers_per_wiki): the reduction plus
 * one per LANES_RECOVER_MS since it, at most cap; cap when there is none. */
int lanes_allowed(int cap, const struct lanes_state *st);

/* Why it has lanes_allowed(cap, st) lanes. */
enum lanes_why lanes_reason(int cap, const struct lanes_state *st);

/* "elastic", "capped", "reduced after lock errors", "reduced after replica lag". */
const char *lanes_why_text(enum lanes_why why);

/* The stable short names stored in jd_wiki.lanes_why: "locks", "replica". NULL for the
 * others. lanes_why_parse is the inverse (LANES_LOCKS for an unknown name). */
const char *lanes_why_name(enum lanes_why why);
enum lanes_why lanes_why_parse(const char *name);

/* Whether the batch tells of contention on its wiki, and which. */
bool lanes_contention(const struct batch_result *r, enum lanes_why *why);

/* The lanes allowed after contention, from those allowed now: half, at least one. */
int lanes_after_contention(int allowed_now);

#endif
