/* publish.h - the one scan-and-publish step: read some wikis' job tables and write the
 * figures the fleet needs to the coordination database (jd_wiki).
 *
 * Used by every database server's detector (detector.c) and by `drain --wiki` before it
 * takes the lease, so a wiki's row is written the same way whoever read it. Writes stay
 * O(changes) (changes.h): a wiki's row is written when its figures need it and recorded
 * in its `written` (the caller's thread owns the wikis' `written` records). */
#ifndef JD_PUBLISH_H
#define JD_PUBLISH_H

#include <stddef.h>

#include "config.h"
#include "scan.h"
#include "wiki.h"

struct db; /* db.h */

/* Writes the rows of wikis[0..n) whose figures b[] the fleet needs (changes.h: new,
 * changed, with work, or due for a refresh) and records them as written; the others
 * cost no statement. A row the coordination database refuses for its values is
 * reported (log, metric) and left out, so it affects its own wiki only.
 * scan_started is coord_now() from before the scan. 0, or -1 (err set) when the write
 * failed: then nothing is recorded, so the next scan writes them again. */
int publish_backlog(struct db *coord, const struct config *cfg, struct wiki *const *wikis,
		    const struct backlog *b, size_t n, enum scan_depth depth,
		    const char *scan_started, char *err, size_t errlen);

/* Reads wikis[0..n) from scan_db, `per_query` wikis per statement, into b[0..n)
 * (scan_run_skipping with [drain] skip_types), then publish_backlog. Returns 0; -EIO
 * when the server failed (nothing written); -ECOMM when the backlog could not be
 * written. err says why; stats counts the statements either way. */
int publish_scan(struct db *scan_db, struct db *coord, const struct config *cfg,
		 struct wiki *const *wikis, size_t n, int per_query, enum scan_depth depth,
		 const char *scan_started, struct backlog *b, struct scan_stats *stats, char *err,
		 size_t errlen);

#endif
