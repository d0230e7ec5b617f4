/* metrics.c - see metrics.h. Values are stored in millionths in one array of atomics,
 * one slot per (metric, label value); a histogram has one slot per bucket (not
 * cumulative: an observation touches one) and one more for its sum. The per-server
 * series are rendered from a copy of the scanner's last reports, under a mutex: they
 * change every few seconds, all at once, and a scrape must not see half of a change. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_def {
	const char *name, *type, *help, *label;
	const char *const *values;
	int nvalues;
	int first_slot;
};

#define METRIC_VALUES(id, name, type, help, label, ...)                                            \
	static const char *const values_##id[] = { __VA_ARGS__ };
METRICS(METRIC_VALUES)
#undef METRIC_VALUES

#define NVALUES(id) ((int)(sizeof(values_##id) / sizeof(values_##id[0])))

/* Each label set has as many values as its enum (metrics.h). */
_Static_assert(NVALUES(BATCHES) == OUTCOME_COUNT, "outcome labels");
_Static_assert(NVALUES(JOBS) == JOB_STATUS_COUNT, "job status labels");
_Static_assert(NVALUES(ERRORS) == ERROR_KIND_COUNT, "error kind labels");
_Static_assert(NVALUES(LEASE_OPS) == LEASE_OP_COUNT, "lease op labels");
_Static_assert(NVALUES(SCAN_ROWS) == SCAN_ROW_COUNT, "scan row labels");
/* 16 slots per metric (SLOTS_PAD below): label values, plus a histogram's sum. */
#define METRIC_FITS(id, ...) _Static_assert(NVALUES(id) < 16, "too many values: " #id);
METRICS(METRIC_FITS)
#undef METRIC_FITS

enum {
#define METRIC_SLOTS(id, ...) SLOTS_BEFORE_##id, SLOTS_PAD_##id = SLOTS_BEFORE_##id + 15,
	METRICS(METRIC_SLOTS)
#undef METRIC_SLOTS
		SLOT_COUNT
};

static struct metric_def defs[METRIC_COUNT] = {
#define METRIC_DEF(id, name, type, help, label, ...)                                               \
	[METRIC_##id] = { name, type, help, label, values_##id, NVALUES(id), SLOTS_BEFORE_##id },
	METRICS(METRIC_DEF)
#undef METRIC_DEF
};

static _Atomic int64_t slots[SLOT_COUNT];

static bool is_histogram(const struct metric_def *d)
{
	return strcmp(d->type, "histogram") == 0;
}

static _Atomic int64_t *slot(enum metric_id m, int label)
{
	if ((unsigned)m >= METRIC_COUNT || label < 0 || label >= defs[m].nvalues)
		return NULL;
	return &slots[defs[m].first_slot + label];
}

void metrics_add(enum metric_id m, int label, int64_t delta)
{
	_Atomic int64_t *s = slot(m, label);

	if (s != NULL)
		atomic_fetch_add_explicit(s, delta * 1000000, memory_order_relaxed);
}

void metrics_set(enum metric_id m, int label, double value)
{
	_Atomic int64_t *s = slot(m, label);

	if (s != NULL)
		atomic_store_explicit(s, (int64_t)(value * 1e6), memory_order_relaxed);
}

double metrics_get(enum metric_id m, int label)
{
	_Atomic int64_t *s = slot(m, label);

	return s ? (double)atomic_load_explicit(s, memory_order_relaxed) / 1e6 : 0;
}

void metrics_observe(enum metric_id m, double value)
{
	const struct metric_def *d;
	int i;

	if ((unsigned)m >= METRIC_COUNT || !is_histogram(&defs[m]) || isnan(value))
		return;
	d = &defs[m];
	/* The last bound is "+Inf": everything fits there. */
	for (i = 0; i < d->nvalues - 1; i++)
		if (value <= strtod(d->values[i], NULL))
			break;
	atomic_fetch_add_explicit(&slots[d->first_slot + i], 1000000, memory_order_relaxed);
	/* Rounded: the sum adds up many values, truncation would drift. */
	atomic_fetch_add_explicit(&slots[d->first_slot + d->nvalues],
				  (int64_t)(value * 1e6 + (value < 0 ? -0.5 : 0.5)),
				  memory_order_relaxed);
}

static void format_value(int64_t v, char num[48])
{
	if (v % 1000000 == 0)
		snprintf(num, 48, "%lld", (long long)(v / 1000000));
	else
		snprintf(num, 48, "%.6f", (double)v / 1e6);
}

/* Buckets cumulative, as Prometheus wants; _count is the +Inf bucket, so the two agree
 * even while observations land during the render. */
static void render_histogram(struct buf *out, const struct metric_def *d)
{
	int64_t total = 0;
	char num[48];

	for (int i = 0; i < d->nvalues; i++) {
		total += atomic_load_explicit(&slots[d->first_slot + i], memory_order_relaxed);
		format_value(total, num);
		buf_addf(out, "%s_bucket{le=\"%s\"} %s\n", d->name, d->values[i], num);
	}
	format_value(atomic_load_explicit(&slots[d->first_slot + d->nvalues], memory_order_relaxed),
		     num);
	buf_addf(out, "%s_sum %s\n", d->name, num);
	format_value(total, num);
	buf_addf(out, "%s_count %s\n", d->name, num);
}

static pthread_mutex_t servers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server_report servers[METRICS_SERVERS_MAX];
static size_t nservers;

void metrics_set_servers(const struct server_report *r, size_t n)
{
	if (r == NULL || n > METRICS_SERVERS_MAX)
		n = r == NULL ? 0 : METRICS_SERVERS_MAX;
	pthread_mutex_lock(&servers_lock);
	for (size_t i = 0; i < n; i++) {
		servers[i] = r[i];
		servers[i].server[sizeof(servers[i].server) - 1] = '\0';
	}
	nservers = n;
	pthread_mutex_unlock(&servers_lock);
}

/* A label value as the text format wants it: backslash, double quote and line feed
 * escaped. Server names come from discovery rows, so any byte may be there. */
static void add_label_value(struct buf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			buf_addf(out, "\\%c", *v);
		else if (*v == '\n')
			buf_adds(out, "\\n");
		else
			buf_add(out, v, 1);
	}
}

