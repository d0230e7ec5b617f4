/* pace.h - how much database time the scanner may spend, and on which wikis first.
 *
 * The budget is a share of one database core: a credit of database time that grows at
 * `budget` ms per ms of wall time (up to a small burst) and that each scan statement
 * spends by what it cost. While in debt the scanner waits, so over any window longer
 * than the burst its statements take at most that share of the server's time, whatever
 * the farm's size: a larger farm gets a longer sweep, not a busier database.
 *
 * The hot set is the wikis that had jobs or activity recently: they are re-read every
 * few seconds, while the sweep goes through all the wikis in rotation within what the
 * budget leaves.
 *
 * [scan] queries_per_second is part of the same mechanism: each statement also takes
 * its slot of 1/qps s, and pace_wait_ms waits for whichever of the two comes later, so
 * the owner has one wait, not two.
 *
 * Leaf module (libc + wiki.h). Clocks are passed in (monotonic ms), so tests drive
 * them. Not thread-safe: the scanner thread owns both. */
#ifndef JD_PACE_H
#define JD_PACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wiki.h"

/* Credit never grows past this much wall time's worth: after an idle spell the scanner
 * may burst, but only briefly. */
#define PACE_BURST_MS 10000
/* The share used is measured over windows this long. */
#define PACE_WINDOW_MS 60000

struct pace {
	double budget;     /* share of one database core, (0, 1] */
	int64_t credit_us; /* database time that may be spent now; < 0: in debt */
	int64_t last_ms;   /* when credit was last accrued */
	int64_t win_start_ms;
	int64_t win_cost_us; /* spent in the current window */
	double used;         /* share used in the last complete window; -1: none yet */
	int qps;             /* statements a second at most; 0: no limit */
	int64_t qps_free_ms; /* when the statements spent so far fit the rate */
};

/* Starts with a full burst of credit: a new scanner lease holder reads at once. */
void pace_init(struct pace *p, double budget, int64_t now_ms);
/* A new budget from now_ms on (a reload): credit earned until then at the old rate is
 * kept, up to the new burst; debt stays debt. */
void pace_set_budget(struct pace *p, double budget, int64_t now_ms);
/* Records a statement that took cost_us of database time and ended at now_ms. */
void pace_spend(struct pace *p, int64_t now_ms, int64_t cost_us);
/* Limits the statements to qps a second from now on (0: no limit; a reload). */
void pace_set_qps(struct pace *p, int qps);
/* pace_spend for `queries` statements (that each take a slot of the qps limit). */
void pace_spend_queries(struct pace *p, int64_t now_ms, int64_t cost_us, int queries);
/* How long to wait before the next statement (0: now): until the budget has credit
 * and the statements so far fit the qps limit. */
int64_t pace_wait_ms(struct pace *p, int64_t now_ms);
/* The share of one database core used: over the last complete window, or over the
 * current one while none has completed. */
double pace_used(const struct pace *p, int64_t now_ms);
/* How long a sweep whose statements cost cost_us takes within the budget (ms). */
int64_t pace_sweep_ms(const struct pace *p, int64_t cost_us);
/* The most a sweep is ever allowed to use to keep within [scan] max_sweep_seconds: a
 * quarter of a core. A database too slow even for that gets a longer sweep. */
#define PACE_SWEEP_SHARE_MAX 0.25
/* The share of one database core detection runs at: `budget`, or more when a sweep
 * costing sweep_cost_us would take longer than max_sweep_ms within it (the 3-minute
 * promise beats the budget: a job on a cold wiki is seen within max_sweep_ms). The
 * raise goes to the sweep alone: the hot set keeps its part of `budget`
 * (pace_hot_gap_ms is given the setting), so the share is what the sweep needs plus
 * that part, up to PACE_SWEEP_SHARE_MAX (never below budget). max_sweep_ms 0, or no
 * estimate (sweep_cost_us 0): budget. */
double pace_sweep_budget(double budget, int64_t sweep_cost_us, int64_t max_sweep_ms);
/* The hot set takes at most this share of the budget, so that the sweep always moves
 * (a farm where many wikis keep a backlog would otherwise starve the cold ones). */
#define PACE_HOT_SHARE 0.5
/* When the hot set may be read again after a round that cost cost_us: after
 * interval_ms, or later when that round would take more than PACE_HOT_SHARE of budget
 * (the setting, [scan] db_budget_percent: not a share raised for the sweep). */
int64_t pace_hot_gap_ms(double budget, int64_t cost_us, int64_t interval_ms);

/* Wikis with recent jobs or activity, by domain, each hot until a time. */
struct hotset {
	struct hot {
		char *domain;
		int64_t until_ms;
	} * items; /* sorted by domain */
	size_t len, cap;
};

/* Keeps domain hot until until_ms (extends, never shortens). 0 or -ENOMEM. */
int hotset_touch(struct hotset *h, const char *domain, int64_t until_ms);
bool hotset_has(const struct hotset *h, const char *domain, int64_t now_ms);
/* Drops the wikis whose time has passed. */
void hotset_expire(struct hotset *h, int64_t now_ms);
void hotset_release(struct hotset *h);

/* Picks what to read: the wikis of `all` (sorted by domain) that are hot, into out
 * (room for all->len); returns how many. */
size_t hotset_select(const struct hotset *h, const struct wiki_list *all, int64_t now_ms,
		     struct wiki **out);
/* The sweep's next position in `all` (sorted by domain): the first wiki after the
 * domain `after` (NULL: the start). A list changed by discovery keeps the rotation. */
size_t sweep_position(const struct wiki_list *all, const char *after);

#endif
