/* wikistate.h - a wiki's state in one word, and why: the one rule behind both status
 * views (`status`'s STATE column and `status --wiki`'s first line), so they never
 * disagree. Pure function; leaf module (libc), unit-tested. */
#ifndef JD_WIKISTATE_H
#define JD_WIKISTATE_H

#include <stdbool.h>
#include <stddef.h>

/* X(id, name): every state once, in the order the rule checks them (the first that
 * holds wins):
 *   unreadable  its job table cannot be read (the scan's error)
 *   paused      an operator's pause holds it (its own or the scope's)
 *   draining    a sidecar holds its lease
 *   read-only   its last drain ended with MediaWiki's read-only answer (423, or
 *               reached read-only) and it still has work: backed off, or waiting
 *   backoff     its batches failed; retried when the backoff ends
 *   parked      MediaWiki ran none of its ready jobs; left until a new job arrives
 *   waiting     ready jobs, no worker yet
 *   idle        nothing to do */
#define WIKI_STATES(X)                                                                             \
	X(WIKI_UNREADABLE, "unreadable")                                                           \
	X(WIKI_PAUSED, "paused")                                                                   \
	X(WIKI_DRAINING, "draining")                                                               \
	X(WIKI_READ_ONLY, "read-only")                                                             \
	X(WIKI_BACKOFF, "backoff")                                                                 \
	X(WIKI_PARKED, "parked")                                                                   \
	X(WIKI_WAITING, "waiting")                                                                 \
	X(WIKI_IDLE, "idle")

#define WIKI_STATE_ID(id, name) id,
enum wiki_state { WIKI_STATES(WIKI_STATE_ID) WIKI_STATE_COUNT };
#undef WIKI_STATE_ID

/* What the coordination tables say about a wiki. Strings may be NULL or "" for none. */
struct wikistate_facts {
	const char *scan_error; /* why its job table cannot be read */
	bool paused;            /* a pause in force holds it */
	const char *paused_by;  /* who paused it, and why (for the reason text) */
	const char *pause_reason;
	const char *holder;       /* of its slot-0 lease, not expired */
	long long backoff_s;      /* > 0: backed off this much longer */
	int failures;             /* in a row */
	const char *last_outcome; /* of its last drain (response.h's names) */
	bool parked;
	long long oldest_ready_age_s; /* < 0: no ready job at the last scan */
};

/* The state, and why in a few words into why[len] (may be NULL, len 0). */
enum wiki_state wikistate_of(const struct wikistate_facts *f, char *why, size_t len);
/* Its stable name (status, status --json). */
const char *wikistate_name(enum wiki_state s);

#endif
