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

/* X(id, name, JSON severity): the levels in order, with their name in the text format
 * and in the config ([sidecar] log_level), and the severity JSON lines carry (what
 * Google Cloud Logging and most collectors understand). */
#define LOG_LEVELS(X)                                                                              \
	X(LOG_DEBUG, "debug", "DEBUG")                                                             \
	X(LOG_INFO, "info", "INFO")                                                                \
	X(LOG_WARN, "warn", "WARNING")                                                             \
	X(LOG_ERROR, "error", "ERROR")
/* X(id, name): the formats, with their name in the config ([sidecar] log_format). */
#define LOG_FORMATS(X) X(LOG_FORMAT_TEXT, "text") X(LOG_FORMAT_JSON, "json")

#define LOG_LEVEL_ID(id, name, severity) id,
#define LOG_FORMAT_ID(id, name) id,
enum log_level { LOG_LEVELS(LOG_LEVEL_ID) LOG_LEVEL_COUNT };
enum log_format { LOG_FORMATS(LOG_FORMAT_ID) LOG_FORMAT_COUNT };
#undef LOG_LEVEL_ID
#undef LOG_FORMAT_ID

/* Set once at start-up, before threads. Defaults: text, info, fd 1. */
void log_setup(enum log_format format, enum log_level min_level, int fd);
/* Changes the level while threads log (a reload). */
void log_set_level(enum log_level min_level);

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
