/* log.c - see log.h. Lines longer than LOG_LINE_MAX are cut and end in "...", still
 * one well-formed line (the JSON object is closed). */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_format log_fmt = LOG_FORMAT_TEXT;
static _Atomic enum log_level log_min = LOG_INFO;
static int log_fd = 1;

/* Room kept free at the end of the buffer for a cut mark and the closing "\"}\n". */
#define LOG_RESERVE 16

#define LEVEL_TEXT(id, name, severity) name,
#define LEVEL_JSON(id, name, severity) severity,
static const char *const level_text[] = { LOG_LEVELS(LEVEL_TEXT) };
static const char *const level_json[] = { LOG_LEVELS(LEVEL_JSON) };
#undef LEVEL_TEXT
#undef LEVEL_JSON
_Static_assert(sizeof(level_text) / sizeof(level_text[0]) == LOG_LEVEL_COUNT, "level names");

void log_setup(enum log_format format, enum log_level min_level, int fd)
{
	log_fmt = format;
	log_min = min_level;
	log_fd = fd;
}

static size_t room(const struct log_line *l)
{
	return sizeof(l->buf) - LOG_RESERVE - l->len;
}

/* All or nothing, so an escape sequence is never split; a refusal marks the line cut. */
static bool put(struct log_line *l, const char *s, size_t n)
{
	if (l->cut || n > room(l)) {
		l->cut = true;
		return false;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += (unsigned)n;
	return true;
}

static bool puts_raw(struct log_line *l, const char *s)
{
	return put(l, s, strlen(s));
}

static bool needs_quotes(const char *v)
{
	if (*v == '\0')
		return true;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			return true;
	}
	return false;
}

/* Length of the well-formed UTF-8 sequence at p (2..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;
	unsigned cp;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* No overlong forms, no surrogates, nothing above U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Escapes for both formats: JSON string rules, which text mode reuses inside quotes.
 * Bytes that are not UTF-8 (a Latin-1 error page, a cut excerpt) become U+FFFD, so a
 * JSON line always parses; a character is never split when a line is cut. */
static void put_escaped(struct log_line *l, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	char esc[8];

	while (*p && !l->cut) {
		unsigned char c = *p;
		size_t n = 1;
		switch (c) {
		case '"':
			puts_raw(l, "\\\"");
			break;
		case '\\':
			puts_raw(l, "\\\\");
			break;
		case '\n':
			puts_raw(l, "\\n");
			break;
		case '\r':
			puts_raw(l, "\\r");
			break;
		case '\t':
			puts_raw(l, "\\t");
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				puts_raw(l, esc);
			} else if (c < 0x80) {
				put(l, (const char *)p, 1);
			} else if ((n = utf8_len(p)) > 0) {
				put(l, (const char *)p, n);
			} else {
				n = 1;
				puts_raw(l, "\\ufffd");
			}
		}
		p += n;
	}
}

/* A field is only started when its key and a short value fit; otherwise it is dropped. */
static bool put_key(struct log_line *l, const char *key)
{
	if (l->cut || strlen(key) + 24 > room(l)) {
		l->cut = true;
		return false;
	}
	if (l->json) {
		puts_raw(l, ",\"");
		put_escaped(l, key);
		puts_raw(l, "\":");
	} else {
		puts_raw(l, " ");
		puts_raw(l, key);
		puts_raw(l, "=");
	}
	return true;
}

/* A value cut short ends in "..." and is still closed, so the line stays well-formed. */
static void close_value(struct log_line *l, bool quoted)
{
	if (l->cut) {
		memcpy(l->buf + l->len, "...", 3);
		l->len += 3;
	}
	if (quoted) {
		l->buf[l->len++] = '"';
	}
}

void log_str(struct log_line *l, const char *key, const char *value)
{
	if (l->skip)
		return;
	bool quoted;

	if (value == NULL)
		value = "";
	if (!put_key(l, key))
		return;
	quoted = l->json || needs_quotes(value);
	if (quoted)
		puts_raw(l, "\"");
	put_escaped(l, value);
	close_value(l, quoted);
}

void log_int(struct log_line *l, const char *key, long long value)
{
	char num[32];

	if (l->skip)
		return;
	snprintf(num, sizeof(num), "%lld", value);
	if (put_key(l, key))
		puts_raw(l, num);
}

void log_begin(struct log_line *l, enum log_level level, const char *msg)
{
	struct timespec ts;
	struct tm tm;
	char when[64];
	int saved = errno;

	l->len = 0;
	l->json = log_fmt == LOG_FORMAT_JSON;
	l->skip = level < log_min;
	l->cut = false;
	if (l->skip)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000000) % 1000);
	if (l->json) {
		puts_raw(l, "{\"ts\":\"");
		puts_raw(l, when);
		puts_raw(l, "\",\"severity\":\"");
		puts_raw(l, level_json[level]);
		puts_raw(l, "\"");
		log_str(l, "msg", msg);
	} else {
		puts_raw(l, "ts=");
		puts_raw(l, when);
		puts_raw(l, " level=");
		puts_raw(l, level_text[level]);
		log_str(l, "msg", msg);
	}
	errno = saved;
}

void log_end(struct log_line *l)
{
	int saved = errno;
	size_t off = 0;

	if (l->skip)
		return;
	if (l->json)
		l->buf[l->len++] = '}';
	l->buf[l->len++] = '\n';
	while (off < l->len) {
		ssize_t n = write(log_fd, l->buf + off, l->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	errno = saved;
}

void log_msg(enum log_level level, const char *msg)
{
	struct log_line l;

	log_begin(&l, level, msg);
	log_end(&l);
}

void log_set_level(enum log_level min_level)
{
	atomic_store(&log_min, min_level);
}

bool log_streak_fail(struct log_streak *s, int64_t now, int64_t every_ms)
{
	s->count++;
	if (s->count > 1 && now - s->last_logged_ms < every_ms)
		return false;
	s->last_logged_ms = now;
	return true;
}

int log_streak_ok(struct log_streak *s)
{
	int n = s->count;

	s->count = 0;
	return n;
}
