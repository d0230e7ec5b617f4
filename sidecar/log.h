/* log.h - one thread-safe logger: one line per event on stdout, one write(2) per line.
 *
 * Text format (for kubectl logs):  ts=... level=info msg="batch done" wiki=a.example ok=3
 * JSON format (for log collectors): {"ts":"...","severity":"INFO","msg":"batch done",...}
 *
 * A line is built with log_begin, any number of log_str/log_int, then log_end. Fixed
 * keys come first. Values are escaped (quotes, backslashes, control characters), so a
 * line can never be split by what a database or a web server sent us. Never pass a
 * secret. errno is preserved across every call. */
#ifndef JD_LOG_H
#define JD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Set once at start-up, before threads. Defaults: text, info, fd 1. */
void log_setup(enum log_format format, enum log_level min_level, int fd);

#define LOG_LINE_MAX 4096

struct log_line {
	char buf[LOG_LINE_MAX];
	unsigned len;
	bool json;
	bool skip; /* below the minimum level: the calls do nothing */
	bool cut;  /* out of room: later fields are dropped */
};

void log_begin(struct log_line *l, enum log_level level, const char *msg);
void log_str(struct log_line *l, const char *key, const char *value);
void log_int(struct log_line *l, const char *key, long long value);
void log_end(struct log_line *l);

/* Shorthand for a line with only a message. */
void log_msg(enum log_level level, const char *msg);

/* A run of failures of one kind (a database that does not answer): logged when it
 * starts, then at most once per `every_ms` while it lasts. Not thread-safe: the owner
 * locks if threads share one. Zero-initialised = no failure. */
struct log_streak {
	int count;              /* failures in a row */
	int64_t last_logged_ms; /* monotonic */
};
/* Counts a failure at now; true when this one is to be logged. */
bool log_streak_fail(struct log_streak *s, int64_t now, int64_t every_ms);
/* Ends the run; returns how many failures it had (0: there was none, nothing to say). */
int log_streak_ok(struct log_streak *s);

#endif