static void render_server_value(struct buf *out, const char *name, const struct server_report *r,
				const char *state, double value)
{
	char num[48];

	buf_addf(out, "%s{server=\"", name);
	add_label_value(out, r->server);
	if (state != NULL)
		buf_addf(out, "\",state=\"%s", state);
	format_value((int64_t)(value * 1e6 + 0.5), num); /* >= 0: rounded, not truncated */
	buf_addf(out, "\"} %s\n", num);
}

/* The usual enum-as-gauge: one series per state, 1 for the current one; none for a
 * server without a feed. */
static void render_feed_states(struct buf *out)
{
	static const char name[] = METRIC_FEED_STATE;

	buf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, METRIC_FEED_STATE_HELP, name);
	for (size_t i = 0; i < nservers; i++) {
		const struct server_report *r = &servers[i];
		if (r->feed < 0)
			continue;
#define FEED_STATE_SERIES(v, state) render_server_value(out, name, r, state, r->feed == (v));
		SERVER_REPORT_FEED_STATES(FEED_STATE_SERIES)
#undef FEED_STATE_SERIES
	}
}

static void render_servers(struct buf *out)
{
	pthread_mutex_lock(&servers_lock);
#define SERVER_METRIC_RENDER(name, help, value)                                                    \
	buf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);                        \
	for (size_t i = 0; i < nservers; i++) {                                                    \
		const struct server_report *r = &servers[i];                                       \
		if ((value) >= 0)                                                                  \
			render_server_value(out, name, r, NULL, value);                            \
	}
	METRICS_PER_SERVER(SERVER_METRIC_RENDER)
#undef SERVER_METRIC_RENDER
	render_feed_states(out);
	pthread_mutex_unlock(&servers_lock);
}

void metrics_render(struct buf *out)
{
	for (int m = 0; m < METRIC_COUNT; m++) {
		const struct metric_def *d = &defs[m];
		buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, d->type);
		if (is_histogram(d)) {
			render_histogram(out, d);
			continue;
		}
		for (int i = 0; i < d->nvalues; i++) {
			char num[48];
			format_value(atomic_load_explicit(&slots[d->first_slot + i],
							  memory_order_relaxed),
				     num);
			if (d->label[0] != '\0')
				buf_addf(out, "%s{%s=\"%s\"} %s\n", d->name, d->label, d->values[i],
					 num);
			else
				buf_addf(out, "%s %s\n", d->name, num);
		}
	}
	render_servers(out);
}
