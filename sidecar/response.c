/* response.c - see response.h. Accepts exactly what MediaWiki 1.39+ sends:
 *   {"jobs":[{"type":..,"status":"ok"|"failed",..}], "reached":"..",
 *    "backoffs":[] or {type: unix_time}, "elapsed":ms}
 * (early exits carry only jobs and reached). Anything else is BAD_RESPONSE with a
 * detail saying what was wrong, so a broken MediaWiki is visible in the log. */
#include "response.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define OUTCOME_NAME(id, name) name,
static const char *const outcome_names[] = { BATCH_OUTCOMES(OUTCOME_NAME) };
#undef OUTCOME_NAME
_Static_assert(sizeof(outcome_names) / sizeof(outcome_names[0]) == OUTCOME_COUNT,
	       "one name per outcome");

const char *outcome_name(enum batch_outcome o)
{
	return (unsigned)o < OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

bool outcome_is_failure(enum batch_outcome o)
{
	return o != OUTCOME_DRAINED && o != OUTCOME_MORE && o != OUTCOME_ABORTED;
}

static const struct {
	const char *reached;
	enum batch_outcome outcome;
} reached_map[] = {
	{ "none-ready", OUTCOME_DRAINED },
	{ "job-limit", OUTCOME_MORE },
	{ "time-limit", OUTCOME_MORE },
	{ "memory-limit", OUTCOME_MORE },
	{ "replica-lag-limit", OUTCOME_SLOW_DOWN },
	{ "exception", OUTCOME_SLOW_DOWN },
	{ "none-possible", OUTCOME_SLOW_DOWN }, /* every ready type is backed off */
	{ "read-only", OUTCOME_READ_ONLY },
};

/* A short, readable excerpt of an error page: tags dropped, blanks folded. */
static void excerpt(const char *body, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	bool in_tag = false, space = true;

	for (size_t i = 0; i < len && o + 1 < outlen; i++) {
		unsigned char c = (unsigned char)body[i];
		if (c == '<') {
			in_tag = true;
		} else if (c == '>') {
			in_tag = false;
			c = ' ';
		}
		if (in_tag)
			continue;
		if (c < ' ' || c == 0x7f)
			c = ' ';
		if (c == ' ' && space)
			continue;
		space = c == ' ';
		out[o++] = (char)c;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

static void set(struct batch_result *r, enum batch_outcome o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set(struct batch_result *r, enum batch_outcome o, const char *fmt, ...)
{
	va_list ap;

	r->outcome = o;
	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
}

static void classify_status(long status, const char *body, size_t len, struct batch_result *r)
{
	char text[120];

	excerpt(body, len, text, sizeof(text));
	if (status == 423)
		set(r, OUTCOME_READ_ONLY, "wiki is read-only: %s", text);
	else if (status == 429)
		set(r, OUTCOME_SLOW_DOWN, "too many requests: %s", text);
	else if (status == 400 || status == 401 || status == 403 || status == 404)
		set(r, OUTCOME_BAD_REQUEST,
		    "request refused (check this wiki's secret and domain): %s", text);
	else if (status >= 500 && status <= 599)
		set(r, OUTCOME_SERVER_ERROR, "server error: %s", text);
	else if (status >= 300 && status <= 399)
		set(r, OUTCOME_BAD_RESPONSE, "unexpected redirect: %s", text);
	else
		set(r, OUTCOME_BAD_RESPONSE, "unexpected HTTP status: %s", text);
}

bool response_is_contention(const char *job_error)
{
	/* As MediaWiki and MariaDB word them (RefreshLinksJob; errors 1205 and 1213 inside a
	 * DBQueryError's message), matched without regard to case. */
	static const char *const signs[] = {
		"already running for this page",
		"lock wait timeout exceeded",
		"deadlock found",
	};

	if (job_error == NULL)
		return false;
	for (size_t i = 0; i < sizeof(signs) / sizeof(signs[0]); i++)
		if (strcasestr(job_error, signs[i]) != NULL)
			return true;
	return false;
}

static int count_jobs(json_t *jobs, struct batch_result *r)
{
	size_t i;
	json_t *job;

	json_array_foreach(jobs, i, job)
	{
		const char *status = json_string_value(json_object_get(job, "status"));
		if (!json_is_object(job) || status == NULL)
			return -1;
		if (strcmp(status, "ok") == 0) {
			r->jobs_ok++;
		} else {
			r->jobs_failed++;
			if (response_is_contention(json_string_value(json_object_get(job, "error"))))
				r->jobs_contended++;
		}
	}
	return 0;
}

static void classify_json(const char *body, size_t len, struct batch_result *r)
{
	json_error_t err;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	json_t *jobs, *reached, *backoffs, *elapsed;
	const char *rs;

	if (root == NULL) {
		set(r, OUTCOME_BAD_RESPONSE, "body is not JSON: %s", err.text);
		return;
	}
	if (!json_is_object(root)) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "JSON body is not an object");
		goto out;
	}
	jobs = json_object_get(root, "jobs");
	reached = json_object_get(root, "reached");
	backoffs = json_object_get(root, "backoffs");
	elapsed = json_object_get(root, "elapsed");
	if (!json_is_array(jobs) || count_jobs(jobs, r) != 0) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "\"jobs\" is missing or not a list of jobs");
		goto out;
	}
	if (!json_is_string(reached)) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "\"reached\" is missing or not a string");
		goto out;
	}
	/* PHP encodes an empty array as [] and a map as {}: both mean "backoffs". */
	if (backoffs != NULL && !json_is_array(backoffs) && !json_is_object(backoffs)) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "\"backoffs\" is neither a list nor an object");
		goto out;
	}
	if (elapsed != NULL && !json_is_integer(elapsed) && !json_is_real(elapsed)) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "\"elapsed\" is not a number");
		goto out;
	}
	r->backoff_types = json_is_object(backoffs) ? (int)json_object_size(backoffs) : 0;
	if (json_is_integer(elapsed)) {
		r->elapsed_ms = json_integer_value(elapsed);
	} else if (json_is_real(elapsed)) {
		double ms = json_real_value(elapsed);
		/* A real outside long long's range cannot be converted: treat it as absent. */
		r->elapsed_ms = ms >= -9.0e18 && ms <= 9.0e18 ? (long long)ms : -1;
	} else {
		r->elapsed_ms = -1;
	}
	rs = json_string_value(reached);
	snprintf(r->reached, sizeof(r->reached), "%s", rs);
	for (size_t i = 0; i < sizeof(reached_map) / sizeof(reached_map[0]); i++) {
		if (strcmp(rs, reached_map[i].reached) == 0) {
			r->outcome = reached_map[i].outcome;
			r->detail[0] = '\0';
			goto out;
		}
	}
	set(r, OUTCOME_BAD_RESPONSE, "unknown \"reached\" value '%s'", rs);
