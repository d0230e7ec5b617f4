/* sched.c - see sched.h.
 *
 * Each pod keeps a short list of candidate wikis read from jd_wiki/jd_lease at most
 * every poll_interval_ms (one query per pod, not per worker); workers take candidates
 * from it in order and try to acquire each one's lease, so pods racing for the same
 * wiki settle it in the database. */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "jobtype.h"
#include "lanes.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* Candidates read per refresh: more than a pod can start before the next refresh. */
#define CANDIDATES 32
/* While the coordination database fails, say so at most this often. */
#define REPEAT_ERROR_LOG_MS 30000

struct sched {
	const struct config *_Atomic cfg; /* swapped by sched_set_config (a reload) */
	const char *scope;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct wiki **wikis; /* sorted by domain */
	size_t nwikis;
	struct buf candidates; /* NUL-separated domains, consumed from `next` */
	size_t next;
	int ncandidates;
	int64_t refreshed_ms;
	bool refreshing;
	bool ready;
	bool stopping;
	struct log_streak db_errors; /* coordination database failures, under lock */
};

struct sched_worker {
	struct sched *s;
	struct db *db;
	int id;
};

struct sched *sched_new(const struct config *cfg)
{
	struct sched *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cfg = cfg;
	s->scope = cfg->mw_version;
	buf_init(&s->candidates);
	pthread_mutex_init(&s->lock, NULL);
	util_cond_init(&s->changed);
	return s;
}

static void free_wikis(struct wiki **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		wiki_free(w[i]);
	free(w);
}

void sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	free_wikis(s->wikis, s->nwikis);
	buf_release(&s->candidates);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int by_domain(const void *a, const void *b)
{
	return strcmp((*(struct wiki *const *)a)->domain, (*(struct wiki *const *)b)->domain);
}

static int domain_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(struct wiki *const *)elem)->domain);
}

/* With the lock held: this pod's entry for a domain, or NULL. */
static struct wiki **find_wiki(struct sched *s, const char *domain)
{
	if (s->nwikis == 0)
		return NULL; /* bsearch's array must not be NULL, even when empty */
	return bsearch(domain, s->wikis, s->nwikis, sizeof(*s->wikis), domain_cmp);
}

int sched_set_wikis(struct sched *s, struct wiki_list *list)
{
	struct wiki **old;
	size_t nold;

	if (list->len > 0)
		qsort(list->items, list->len, sizeof(*list->items), by_domain);
	pthread_mutex_lock(&s->lock);
	old = s->wikis;
	nold = s->nwikis;
	s->wikis = list->items;
	s->nwikis = list->len;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	free_wikis(old, nold);
	list->items = NULL;
	list->len = 0;
	return 0;
}

void sched_set_config(struct sched *s, const struct config *cfg)
{
	atomic_store(&s->cfg, cfg);
}

