/* sched.c - see sched.h. In-process implementation: one mutex over a small array of
 * entries kept in discovery's order (sorted by domain). Picking is a linear pass, which
 * stays in the microseconds for thousands of wikis and keeps the rule easy to read. */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

struct entry {
	struct wiki *wiki;
	int64_t oldest_ready_ms; /* wall; 0 = no ready jobs known */
	int64_t last_served_ms;  /* wall; when a worker last let go of it */
	int64_t drained_ms;      /* wall; when a batch last answered none-ready */
	int64_t backoff_until;   /* monotonic ms */
	int failures;            /* consecutive failed batches */
	bool held;
	bool unreadable;         /* the scan cannot read its job table */
	bool gone;               /* dropped by discovery while held: free on release */
};

struct sched {
	const struct config *cfg;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct entry **entries;
	size_t len;
	uint64_t generation;
	bool stopping;
};

struct sched *sched_new(const struct config *cfg)
{
	struct sched *s = calloc(1, sizeof(*s));
	pthread_condattr_t attr;

	if (s == NULL)
		return NULL;
	s->cfg = cfg;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->changed, &attr);
	pthread_condattr_destroy(&attr);
	return s;
}

static void entry_free(struct entry *e)
{
	if (e == NULL)
		return;
	wiki_free(e->wiki);
	free(e);
}

void sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->len; i++)
		entry_free(s->entries[i]);
	free(s->entries);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int entry_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(struct entry *const *)elem)->wiki->domain);
}

static int by_domain(const void *a, const void *b)
{
	return strcmp((*(struct entry *const *)a)->wiki->domain,
		      (*(struct entry *const *)b)->wiki->domain);
}

int sched_set_wikis(struct sched *s, struct wiki_list *list)
{
	struct entry **next = calloc(list->len ? list->len : 1, sizeof(*next));
	bool *kept;

	if (next == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	kept = calloc(s->len ? s->len : 1, sizeof(*kept));
	if (kept == NULL) {
		pthread_mutex_unlock(&s->lock);
		free(next);
		return -ENOMEM;
	}
	for (size_t i = 0; i < list->len; i++) {
		struct entry **old = bsearch(list->items[i]->domain, s->entries, s->len,
					     sizeof(*s->entries), entry_cmp);
		struct entry *e = old ? *old : calloc(1, sizeof(*e));
		if (e == NULL) {
			/* Keep what fits; the next refresh tries again. */
			wiki_free(list->items[i]);
			continue;
		}
		if (old != NULL) {
			/* Same wiki: take the new row (its secret may have changed). */
			wiki_free(e->wiki);
			kept[old - s->entries] = true;
		}
		e->wiki = list->items[i];
		next[i] = e;
	}
	/* Wikis that are gone: free now, or when their worker lets go. */
	for (size_t i = 0; i < s->len; i++) {
		if (kept[i])
			continue;
		if (s->entries[i]->held)
			s->entries[i]->gone = true;
		else
			entry_free(s->entries[i]);
	}
	free(kept);
	free(s->entries);
	/* Compact out failed allocations, keep sorted for the next merge. */
	s->len = 0;
	for (size_t i = 0; i < list->len; i++)
		if (next[i] != NULL)
			next[s->len++] = next[i];
	qsort(next, s->len, sizeof(*next), by_domain);
	s->entries = next;
	s->generation++;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	free(list->items);
	list->items = NULL;
	list->len = 0;
	return 0;
}

int sched_snapshot(struct sched *s, struct wiki_list *out, uint64_t *generation)
{
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	out->len = 0;
	out->items = calloc(s->len ? s->len : 1, sizeof(*out->items));
	if (out->items == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->len; i++) {
		out->items[i] = wiki_dup(s->entries[i]->wiki);
		if (out->items[i] == NULL) {
			wiki_list_free(out);
			rc = -ENOMEM;
			goto out;
		}
		out->len++;
	}
	*generation = s->generation;
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void log_readability(const struct entry *e, const struct backlog *b)
{
	struct log_line l;

	if (b->failed) {
		log_begin(&l, LOG_ERROR, "wiki skipped: its job table cannot be read");
		log_str(&l, "wiki", e->wiki->domain);
		log_str(&l, "db", e->wiki->dbname);
		log_str(&l, "error", b->error);
		log_str(&l, "next", "no batches until a scan can read it again");
	} else {
		log_begin(&l, LOG_INFO, "wiki readable again");
		log_str(&l, "wiki", e->wiki->domain);
	}
	log_end(&l);
}

void sched_set_backlog(struct sched *s, uint64_t generation, const struct backlog *b,
		       size_t n, int64_t scan_started_ms)
{
	pthread_mutex_lock(&s->lock);
	if (generation != s->generation || n != s->len) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = s->entries[i];
		if (b[i].failed != e->unreadable)
			log_readability(e, &b[i]);
		e->unreadable = b[i].failed;
		/* A batch that found nothing after this scan began knows better. */
		if (e->drained_ms > scan_started_ms)
			continue;
		e->oldest_ready_ms = b[i].oldest_ready_ms;
	}
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

static bool runnable(const struct entry *e, int64_t now_mono)
{
	return !e->held && !e->unreadable && e->oldest_ready_ms != 0 &&
	       e->backoff_until <= now_mono;
}

/* The later of "oldest ready job queued" and "last served": smaller waits longer. */
static int64_t wait_start(const struct entry *e)
{
	return e->oldest_ready_ms > e->last_served_ms ? e->oldest_ready_ms : e->last_served_ms;
}

/* Picks the next entry, or NULL; *wake_at gets the earliest backoff end (monotonic). */
static struct entry *pick(struct sched *s, int64_t now_mono, int64_t *wake_at)
{
	struct entry *best = NULL;

	*wake_at = now_mono + 1000;
	for (size_t i = 0; i < s->len; i++) {
		struct entry *e = s->entries[i];
		if (!runnable(e, now_mono)) {
			if (!e->held && e->oldest_ready_ms != 0 && e->backoff_until > now_mono &&
			    e->backoff_until < *wake_at)
				*wake_at = e->backoff_until;
			continue;
		}
		if (best == NULL || wait_start(e) < wait_start(best))
			best = e;
	}
	return best;
}

int sched_next(struct sched *s, struct sched_ticket *t)
{
	struct entry *e = NULL;
	int64_t wake_at;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		int64_t now = util_mono_ms();
		e = pick(s, now, &wake_at);
		if (e != NULL)
			break;
		ts.tv_sec = (time_t)(wake_at / 1000);
		ts.tv_nsec = (long)(wake_at % 1000) * 1000000;
		pthread_cond_timedwait(&s->changed, &s->lock, &ts);
	}
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return -ECANCELED;
	}
	t->wiki = wiki_dup(e->wiki);
	if (t->wiki == NULL) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	e->held = true;
	t->entry = e;
	t->started_ms = util_mono_ms();
	pthread_mutex_unlock(&s->lock);
	return 0;
}

