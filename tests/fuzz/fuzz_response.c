/* fuzz_response.c - libFuzzer target for the Special:RunJobs response classifier.
 *
 * Input layout: the first 2 bytes choose the HTTP status, the rest is the body.
 *   byte 0 < NSTATUSES: statuses[byte 0] (byte 1 ignored); corpus files start "\0\0"
 *                       for a 200, "\x08\0" for a 423 and so on;
 *   otherwise:          raw, ((byte 0 - NSTATUSES) << 8 | byte 1), so every status
 *                       from 0 to 59k, boundaries such as 299/300/599/600 included.
 * The body is copied into a buffer of exactly its size (no NUL after it), so ASan
 * flags any read past len. Every input is classified twice, over_cap false and true;
 * the result must be internally consistent. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 200 takes four slots so that most mutations of byte 0 still reach the JSON parser. */
static const long statuses[] = {
	200, 200, 200, 200, /* 0x00-0x03 */
	400, 401, 403, 404, /* 0x04-0x07 */
	423, 429,           /* 0x08-0x09 */
	500, 502, 503,      /* 0x0a-0x0c */
	302, 301,           /* 0x0d-0x0e */
	204, 0, 199,        /* 0x0f-0x11 */
};
#define NSTATUSES (sizeof(statuses) / sizeof(statuses[0]))

static long pick_status(const uint8_t *data)
{
	if (data[0] < NSTATUSES)
		return statuses[data[0]];
	return (long)((data[0] - NSTATUSES) << 8 | data[1]);
}

static void check(const struct batch_result *r, long status)
{
	if ((unsigned)r->outcome >= OUTCOME_COUNT || r->http_status != status)
		abort();
	if (memchr(r->reached, '\0', sizeof(r->reached)) == NULL ||
	    memchr(r->detail, '\0', sizeof(r->detail)) == NULL)
		abort();
	if (r->jobs_ok < 0 || r->jobs_failed < 0 || r->backoff_types < 0)
		abort();
	/* Only a 200 with a parsed body can say it drained or wants more. */
	if ((r->outcome == OUTCOME_DRAINED || r->outcome == OUTCOME_MORE) &&
	    (status != 200 || r->reached[0] == '\0'))
		abort();
	if (outcome_name(r->outcome) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct batch_result r;
	long status;
	size_t len;
	char *body;

	if (size < 2)
		return 0;
	status = pick_status(data);
	len = size - 2;
	body = malloc(len ? len : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 2, len);

	memset(&r, 0xa5, sizeof(r));
	response_classify(status, body, len, false, &r);
	check(&r, status);

	memset(&r, 0xa5, sizeof(r));
	response_classify(status, body, len, true, &r);
	check(&r, status);
	if (r.outcome != OUTCOME_BAD_RESPONSE)
		abort();

	free(body);
	return 0;
}
