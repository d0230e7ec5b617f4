/* changes.h - which scanned figures the fleet needs written: coordination writes stay
 * O(changes), not O(wikis).
 *
 * A scan reads every wiki's job table; most of a large farm is idle, and its figures
 * are the same sweep after sweep. The scanner writes a wiki's jd_wiki row only when
 *  - nothing was written for it yet (a new wiki, a new scanner lease holder), or
 *  - the figures this scan read differ from those last written (a fingerprint of each
 *    half: what every scan reads, and what only a full scan reads), or
 *  - it has ready jobs or an unreadable table: such rows are rewritten every scan,
 *    because a worker changes them behind the scanner's back (a drained batch clears
 *    oldest_ready_at; the scan then restores it if jobs are still there), and because
 *    their seen_at tells the workers a fresh scan of the job types happened, or
 *  - CHANGES_REFRESH_MS passed since its last write: whatever changed the row behind
 *    the scanner's back (a restored coordination database, an operator's DELETE) is
 *    healed within that time.
 * A sweep that read every wiki is recorded once (coord_note_sweep), so the age of every
 * unchanged row's figures is the age of that sweep.
 * Pure functions of the figures and a monotonic clock; leaf module, unit-tested. */
#ifndef JD_CHANGES_H
#define JD_CHANGES_H

#include <stdbool.h>
#include <stdint.h>

#include "scan.h"
#include "wiki.h"

/* An unchanged row is rewritten at least this often. */
#define CHANGES_REFRESH_MS (10 * 60 * 1000)

/* Whether b, read by a scan of this depth at now_ms (monotonic), must be written. */
bool changes_need_write(const struct wiki_written *last, const struct backlog *b,
			enum scan_depth depth, int64_t now_ms);

/* Records in *last that b (of this depth) was written at now_ms. */
void changes_note_written(struct wiki_written *last, const struct backlog *b, enum scan_depth depth,
			  int64_t now_ms);

#endif