void sched_poke(struct sched *s)
{
	pthread_mutex_lock(&s->lock);
	s->refreshed_ms = 0;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

void sched_set_ready(struct sched *s)
{
	pthread_mutex_lock(&s->lock);
	s->ready = true;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

struct sched_worker *sched_worker_new(struct sched *s, int id)
{
	struct sched_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->s = s;
	w->id = id;
	w->db = db_new(&s->cfg->platform, "coordination");
	if (w->db == NULL) {
		free(w);
		return NULL;
	}
	return w;
}

void sched_worker_free(struct sched_worker *w)
{
	if (w == NULL)
		return;
	db_free(w->db);
	free(w);
}

/* Logs a coordination database error, at most every REPEAT_ERROR_LOG_MS per pod. */
static void log_db_error(struct sched *s, const char *what, const char *err, const char *next)
{
	int64_t now = util_mono_ms();
	struct log_line l;
	bool say;

	pthread_mutex_lock(&s->lock);
	say = log_streak_fail(&s->db_errors, now, REPEAT_ERROR_LOG_MS);
	pthread_mutex_unlock(&s->lock);
	metrics_add(METRIC_ERRORS, ERROR_COORDINATION, 1);
	if (!say)
		return;
	log_begin(&l, LOG_ERROR, what);
	log_str(&l, "error", err);
	log_str(&l, "next", next);
	log_end(&l);
}

/* Reads fresh candidates; called without the lock, by one worker at a time. */
static void refresh_candidates(struct sched_worker *w)
{
	struct sched *s = w->s;
	struct buf fresh;
	char err[512];
	int n = 0;
	int rc;

	buf_init(&fresh);
	rc = coord_candidates(w->db, s->cfg, s->scope, 0, CANDIDATES, &fresh, &n, err, sizeof(err));
	if (rc != 0)
		log_db_error(s, "coordination database failed", err,
			     "no new leases until it answers; retrying");
	pthread_mutex_lock(&s->lock);
	buf_release(&s->candidates);
	s->candidates = fresh;
	s->next = 0;
	s->ncandidates = rc == 0 ? n : 0;
	s->refreshed_ms = util_mono_ms();
	s->refreshing = false;
	if (rc == 0)
		log_streak_ok(&s->db_errors);
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

/* With the lock held: the next candidate this pod knows, as a copy, or NULL. */
static struct wiki *take_candidate(struct sched *s)
{
	while (s->ncandidates > 0 && s->next < s->candidates.len) {
		const char *domain = s->candidates.data + s->next;
		struct wiki **found;
		s->next += strlen(domain) + 1;
		s->ncandidates--;
		found = find_wiki(s, domain);
		if (found != NULL)
			return wiki_ref(*found);
	}
	return NULL;
}

/* A lease was just taken with a statement sent at `sent`: the ticket starts. */
static void ticket_started(struct sched_worker *w, struct sched_ticket *t, int64_t sent)
{
	const struct config *cfg = w->s->cfg;
	char err[512];
	long long age_ms;

	metrics_add(METRIC_LEASES_HELD, 0, 1);
	t->lanes_cap = cfg->max_workers_per_wiki;
	/* Trust runs from before the statement was sent: the database's expiry is later. */
	t->started_ms = sent;
	t->confirmed_ms = sent;
	t->trusted_until = lease_trusted_until(sent, cfg->lease_ttl, cfg->safety_margin);
	if (coord_wiki_failures(w->db, cfg, w->s->scope, t->wiki->domain, &t->failures, &age_ms,
				err, sizeof(err)) != 0) {
		t->failures = 0;
		age_ms = -1;
	}
	/* Read after `sent`: counting the age from `sent` only makes it larger. */
	t->ready_age_ms = age_ms;
}

static bool has_type_lists(const struct config *cfg)
{
	return cfg->priority_types[0] != '\0' || cfg->skip_types[0] != '\0';
}

/* Reads the wiki's ready types into the ticket; a newer scan forgets what was tried. */
static void read_types(struct sched_worker *w, struct sched_ticket *t)
{
	char seen[32], err[512];

	t->types_read_ms = util_mono_ms();
	if (coord_wiki_types(w->db, w->s->cfg, w->s->scope, t->wiki->domain, t->types,
			     sizeof(t->types), seen, err, sizeof(err)) != 0)
		return; /* the renew before the batch reports a failing database */
	if (strcmp(seen, t->types_seen) != 0)
		t->tried[0] = '\0';
	snprintf(t->types_seen, sizeof(t->types_seen), "%s", seen);
}

bool sched_batch_type(struct sched_worker *w, struct sched_ticket *t, char *type, size_t len)
{
	const struct config *cfg = w->s->cfg;

	type[0] = '\0';
	if (!has_type_lists(cfg))
		return true;
	if (t->types_read_ms == 0 || util_mono_ms() - t->types_read_ms >= 1000)
		read_types(w, t);
	if (!jobtype_next(cfg->priority_types, cfg->skip_types, t->types, t->tried, t->last_type,
			  type, len))
		return false;
	snprintf(t->last_type, sizeof(t->last_type), "%s", type);
	return true;
}

void sched_only_skipped_types(const struct sched_ticket *t, struct batch_result *r)
{
	if (t->batches > 0)
		return; /* the last batch's outcome stands */
	memset(r, 0, sizeof(*r));
	r->outcome = OUTCOME_DRAINED;
	snprintf(r->reached, sizeof(r->reached), "none-ready");
	snprintf(r->detail, sizeof(r->detail), "only job types of [drain] skip_types are ready");
}

bool sched_type_answered(struct sched_ticket *t, const struct config *cfg, struct batch_result *r)
{
	char next[JOBTYPE_MAX + 1];
	size_t have = strlen(t->tried);

	if (r->type[0] == '\0')
		return false;
	if (strcmp(r->reached, "none-possible") == 0 && r->http_status == 200)
		r->outcome = OUTCOME_DRAINED;
	if (r->outcome != OUTCOME_DRAINED)
		return false;
	if (!jobtype_in(t->tried, r->type) && have + strlen(r->type) + 2 <= sizeof(t->tried))
		snprintf(t->tried + have, sizeof(t->tried) - have, "%s%s", have ? " " : "", r->type);
	return jobtype_next(cfg->priority_types, cfg->skip_types, t->types, t->tried, t->last_type,
			    next, sizeof(next));
}

/* Tries to lease `wiki` in `slot`; fills t on success. 1 got it, 0 not, -EIO. */
static int try_lease(struct sched_worker *w, struct wiki *wiki, int slot, struct sched_ticket *t)
{
	struct sched *s = w->s;
	const struct config *cfg = s->cfg;
	char err[512];
	int64_t sent = util_mono_ms();
	int rc;

	memset(t, 0, sizeof(*t));
	t->wiki = wiki;
	t->lease.scope = s->scope;
	t->lease.name = wiki->domain;
	t->lease.slot = slot;
	t->lease.holder = cfg->holder;
	rc = coord_acquire_wiki(w->db, cfg, &t->lease, err, sizeof(err));
	if (rc != 1) {
		if (rc < 0)
			log_db_error(s, "coordination database failed", err,
				     "no new leases until it answers; retrying");
		t->wiki = NULL;
		return rc;
	}
	ticket_started(w, t, sent);
	return 1;
}

/* An operator's pause holds for `drain --wiki` too: -EPERM (why in err), -EIO, or 0. */
static int refuse_paused(struct sched_worker *w, const char *domain, char *err, size_t errlen)
{
	struct coord_pause *p = NULL;
	size_t n = 0;

	if (coord_pause_list(w->db, w->s->cfg, w->s->scope, domain, &p, &n, err, errlen) != 0)
		return -EIO;
	if (n > 0)
		snprintf(err, errlen, "%s paused by %s%s%s%s until %s; `jobdrainer resume %s` first",
			 strcmp(p[0].domain, COORD_ALL_WIKIS) == 0 ? "every wiki is" : "it is",
			 p[0].by, p[0].reason[0] ? " (" : "", p[0].reason,
			 p[0].reason[0] ? ")" : "", p[0].until[0] ? p[0].until : "resumed",
			 strcmp(p[0].domain, COORD_ALL_WIKIS) == 0 ? "--all" : "--wiki DOMAIN");
	free(p);
	return n > 0 ? -EPERM : 0;
}

int sched_take(struct sched_worker *w, struct wiki *wiki, int slot, struct sched_ticket *t,
	       char *err, size_t errlen)
{
	struct sched *s = w->s;
	const char *names[] = { wiki->domain };
	int64_t sent = util_mono_ms();
	int rc;

	memset(t, 0, sizeof(*t));
	if (refuse_paused(w, wiki->domain, err, errlen) != 0)
		return -EPERM;
	t->lease.scope = s->scope;
	t->lease.name = wiki->domain;
	t->lease.slot = slot;
	t->lease.holder = s->cfg->holder;
	if (slot > 0 &&
	    coord_add_lease_rows(w->db, s->cfg, s->scope, names, 1, slot, err, errlen) != 0)
		return -EIO;
	rc = coord_acquire(w->db, s->cfg, &t->lease, err, errlen);
	if (rc != 1)
		return rc;
	t->wiki = wiki;
	ticket_started(w, t, sent);
	return 1;
}

/* The lanes `domain` may use now (lanes.h), read from its jd_wiki row; st filled. -EIO
 * (logged, at most every REPEAT_ERROR_LOG_MS) when the row cannot be read. */
static int lanes_now(struct sched_worker *w, const char *domain, int cap, struct lanes_state *st)
{
	char err[512];

	if (coord_wiki_lanes(w->db, w->s->cfg, w->s->scope, domain, st, err, sizeof(err)) != 0) {
		log_db_error(w->s, "coordination database failed", err,
			     "extra lanes leave after their batch; retrying");
		return -EIO;
	}
	return lanes_allowed(cap, st);
}

/* Busy wikis read per look for one to join: more than the lanes a pod can start. */
#define BUSY_WIKIS 8

/* Spare capacity: when no wiki waits, help a busy wiki in an extra lease slot, within
 * the lanes it may use now. One query tells which busy wikis have a lane to spare, so a
 * fleet of idle workers costs the database one statement per pod and poll while every
 * lane is taken. */
static int try_extra_slot(struct sched_worker *w, struct sched_ticket *t)
{
	struct sched *s = w->s;
	const struct config *cfg = s->cfg;
	struct coord_busy_wiki busy[BUSY_WIKIS];
	char err[512];
	int n = 0;
	int rc = 0;

	if (cfg->max_workers_per_wiki <= 1)
		return 0;
	/* Progress: a batch of up to twice the target ended that recently (sched_batch_size). */
	if (coord_busy_wikis(w->db, cfg, s->scope, BUSY_WIKIS, 2LL * sched_batch_target_ms(cfg),
			     busy, &n, err, sizeof(err)) != 0)
		return -EIO;
	for (int i = 0; i < n && rc != 1; i++) {
		int lanes = lanes_allowed(cfg->max_workers_per_wiki, &busy[i].lanes);
		const char *names[] = { busy[i].domain };
		struct wiki *copy = NULL;
		if (busy[i].lanes_held >= lanes)
			continue;
		pthread_mutex_lock(&s->lock);
		{
			struct wiki **found = find_wiki(s, busy[i].domain);
			if (found != NULL)
				copy = wiki_ref(*found);
		}
		pthread_mutex_unlock(&s->lock);
		if (copy == NULL)
			continue;
		for (int slot = 1; slot < lanes && rc != 1; slot++) {
			if (coord_add_lease_rows(w->db, cfg, s->scope, names, 1, slot, err,
						 sizeof(err)) != 0)
				break;
			rc = try_lease(w, copy, slot, t);
		}
		if (rc != 1)
			wiki_free(copy);
	}
	return rc == 1 ? 1 : 0;
}

/* With the lock held: whether a candidate not yet taken satisfies match(s, c, arg). */
static bool any_candidate(struct sched *s,
			  bool (*match)(struct sched *, const char *, const char *), const char *arg)
{
	size_t off = s->next;

	for (int i = 0; i < s->ncandidates && off < s->candidates.len; i++) {
		const char *c = s->candidates.data + off;
		if (match(s, c, arg))
			return true;
		off += strlen(c) + 1;
	}
	return false;
}

static bool same_domain(struct sched *s, const char *c, const char *domain)
{
	(void)s;
	return strcmp(c, domain) == 0;
}

/* The probe: lease the first preferred wiki the fresh candidate list holds (one with
 * work, not backed off, parked or leased). 1 got one, 0 none. Lock held on entry and
 * exit, released around the database calls. */
static int try_preferred(struct sched_worker *w, const struct sched_prefer *prefer,
			 struct sched_ticket *t)
{
	struct sched *s = w->s;

	if (!s->refreshing && util_mono_ms() - s->refreshed_ms >= s->cfg->poll_interval_ms) {
		s->refreshing = true;
		pthread_mutex_unlock(&s->lock);
		refresh_candidates(w);
		pthread_mutex_lock(&s->lock);
	}
	for (int i = 0; i < prefer->n; i++) {
		struct wiki **found;
		struct wiki *copy;
		int rc;
		if (!any_candidate(s, same_domain, prefer->domains[i]) ||
		    (found = find_wiki(s, prefer->domains[i])) == NULL)
			continue;
		copy = wiki_ref(*found);
		if (copy == NULL)
			continue;
		pthread_mutex_unlock(&s->lock);
		rc = try_lease(w, copy, 0, t);
		pthread_mutex_lock(&s->lock);
		if (rc == 1)
			return 1;
		wiki_free(copy);
	}
	return 0;
}

int sched_next(struct sched_worker *w, const struct sched_prefer *prefer, struct sched_ticket *t)
{
	struct sched *s = w->s;
	int64_t poll = s->cfg->poll_interval_ms;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		int64_t now = util_mono_ms();
		int64_t wake = now + poll;
		struct timespec ts;
		struct wiki *wiki;

		if (!s->ready) {
			/* the schema is not there yet */
		} else if (prefer != NULL && prefer->n > 0 && try_preferred(w, prefer, t) == 1) {
			pthread_mutex_unlock(&s->lock);
			return 0;
		} else if (s->ncandidates > 0 && (wiki = take_candidate(s)) != NULL) {
			int rc;
			pthread_mutex_unlock(&s->lock);
			rc = try_lease(w, wiki, 0, t);
			if (rc == 1)
				return 0;
			wiki_free(wiki);
			pthread_mutex_lock(&s->lock);
			continue;
		} else if (!s->refreshing && now - s->refreshed_ms >= poll) {
			s->refreshing = true;
			pthread_mutex_unlock(&s->lock);
			refresh_candidates(w);
			pthread_mutex_lock(&s->lock);
			if (s->ncandidates > 0)
				continue;
			pthread_mutex_unlock(&s->lock);
			if (try_extra_slot(w, t) == 1)
				return 0;
			pthread_mutex_lock(&s->lock);
			wake = util_mono_ms() + poll;
		} else if (!s->refreshing) {
			wake = s->refreshed_ms + poll;
		}
		ts = util_timespec(wake);
		pthread_cond_timedwait(&s->changed, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return -ECANCELED;
}

/* A candidate this pod serves, other than `own`. One this pod does not serve (a
 * jd_wiki row that discovery no longer lists) waits for no worker of ours, and the wiki
 * a worker drains is no other wiki: counting either kept a lone wiki's batches at
 * maxjobs for as long as such a row stayed runnable. */
static bool served_other(struct sched *s, const char *c, const char *own)
{
	return strcmp(c, own) != 0 && find_wiki(s, c) != NULL;
}

/* Another wiki of this scope that this pod serves is waiting for a worker (refreshing
 * the view if stale). */
static bool others_waiting(struct sched_worker *w, const struct sched_ticket *t)
{
	struct sched *s = w->s;
	bool stale, refresh = false;

	pthread_mutex_lock(&s->lock);
	stale = util_mono_ms() - s->refreshed_ms >= s->cfg->poll_interval_ms;
	if (stale && !s->refreshing) {
		s->refreshing = true;
		refresh = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (refresh)
		refresh_candidates(w);
	pthread_mutex_lock(&s->lock);
	stale = any_candidate(s, served_other, t->wiki->domain);
	pthread_mutex_unlock(&s->lock);
	return stale;
}

static void log_lease(enum log_level level, const char *msg, const struct sched_ticket *t,
		      const char *why, const char *next)
{
	struct log_line l;

	log_begin(&l, level, msg);
	log_str(&l, "wiki", t->wiki->domain);
	log_int(&l, "slot", t->lease.slot);
	log_int(&l, "token", (long long)t->lease.token);
	if (why != NULL)
		log_str(&l, "error", why);
	log_str(&l, "next", next);
	log_end(&l);
}

static bool stopping(struct sched *s)
{
	bool stop;

	pthread_mutex_lock(&s->lock);
	stop = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

void sched_batch_ran(struct sched_ticket *t, const struct batch_result *r)
{
	t->batches++;
	t->last_ms = r->took_ms;
	t->last_jobs = r->jobs_ok + r->jobs_failed;
	t->jobs_run += r->jobs_ok + r->jobs_failed;
	t->no_progress = health_no_progress(r) ? t->no_progress + 1 : 0;
}

bool sched_keep_draining(const struct sched_ticket *t, const struct batch_result *r,
			 const struct health_verdict *v, bool breaker_open)
{
	if (r->outcome != OUTCOME_MORE || breaker_open)
		return false;
	/* No progress, SCHED_NO_PROGRESS_LIMIT times in a row: back off (sched_drain_report). */
	return !(v->fault == FAULT_WIKI && t->no_progress >= SCHED_NO_PROGRESS_LIMIT);
}

bool sched_worker_stopping(struct sched_worker *w)
{
	return stopping(w->s);
}

bool sched_may_continue(struct sched_worker *w, struct sched_ticket *t, bool fleet)
{
	struct sched *s = w->s;
	const struct config *cfg = s->cfg;

	if (stopping(s))
		return false;
	if (!fleet)
		return sched_lane_fits(w, t);
	/* An extra lane only uses otherwise idle capacity, and only while the wiki may
	 * have that many lanes (contention takes lanes away: the highest slots go). */
	if (t->lease.slot > 0 && (others_waiting(w, t) || !sched_lane_fits(w, t)))
		return false;
	if (sched_slice_over(cfg, t, util_mono_ms()) && others_waiting(w, t))
		return false;
	return true;
}

bool sched_lane_fits(struct sched_worker *w, struct sched_ticket *t)
{
	struct lanes_state st;

	if (t->lease.slot == 0)
		return true;
	int allowed = lanes_now(w, t->wiki->domain, t->lanes_cap, &st);

	if (t->lease.slot < allowed)
		return true;
	if (allowed > 0) /* else the database failed: said by lanes_now */
		log_lease(LOG_INFO, "lane handed back", t, NULL,
			  lanes_why_text(lanes_reason(t->lanes_cap, &st)));
	return false;
}

void sched_lanes_after_batch(struct sched_worker *w, struct sched_ticket *t,
			     const struct batch_result *r)
{
	const struct config *cfg = w->s->cfg;
	struct lanes_state st;
	enum lanes_why why;
	struct log_line l;
	int before, after;
	char err[512];
	int rc;

	if (t->lanes_cap <= 1 || !lanes_contention(r, &why))
		return;
	before = lanes_now(w, t->wiki->domain, t->lanes_cap, &st);
	after = lanes_after_contention(before);
	if (before < 0 || after == before)
		return; /* unreadable (said), or one lane already: nothing to take away */
	rc = coord_reduce_lanes(w->db, cfg, w->s->scope, t->wiki->domain, after, why, err,
				sizeof(err));
	if (rc < 0) {
		log_db_error(w->s, "coordination database failed", err,
			     "the wiki keeps its lanes until it answers");
		return;
	}
	if (rc == 0)
		return; /* another lane of the wiki recorded this episode already */
	log_begin(&l, LOG_WARN, "lanes reduced");
	log_str(&l, "wiki", t->wiki->domain);
	log_int(&l, "lanes_before", before);
	log_int(&l, "lanes", after);
	log_str(&l, "why", lanes_why_text(why));
	if (why == LANES_REPLICA)
		log_str(&l, "reached", r->reached);
	else
		log_int(&l, "jobs_contended", r->jobs_contended);
	log_int(&l, "recover_every_s", LANES_RECOVER_MS / 1000);
	log_str(&l, "next",
		"the highest lanes leave after their batch; one comes back per "
		"recovery interval without new contention");
	log_end(&l);
}

/* A renew did not match: if an operator's pause is why, says so and returns true. */
static bool log_if_paused(struct sched_worker *w, const struct sched_ticket *t)
{
	struct coord_pause *p = NULL;
	struct log_line l;
	size_t n = 0;
	char err[512];

	if (coord_pause_list(w->db, w->s->cfg, w->s->scope, t->wiki->domain, &p, &n, err,
			     sizeof(err)) != 0 ||
	    n == 0) {
		free(p);
		return false;
	}
	log_begin(&l, LOG_INFO, "wiki paused: letting go");
	log_str(&l, "wiki", t->wiki->domain);
	log_str(&l, "paused", strcmp(p[0].domain, COORD_ALL_WIKIS) == 0 ? "all" : "wiki");
	log_str(&l, "by", p[0].by);
	log_str(&l, "reason", p[0].reason);
	log_str(&l, "until", p[0].until[0] ? p[0].until : "resumed");
	log_str(&l, "next", "no batches on it until the pause ends");
	log_end(&l);
	free(p);
	return true;
}

int sched_batch_target_ms(const struct config *cfg)
{
	return cfg->maxtime * 1000 / 3;
}

int sched_batch_size(const struct config *cfg, struct sched_ticket *t, bool others_wait)
{
	int cap = cfg->maxjobs_alone > cfg->maxjobs ? cfg->maxjobs_alone : cfg->maxjobs;
	long long target = sched_batch_target_ms(cfg), fits;

	if (others_wait || t->maxjobs <= 0 || t->last_jobs <= 0) {
		t->maxjobs = cfg->maxjobs;
		return t->maxjobs;
	}
	/* What the last batch's pace fits in the target, at most twice the last size (one
	 * quick batch of easy jobs is weak evidence), never below maxjobs. */
	fits = t->last_ms > 0 ? (long long)t->last_jobs * target / t->last_ms : cap;
	if (fits > 2LL * t->last_jobs)
		fits = 2LL * t->last_jobs;
	if (fits > cap)
		fits = cap;
	t->maxjobs = fits < cfg->maxjobs ? cfg->maxjobs : (int)fits;
	return t->maxjobs;
}

int sched_next_batch_size(struct sched_worker *w, struct sched_ticket *t)
{
	const struct config *cfg = w->s->cfg;

	/* Nothing to ask the database when the rule cannot grow the batch anyway. */
	if (cfg->maxjobs_alone <= cfg->maxjobs)
		return sched_batch_size(cfg, t, true);
	return sched_batch_size(cfg, t, t->maxjobs > 0 && others_waiting(w, t));
}

bool sched_slice_over(const struct config *cfg, const struct sched_ticket *t, int64_t now)
{
	return now - t->started_ms >= (int64_t)cfg->time_slice * 1000;
}

/* One renew: true if the database confirmed the lease (trust restarts from before the
 * statement was sent), false (logged) if it is lost or cannot be confirmed. */
static bool renew(struct sched_worker *w, struct sched_ticket *t)
{
	const struct config *cfg = w->s->cfg;
	int64_t sent = util_mono_ms();
	char err[512];
	int rc = coord_renew_wiki(w->db, cfg, &t->lease, err, sizeof(err));

	if (rc == 0 && log_if_paused(w, t))
		return false;
	if (rc == 0) {
		metrics_add(METRIC_ERRORS, ERROR_LEASE_LOST, 1);
		log_lease(LOG_WARN, "lease lost", t, NULL, "stopping work on this wiki");
		return false;
	}
	if (rc < 0) {
		log_lease(LOG_WARN, "lease cannot be confirmed", t, err,
			  "no further batch on this wiki until the database answers");
		return false;
	}
	t->confirmed_ms = sent;
	t->trusted_until = lease_trusted_until(sent, cfg->lease_ttl, cfg->safety_margin);
	return true;
}

bool sched_confirm(struct sched_worker *w, struct sched_ticket *t)
{
	int64_t batch_max = (int64_t)config_batch_max_seconds(w->s->cfg) * 1000;

	if (stopping(w->s))
		return false;
	/* Every batch starts on a lease the database has just confirmed: one UPDATE per
	 * batch, against a batch that runs many jobs (the acquire itself counts). */
	if (lease_renew_due(util_mono_ms(), t->confirmed_ms, 1000) && !renew(w, t))
		return false;
	/* Never start a batch that could outlast the trust (a stall since the renew). */
	return lease_covers(util_mono_ms(), t->trusted_until, batch_max);
}

bool sched_hold(struct sched_worker *w, struct sched_ticket *t, int64_t ms)
{
	struct sched *s = w->s;
	int64_t deadline = util_mono_ms() + ms;
	int64_t every = (int64_t)s->cfg->renew_interval * 1000;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		int64_t now = util_mono_ms(), wake = t->confirmed_ms + every;
		struct timespec ts;
		if (now >= deadline)
			break;
		if (lease_renew_due(now, t->confirmed_ms, every)) {
			bool ok;
			pthread_mutex_unlock(&s->lock);
			ok = renew(w, t);
			pthread_mutex_lock(&s->lock);
			if (!ok)
				break;
			continue;
		}
		if (wake > deadline)
			wake = deadline;
		ts = util_timespec(wake);
		pthread_cond_timedwait(&s->changed, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return util_mono_ms() >= deadline && !stopping(s);
}

int64_t sched_backoff_ms(const struct config *cfg, enum batch_outcome o, int failures)
{
	int64_t base = (int64_t)cfg->backoff_base * 1000, cap = (int64_t)cfg->backoff_max * 1000;
	/* A request MediaWiki refused (bad secret, unknown host) will not heal by itself
	 * soon: it starts higher. */
	int steps = failures - 1 + (o == OUTCOME_BAD_REQUEST ? 3 : 0);
	int64_t ceiling = util_backoff_ms(base, cap, steps);

	return util_rand_range(base < ceiling ? base : ceiling, ceiling);
}

bool sched_drain_report(const struct config *cfg, const struct sched_ticket *t,
			const struct batch_result *last, enum batch_fault fault,
			struct coord_drain_report *r)
{
	memset(r, 0, sizeof(*r));
	r->outcome = last->outcome;
	/* The pod's fault: leave the wiki's books as they are, so the other pods (whose
	 * MediaWiki works) take it at once and nothing waits on a backoff. */
	if (fault == FAULT_POD)
		return false;
	r->drained = last->outcome == OUTCOME_DRAINED;
	/* The scan saw ready rows, yet MediaWiki ran nothing: rows of a type it will not
	 * run. Park the wiki until new jobs arrive or park_interval passes. */
	r->park = r->drained && t->jobs_run == 0 && t->lease.slot == 0;
	if (fault == FAULT_WIKI &&
	    !(health_no_progress(last) && t->no_progress < SCHED_NO_PROGRESS_LIMIT)) {
		/* An answer that ran nothing while claiming more will not change by itself
		 * soon: like a refused request, it starts three steps up. */
		int extra = health_no_progress(last) ? 3 : 0;
		r->count_failure = true;
		r->backoff_ms = sched_backoff_ms(cfg, last->outcome, t->failures + 1 + extra);
	}
	return true;
}

void sched_done(struct sched_worker *w, struct sched_ticket *t, const struct batch_result *last,
		enum batch_fault fault, int64_t *backoff_ms)
{
	const struct config *cfg = w->s->cfg;
	struct coord_drain_report r;
	char err[512];
	int rc;

	if (sched_drain_report(cfg, t, last, fault, &r)) {
		r.batches = t->batches;
		r.jobs = t->jobs_run;
		r.ms = util_mono_ms() - t->started_ms;
		rc = coord_release_wiki(w->db, cfg, &t->lease, &r, err, sizeof(err));
	} else {
		rc = coord_release(w->db, cfg, &t->lease, err, sizeof(err));
	}
	*backoff_ms = r.backoff_ms;
	metrics_add(METRIC_LEASES_HELD, 0, -1);
	if (rc < 0)
		log_lease(LOG_WARN, "lease not released", t, err, "it expires by itself");
	else if (r.park && rc == 1)
		log_lease(LOG_INFO,
			  "wiki parked: its ready jobs are of types MediaWiki does not run", t,
			  NULL, "skipped until new jobs arrive or park_interval passes");
}

void sched_give_back(struct sched_worker *w, struct sched_ticket *t)
{
	char err[512];

	if (coord_release(w->db, w->s->cfg, &t->lease, err, sizeof(err)) < 0)
		log_lease(LOG_WARN, "lease not released", t, err, "it expires by itself");
	metrics_add(METRIC_LEASES_HELD, 0, -1);
}

void sched_clear_outage(struct sched_worker *w, int64_t outage_since)
{
	struct sched *s = w->s;
	/* A little earlier than the evidence: the batch that first failed started then. */
	int64_t ago =
		util_mono_ms() - outage_since + (int64_t)config_batch_max_seconds(s->cfg) * 1000;
	long long cleared = 0;
	struct log_line l;
	char err[512];

	if (coord_clear_outage_backoffs(w->db, s->cfg, s->scope, s->cfg->holder, ago, &cleared, err,
					sizeof(err)) != 0) {
		log_db_error(s, "coordination database failed", err,
			     "the outage's backoffs expire by themselves");
		return;
	}
	log_begin(&l, LOG_INFO, "outage over: backoffs it caused are lifted");
	log_int(&l, "wikis", cleared);
	log_end(&l);
	sched_poke(s);
}

void sched_stop(struct sched *s)
{
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}