bool sched_may_continue(struct sched *s, const struct sched_ticket *t)
{
	int64_t now = util_mono_ms(), unused;
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = !s->stopping && !((struct entry *)t->entry)->gone;
	if (ok && now - t->started_ms >= (int64_t)s->cfg->time_slice * 1000)
		ok = pick(s, now, &unused) == NULL;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* Exponential backoff with full jitter, floored at the base: a wiki that keeps failing
 * is tried less and less often, and many failing wikis do not retry in step. A request
 * MediaWiki refused (bad secret, unknown host) will not heal by itself soon: it starts
 * higher. */
static int64_t backoff_ms(const struct config *cfg, enum batch_outcome o, int failures)
{
	int64_t base = (int64_t)cfg->backoff_base * 1000, cap = (int64_t)cfg->backoff_max * 1000;
	int64_t ceiling = base;
	int steps = failures - 1 + (o == OUTCOME_BAD_REQUEST ? 3 : 0);

	for (int i = 0; i < steps && ceiling < cap; i++)
		ceiling *= 2;
	if (ceiling > cap)
		ceiling = cap;
	return util_rand_range(base < ceiling ? base : ceiling, ceiling);
}

void sched_done(struct sched *s, struct sched_ticket *t, enum batch_outcome last,
		int64_t *backoff)
{
	struct entry *e = t->entry;

	*backoff = 0;
	pthread_mutex_lock(&s->lock);
	e->held = false;
	e->last_served_ms = util_wall_ms();
	if (last == OUTCOME_DRAINED) {
		e->oldest_ready_ms = 0;
		e->drained_ms = e->last_served_ms;
		e->failures = 0;
	} else if (last == OUTCOME_MORE) {
		e->failures = 0;
	} else if (outcome_is_failure(last)) {
		e->failures++;
		*backoff = backoff_ms(s->cfg, last, e->failures);
		e->backoff_until = util_mono_ms() + *backoff;
	}
	if (e->gone)
		entry_free(e);
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	t->entry = NULL;
}

void sched_stop(struct sched *s)
{
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

void sched_counts(struct sched *s, struct sched_counts *c)
{
	int64_t now = util_mono_ms();

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&s->lock);
	c->wikis = s->len;
	for (size_t i = 0; i < s->len; i++) {
		const struct entry *e = s->entries[i];
		if (e->oldest_ready_ms != 0) {
			c->with_backlog++;
			if (c->oldest_ready_ms == 0 || e->oldest_ready_ms < c->oldest_ready_ms)
				c->oldest_ready_ms = e->oldest_ready_ms;
		}
		c->in_backoff += e->backoff_until > now;
		c->unreadable += e->unreadable;
		c->held += e->held;
	}
	pthread_mutex_unlock(&s->lock);
}
