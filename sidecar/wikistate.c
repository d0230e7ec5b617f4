/* wikistate.c - see wikistate.h. */
#include "wikistate.h"

#include <stdio.h>
#include <string.h>

#define WIKI_STATE_NAME(id, name) name,
static const char *const names[] = { WIKI_STATES(WIKI_STATE_NAME) };
#undef WIKI_STATE_NAME

const char *wikistate_name(enum wiki_state s)
{
	return (unsigned)s < WIKI_STATE_COUNT ? names[s] : "unknown";
}

static bool set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

enum wiki_state wikistate_of(const struct wikistate_facts *f, char *why, size_t len)
{
	char ignored[1];
	bool backlog = f->oldest_ready_age_s >= 0;

	if (why == NULL || len == 0) {
		why = ignored;
		len = sizeof(ignored);
	}
	why[0] = '\0';
	if (set(f->scan_error)) {
		snprintf(why, len, "its job table cannot be read: %s", f->scan_error);
		return WIKI_UNREADABLE;
	}
	/* Before draining: a holder still finishing its batch lets go at the next one. */
	if (f->paused) {
		snprintf(why, len, "paused by %s%s%s",
			 set(f->paused_by) ? f->paused_by : "an operator",
			 set(f->pause_reason) ? ": " : "",
			 set(f->pause_reason) ? f->pause_reason : "");
		return WIKI_PAUSED;
	}
	if (set(f->holder)) {
		snprintf(why, len, "%s holds its lease", f->holder);
		return WIKI_DRAINING;
	}
	/* Not a fault of the wiki's configuration nor of this pod: MediaWiki refuses to
	 * write (e.g. Wikibase Cloud's upgrade job sets $wgReadOnly), and the jobs wait. */
	if (set(f->last_outcome) && strcmp(f->last_outcome, "read_only") == 0 &&
	    (f->backoff_s > 0 || backlog)) {
		snprintf(why, len,
			 "MediaWiki said the wiki is read-only (HTTP 423, or reached read-only: "
			 "e.g. during Wikibase Cloud's upgrade job); tried again %s",
			 f->backoff_s > 0 ? "when its backoff ends" : "when a worker is free");
		return WIKI_READ_ONLY;
	}
	if (f->backoff_s > 0) {
		snprintf(why, len, "%d failure(s) in a row, last outcome %s", f->failures,
			 set(f->last_outcome) ? f->last_outcome : "-");
		return WIKI_BACKOFF;
	}
	if (f->parked) {
		snprintf(why, len,
			 "MediaWiki ran none of its ready jobs (types it does not run); "
			 "until a new job arrives");
		return WIKI_PARKED;
	}
	if (backlog) {
		snprintf(why, len, "ready jobs, waiting for a worker");
		return WIKI_WAITING;
	}
	snprintf(why, len, "no ready job at the last scan");
	return WIKI_IDLE;
}
