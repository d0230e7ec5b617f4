/* sched.h - which wiki a worker drains next, and whether it may go on.
 *
 * The one interface between the drain loop and "who may run what". This version keeps
 * all state in this process (one pod); the lease version answers the same questions
 * from the database.
 *
 * Order: the wiki whose oldest ready job has waited longest, where a wiki's wait starts
 * at the later of its oldest ready job and the last time it was served, so a wiki just
 * served never jumps ahead of one already waiting. A wiki is held by at most one worker;
 * a wiki in backoff, or whose job table cannot be read, is not handed out. Thread-safe. */
#ifndef JD_SCHED_H
#define JD_SCHED_H

#include <stdint.h>

#include "config.h"
#include "response.h"
#include "scan.h"
#include "wiki.h"

struct sched;

struct sched_ticket {
	struct wiki *wiki;     /* the caller's own copy: it frees it with wiki_free */
	void *entry;           /* opaque */
	int64_t started_ms;    /* monotonic */
};

struct sched *sched_new(const struct config *cfg);
void sched_free(struct sched *s);

/* Replaces the set of wikis (from discovery); keeps the state of wikis that stay.
 * Takes ownership of the list's wikis and empties it. Returns 0 or -ENOMEM. */
int sched_set_wikis(struct sched *s, struct wiki_list *list);

/* Copies the current wiki list for the scanner (caller frees). Returns a generation
 * number to hand back to sched_set_backlog. */
int sched_snapshot(struct sched *s, struct wiki_list *out, uint64_t *generation);

/* Records a scan of the snapshot with that generation (ignored if the set of wikis
 * changed since). scan_started_ms is wall-clock: a wiki drained after the scan began
 * keeps its "drained" state. */
void sched_set_backlog(struct sched *s, uint64_t generation, const struct backlog *b,
		       size_t n, int64_t scan_started_ms);

/* Blocks until a wiki may be drained, then holds it for the caller.
 * Returns 0, or -ECANCELED once sched_stop was called. */
int sched_next(struct sched *s, struct sched_ticket *t);

/* After a batch that left work: may the holder run another batch? No when stopping, or
 * when its time slice is over and another wiki is waiting. */
bool sched_may_continue(struct sched *s, const struct sched_ticket *t);

/* Gives the wiki back with the last batch's outcome. On failure the wiki is backed
 * off; *backoff_ms tells for how long (0 if not). t->wiki stays the caller's. */
void sched_done(struct sched *s, struct sched_ticket *t, enum batch_outcome last,
		int64_t *backoff_ms);

/* Wakes every sched_next caller with -ECANCELED; later calls return it at once. */
void sched_stop(struct sched *s);

struct sched_counts {
	size_t wikis, with_backlog, in_backoff, unreadable, held;
	int64_t oldest_ready_ms; /* across wikis with backlog; 0 if none */
};
void sched_counts(struct sched *s, struct sched_counts *c);

#endif