out:
	json_decref(root);
}

void response_classify(long http_status, const char *body, size_t len, bool over_cap,
		       struct batch_result *r)
{
	r->http_status = http_status;
	r->reached[0] = '\0';
	r->jobs_ok = r->jobs_failed = r->jobs_contended = r->backoff_types = 0;
	r->elapsed_ms = -1;
	r->detail[0] = '\0';
	if (over_cap) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "body larger than max_body_kib");
		return;
	}
	if (http_status != 200) {
		classify_status(http_status, body, len, r);
		return;
	}
	if (len == 0) {
		set(r, OUTCOME_BAD_RESPONSE, "%s", "empty body");
		return;
	}
	classify_json(body, len, r);
}

void response_check_stale_signature(struct batch_result *r, int signature_ttl_s)
{
	/* MediaWiki compares sigexpiry with time(), whole seconds: allow one. */
	long long lifetime_ms = ((long long)signature_ttl_s - 1) * 1000;

	if (r->outcome != OUTCOME_BAD_REQUEST || r->http_status != 400 || r->took_ms < lifetime_ms)
		return;
	r->outcome = OUTCOME_SLOW_DOWN;
	snprintf(r->detail, sizeof(r->detail),
		 "signature expired while the request waited %lld ms (signature_ttl %d s): "
		 "MediaWiki is overloaded, not a wrong secret",
		 r->took_ms, signature_ttl_s);
}
