/* util.c - see util.h. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int util_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || !(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static bool all_of(const char *s, size_t min, size_t max, const char *extra)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');
		if (!alnum && strchr(extra, c) == NULL)
			return false;
		if (n >= max)
			return false;
	}
	return n >= min;
}

bool util_is_db_name(const char *s)
{
	return s != NULL && all_of(s, 1, 64, "_$");
}

bool util_is_table_prefix(const char *s)
{
	return s != NULL && all_of(s, 0, 50, "_");
}

bool util_is_url_host(const char *s)
{
	unsigned char addr[16];
	char inner[64];
	size_t len;

	if (s == NULL)
		return false;
	len = strlen(s);
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		if (len - 2 >= sizeof(inner))
			return false;
		memcpy(inner, s + 1, len - 2);
		inner[len - 2] = '\0';
		return inet_pton(AF_INET6, inner, addr) == 1;
	}
	if (inet_pton(AF_INET, s, addr) == 1)
		return true;
	/* A name; all digits and dots would be a malformed IPv4 address, not a name. */
	if (strspn(s, "0123456789.") == len)
		return false;
	return s[0] != '-' && s[0] != '.' && all_of(s, 1, 253, ".-");
}

bool util_is_holder(const char *s)
{
	return s != NULL && all_of(s, 1, UTIL_HOLDER_MAX, "._:-");
}

void util_holder_prefix(const char *name, char *out, size_t outlen)
{
	size_t len = strlen(name), keep = len;
	uint32_t hash = 2166136261u; /* FNV-1a */

	if (outlen == 0)
		return;
	if (len + 1 > outlen) {
		for (size_t i = 0; i < len; i++)
			hash = (hash ^ (unsigned char)name[i]) * 16777619u;
		keep = outlen > 10 ? outlen - 10 : 0;
	}
	for (size_t i = 0; i < keep; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		out[i] = ok ? c : '-';
	}
	if (keep < len)
		snprintf(out + keep, outlen - keep, "-%08x", (unsigned)hash);
	else
		out[keep] = '\0';
}

bool util_is_domain(const char *s)
{
	const char *colon;
	long long port;
	char host[254];
	size_t hostlen;

	if (s == NULL || strlen(s) > UTIL_DOMAIN_MAX)
		return false;
	colon = strchr(s, ':');
	hostlen = colon ? (size_t)(colon - s) : strlen(s);
	if (hostlen == 0 || hostlen >= sizeof(host))
		return false;
	memcpy(host, s, hostlen);
	host[hostlen] = '\0';
	if (!all_of(host, 1, 253, ".-") || host[0] == '.' || host[0] == '-')
		return false;
	if (colon != NULL &&
	    (colon[1] < '0' || colon[1] > '9' || util_parse_int(colon + 1, 1, 65535, &port) != 0))
		return false;
	return true;
}

int util_parse_db_server(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon;
	size_t len;
	long long p = 3306;

	if (!util_is_domain(s))
		return -EINVAL;
	colon = strchr(s, ':');
	len = colon ? (size_t)(colon - s) : strlen(s);
	if (len >= hostlen || (colon != NULL && util_parse_int(colon + 1, 1, 65535, &p) != 0))
		return -EINVAL;
	memcpy(host, s, len);
	host[len] = '\0';
	*port = (int)p;
	return 0;
}

int util_canon_db_server(const char *s, char *out, size_t outlen)
{
	char host[254];
	size_t len;
	int port;

	if (util_parse_db_server(s, host, sizeof(host), &port) != 0)
		return -EINVAL;
	len = strlen(host);
	if (len > 1 && host[len - 1] == '.')
		host[--len] = '\0';
	for (char *p = host; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if ((size_t)snprintf(out, outlen, "%s:%d", host, port) >= outlen)
		return -EINVAL;
	return 0;
}

void buf_init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void buf_release(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static bool buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (b->failed)
		return false;
	need = b->len + more + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int64_t util_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

long long util_rand_range(long long lo, long long hi)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static unsigned short seed[3];
	static bool seeded;
	long long r;

	if (hi <= lo)
		return lo;
	pthread_mutex_lock(&lock);
	if (!seeded) {
		int64_t t = util_wall_ms() ^ ((int64_t)getpid() << 16);
		seed[0] = (unsigned short)t;
		seed[1] = (unsigned short)(t >> 16);
		seed[2] = (unsigned short)(t >> 32);
		seeded = true;
	}
	r = (long long)(((unsigned long long)nrand48(seed) << 31 |
			 (unsigned long long)nrand48(seed)) %
			(unsigned long long)(hi - lo + 1));
	pthread_mutex_unlock(&lock);
	return lo + r;
}

int64_t util_backoff_ms(int64_t base, int64_t cap, int steps)
{
	int64_t d = base;

	for (int i = 0; i < steps && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}

int util_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int rc;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	rc = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -rc;
}

struct timespec util_timespec(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	return ts;
}

int util_parse_listen(const char *listen, unsigned char addr[4], int *port)
{
	const char *colon = strrchr(listen, ':');
	char host[64];
	long long p;
	size_t n;

	if (colon == NULL || util_parse_int(colon + 1, 0, 65535, &p) != 0)
		return -EINVAL;
	n = (size_t)(colon - listen);
	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (n == 0 || strcmp(host, "*") == 0)
		snprintf(host, sizeof(host), "0.0.0.0");
	if (inet_pton(AF_INET, host, addr) != 1)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

void util_duration_text(long long s, char *out, size_t len)
{
	if (s < 0)
		snprintf(out, len, "-");
	else if (s < 120)
		snprintf(out, len, "%llds", s);
	else if (s < 7200)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
}

int util_parse_duration(const char *s, long long max_s, long long *out)
{
	static const struct {
		char unit;
		long long seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	char digits[24];
	size_t len = strlen(s);
	long long mult = 1, v;
	int rc;

	if (len == 0 || len >= sizeof(digits))
		return -EINVAL;
	memcpy(digits, s, len + 1);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (digits[len - 1] == units[i].unit) {
			mult = units[i].seconds;
			digits[--len] = '\0';
			break;
		}
	}
	rc = util_parse_int(digits, 1, max_s / mult, &v);
	if (rc != 0)
		return rc;
	*out = v * mult;
	return 0;
}
