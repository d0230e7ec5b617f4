/* response.h - what a Special:RunJobs call came to.
 *
 * Classifies the HTTP status and JSON body into one outcome that the drain loop acts
 * on. Pure functions; leaf module (libc + jansson), unit-tested on captured bodies. */
#ifndef JD_RESPONSE_H
#define JD_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

/* X(id, name): every outcome once, with its stable snake_case name (logs, and the
 * outcome label of jobdrainer_batches_total: append, the order is the metric's).
 *   drained       reached none-ready: nothing MediaWiki can run is left
 *   more          job-limit, time-limit, memory-limit: call again
 *   slow_down     replica-lag-limit, exception, none-possible, 429
 *   read_only     423, or reached read-only
 *   bad_request   400/401/403/404: this wiki's configuration (secret, host)
 *   server_error  5xx
 *   timeout       no complete answer in time
 *   refused       could not connect to MediaWiki
 *   bad_response  garbage: unparsable, oversized, wrong types, redirects
 *   aborted       cut short by shutdown */
#define BATCH_OUTCOMES(X)                                                                          \
	X(OUTCOME_DRAINED, "drained")                                                              \
	X(OUTCOME_MORE, "more")                                                                    \
	X(OUTCOME_SLOW_DOWN, "slow_down")                                                          \
	X(OUTCOME_READ_ONLY, "read_only")                                                          \
	X(OUTCOME_BAD_REQUEST, "bad_request")                                                      \
	X(OUTCOME_SERVER_ERROR, "server_error")                                                    \
	X(OUTCOME_TIMEOUT, "timeout")                                                              \
	X(OUTCOME_REFUSED, "refused")                                                              \
	X(OUTCOME_BAD_RESPONSE, "bad_response")                                                    \
	X(OUTCOME_ABORTED, "aborted")

#define OUTCOME_ID(id, name) id,
enum batch_outcome { BATCH_OUTCOMES(OUTCOME_ID) OUTCOME_COUNT };
#undef OUTCOME_ID

/* The stable names above. */
const char *outcome_name(enum batch_outcome o);

/* True for outcomes that count as the wiki failing (and so back it off). */
bool outcome_is_failure(enum batch_outcome o);

struct batch_result {
	enum batch_outcome outcome;
	long http_status; /* 0 when there was no HTTP answer */
	char reached[24]; /* MediaWiki's "reached", or "" */
	int jobs_ok;
	int jobs_failed;
	int jobs_contended;   /* of jobs_failed: lock errors (response_is_contention) */
	int backoff_types;    /* job types MediaWiki reports as backed off */
	long long elapsed_ms; /* MediaWiki's own "elapsed", -1 when absent */
	long long took_ms;    /* measured around the HTTP call */
	char detail[200];     /* why, for the log; never a secret */
	char type[64];        /* the job type the batch asked for; "" for any */
};

/* Whether a failed job's error says it lost a race for a lock that another runner of
 * the same wiki held: RefreshLinksJob's per-page lock ("LinksUpdate already running for
 * this page"), a lock wait timeout or a deadlock in the database. Several lanes on one
 * wiki cause these; a lane fewer makes them rarer (lanes.h). */
bool response_is_contention(const char *job_error);

/* Fills r (outcome, reached, job counts, detail) from an HTTP answer. over_cap: the body
 * was cut at the size cap. */
void response_classify(long http_status, const char *body, size_t len, bool over_cap,
		       struct batch_result *r);

/* A 400 for a request that took at least the signature's lifetime (signature_ttl_s)
 * is MediaWiki finding the signature expired after the request waited in front of
 * PHP, not a wrong secret: re-classifies it as slow_down (the pod is overloaded).
 * Call after took_ms is set. */
void response_check_stale_signature(struct batch_result *r, int signature_ttl_s);

#endif
