/* pace.c - see pace.h. */
#include "pace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pace_init(struct pace *p, double budget, int64_t now_ms)
{
	memset(p, 0, sizeof(*p)); /* no qps limit until pace_set_qps */
	p->budget = budget > 0 && budget <= 1 ? budget : 1;
	p->credit_us = (int64_t)(p->budget * PACE_BURST_MS * 1000);
	p->last_ms = now_ms;
	p->win_start_ms = now_ms;
	p->used = -1;
}

/* Credit earned since the last call, capped at the burst. */
static void accrue(struct pace *p, int64_t now_ms)
{
	int64_t cap = (int64_t)(p->budget * PACE_BURST_MS * 1000);

	if (now_ms > p->last_ms) {
		p->credit_us += (int64_t)((double)(now_ms - p->last_ms) * 1000 * p->budget);
		p->last_ms = now_ms;
	}
	if (p->credit_us > cap)
		p->credit_us = cap;
}

void pace_set_budget(struct pace *p, double budget, int64_t now_ms)
{
	accrue(p, now_ms);
	p->budget = budget > 0 && budget <= 1 ? budget : 1;
	accrue(p, now_ms); /* caps the credit at the new burst */
}

void pace_spend(struct pace *p, int64_t now_ms, int64_t cost_us)
{
	if (cost_us < 0)
		cost_us = 0;
	accrue(p, now_ms);
	p->credit_us -= cost_us;
	if (now_ms - p->win_start_ms >= PACE_WINDOW_MS) {
		/* The cost lands in the window it ended in: close that window first. */
		p->used = (double)p->win_cost_us / 1000.0 / (double)(now_ms - p->win_start_ms);
		p->win_start_ms = now_ms;
		p->win_cost_us = 0;
	}
	p->win_cost_us += cost_us;
}

void pace_set_qps(struct pace *p, int qps)
{
	p->qps = qps > 0 ? qps : 0;
}

void pace_spend_queries(struct pace *p, int64_t now_ms, int64_t cost_us, int queries)
{
	pace_spend(p, now_ms, cost_us);
	if (p->qps <= 0 || queries <= 0)
		return;
	/* The slots follow on from the last ones while those are still ahead; after an
	 * idle spell they start now (no saved-up burst of statements). */
	if (p->qps_free_ms < now_ms)
		p->qps_free_ms = now_ms;
	p->qps_free_ms += (int64_t)queries * 1000 / p->qps;
}

int64_t pace_wait_ms(struct pace *p, int64_t now_ms)
{
	int64_t wait = 0;

	accrue(p, now_ms);
	if (p->credit_us < 0)
		/* Rounded up: waking a millisecond early would only wait again. */
		wait = (int64_t)((double)-p->credit_us / 1000.0 / p->budget) + 1;
	if (p->qps > 0 && p->qps_free_ms - now_ms > wait)
		wait = p->qps_free_ms - now_ms;
	return wait;
}

double pace_used(const struct pace *p, int64_t now_ms)
{
	int64_t elapsed = now_ms - p->win_start_ms;

	if (p->used >= 0 && elapsed < PACE_WINDOW_MS)
		return p->used;
	if (elapsed <= 0)
		return 0;
	return (double)p->win_cost_us / 1000.0 / (double)elapsed;
}

int64_t pace_sweep_ms(const struct pace *p, int64_t cost_us)
{
	return (int64_t)((double)cost_us / 1000.0 / p->budget);
}

double pace_sweep_budget(double budget, int64_t sweep_cost_us, int64_t max_sweep_ms)
{
	double needed;

	if (max_sweep_ms <= 0 || sweep_cost_us <= 0)
		return budget;
	needed = (double)sweep_cost_us / 1000.0 / (double)max_sweep_ms + budget * PACE_HOT_SHARE;
	if (needed > PACE_SWEEP_SHARE_MAX)
		needed = PACE_SWEEP_SHARE_MAX;
	return needed > budget ? needed : budget;
}

int64_t pace_hot_gap_ms(double budget, int64_t cost_us, int64_t interval_ms)
{
	int64_t gap;

	if (!(budget > 0 && budget <= 1))
		budget = 1;
	gap = (int64_t)((double)cost_us / 1000.0 / (budget * PACE_HOT_SHARE));
	return gap > interval_ms ? gap : interval_ms;
}

static int hot_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, ((const struct hot *)elem)->domain);
}

/* Index of domain, or of where it would go (*found false). */
static size_t hot_find(const struct hotset *h, const char *domain, bool *found)
{
	size_t lo = 0, hi = h->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = hot_cmp(domain, &h->items[mid]);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*found = false;
	return lo;
}

int hotset_touch(struct hotset *h, const char *domain, int64_t until_ms)
{
	bool found;
	size_t i = hot_find(h, domain, &found);
	char *copy;

	if (found) {
		if (until_ms > h->items[i].until_ms)
			h->items[i].until_ms = until_ms;
		return 0;
	}
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		struct hot *p = realloc(h->items, cap * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
		h->items = p;
		h->cap = cap;
	}
	copy = strdup(domain);
	if (copy == NULL)
		return -ENOMEM;
	memmove(h->items + i + 1, h->items + i, (h->len - i) * sizeof(*h->items));
	h->items[i].domain = copy;
	h->items[i].until_ms = until_ms;
	h->len++;
	return 0;
}

bool hotset_has(const struct hotset *h, const char *domain, int64_t now_ms)
{
	bool found;
	size_t i = h->len ? hot_find(h, domain, &found) : (found = false, 0);

	return found && h->items[i].until_ms > now_ms;
}

void hotset_expire(struct hotset *h, int64_t now_ms)
{
	size_t kept = 0;

	for (size_t i = 0; i < h->len; i++) {
		if (h->items[i].until_ms > now_ms)
			h->items[kept++] = h->items[i];
		else
			free(h->items[i].domain);
	}
	h->len = kept;
}

void hotset_release(struct hotset *h)
{
	for (size_t i = 0; i < h->len; i++)
		free(h->items[i].domain);
	free(h->items);
	memset(h, 0, sizeof(*h));
}

/* The first index of `all` whose domain is >= (or_equal) or > (!or_equal) key. */
static size_t lower_bound(const struct wiki_list *all, const char *key, bool or_equal)
{
	size_t lo = 0, hi = all->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(all->items[mid]->domain, key);
		if (c < 0 || (c == 0 && !or_equal))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t hotset_select(const struct hotset *h, const struct wiki_list *all, int64_t now_ms,
		     struct wiki **out)
{
	size_t n = 0;

	/* The hot set is usually a handful: look each one up rather than walk the farm. */
	for (size_t i = 0; i < h->len; i++) {
		size_t at;
		if (h->items[i].until_ms <= now_ms)
			continue;
		at = lower_bound(all, h->items[i].domain, true);
		if (at < all->len && strcmp(all->items[at]->domain, h->items[i].domain) == 0)
			out[n++] = all->items[at];
	}
	return n;
}

size_t sweep_position(const struct wiki_list *all, const char *after)
{
	return after == NULL ? 0 : lower_bound(all, after, false);
}
