/* metrics.c - see metrics.h. Values are stored in millionths in one array of atomics,
 * one slot per (metric, label value). */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>

struct metric_def {
	const char *name, *type, *help, *label;
	const char *const *values;
	int nvalues;
	int first_slot;
};

#define METRIC_VALUES(id, name, type, help, label, ...)                                 \
	static const char *const values_##id[] = { __VA_ARGS__ };
METRICS(METRIC_VALUES)
#undef METRIC_VALUES

#define NVALUES(id) ((int)(sizeof(values_##id) / sizeof(values_##id[0])))

/* Each label set has as many values as its enum (metrics.h), and fits in the slots. */
_Static_assert(NVALUES(BATCHES) == OUTCOME_COUNT, "outcome labels");
_Static_assert(NVALUES(JOBS) == JOB_STATUS_COUNT, "job status labels");
_Static_assert(NVALUES(ERRORS) == ERROR_KIND_COUNT, "error kind labels");
_Static_assert(NVALUES(LEASE_OPS) == LEASE_OP_COUNT, "lease op labels");
#define FITS(id, ...) _Static_assert(NVALUES(id) <= 16, #id " has more than 16 labels");
METRICS(FITS)
#undef FITS

enum {
#define METRIC_SLOTS(id, ...) SLOTS_BEFORE_##id, SLOTS_PAD_##id = SLOTS_BEFORE_##id + 15,
	METRICS(METRIC_SLOTS)
#undef METRIC_SLOTS
	SLOT_COUNT
};

static struct metric_def defs[METRIC_COUNT] = {
#define METRIC_DEF(id, name, type, help, label, ...)                                     \
	[METRIC_##id] = { name, type, help, label, values_##id, NVALUES(id), SLOTS_BEFORE_##id },
	METRICS(METRIC_DEF)
#undef METRIC_DEF
};

/* 16 slots per metric (SLOTS_PAD): more than any label set has. */
static _Atomic int64_t slots[SLOT_COUNT];

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

void metrics_render(struct buf *out)
{
	for (int m = 0; m < METRIC_COUNT; m++) {
		const struct metric_def *d = &defs[m];
		buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, d->type);
		for (int i = 0; i < d->nvalues; i++) {
			int64_t v = atomic_load_explicit(&slots[d->first_slot + i],
							  memory_order_relaxed);
			char num[48];
			if (v % 1000000 == 0)
				snprintf(num, sizeof(num), "%lld", (long long)(v / 1000000));
			else
				snprintf(num, sizeof(num), "%.6f", (double)v / 1e6);
			if (d->label[0] != '\0')
				buf_addf(out, "%s{%s=\"%s\"} %s\n", d->name, d->label, d->values[i], num);
			else
				buf_addf(out, "%s %s\n", d->name, num);
		}
	}
}
