/* util.h - small leaf helpers: strict number parsing, identifier checks, a growable
 * byte buffer and clocks. Only libc; safe to call from any thread. */
#ifndef JD_UTIL_H
#define JD_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Parses a whole decimal integer in [min, max]: no leading blanks, no trailing junk,
 * no overflow. Returns 0, or -EINVAL (not a number) / -ERANGE (out of range). */
int util_parse_int(const char *s, long long min, long long max, long long *out);

/* A duration of s seconds for people: "42s", "12m05s", "3h07m"; "-" when s < 0. */
void util_duration_text(long long s, char *out, size_t len);

/* A duration: whole seconds, or a number followed by s, m, h or d ("90s", "30m",
 * "2h", "1d"); at least 1 s, at most max_s. 0, -EINVAL (not a duration) or -ERANGE. */
int util_parse_duration(const char *s, long long max_s, long long *out);

/* A MySQL database name we are willing to splice into SQL between backquotes:
 * 1..64 of [A-Za-z0-9_$]. Prefixes: 0..50 of [A-Za-z0-9_]. */
bool util_is_db_name(const char *s);
bool util_is_table_prefix(const char *s);
/* The longest domain (with its :port) the coordination tables hold (VARCHAR(255)). */
#define UTIL_DOMAIN_MAX 255
/* A host name usable as an HTTP Host header: 1..253 of [A-Za-z0-9.-], optional :port,
 * UTIL_DOMAIN_MAX bytes in all. */
bool util_is_domain(const char *s);
/* A database server as discovery names it: "host" or "host:port", a dotted IPv4
 * address or a host name (util_is_domain's shape; no IPv6). Writes the host into
 * host[hostlen] (254 bytes hold any) and the port (3306 when absent). 0 or -EINVAL. */
int util_parse_db_server(const char *s, char *host, size_t hostlen, int *port);
/* A database server's one name, "host:port": the host lowercased and without a final
 * dot, the port in decimal, 3306 written out; so one server named two ways ("DB2",
 * "db2.:3306", "db2:03306") is one server (one connection, one budget, one entry of an
 * allow-list). out needs UTIL_DB_SERVER_MAX bytes. 0, or -EINVAL as util_parse_db_server. */
#define UTIL_DB_SERVER_MAX 260
int util_canon_db_server(const char *s, char *out, size_t outlen);
/* The host part of an http:// URL to the local MediaWiki: a dotted IPv4 address, an
 * IPv6 address in brackets ("[::1]", as URLs write it), or a host name of
 * [A-Za-z0-9.-] (1..253). A bare IPv6 address would make a malformed URL. */
bool util_is_url_host(const char *s);
/* The longest lease holder name jd_lease.holder holds (VARCHAR(255)). */
#define UTIL_HOLDER_MAX 255
/* A lease holder name: 1..UTIL_HOLDER_MAX of [A-Za-z0-9._:-]. ASCII only: the
 * coordination tables' charset refuses other bytes, and every lease statement would
 * fail (seen on unsigned-char platforms, where a high byte passed a `<= ' '` test). */
bool util_is_holder(const char *s);
/* Writes name into out (outlen bytes) as a valid holder prefix: bytes outside
 * [A-Za-z0-9._-] become '-'; a name longer than fits is cut and ends in '-' and 8 hex
 * digits of a hash of the whole name, so two long pod names stay apart. */
void util_holder_prefix(const char *name, char *out, size_t outlen);

/* Parses a listen address "HOST:PORT": an IPv4 address, or empty or "*" for any.
 * Returns 0 or -EINVAL. */
int util_parse_listen(const char *listen, unsigned char addr[4], int *port);

/* Growable, always NUL-terminated byte buffer. On allocation failure it sets
 * `failed` and stops growing, so callers check once at the end. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};
void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clocks: monotonic for intervals and deadlines, wall clock for logs and job ages. */
int64_t util_mono_ms(void);
int64_t util_wall_ms(void);

/* Uniform random integer in [lo, hi] (thread-safe, not for cryptography). */
long long util_rand_range(long long lo, long long hi);

/* The one exponential backoff: base doubled `steps` times, never above cap (and cap
 * when base is above it). steps <= 0 gives base. The callers add their own jitter or
 * floor. */
int64_t util_backoff_ms(int64_t base, int64_t cap, int steps);

/* Thread boilerplate. Condition variables of this program wait on monotonic
 * deadlines: util_cond_init makes one on CLOCK_MONOTONIC, util_timespec turns a
 * util_mono_ms() time into what pthread_cond_timedwait and clock_nanosleep take. */
int util_cond_init(pthread_cond_t *cond);
struct timespec util_timespec(int64_t ms);

#endif
