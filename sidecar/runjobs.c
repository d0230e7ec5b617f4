/* runjobs.c - see runjobs.h.
 *
 * The request: POST http://<mediawiki host:port><path>?jobdrainer_holder=<holder>&
 * jobdrainer_lease=<token>
 * with Host: <wiki domain> and the form fields MediaWiki signs (title, tasks, maxjobs,
 * maxtime, async=0, stats=1, sigexpiry, and type for a typed batch) plus signature. Holder and lease token ride in
 * the query string: MediaWiki ignores fields it does not know (they are not signed),
 * and the web server's access log then shows which sidecar ran what, under which
 * lease. The User-Agent names the holder too.
 *
 * Limits: connect timeout; total timeout = maxtime + timeout_allowance (maxtime is only
 * checked between jobs, so one slow job overruns it); the body is capped; redirects are
 * not followed. */
#include "runjobs.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobtype.h"
#include "sign.h"
#include "version.h"

struct runjobs {
	const struct config *cfg;
	const atomic_bool *abort_now;
	CURL *curl;
	struct buf body; /* response body */
	size_t body_cap;
	bool over_cap;
	struct buf form; /* request body */
	struct buf url;  /* up to the holder; the lease token is appended per batch */
	size_t url_base_len;
	int maxjobs; /* runjobs_set_maxjobs; 0: [mediawiki] maxjobs */
	char curl_error[CURL_ERROR_SIZE];
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct runjobs *rj = user;
	size_t n = size * nmemb;

	if (rj->body.len + n > rj->body_cap) {
		rj->over_cap = true;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	buf_add(&rj->body, data, n);
	return rj->body.failed ? 0 : n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct runjobs *rj = user;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(rj->abort_now) ? 1 : 0;
}

struct runjobs *runjobs_new(const struct config *cfg, const atomic_bool *abort_now)
{
	struct runjobs *rj = calloc(1, sizeof(*rj));
	char *holder_q;

	if (rj == NULL)
		return NULL;
	rj->cfg = cfg;
	rj->abort_now = abort_now;
	rj->body_cap = (size_t)cfg->max_body_kib * 1024;
	buf_init(&rj->body);
	buf_init(&rj->form);
	buf_init(&rj->url);
	rj->curl = curl_easy_init();
	if (rj->curl == NULL) {
		runjobs_free(rj);
		return NULL;
	}
	holder_q = curl_easy_escape(rj->curl, cfg->holder, 0);
	buf_addf(&rj->url, "http://%s:%d%s?jobdrainer_holder=%s", cfg->mw_host, cfg->mw_port,
		 cfg->mw_path, holder_q ? holder_q : "");
	curl_free(holder_q);
	if (rj->url.failed) {
		runjobs_free(rj);
		return NULL;
	}
	rj->url_base_len = rj->url.len;
	return rj;
}

void runjobs_set_config(struct runjobs *rj, const struct config *cfg)
{
	rj->cfg = cfg;
	rj->body_cap = (size_t)cfg->max_body_kib * 1024;
}

void runjobs_free(struct runjobs *rj)
{
	if (rj == NULL)
		return;
	if (rj->curl != NULL)
		curl_easy_cleanup(rj->curl);
	buf_release(&rj->body);
	buf_release(&rj->form);
	buf_release(&rj->url);
	free(rj);
}

void runjobs_set_maxjobs(struct runjobs *rj, int maxjobs)
{
	rj->maxjobs = maxjobs;
}

/* Builds the signed form into rj->form (with `type` unless it is ""). Returns 0 or
 * -EIO. */
/* type is a job type's list form (jobtype.h): MediaWiki gets the job_cmd bytes it
 * stands for. -EINVAL for a form that names no job_cmd a form field can carry. */
static int build_form(struct runjobs *rj, const struct wiki *w, const char *type)
{
	char maxjobs[16], maxtime[16], expiry[24], sig[SIGN_HEX_LEN + 1], cmd[JOBTYPE_MAX + 1];
	struct form_field fields[] = {
		{ "title", "Special:RunJobs" }, { "tasks", "jobs" }, { "maxjobs", maxjobs },
		{ "maxtime", maxtime },         { "async", "0" },    { "stats", "1" },
		{ "sigexpiry", expiry },        { "type", cmd },
	};
	size_t n = sizeof(fields) / sizeof(fields[0]) - (type[0] == '\0' ? 1 : 0), len;

	if (jobtype_decode(type, cmd, sizeof(cmd), &len) != 0 || strlen(cmd) != len)
		return -EINVAL;

	snprintf(maxjobs, sizeof(maxjobs), "%d", rj->maxjobs > 0 ? rj->maxjobs : rj->cfg->maxjobs);
	snprintf(maxtime, sizeof(maxtime), "%d", rj->cfg->maxtime);
	snprintf(expiry, sizeof(expiry), "%lld", (long long)time(NULL) + rj->cfg->signature_ttl);
	buf_reset(&rj->form);
	sign_canonical(&rj->form, fields, n);
	if (rj->form.failed || sign_hmac_sha1_hex(w->secret, rj->form.data, rj->form.len, sig) != 0)
		return -EIO;
	buf_addf(&rj->form, "&signature=%s", sig);
	return rj->form.failed ? -EIO : 0;
}

static void classify_transport(struct runjobs *rj, CURLcode rc, struct batch_result *r)
{
	enum batch_outcome o;

	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		o = OUTCOME_TIMEOUT;
		break;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		o = OUTCOME_REFUSED;
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		o = OUTCOME_ABORTED;
		break;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		/* The server dropped the connection mid-answer: a PHP worker died. */
		o = OUTCOME_SERVER_ERROR;
		break;
	default:
		o = OUTCOME_BAD_RESPONSE;
	}
	r->outcome = o;
	snprintf(r->detail, sizeof(r->detail), "%.190s",
		 rj->curl_error[0] ? rj->curl_error : curl_easy_strerror(rc));
}

