/* response.h - what a Special:RunJobs call came to.
 *
 * Classifies the HTTP status and JSON body into one outcome that the drain loop acts
 * on. Pure functions; leaf module (libc + jansson), unit-tested on captured bodies. */
#ifndef JD_RESPONSE_H
#define JD_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

enum batch_outcome {
	OUTCOME_DRAINED,      /* reached none-ready: nothing MediaWiki can run is left */
	OUTCOME_MORE,         /* job-limit, time-limit, memory-limit: call again */
	OUTCOME_SLOW_DOWN,    /* replica-lag-limit, exception, none-possible, 429 */
	OUTCOME_READ_ONLY,    /* 423, or reached read-only */
	OUTCOME_BAD_REQUEST,  /* 400/401/403/404: this wiki's configuration (secret, host) */
	OUTCOME_SERVER_ERROR, /* 5xx */
	OUTCOME_TIMEOUT,      /* no complete answer in time */
	OUTCOME_REFUSED,      /* could not connect to MediaWiki */
	OUTCOME_BAD_RESPONSE, /* garbage: unparsable, oversized, wrong types, redirects */
	OUTCOME_ABORTED,      /* cut short by shutdown */
	OUTCOME_COUNT
};

/* Stable snake_case names, used in logs and metrics. */
const char *outcome_name(enum batch_outcome o);

/* True for outcomes that count as the wiki failing (and so back it off). */
bool outcome_is_failure(enum batch_outcome o);

struct batch_result {
	enum batch_outcome outcome;
	long http_status;    /* 0 when there was no HTTP answer */
	char reached[24];    /* MediaWiki's "reached", or "" */
	int jobs_ok;
	int jobs_failed;
	int backoff_types;   /* job types MediaWiki reports as backed off */
	long long elapsed_ms; /* MediaWiki's own "elapsed", -1 when absent */
	long long took_ms;    /* measured around the HTTP call */
	char detail[200];     /* why, for the log; never a secret */
	char type[64];        /* the job type the batch asked for; "" for any */
};

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
