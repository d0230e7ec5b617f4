/* util.h - small leaf helpers: strict number parsing, identifier checks, a growable
 * byte buffer and clocks. Only libc; safe to call from any thread. */
#ifndef JD_UTIL_H
#define JD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal integer in [min, max]: no leading blanks, no trailing junk,
 * no overflow. Returns 0, or -EINVAL (not a number) / -ERANGE (out of range). */
int util_parse_int(const char *s, long long min, long long max, long long *out);

/* A MySQL database name we are willing to splice into SQL between backquotes:
 * 1..64 of [A-Za-z0-9_$]. Prefixes: 0..50 of [A-Za-z0-9_]. */
bool util_is_db_name(const char *s);
bool util_is_table_prefix(const char *s);
/* A host name usable as an HTTP Host header: 1..253 of [A-Za-z0-9.-], optional :port. */
bool util_is_domain(const char *s);

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

#endif