void runjobs_batch(struct runjobs *rj, const struct wiki *w, unsigned long long lease,
		   struct batch_result *r)
{
	runjobs_batch_typed(rj, w, lease, NULL, r);
}

void runjobs_batch_typed(struct runjobs *rj, const struct wiki *w, unsigned long long lease,
			 const char *type, struct batch_result *r)
{
	const struct config *cfg = rj->cfg;
	struct curl_slist *headers = NULL;
	char host_header[300], agent[300];
	int64_t start = util_mono_ms();
	long status = 0;
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	r->elapsed_ms = -1;
	snprintf(r->type, sizeof(r->type), "%s", type ? type : "");
	if (build_form(rj, w, r->type) != 0) {
		r->outcome = OUTCOME_BAD_RESPONSE;
		snprintf(r->detail, sizeof(r->detail),
			 "could not sign the request (out of memory, or a job type with a NUL"
			 " byte?)");
		return;
	}
	snprintf(host_header, sizeof(host_header), "Host: %s", w->domain);
	snprintf(agent, sizeof(agent), "jobdrainer/%s (%s)", JD_VERSION, cfg->holder);
	headers = curl_slist_append(headers, host_header);
	/* Keep curl from sending "Expect: 100-continue" and waiting on it. */
	headers = headers ? curl_slist_append(headers, "Expect:") : NULL;
	if (headers == NULL) {
		r->outcome = OUTCOME_BAD_RESPONSE;
		snprintf(r->detail, sizeof(r->detail), "out of memory");
		return;
	}
	rj->url.len = rj->url_base_len;
	buf_addf(&rj->url, "&jobdrainer_lease=%llu", lease);
	buf_reset(&rj->body);
	rj->over_cap = false;
	rj->curl_error[0] = '\0';

	curl_easy_reset(rj->curl);
	curl_easy_setopt(rj->curl, CURLOPT_URL, rj->url.data);
	curl_easy_setopt(rj->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(rj->curl, CURLOPT_USERAGENT, agent);
	curl_easy_setopt(rj->curl, CURLOPT_POSTFIELDS, rj->form.data);
	curl_easy_setopt(rj->curl, CURLOPT_POSTFIELDSIZE, (long)rj->form.len);
	curl_easy_setopt(rj->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(rj->curl, CURLOPT_WRITEDATA, rj);
	curl_easy_setopt(rj->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(rj->curl, CURLOPT_XFERINFODATA, rj);
	curl_easy_setopt(rj->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(rj->curl, CURLOPT_ERRORBUFFER, rj->curl_error);
	curl_easy_setopt(rj->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(rj->curl, CURLOPT_FOLLOWLOCATION, 0L);
	/* The request is signed and goes to this pod's own MediaWiki: never through a
	 * proxy that http_proxy / ALL_PROXY in the environment may name. */
	curl_easy_setopt(rj->curl, CURLOPT_PROXY, "");
	curl_easy_setopt(rj->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(rj->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(rj->curl, CURLOPT_CONNECTTIMEOUT, (long)cfg->http_connect_timeout);
	curl_easy_setopt(rj->curl, CURLOPT_TIMEOUT, (long)(cfg->maxtime + cfg->http_allowance));
	curl_easy_setopt(rj->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rj->body_cap);

	rc = curl_easy_perform(rj->curl);
	r->took_ms = util_mono_ms() - start;
	curl_easy_getinfo(rj->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);

	if (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED) {
		response_classify(status, NULL, 0, true, r);
		return;
	}
	if (rc != CURLE_OK) {
		r->http_status = status;
		classify_transport(rj, rc, r);
		return;
	}
	response_classify(status, rj->body.data ? rj->body.data : "", rj->body.len, false, r);
	response_check_stale_signature(r, cfg->signature_ttl);
}
