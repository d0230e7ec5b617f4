/* lanes.c - see lanes.h. */
#include "lanes.h"

#include <string.h>

int lanes_allowed(int cap, const struct lanes_state *st)
{
	int64_t back;
	int allowed;

	if (cap < 1)
		cap = 1;
	if (st == NULL || st->reduced < 0)
		return cap;
	allowed = st->reduced < 1 ? 1 : st->reduced;
	back = st->since_change_ms > 0 ? st->since_change_ms / LANES_RECOVER_MS : 0;
	return back >= cap - allowed ? cap : allowed + (int)back;
}

enum lanes_why lanes_reason(int cap, const struct lanes_state *st)
{
	if (cap <= 1)
		return LANES_CAPPED;
	if (lanes_allowed(cap, st) >= cap)
		return LANES_ELASTIC;
	return st->why == LANES_REPLICA ? LANES_REPLICA : LANES_LOCKS;
}

const char *lanes_why_text(enum lanes_why why)
{
	switch (why) {
	case LANES_CAPPED:
		return "capped";
	case LANES_LOCKS:
		return "reduced after lock errors";
	case LANES_REPLICA:
		return "reduced after replica lag";
	case LANES_ELASTIC:
		break;
	}
	return "elastic";
}

const char *lanes_why_name(enum lanes_why why)
{
	if (why == LANES_LOCKS)
		return "locks";
	if (why == LANES_REPLICA)
		return "replica";
	return NULL;
}

enum lanes_why lanes_why_parse(const char *name)
{
	return name != NULL && strcmp(name, "replica") == 0 ? LANES_REPLICA : LANES_LOCKS;
}

bool lanes_contention(const struct batch_result *r, enum lanes_why *why)
{
	/* Replica lag first: it is the database as a whole asking for less. */
	if (strcmp(r->reached, "replica-lag-limit") == 0) {
		*why = LANES_REPLICA;
		return true;
	}
	/* Jobs that lost a lock race, or a whole request that did: MediaWiki's own claim
	 * bookkeeping (JobQueueDB's ack) can deadlock beside another lane, and answers 500
	 * with the database's message where it shows exception details. */
	if (r->jobs_contended > 0 ||
	    (r->outcome == OUTCOME_SERVER_ERROR && response_is_contention(r->detail))) {
		*why = LANES_LOCKS;
		return true;
	}
	return false;
}

int lanes_after_contention(int allowed_now)
{
	return allowed_now > 1 ? allowed_now / 2 : 1;
}
