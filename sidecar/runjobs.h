/* runjobs.h - the Special:RunJobs client: one signed, synchronous POST per batch.
 *
 * Connects to the pod's own MediaWiki ([mediawiki] host:port) and names the wiki in
 * the Host header, as the ingress would. One handle per worker thread (it keeps the
 * connection alive between batches); not shared between threads. */
#ifndef JD_RUNJOBS_H
#define JD_RUNJOBS_H

#include <stdatomic.h>

#include "config.h"
#include "response.h"
#include "wiki.h"

struct runjobs;

/* abort_now: when it becomes true, a request in flight is cut short (ABORTED).
 * Returns NULL on allocation failure. */
struct runjobs *runjobs_new(const struct config *cfg, const atomic_bool *abort_now);
void runjobs_free(struct runjobs *rj);
/* A reload: the next batch follows cfg's maxjobs, maxtime, timeouts and body cap
 * (host, port and path are the same: config_keep_static). */
void runjobs_set_config(struct runjobs *rj, const struct config *cfg);

/* The jobs the following batches ask for (RunJobs maxjobs; the scheduler decides:
 * sched_batch_size). 0: [mediawiki] maxjobs. */
void runjobs_set_maxjobs(struct runjobs *rj, int maxjobs);

/* Runs one batch on wiki w, under lease token `lease` (sent unsigned, for the access
 * log), and classifies what happened into r. Never fails as such: every problem is an
 * outcome in r, with a detail for the log. */
void runjobs_batch(struct runjobs *rj, const struct wiki *w, unsigned long long lease,
		   struct batch_result *r);
/* runjobs_batch asking for one job type only (RunJobs' signed `type` field): MediaWiki
 * pops only rows of that job_cmd and answers none-ready (or none-possible, for a type
 * it does not know) when there are none. type "" or NULL: any type. */
void runjobs_batch_typed(struct runjobs *rj, const struct wiki *w, unsigned long long lease,
			 const char *type, struct batch_result *r);

#endif
