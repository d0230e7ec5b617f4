/* changes.c - see changes.h. */
#include "changes.h"

#include <string.h>

/* FNV-1a over some bytes, continuing from h. Not a defence against anyone: the
 * figures come from our own scan, and a collision costs one skipped write that the
 * refresh repairs. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* What every scan reads (a light scan's whole result). Never 0, so that 0 can mean
 * "nothing written". */
static uint64_t light_fingerprint(const struct backlog *b)
{
	uint64_t h = FNV_START;
	unsigned char failed = b->failed;

	h = fnv(h, &b->oldest_ready_ms, sizeof(b->oldest_ready_ms));
	h = fnv(h, &b->ready_types, sizeof(b->ready_types));
	h = fnv(h, &failed, 1);
	h = fnv(h, b->types, strnlen(b->types, sizeof(b->types)));
	h = fnv(h, "", 1);
	if (b->failed)
		h = fnv(h, b->error, strnlen(b->error, sizeof(b->error)));
	return h ? h : 1;
}

/* What only a full scan reads: the highest job id (unparks), the claims. */
static uint64_t full_fingerprint(const struct backlog *b)
{
	uint64_t h = FNV_START;

	h = fnv(h, &b->max_job_id, sizeof(b->max_job_id));
	h = fnv(h, &b->orphaned_claims, sizeof(b->orphaned_claims));
	h = fnv(h, &b->oldest_claim_ms, sizeof(b->oldest_claim_ms));
	h = fnv(h, &b->abandoned, sizeof(b->abandoned));
	return h ? h : 1;
}

bool changes_need_write(const struct wiki_written *last, const struct backlog *b,
			enum scan_depth depth, int64_t now_ms)
{
	if (last->light == 0 || b->failed || b->oldest_ready_ms != 0)
		return true;
	if (now_ms - last->at_ms >= CHANGES_REFRESH_MS)
		return true;
	if (light_fingerprint(b) != last->light)
		return true;
	return depth == SCAN_FULL && full_fingerprint(b) != last->full;
}

void changes_note_written(struct wiki_written *last, const struct backlog *b, enum scan_depth depth,
			  int64_t now_ms)
{
	last->light = light_fingerprint(b);
	if (depth == SCAN_FULL)
		last->full = full_fingerprint(b);
	last->at_ms = now_ms;
	last->ready = b->oldest_ready_ms != 0;
}
