/* publish.c - see publish.h. */
#include "publish.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "changes.h"
#include "coord.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

int publish_backlog(struct db *coord, const struct config *cfg, struct wiki *const *wikis,
		    const struct backlog *b, size_t n, enum scan_depth depth,
		    const char *scan_started, char *err, size_t errlen)
{
	struct wiki **changed = calloc(n ? n : 1, sizeof(*changed));
	struct backlog *figures = calloc(n ? n : 1, sizeof(*figures));
	bool *refused = calloc(n ? n : 1, sizeof(*refused));
	int64_t now = util_mono_ms();
	size_t k = 0;
	int rc = -1, nrefused = 0;

	if (changed == NULL || figures == NULL || refused == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!changes_need_write(&wikis[i]->written, &b[i], depth, now))
			continue;
		changed[k] = wikis[i];
		figures[k++] = b[i];
	}
	if (k > 0)
		nrefused =
			coord_write_backlog(coord, cfg,
					    &(struct coord_scan){ cfg->mw_version, changed, figures,
								  k, scan_started, refused },
					    err, errlen);
	if (nrefused < 0)
		goto out;
	for (size_t i = 0, logged = 0; i < k; i++) {
		struct log_line l;
		if (!refused[i]) {
			changes_note_written(&changed[i]->written, &figures[i], depth, now);
			continue;
		}
		/* Not recorded as written: the next scan tries again. */
		log_begin(&l, LOG_WARN,
			  "backlog row refused by the coordination database; the other wikis"
			  " are written, this one is retried next scan");
		log_str(&l, "wiki", changed[i]->domain);
		log_str(&l, "types", figures[i].types);
		if (logged++ == 0) /* coord_write_backlog reports the first one's */
			log_str(&l, "error", err);
		log_end(&l);
	}
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_WRITTEN, (int64_t)k - nrefused);
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_REFUSED, nrefused);
	metrics_add(METRIC_SCAN_ROWS, SCAN_ROW_UNCHANGED, (int64_t)(n - k));
	rc = 0;
out:
	free(changed);
	free(figures);
	free(refused);
	return rc;
}

int publish_scan(struct db *scan_db, struct db *coord, const struct config *cfg,
		 struct wiki *const *wikis, size_t n, int per_query, enum scan_depth depth,
		 const char *scan_started, struct backlog *b, struct scan_stats *stats, char *err,
		 size_t errlen)
{
	stats->queries = 0;
	if (scan_run_skipping(scan_db, wikis, n, per_query, depth, cfg->skip_types, b, stats, err,
			      errlen) != 0)
		return -EIO;
	if (publish_backlog(coord, cfg, wikis, b, n, depth, scan_started, err, errlen) != 0)
		return -ECOMM;
	return 0;
}
