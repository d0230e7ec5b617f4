/* config.c - the key table and the INI loader (inih, as packaged by Debian).
 *
 * Guarantees: every key has one entry in config_keys[]; unknown sections and keys are
 * errors; every error names file, line, section and key; defaults go through the same
 * parser as the file, so a bad default cannot slip in; secrets (passwords) are only
 * ever printed masked.
 *
 * Why a second look at each line beside inih: Debian 12's libinih (r55) is built
 * without INI_HANDLER_LINENO (a build-time switch of the shared library: the handler
 * signature cannot change without it), so its handler never learns the line; and
 * inih says nothing about a section header with no keys under it, NUL or control
 * bytes (it cuts the line there) or a line over its 200-byte buffer (it splits it into
 * two "lines"), and returns only the first syntax error's line. So the file is fed
 * through our own reader, which counts lines, remembers the current section and key,
 * spots indented continuation lines and refuses those bytes and lines; the pairs
 * still come from inih alone. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobtype.h"
#include "log.h"

enum key_type {
	KEY_INT,    /* integer in [min, max] */
	KEY_STRING, /* one line */
	KEY_TEXT,   /* may continue on indented lines (joined with '\n') */
	KEY_ENUM,   /* one of choices[], stored as its index */
	KEY_SECRET, /* a string never printed */
};

struct config_key {
	const char *section;
	const char *name;
	enum key_type type;
	size_t offset;
	const char *def;
	long long min, max;
	const char *const *choices;
};

/* The choices of an enum key are its index: generated from log.h's lists, in order. */
#define LEVEL_NAME(id, name, severity) name,
#define FORMAT_NAME(id, name) name,
static const char *const log_formats[] = { LOG_FORMATS(FORMAT_NAME) NULL };
static const char *const log_levels[] = { LOG_LEVELS(LEVEL_NAME) NULL };
#undef LEVEL_NAME
#undef FORMAT_NAME
_Static_assert(sizeof(log_formats) / sizeof(log_formats[0]) == LOG_FORMAT_COUNT + 1, "formats");
_Static_assert(sizeof(log_levels) / sizeof(log_levels[0]) == LOG_LEVEL_COUNT + 1, "levels");
/* [binlog] enabled: auto (index 2) is resolved at load (resolve_binlog_enabled). */
static const char *const binlog_switch[] = { "false", "true", "auto", NULL };
/* enum db_tls, in order. */
static const char *const tls_modes[] = { "off", "on", "verify", NULL };

/* The wbaas (Wikibase Cloud) schema. Columns: domain, database, table prefix, secret.
 * LEFT JOIN so that a wiki without a secret shows up as a bad row, not silently. */
#define WBAAS_DISCOVERY_QUERY                                                                      \
	"SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value\n"                                \
	"FROM wikis w\n"                                                                           \
	"JOIN wiki_dbs d ON d.wiki_id = w.id\n"                                                    \
	"LEFT JOIN wiki_settings s ON s.wiki_id = w.id AND s.name = 'wgSecretKey'\n"               \
	"WHERE w.deleted_at IS NULL\n"                                                             \
	"AND (@jobdrainer_version = '' OR d.version = @jobdrainer_version COLLATE utf8mb4_bin)\n"  \
	"ORDER BY w.id"

#define O(field) offsetof(struct config, field)
/* Fenced: clang-format would indent the entries after the first one. */
/* clang-format off */
#define DB_KEYS(sec, ep, host_def, user_def, db_def)                                              \
	{ sec, "host", KEY_STRING, O(ep.host), host_def, 0, 0, NULL },                            \
	{ sec, "port", KEY_INT, O(ep.port), "3306", 1, 65535, NULL },                             \
	{ sec, "socket", KEY_STRING, O(ep.socket), "", 0, 0, NULL },                              \
	{ sec, "user", KEY_STRING, O(ep.user), user_def, 0, 0, NULL },                            \
	{ sec, "password", KEY_SECRET, O(ep.password), "", 0, 0, NULL },                          \
	{ sec, "password_file", KEY_STRING, O(ep.password_file), "", 0, 0, NULL },                \
	{ sec, "password_env", KEY_STRING, O(ep.password_env), "", 0, 0, NULL },                  \
	{ sec, "database", KEY_STRING, O(ep.database), db_def, 0, 0, NULL },                      \
	{ sec, "connect_timeout", KEY_INT, O(ep.connect_timeout), "5", 1, 300, NULL },            \
	{ sec, "query_timeout", KEY_INT, O(ep.query_timeout), "30", 1, 3600, NULL },              \
	TLS_KEYS(sec, ep)
/* The TLS keys of an endpoint (db_apply_tls). Off by default: see conf/jobdrainer.ini. */
#define TLS_KEYS(sec, ep)                                                                          \
	{ sec, "tls", KEY_ENUM, O(ep.tls), "off", 0, 0, tls_modes },                              \
	{ sec, "tls_ca", KEY_STRING, O(ep.tls_ca), "", 0, 0, NULL }
/* clang-format on */

static const struct config_key config_keys[] = {
	{ "sidecar", "workers", KEY_INT, O(workers), "2", 1, 64, NULL },
	{ "sidecar", "holder", KEY_STRING, O(holder), "", 0, 0, NULL },
	{ "sidecar", "log_format", KEY_ENUM, O(log_format), "text", 0, 0, log_formats },
	{ "sidecar", "log_level", KEY_ENUM, O(log_level), "info", 0, 0, log_levels },
	{ "sidecar", "shutdown_timeout", KEY_INT, O(shutdown_timeout), "25", 1, 3600, NULL },
	{ "sidecar", "reload_check_interval", KEY_INT, O(reload_check_interval), "10", 0, 3600,
	  NULL },

	{ "http", "listen", KEY_STRING, O(http_listen), "0.0.0.0:9180", 0, 0, NULL },

	{ "mediawiki", "host", KEY_STRING, O(mw_host), "127.0.0.1", 0, 0, NULL },
	{ "mediawiki", "port", KEY_INT, O(mw_port), "80", 1, 65535, NULL },
	{ "mediawiki", "path", KEY_STRING, O(mw_path), "/w/index.php", 0, 0, NULL },
	{ "mediawiki", "maxjobs", KEY_INT, O(maxjobs), "100", 1, 100000, NULL },
	{ "mediawiki", "maxjobs_alone", KEY_INT, O(maxjobs_alone), "1000", 1, 100000, NULL },
	{ "mediawiki", "maxtime", KEY_INT, O(maxtime), "15", 1, 3600, NULL },
	{ "mediawiki", "timeout_allowance", KEY_INT, O(http_allowance), "30", 1, 3600, NULL },
	{ "mediawiki", "connect_timeout", KEY_INT, O(http_connect_timeout), "5", 1, 300, NULL },
	{ "mediawiki", "signature_ttl", KEY_INT, O(signature_ttl), "30", 5, 600, NULL },
	{ "mediawiki", "max_body_kib", KEY_INT, O(max_body_kib), "1024", 4, 65536, NULL },

	DB_KEYS("platform_db", platform, "127.0.0.1", "jobdrainer", "apidb"),

	{ "discovery", "query", KEY_TEXT, O(discovery_query), WBAAS_DISCOVERY_QUERY, 0, 0, NULL },
	{ "discovery", "version", KEY_STRING, O(mw_version), "", 0, 0, NULL },
	{ "discovery", "interval", KEY_INT, O(discovery_interval), "60", 1, 86400, NULL },

	DB_KEYS("scan_db", scan, "", "", ""),

	{ "scan", "interval", KEY_INT, O(scan_interval), "2", 1, 3600, NULL },
	{ "scan", "wikis_per_query", KEY_INT, O(scan_wikis_per_query), "50", 1, 1000, NULL },
	{ "scan", "queries_per_second", KEY_INT, O(scan_queries_per_second), "50", 0, 10000, NULL },
	{ "scan", "full_interval", KEY_INT, O(scan_full_interval), "60", 1, 3600, NULL },
	{ "scan", "db_budget_percent", KEY_INT, O(scan_db_budget_percent), "5", 1, 100, NULL },
	{ "scan", "max_sweep_seconds", KEY_INT, O(scan_max_sweep_seconds), "120", 0, 86400, NULL },
	{ "scan", "allowed_servers", KEY_TEXT, O(scan_allowed_servers), "", 0, 0, NULL },

	{ "drain", "time_slice", KEY_INT, O(time_slice), "60", 1, 86400, NULL },
	{ "drain", "backoff_base", KEY_INT, O(backoff_base), "5", 1, 86400, NULL },
	{ "drain", "backoff_max", KEY_INT, O(backoff_max), "600", 1, 86400, NULL },
	{ "drain", "max_workers_per_wiki", KEY_INT, O(max_workers_per_wiki), "4", 1, 64, NULL },
	{ "drain", "park_interval", KEY_INT, O(park_interval), "600", 10, 86400, NULL },
	{ "drain", "batches_per_second", KEY_INT, O(batches_per_second), "10", 0, 1000, NULL },
	{ "drain", "wiki_min_interval_ms", KEY_INT, O(wiki_min_interval_ms), "0", 0, 3600000, NULL },
	{ "drain", "breaker_failures", KEY_INT, O(breaker_failures), "2", 2, 1000, NULL },
	{ "drain", "probe_interval_max", KEY_INT, O(probe_interval_max), "10", 1, 3600, NULL },
	{ "drain", "priority_types", KEY_TEXT, O(priority_types), "", 0, 0, NULL },
	{ "drain", "skip_types", KEY_TEXT, O(skip_types), "", 0, 0, NULL },

	{ "coordination", "database", KEY_STRING, O(coord_db), "jobdrainer", 0, 0, NULL },
	{ "coordination", "lease_ttl", KEY_INT, O(lease_ttl), "60", 5, 3600, NULL },
	{ "coordination", "renew_interval", KEY_INT, O(renew_interval), "15", 1, 3600, NULL },
	{ "coordination", "safety_margin", KEY_INT, O(safety_margin), "5", 1, 600, NULL },
	{ "coordination", "poll_interval_ms", KEY_INT, O(poll_interval_ms), "1000", 50, 60000,
	  NULL },

	{ "binlog", "enabled", KEY_ENUM, O(binlog_enabled), "auto", 0, 0, binlog_switch },
	{ "binlog", "server_id", KEY_INT, O(binlog_server_id), "0", 0, 2147483647, NULL },
	{ "binlog", "heartbeat", KEY_INT, O(binlog_heartbeat), "2", 1, 60, NULL },
	{ "binlog", "retry_interval", KEY_INT, O(binlog_retry_interval), "30", 1, 3600, NULL },
	{ "binlog", "host", KEY_STRING, O(binlog.host), "", 0, 0, NULL },
	{ "binlog", "port", KEY_INT, O(binlog.port), "3306", 1, 65535, NULL },
	{ "binlog", "socket", KEY_STRING, O(binlog.socket), "", 0, 0, NULL },
	{ "binlog", "user", KEY_STRING, O(binlog.user), "", 0, 0, NULL },
	{ "binlog", "password", KEY_SECRET, O(binlog.password), "", 0, 0, NULL },
	{ "binlog", "password_file", KEY_STRING, O(binlog.password_file), "", 0, 0, NULL },
	{ "binlog", "password_env", KEY_STRING, O(binlog.password_env), "", 0, 0, NULL },
	{ "binlog", "connect_timeout", KEY_INT, O(binlog.connect_timeout), "5", 1, 300, NULL },
	TLS_KEYS("binlog", binlog),
};
#undef O

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* The keys of a [server HOST:PORT] section (struct server_conf). Their section is
 * "server" whatever the header names. */
#define O(field) offsetof(struct server_conf, field)
static const struct config_key server_keys[] = {
	{ "server", "user", KEY_STRING, O(scan.user), "", 0, 0, NULL },
	{ "server", "password", KEY_SECRET, O(scan.password), "", 0, 0, NULL },
	{ "server", "password_file", KEY_STRING, O(scan.password_file), "", 0, 0, NULL },
	{ "server", "password_env", KEY_STRING, O(scan.password_env), "", 0, 0, NULL },
	{ "server", "binlog_user", KEY_STRING, O(binlog_user), "", 0, 0, NULL },
	{ "server", "binlog_password", KEY_SECRET, O(binlog_password), "", 0, 0, NULL },
	{ "server", "binlog_password_file", KEY_STRING, O(binlog_password_file), "", 0, 0, NULL },
	{ "server", "binlog_password_env", KEY_STRING, O(binlog_password_env), "", 0, 0, NULL },
	TLS_KEYS("server", scan),
};
#undef O

#define NSKEYS (sizeof(server_keys) / sizeof(server_keys[0]))

struct loader {
	const char *path;
	FILE *file;
	struct config *cfg;
	struct buf *errors;
	int nerrors;
	int lineno;                            /* line most recently handed to inih */
	bool continuation;                     /* that line is an indented continuation */
	char section[UTIL_DB_SERVER_MAX + 16]; /* current [section], as the reader saw it */
	char key[64];                          /* last key of that section, "" after a header */
	bool section_known;
	int set_line[NKEYS]; /* where each key was set, 0 = default */
	int server;          /* the [server] section being read (cfg->servers), -1: none */
	int server_set_line[CONFIG_SERVERS_MAX][NSKEYS]; /* as set_line, per [server] */
	char *line;                                      /* getline buffer */
	size_t line_cap;
};

static void add_error(struct loader *ld, int line, const char *section, const char *key,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_error(struct loader *ld, int line, const char *section, const char *key,
		      const char *fmt, ...)
{
	va_list ap;
	char why[512];

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	buf_addf(ld->errors, "%s:%d: ", ld->path, line);
	if (section != NULL && key != NULL)
		buf_addf(ld->errors, "[%s] %s: ", section, key);
	else if (section != NULL)
		buf_addf(ld->errors, "[%s]: ", section);
	else if (key != NULL)
		buf_addf(ld->errors, "%s: ", key);
	buf_addf(ld->errors, "%s\n", why);
	ld->nerrors++;
}

int config_max_line(void)
{
	/* inih's buffer holds the line, "\r\n" and the NUL. */
	return ini_max_line - 3;
}

static bool section_exists(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].section, name) == 0)
			return true;
	return false;
}

static const struct config_key *find_key(const char *section, const char *name, size_t *idx)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0) {
			*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

static const struct config_key *find_server_key(const char *name, size_t *idx)
{
	for (size_t i = 0; i < NSKEYS; i++) {
		if (strcmp(server_keys[i].name, name) == 0) {
			*idx = i;
			return &server_keys[i];
		}
	}
	return NULL;
}

/* Passwords leave no copy in freed memory. */
static void secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* A key's field in base: the struct config, or for server_keys a struct server_conf. */
static void *field(void *base, const struct config_key *k)
{
	return (char *)base + k->offset;
}

/* Stores text into a key's field. Returns NULL, or why the value is refused. */
static const char *set_value(void *cfg, const struct config_key *k, const char *value, bool append)
{
	long long v;
	char **sp;

	switch (k->type) {
	case KEY_INT:
		switch (util_parse_int(value, k->min, k->max, &v)) {
		case 0:
			*(int *)field(cfg, k) = (int)v;
			return NULL;
		case -ERANGE:
			return "out of range";
		default:
			return "not a whole number";
		}
	case KEY_ENUM:
		for (int i = 0; k->choices[i] != NULL; i++) {
			if (strcmp(k->choices[i], value) == 0) {
				*(int *)field(cfg, k) = i;
				return NULL;
			}
		}
		return "not one of the allowed values";
	case KEY_STRING:
	case KEY_SECRET:
	case KEY_TEXT:
		sp = (char **)field(cfg, k);
		if (append && *sp != NULL && **sp != '\0') {
			size_t a = strlen(*sp), b = strlen(value);
			char *joined = realloc(*sp, a + b + 2);
			if (joined == NULL)
				return "out of memory";
			joined[a] = '\n';
			memcpy(joined + a + 1, value, b + 1);
			*sp = joined;
		} else {
			char *copy = strdup(value);
			if (copy == NULL)
				return "out of memory";
			if (k->type == KEY_SECRET)
				secret_free(*sp);
			else
				free(*sp);
			*sp = copy;
		}
		return NULL;
	}
	return "unknown key type";
}

static void describe_range(const struct config_key *k, char *out, size_t outlen)
{
	size_t off = 0;

	if (k->type == KEY_INT) {
		snprintf(out, outlen, " (allowed: %lld..%lld)", k->min, k->max);
		return;
	}
	if (k->type != KEY_ENUM) {
		out[0] = '\0';
		return;
	}
	off += (size_t)snprintf(out, outlen, " (allowed: ");
	for (int i = 0; k->choices[i] != NULL && off < outlen; i++)
		off += (size_t)snprintf(out + off, outlen - off, "%s%s", i ? ", " : "",
					k->choices[i]);
	if (off < outlen)
		snprintf(out + off, outlen - off, ")");
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	const struct config_key *k;
	const char *why;
	char allowed[160];
	size_t idx;
	int line = ld->lineno, *set_line;
	void *base;

	if (section[0] == '\0') {
		add_error(ld, line, NULL, name, "outside any [section]");
		return 1;
	}
	if (!ld->section_known)
		return 1; /* the section itself was reported once, by the reader */
	if (ld->server >= 0) {
		/* inih cuts section names at 49 bytes: the reader's is the whole one. */
		section = ld->section;
		base = &ld->cfg->servers[ld->server];
		set_line = ld->server_set_line[ld->server];
		k = find_server_key(name, &idx);
	} else {
		base = ld->cfg;
		set_line = ld->set_line;
		k = find_key(section, name, &idx);
	}
	if (k == NULL) {
		add_error(ld, line, section, name, "unknown key");
		return 1;
	}
	if (ld->continuation) {
		if (k->type != KEY_TEXT) {
			add_error(ld, line, section, name,
				  "continuation line, but this key takes a single line");
			return 1;
		}
	} else if (set_line[idx] != 0) {
		add_error(ld, line, section, name, "set twice (first at line %d)", set_line[idx]);
		return 1;
	}
	why = set_value(base, k, value, ld->continuation);
	if (why != NULL) {
		describe_range(k, allowed, sizeof(allowed));
		add_error(ld, line, section, name, "'%s' is %s%s",
			  k->type == KEY_SECRET ? "(secret)" : value, why, allowed);
		return 1;
	}
	if (!ld->continuation)
		set_line[idx] = line;
	return 1;
}

/* Adds " name" to the shape's sections, once. */
static void note_shape_section(struct config_file_shape *shape, const char *name)
{
	size_t have = strlen(shape->sections), n = strlen(name);
	const char *p = shape->sections;

	while ((p = strstr(p, name)) != NULL) {
		if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\0'))
			return;
		p += n;
	}
	if (have + 1 + n < sizeof(shape->sections))
		snprintf(shape->sections + have, sizeof(shape->sections) - have, " %s", name);
}

static void server_conf_release(struct server_conf *sv);

/* A "[server HOST:PORT]" header (rest: what follows "server"): a new entry of
 * cfg->servers, its keys at their defaults, or an error with the header's line (then
 * its keys are not reported again, as under an unknown section). */
static void open_server_section(struct loader *ld, const char *rest)
{
	struct config *cfg = ld->cfg;
	char canon[UTIL_DB_SERVER_MAX], host[UTIL_DB_SERVER_MAX];
	struct server_conf *grown, *sv;
	bool failed;
	int port;

	ld->section_known = false;
	rest += strspn(rest, " \t");
	if (*rest == '\0') {
		add_error(ld, ld->lineno, ld->section, NULL, "name the server: [server HOST:PORT]");
		return;
	}
	if (util_canon_db_server(rest, canon, sizeof(canon)) != 0 ||
	    util_parse_db_server(canon, host, sizeof(host), &port) != 0) {
		add_error(ld, ld->lineno, ld->section, NULL,
			  "'%.60s' is not host or host:port (a host name or IPv4 address)", rest);
		return;
	}
	for (int i = 0; i < cfg->nservers; i++) {
		if (strcmp(cfg->servers[i].name, canon) == 0) {
			add_error(ld, ld->lineno, ld->section, NULL,
				  "the same server (%s) as the section at line %d", canon,
				  cfg->servers[i].line);
			return;
		}
	}
	if (cfg->nservers == CONFIG_SERVERS_MAX) {
		add_error(ld, ld->lineno, ld->section, NULL, "more than %d [server] sections",
			  CONFIG_SERVERS_MAX);
		return;
	}
	grown = realloc(cfg->servers, (size_t)(cfg->nservers + 1) * sizeof(*grown));
	if (grown == NULL) {
		add_error(ld, ld->lineno, ld->section, NULL, "out of memory");
		return;
	}
	cfg->servers = grown;
	sv = &cfg->servers[cfg->nservers];
	memset(sv, 0, sizeof(*sv));
	sv->line = ld->lineno;
	sv->scan.port = port;
	sv->scan.socket = sv->scan.database = (char *)"";
	sv->name = strdup(canon);
	sv->scan.host = strdup(host);
	failed = sv->name == NULL || sv->scan.host == NULL;
	for (size_t i = 0; i < NSKEYS; i++)
		failed |= set_value(sv, &server_keys[i], server_keys[i].def, false) != NULL;
	if (failed) {
		server_conf_release(sv);
		add_error(ld, ld->lineno, ld->section, NULL, "out of memory");
		return;
	}
	/* Errors under it name the server as every later message does: canonically. */
	snprintf(ld->section, sizeof(ld->section), "server %s", canon);
	memset(ld->server_set_line[cfg->nservers], 0, sizeof(ld->server_set_line[0]));
	ld->server = cfg->nservers++;
	ld->section_known = true;
	note_shape_section(&cfg->shape, "server");
}

/* Remembers "[name]" lines so errors can name the section, and checks the name. */
static void note_section(struct loader *ld, const char *line)
{
	const char *p = line + 1, *end = strchr(p, ']');
	size_t n;

	if (end == NULL) {
		add_error(ld, ld->lineno, NULL, NULL, "section header without ']'");
		return;
	}
	n = (size_t)(end - p);
	if (n >= sizeof(ld->section))
		n = sizeof(ld->section) - 1;
	memcpy(ld->section, p, n);
	ld->section[n] = '\0';
	ld->key[0] = '\0';
	ld->server = -1;
	if (strncmp(ld->section, "server", 6) == 0 &&
	    (ld->section[6] == '\0' || ld->section[6] == ' ' || ld->section[6] == '\t')) {
		open_server_section(ld, ld->section + 6);
		return;
	}
	ld->section_known = section_exists(ld->section);
	if (!ld->section_known)
		add_error(ld, ld->lineno, ld->section, NULL, "unknown section");
	else
		note_shape_section(&ld->cfg->shape, ld->section);
}

/* Remembers the key of a "key = value" line, for errors on its continuation lines. */
static void note_key(struct loader *ld, const char *p, const char *eq)
{
	size_t kl = (size_t)(eq - p);

	while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
		kl--;
	snprintf(ld->key, sizeof(ld->key), "%.*s", (int)kl, p);
}

/* inih strips an inline comment (" ;" after the value) from a key's first line only;
 * do the same for continuation lines, so both behave as conf/ documents. */
static void strip_inline_comment(char *line)
{
	for (char *c = line + 1; *c; c++) {
		if (*c == ';' && (c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			break;
		}
	}
}

/* Hands inih a comment line instead of one we have refused. */
static char *refuse_line(char *str, int num)
{
	snprintf(str, (size_t)num, ";\n");
	return str;
}

/* Bytes inih would drop without a word: a NUL ends its C string, so the rest of the
 * line vanishes ("workers = 2" NUL "0" reads as 2); CR, VT and FF at either end are
 * stripped as blanks, and inside a value they are kept as invisible control
 * characters. Only TAB is allowed among the control characters (and DEL is refused
 * with them). Reports the first such byte with its column and returns true. */
static bool refuse_bad_bytes(struct loader *ld, size_t len)
{
	const char *line = ld->line, *p, *eq;
	char key[64] = "";
	size_t i;
	unsigned char c = 0;

	for (i = 0; i < len; i++) {
		c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			break;
	}
	if (i == len)
		return false;
	/* Name the key of this line if its '=' comes before the bad byte. */
	for (p = line; *p == ' ' || *p == '\t'; p++)
		;
	eq = strpbrk(p, "=:");
	if (p == line && *p != '[' && eq != NULL && (size_t)(eq - line) < i) {
		size_t kl = (size_t)(eq - p);
		while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
			kl--;
		snprintf(key, sizeof(key), "%.*s", (int)kl, p);
	} else if (p != line) {
		snprintf(key, sizeof(key), "%s", ld->key);
	}
	if (c == 0)
		add_error(ld, ld->lineno, ld->section[0] ? ld->section : NULL, key[0] ? key : NULL,
			  "NUL byte at column %zu; inih would silently drop the rest of the line",
			  i + 1);
	else
		add_error(ld, ld->lineno, ld->section[0] ? ld->section : NULL, key[0] ? key : NULL,
			  "control character 0x%02x at column %zu; only tabs and printable "
			  "characters are allowed",
			  c, i + 1);
	return true;
}

/* inih's fgets-like reader: one physical line per call, with bookkeeping. inih treats
 * an indented line as the continuation of the previous key of the same section, so
 * that is what ld->continuation says too. */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	ssize_t n = getline(&ld->line, &ld->line_cap, ld->file);
	const char *p, *eq;
	size_t len;
	bool blank_or_comment;

	if (n < 0)
		return NULL;
	ld->lineno++;
	len = (size_t)n;
	ld->cfg->shape.lines = ld->lineno;
	ld->cfg->shape.final_newline = ld->line[len - 1] == '\n';
	while (len > 0 && (ld->line[len - 1] == '\n' || ld->line[len - 1] == '\r'))
		len--;
	ld->line[len] = '\0';
	/* A UTF-8 byte order mark on line 1 is what inih skips too; take it off here so
	 * that our view of the line and inih's agree. */
	if (ld->lineno == 1 && len >= 3 && memcmp(ld->line, "\xef\xbb\xbf", 3) == 0) {
		len -= 3;
		memmove(ld->line, ld->line + 3, len + 1);
	}
	if (refuse_bad_bytes(ld, len))
		return refuse_line(str, num);
	for (p = ld->line; *p == ' ' || *p == '\t'; p++)
		;
	blank_or_comment = *p == '\0' || *p == ';' || *p == '#';
	ld->continuation = p != ld->line && !blank_or_comment && ld->key[0] != '\0';
	eq = strpbrk(p, "=:");
	if (*p == '[') {
		note_section(ld, p);
	} else if (!blank_or_comment && !ld->continuation) {
		if (eq == NULL) {
			add_error(ld, ld->lineno, NULL, NULL,
				  "syntax error: expected '[section]' or 'key = value'");
			return refuse_line(str, num);
		}
		note_key(ld, p, eq);
	}
	if (len + 3 > (size_t)num) {
		add_error(ld, ld->lineno, ld->section[0] ? ld->section : NULL,
			  ld->key[0] ? ld->key : NULL,
			  "line is %zu bytes, longer than the %d inih reads; continue a long value "
			  "on indented lines",
			  len, num - 3);
		return refuse_line(str, num);
	}
	if (ld->continuation)
		strip_inline_comment(ld->line);
	snprintf(str, (size_t)num, "%s\n", ld->line);
	return str;
}

/* The largest secret file we read: a password or key, never a data file. */
#define SECRET_FILE_MAX 4096

/* Reads a password from a file (a mounted Kubernetes Secret). Only a regular file of
 * at most SECRET_FILE_MAX bytes without NUL bytes: a FIFO would hang the start-up, a
 * device or a huge file would be read forever, and a NUL would cut the password short
 * without anyone noticing. */
static int read_file_secret(const char *path, char **out, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	char *data = NULL;
	ssize_t n;
	size_t len = 0;

	if (fd < 0) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", path);
		goto fail;
	}
	if (st.st_size > SECRET_FILE_MAX) {
		snprintf(why, whylen, "%s is larger than %d bytes: not a password", path,
			 SECRET_FILE_MAX);
		goto fail;
	}
	data = malloc(SECRET_FILE_MAX + 1);
	if (data == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	while (len < SECRET_FILE_MAX && (n = read(fd, data + len, SECRET_FILE_MAX - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	close(fd);
	fd = -1;
	if (memchr(data, '\0', len) != NULL) {
		snprintf(why, whylen, "%s contains a NUL byte", path);
		goto fail;
	}
	/* Kubernetes Secret files often end in a newline that is not part of the value. */
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	data[len] = '\0';
	if (len == 0) {
		snprintf(why, whylen, "%s is empty", path);
		goto fail;
	}
	*out = data;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (data != NULL) {
		explicit_bzero(data, SECRET_FILE_MAX + 1);
		free(data);
	}
	return -1;
}

static size_t key_index(const char *section, const char *name)
{
	size_t idx = 0;

	find_key(section, name, &idx);
	return idx;
}

/* At most one non-empty of a password's three sources (names[]: password,
 * password_file, password_env, each set at lines[]); resolve into *password. */
static void resolve_secret(struct loader *ld, const char *section, const char *const names[3],
			   char *const values[3], const int lines[3], char **password)
{
	int first = -1;
	char why[600];

	for (int i = 0; i < 3; i++) {
		if (values[i][0] == '\0')
			continue;
		if (first >= 0) {
			add_error(ld, lines[i], section, names[i],
				  "conflicts with %s (line %d); set only one", names[first],
				  lines[first]);
			return;
		}
		first = i;
	}
	if (first == 1) {
		char *secret;
		if (read_file_secret(values[1], &secret, why, sizeof(why)) != 0) {
			add_error(ld, lines[1], section, names[1], "%s", why);
			return;
		}
		secret_free(*password);
		*password = secret;
	} else if (first == 2) {
		const char *v = getenv(values[2]);
		if (v == NULL) {
			add_error(ld, lines[2], section, names[2],
				  "environment variable %s is not set", values[2]);
		} else if (*v == '\0') {
			add_error(ld, lines[2], section, names[2],
				  "environment variable %s is empty", values[2]);
		} else {
			secret_free(*password);
			*password = strdup(v);
		}
	}
}

static void resolve_password(struct loader *ld, const char *section, struct db_endpoint *ep)
{
	static const char *const names[] = { "password", "password_file", "password_env" };
	char *const values[] = { ep->password, ep->password_file, ep->password_env };
	int lines[3];

	for (int i = 0; i < 3; i++)
		lines[i] = ld->set_line[key_index(section, names[i])];
	resolve_secret(ld, section, names, values, lines, &ep->password);
}

static bool is_password_key(const char *name)
{
	return strncmp(name, "password", 8) == 0;
}

/* Endpoint keys of section `to` left unset take those of `from` ([scan_db] from
 * [platform_db]: a replica usually differs only in its host; [binlog] from [scan_db]).
 * The password and its sources go as one: `to` takes `from`'s resolved password only
 * when it names none of its own. Keys `from` lacks keep their defaults. */
static int inherit_endpoint(struct loader *ld, const char *to, const char *from)
{
	bool own_password = false;

	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].section, to) == 0 && ld->set_line[i] != 0 &&
		    is_password_key(config_keys[i].name))
			own_password = true;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		size_t src;
		const char *why = NULL;
		char num[32];

		if (strcmp(k->section, to) != 0 || ld->set_line[i] != 0 ||
		    (own_password && is_password_key(k->name)) ||
		    find_key(from, k->name, &src) == NULL || config_keys[src].type != k->type)
			continue;
		if (k->type == KEY_INT) {
			snprintf(num, sizeof(num), "%d", *(int *)field(ld->cfg, &config_keys[src]));
			why = set_value(ld->cfg, k, num, false);
		} else if (k->type == KEY_ENUM) {
			*(int *)field(ld->cfg, k) = *(int *)field(ld->cfg, &config_keys[src]);
		} else {
			const char *v = *(char **)field(ld->cfg, &config_keys[src]);
			why = set_value(ld->cfg, k, v ? v : "", false);
		}
		if (why != NULL)
			return -ENOMEM;
	}
	return 0;
}

/* [binlog] enabled = auto: on when the file gives [binlog] a user of its own (the feed's
 * credentials are configured: it needs grants the scan user should not have), off
 * otherwise. Resolved before [binlog] inherits [scan_db]'s user, so an inherited one
 * never turns it on. */
static void resolve_binlog_enabled(struct loader *ld)
{
	if (ld->cfg->binlog_enabled == 2)
		ld->cfg->binlog_enabled = ld->set_line[key_index("binlog", "user")] != 0;
}

/* Whether [scan_db] names its login itself: its user and one of its password keys
 * (even empty: "no password" said out loud), not [platform_db]'s by inheritance. */
static bool scan_login_explicit(const struct loader *ld)
{
	bool password = false;

	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].section, "scan_db") == 0 && ld->set_line[i] != 0 &&
		    is_password_key(config_keys[i].name))
			password = true;
	return password && ld->set_line[key_index("scan_db", "user")] != 0;
}

static void default_holder(struct config *cfg)
{
	const char *pod = getenv("POD_NAME");
	char host[256];
	char *holder;

	if (cfg->holder[0] != '\0')
		return;
	if (pod == NULL || *pod == '\0')
		pod = getenv("HOSTNAME");
	if (pod == NULL || *pod == '\0') {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "unknown");
		host[sizeof(host) - 1] = '\0';
		pod = host;
	}
	/* Room for ":<pid>" within what jd_lease.holder holds. */
	char prefix[UTIL_HOLDER_MAX - 11];

	util_holder_prefix(pod, prefix, sizeof(prefix));
	if (asprintf(&holder, "%s:%d", prefix, (int)getpid()) < 0)
		return;
	free(cfg->holder);
	cfg->holder = holder;
}

int config_batch_max_seconds(const struct config *cfg)
{
	return cfg->maxtime + cfg->http_allowance;
}

/* A holder trusts its lease for lease_ttl - safety_margin after each renew and never
 * starts a batch it could not finish inside that trust: so a batch at its longest must
 * fit, and renewing must come round before the trust runs out. */
static void check_lease_timing(struct loader *ld)
{
	static const char *const involved[][2] = {
		{ "coordination", "lease_ttl" },
		{ "coordination", "safety_margin" },
		{ "mediawiki", "maxtime" },
		{ "mediawiki", "timeout_allowance" },
	};
	const struct config *cfg = ld->cfg;
	int trust = cfg->lease_ttl - cfg->safety_margin;
	int line = 0;
	size_t blame = 0;

	/* Blame the key set last in the file: that is the one that broke the rule. */
	for (size_t i = 0; i < sizeof(involved) / sizeof(involved[0]); i++) {
		int l = ld->set_line[key_index(involved[i][0], involved[i][1])];
		if (l > line) {
			line = l;
			blame = i;
		}
	}
	if (trust <= config_batch_max_seconds(cfg)) {
		add_error(ld, line, involved[blame][0], involved[blame][1],
			  "a batch can last maxtime + timeout_allowance = %d s, longer than a lease "
			  "is trusted: lease_ttl - safety_margin = %d - %d = %d s; raise lease_ttl",
			  config_batch_max_seconds(cfg), cfg->lease_ttl, cfg->safety_margin, trust);
	}
	if (cfg->renew_interval >= trust) {
		add_error(ld, ld->set_line[key_index("coordination", "renew_interval")],
			  "coordination", "renew_interval",
			  "%d s must be below lease_ttl - safety_margin (%d s)",
			  cfg->renew_interval, trust);
	}
}

/* The job-type lists: valid patterns, and no type both first and never. */
static void check_type_lists(struct loader *ld)
{
	static const char *const keys[] = { "priority_types", "skip_types" };
	const char *lists[] = { ld->cfg->priority_types, ld->cfg->skip_types };
	char why[160];

	for (int i = 0; i < 2; i++)
		if (jobtype_check_list(lists[i], why, sizeof(why)) != 0)
			add_error(ld, ld->set_line[key_index("drain", keys[i])], "drain", keys[i],
				  "%s", why);
}

/* [scan] allowed_servers: host[:port]s separated by blanks or commas, kept in their
 * canonical form (util_canon_db_server), at most CONFIG_SERVERS_MAX: the number of
 * servers the sidecar connects to (each a connection, a sweep and a budget) is bounded
 * by what the operator wrote. */
static int check_allowed_servers(struct loader *ld)
{
	int line = ld->set_line[key_index("scan", "allowed_servers")];
	const char *p = ld->cfg->scan_allowed_servers;
	char name[UTIL_DB_SERVER_MAX], canon[UTIL_DB_SERVER_MAX];
	struct buf out;
	int count = 0;

	buf_init(&out);
	while (*p) {
		size_t n = strcspn(p, " ,\t\n");
		if (n == 0) {
			p++;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1),
			 p);
		p += n;
		if (n >= sizeof(name) || util_canon_db_server(name, canon, sizeof(canon)) != 0) {
			add_error(ld, line, "scan", "allowed_servers",
				  "'%.40s' is not host or host:port (a host name or IPv4 address)",
				  name);
			goto out;
		}
		if (++count > CONFIG_SERVERS_MAX) {
			add_error(ld, line, "scan", "allowed_servers", "more than %d servers",
				  CONFIG_SERVERS_MAX);
			goto out;
		}
		buf_addf(&out, "%s%s", out.len ? " " : "", canon);
	}
	if (out.failed) {
		add_error(ld, line, "scan", "allowed_servers", "out of memory");
		goto out;
	}
	free(ld->cfg->scan_allowed_servers);
	ld->cfg->scan_allowed_servers = out.data ? out.data : strdup("");
	return ld->cfg->scan_allowed_servers ? 0 : -ENOMEM;
out:
	buf_release(&out);
	return -EINVAL;
}

bool config_endpoint_is(const struct db_endpoint *ep, const char *canon)
{
	char name[UTIL_DB_SERVER_MAX], mine[UTIL_DB_SERVER_MAX];

	snprintf(name, sizeof(name), "%s:%d", ep->host, ep->port);
	return util_canon_db_server(name, mine, sizeof(mine)) == 0 && strcmp(mine, canon) == 0;
}

/* Whether canon is a word of [scan] allowed_servers. */
static bool config_server_in_list(const struct config *cfg, const char *canon)
{
	const char *p = cfg->scan_allowed_servers;
	size_t len = strlen(canon);

	for (; (p = strstr(p, canon)) != NULL; p += len)
		if ((p == cfg->scan_allowed_servers || p[-1] == ' ') &&
		    (p[len] == ' ' || p[len] == '\0'))
			return true;
	return false;
}

bool config_server_allowed(const struct config *cfg, const char *canon)
{
	return config_endpoint_is(&cfg->scan, canon) || config_endpoint_is(&cfg->platform, canon) ||
	       config_server(cfg, canon) != NULL || config_server_in_list(cfg, canon);
}

const struct server_conf *config_server(const struct config *cfg, const char *canon)
{
	for (int i = 0; i < cfg->nservers; i++)
		if (strcmp(cfg->servers[i].name, canon) == 0)
			return &cfg->servers[i];
	return NULL;
}

const struct db_endpoint *config_scan_login(const struct config *cfg, const char *canon)
{
	const struct server_conf *sv = config_server(cfg, canon);

	if (sv != NULL && sv->scan.user[0] != '\0')
		return &sv->scan;
	if (cfg->scan_login_explicit || config_endpoint_is(&cfg->scan, canon) ||
	    config_endpoint_is(&cfg->platform, canon))
		return &cfg->scan;
	return NULL;
}

static void server_conf_release(struct server_conf *sv)
{
	for (size_t i = 0; i < NSKEYS; i++) {
		char **sp = field(sv, &server_keys[i]);
		if (server_keys[i].type == KEY_SECRET)
			secret_free(*sp);
		else if (server_keys[i].type == KEY_STRING)
			free(*sp);
	}
	free(sv->name);
	free(sv->scan.host);
	memset(sv, 0, sizeof(*sv));
}

/* Why the CA file of tls_ca cannot serve (NULL: it can): checked at load so that a
 * typo is a config error, not a refused connection an hour later. */
static const char *check_ca_file(const char *path, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return why;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		snprintf(why, whylen, "%s is not a regular file", path);
	else if (st.st_size == 0)
		snprintf(why, whylen, "%s is empty", path);
	else
		why = NULL;
	close(fd);
	return why;
}

/* A section's tls_ca, where the section sets it (line != 0; empty: the system's CAs):
 * a readable file, and of use only with tls = verify. */
static void check_tls_ca(struct loader *ld, const char *section, const struct db_endpoint *ep,
			 int line)
{
	char why[600];

	if (line == 0 || ep->tls_ca[0] == '\0')
		return;
	if (ep->tls != DB_TLS_VERIFY)
		add_error(ld, line, section, "tls_ca",
			  "only tls = verify checks a certificate; set tls = verify (or remove "
			  "tls_ca)");
	else if (check_ca_file(ep->tls_ca, why, sizeof(why)) != NULL)
		add_error(ld, line, section, "tls_ca", "%s", why);
}

static int server_line(const struct loader *ld, int server, const char *name)
{
	size_t idx = 0;

	find_server_key(name, &idx);
	return ld->server_set_line[server][idx];
}

/* After the endpoints are resolved: each [server] section's passwords, the TLS keys it
 * leaves unset ([scan_db]'s), [scan_db]'s timeouts, and its own checks. */
static void finish_servers(struct loader *ld)
{
	static const char *const scan_names[] = { "password", "password_file", "password_env" };
	static const char *const feed_names[] = { "binlog_password", "binlog_password_file",
						  "binlog_password_env" };
	struct config *cfg = ld->cfg;
	char section[UTIL_DB_SERVER_MAX + 16];

	for (int i = 0; i < cfg->nservers; i++) {
		struct server_conf *sv = &cfg->servers[i];
		char *const scan_values[] = { sv->scan.password, sv->scan.password_file,
					      sv->scan.password_env };
		char *const feed_values[] = { sv->binlog_password, sv->binlog_password_file,
					      sv->binlog_password_env };
		int scan_lines[3], feed_lines[3];

		snprintf(section, sizeof(section), "server %s", sv->name);
		for (int j = 0; j < 3; j++) {
			scan_lines[j] = server_line(ld, i, scan_names[j]);
			feed_lines[j] = server_line(ld, i, feed_names[j]);
		}
		resolve_secret(ld, section, scan_names, scan_values, scan_lines, &sv->scan.password);
		resolve_secret(ld, section, feed_names, feed_values, feed_lines,
			       &sv->binlog_password);
		/* A password for nobody would be sent under [scan_db]'s user name. */
		for (int j = 0; j < 3; j++) {
			if (scan_lines[j] != 0 && sv->scan.user[0] == '\0')
				add_error(ld, scan_lines[j], section, scan_names[j],
					  "set without user in this section");
			if (feed_lines[j] != 0 && sv->binlog_user[0] == '\0')
				add_error(ld, feed_lines[j], section, feed_names[j],
					  "set without binlog_user in this section");
		}
		if (server_line(ld, i, "tls") == 0)
			sv->scan.tls = cfg->scan.tls;
		if (server_line(ld, i, "tls_ca") == 0) {
			char *ca = strdup(cfg->scan.tls_ca);
			if (ca == NULL) {
				add_error(ld, sv->line, section, "tls_ca", "out of memory");
				continue;
			}
			free(sv->scan.tls_ca);
			sv->scan.tls_ca = ca;
		}
		/* discovery files the rows naming [scan_db]'s own address under [scan_db]. */
		if (sv->scan.user[0] != '\0' && cfg->scan.socket[0] == '\0' &&
		    config_endpoint_is(&cfg->scan, sv->name))
			add_error(ld, server_line(ld, i, "user"), section, "user",
				  "this is [scan_db]'s server, whose wikis are scanned with "
				  "[scan_db]'s login: set it there");
		sv->scan.connect_timeout = cfg->scan.connect_timeout;
		sv->scan.query_timeout = cfg->scan.query_timeout;
		check_tls_ca(ld, section, &sv->scan, server_line(ld, i, "tls_ca"));
	}
}

/* The TLS keys of every endpoint section, where they are set. */
static void check_tls(struct loader *ld)
{
	static const char *const sections[] = { "platform_db", "scan_db", "binlog" };
	const struct db_endpoint *eps[] = { &ld->cfg->platform, &ld->cfg->scan, &ld->cfg->binlog };

	for (size_t i = 0; i < 3; i++)
		check_tls_ca(ld, sections[i], eps[i],
			     ld->set_line[key_index(sections[i], "tls_ca")]);
}

/* Every server the sidecar may log in to has a login of its own or one the operator
 * gave for all (config_scan_login), and there are at most CONFIG_SERVERS_MAX of them. */
static void check_server_logins(struct loader *ld)
{
	static const char *const advice =
		"add [server %s] with user and password (or set user and password in "
		"[scan_db] itself: [platform_db]'s are never sent to other servers)";
	struct config *cfg = ld->cfg;
	int line = ld->set_line[key_index("scan", "allowed_servers")];
	const char *p = cfg->scan_allowed_servers;
	char canon[UTIL_DB_SERVER_MAX], why[700];
	int count = 0;

	while (*p) {
		size_t n = strcspn(p, " ");
		snprintf(canon, sizeof(canon), "%.*s", (int)n, p);
		p += n + (p[n] == ' ');
		count++;
		if (config_scan_login(cfg, canon) == NULL) {
			snprintf(why, sizeof(why), advice, canon);
			add_error(ld, line, "scan", "allowed_servers",
				  "no credentials for database server %s: %s", canon, why);
		}
	}
	for (int i = 0; i < cfg->nservers; i++) {
		const struct server_conf *sv = &cfg->servers[i];
		char section[UTIL_DB_SERVER_MAX + 16];

		snprintf(section, sizeof(section), "server %s", sv->name);
		if (!config_server_in_list(cfg, sv->name) && ++count > CONFIG_SERVERS_MAX)
			add_error(ld, sv->line, section, NULL,
				  "more than %d servers in [scan] allowed_servers and [server] "
				  "sections together",
				  CONFIG_SERVERS_MAX);
		if (config_scan_login(cfg, sv->name) == NULL)
			add_error(ld, sv->line, section, NULL,
				  "no credentials: set user and password here (or in [scan_db] "
				  "itself: [platform_db]'s are never sent to other servers)");
	}
}

/* Checks that span keys, after everything is read. */
static void check_consistency(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	size_t i;

	i = key_index("mediawiki", "path");
	if (cfg->mw_path[0] != '/')
		add_error(ld, ld->set_line[i], "mediawiki", "path", "must start with '/'");
	if (cfg->backoff_max < cfg->backoff_base) {
		/* Blame the key that was set (the later one if both were). */
		int lmax = ld->set_line[key_index("drain", "backoff_max")];
		int lbase = ld->set_line[key_index("drain", "backoff_base")];
		if (lmax >= lbase)
			add_error(ld, lmax, "drain", "backoff_max", "%d is below backoff_base (%d)",
				  cfg->backoff_max, cfg->backoff_base);
		else
			add_error(ld, lbase, "drain", "backoff_base", "%d is above backoff_max (%d)",
				  cfg->backoff_base, cfg->backoff_max);
	}
	i = key_index("sidecar", "holder");
	if (cfg->holder[0] != '\0' && !util_is_holder(cfg->holder))
		add_error(ld, ld->set_line[i], "sidecar", "holder",
			  "must be 1-%d of [A-Za-z0-9._:-]", UTIL_HOLDER_MAX);
	i = key_index("mediawiki", "host");
	if (!util_is_url_host(cfg->mw_host))
		add_error(ld, ld->set_line[i], "mediawiki", "host",
			  "'%s' is not an IPv4 address, a bracketed IPv6 address ([::1]) or a "
			  "host name",
			  cfg->mw_host);
	i = key_index("http", "listen");
	if (cfg->http_listen[0] != '\0') {
		unsigned char addr[4];
		int port;
		if (util_parse_listen(cfg->http_listen, addr, &port) != 0)
			add_error(ld, ld->set_line[i], "http", "listen",
				  "'%s' is not IPV4-ADDRESS:PORT (or :PORT, or empty to disable)",
				  cfg->http_listen);
	}
	i = key_index("coordination", "database");
	if (!util_is_db_name(cfg->coord_db))
		add_error(ld, ld->set_line[i], "coordination", "database",
			  "'%s' is not a plain identifier ([A-Za-z0-9_$], 1-64)", cfg->coord_db);
	check_lease_timing(ld);
	check_type_lists(ld);
	check_tls(ld);
	finish_servers(ld);
	if (check_allowed_servers(ld) == 0)
		check_server_logins(ld);
	i = key_index("discovery", "query");
	if (cfg->discovery_query[0] == '\0')
		add_error(ld, ld->set_line[i], "discovery", "query", "must not be empty");
}

int config_load(const char *path, struct config **out, struct buf *errors)
{
	struct loader ld;
	struct config *cfg;
	char iobuf[4096];
	int rc;

	memset(&ld, 0, sizeof(ld));
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return -ENOMEM;
	ld.path = path;
	ld.cfg = cfg;
	ld.server = -1;
	ld.errors = errors;
	cfg->path = strdup(path);
	cfg->shape.final_newline = true;

	for (size_t i = 0; i < NKEYS; i++) {
		const char *why = set_value(cfg, &config_keys[i], config_keys[i].def, false);
		if (why != NULL) {
			buf_addf(errors, "built-in default of [%s] %s: %s\n",
				 config_keys[i].section, config_keys[i].name, why);
			ld.nerrors++;
		}
	}

	ld.file = fopen(path, "r");
	if (ld.file == NULL) {
		buf_addf(errors, "%s: cannot open: %s\n", path, strerror(errno));
		config_free(cfg);
		return -EINVAL;
	}
	/* The file's text (passwords included) passes through stdio's buffer and the line
	 * buffer: ours, so both can be cleared once read. */
	setvbuf(ld.file, iobuf, _IOFBF, sizeof(iobuf));
	rc = ini_parse_stream(read_line, &ld, on_pair, &ld);
	fclose(ld.file);
	explicit_bzero(iobuf, sizeof(iobuf));
	if (ld.line != NULL)
		explicit_bzero(ld.line, ld.line_cap);
	free(ld.line);
	/* The reader reports syntax errors itself; inih's own count is a fallback. */
	if (rc > 0 && ld.nerrors == 0)
		add_error(&ld, rc, NULL, NULL,
			  "syntax error: expected '[section]' or 'key = value'");
	else if (rc < 0)
		add_error(&ld, 0, NULL, NULL, "inih failed (%d)", rc);

	for (size_t i = 0; i < NKEYS; i++)
		cfg->shape.keys += ld.set_line[i] != 0;
	if (ld.nerrors == 0) {
		resolve_password(&ld, "platform_db", &cfg->platform);
		resolve_password(&ld, "scan_db", &cfg->scan);
		resolve_password(&ld, "binlog", &cfg->binlog);
		resolve_binlog_enabled(&ld);
		if (inherit_endpoint(&ld, "scan_db", "platform_db") != 0 ||
		    inherit_endpoint(&ld, "binlog", "scan_db") != 0)
			ld.nerrors++;
		cfg->scan_login_explicit = scan_login_explicit(&ld);
		default_holder(cfg);
		check_consistency(&ld);
	}
	if (ld.nerrors > 0) {
		config_free(cfg);
		return -EINVAL;
	}
	*out = cfg;
	return 0;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		if (config_keys[i].type == KEY_SECRET)
			secret_free(*(char **)field(cfg, &config_keys[i]));
		else if (config_keys[i].type == KEY_STRING || config_keys[i].type == KEY_TEXT)
			free(*(char **)field(cfg, &config_keys[i]));
	}
	for (int i = 0; i < cfg->nservers; i++)
		server_conf_release(&cfg->servers[i]);
	free(cfg->servers);
	free(cfg->path);
	free(cfg);
}

static void print_key(const void *base, const struct config_key *k, FILE *out)
{
	void *b = (void *)base; /* field() is shared with the loader */

	switch (k->type) {
	case KEY_INT:
		fprintf(out, "%s = %d\n", k->name, *(int *)field(b, k));
		break;
	case KEY_ENUM:
		fprintf(out, "%s = %s\n", k->name, k->choices[*(int *)field(b, k)]);
		break;
	case KEY_SECRET: {
		const char *v = *(char **)field(b, k);
		fprintf(out, "%s =%s\n", k->name, v && *v ? " ********" : "");
		break;
	}
	case KEY_STRING: {
		const char *v = *(char **)field(b, k);
		fprintf(out, "%s =%s%s\n", k->name, *v ? " " : "", v);
		break;
	}
	case KEY_TEXT: {
		const char *v = *(char **)field(b, k);
		fprintf(out, "%s = ", k->name);
		for (; *v; v++) {
			fputc(*v, out);
			if (*v == '\n')
				fputs("    ", out);
		}
		fputc('\n', out);
		break;
	}
	}
}

void config_print(const struct config *cfg, FILE *out)
{
	const char *section = "";

	fprintf(out, "; effective configuration of %s (secrets masked)\n", cfg->path);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		if (strcmp(section, k->section) != 0) {
			section = k->section;
			fprintf(out, "\n[%s]\n", section);
		}
		print_key(cfg, k, out);
	}
	for (int i = 0; i < cfg->nservers; i++) {
		fprintf(out, "\n[server %s]\n", cfg->servers[i].name);
		for (size_t j = 0; j < NSKEYS; j++)
			print_key(&cfg->servers[i], &server_keys[j], out);
	}
}

/* Keys a running daemon cannot take over (config_keep_static): its identity and
 * endpoints, the coordination settings every lease's timing rests on, the discovery
 * that defines its scope. A NULL name means the whole section. */
/* clang-format off */
static const struct {
	const char *section, *name;
} static_keys[] = {
	{ "sidecar", "holder" },  { "sidecar", "log_format" }, { "http", "listen" },
	{ "mediawiki", "host" },  { "mediawiki", "port" },     { "mediawiki", "path" },
	{ "platform_db", NULL },  { "scan_db", NULL },         { "coordination", NULL },
	{ "discovery", "query" }, { "discovery", "version" },  { "binlog", NULL },
	/* The trust boundary moves with a restart only, like the endpoints. */
	{ "scan", "allowed_servers" },
};
/* clang-format on */

static bool is_static_key(const struct config_key *k)
{
	for (size_t i = 0; i < sizeof(static_keys) / sizeof(static_keys[0]); i++)
		if (strcmp(static_keys[i].section, k->section) == 0 &&
		    (static_keys[i].name == NULL || strcmp(static_keys[i].name, k->name) == 0))
			return true;
	return false;
}

static bool servers_equal(const struct config *a, const struct config *b)
{
	if (a->nservers != b->nservers)
		return false;
	for (int i = 0; i < a->nservers; i++) {
		struct server_conf *x = &a->servers[i], *y = &b->servers[i];
		if (strcmp(x->name, y->name) != 0)
			return false;
		for (size_t j = 0; j < NSKEYS; j++) {
			const struct config_key *k = &server_keys[j];
			if (k->type == KEY_ENUM
				    ? *(int *)field(x, k) != *(int *)field(y, k)
				    : strcmp(*(char **)field(x, k), *(char **)field(y, k)) != 0)
				return false;
		}
	}
	return true;
}

/* dst (zeroed) becomes a copy of src. -ENOMEM leaves dst for server_conf_release. */
static int server_conf_copy(struct server_conf *dst, const struct server_conf *src)
{
	*dst = *src;
	dst->name = strdup(src->name);
	dst->scan.host = strdup(src->scan.host);
	for (size_t j = 0; j < NSKEYS; j++)
		if (server_keys[j].type != KEY_ENUM)
			*(char **)field(dst, &server_keys[j]) =
				strdup(*(char **)field((void *)src, &server_keys[j]));
	if (dst->name == NULL || dst->scan.host == NULL)
		return -ENOMEM;
	for (size_t j = 0; j < NSKEYS; j++)
		if (server_keys[j].type != KEY_ENUM && *(char **)field(dst, &server_keys[j]) == NULL)
			return -ENOMEM;
	return 0;
}

/* The [server] sections are the trust boundary and the logins: like the endpoints,
 * only a restart changes them. next takes cur's (a copy: each config frees its own). */
static int keep_servers(struct config *next, const struct config *cur, struct buf *kept)
{
	struct server_conf *copy = NULL;
	int n = 0;

	if (servers_equal(next, cur))
		return 0;
	if (cur->nservers > 0 && (copy = calloc((size_t)cur->nservers, sizeof(*copy))) == NULL)
		return -ENOMEM;
	for (; n < cur->nservers; n++) {
		if (server_conf_copy(&copy[n], &cur->servers[n]) != 0) {
			for (int i = 0; i <= n; i++)
				server_conf_release(&copy[i]);
			free(copy);
			return -ENOMEM;
		}
	}
	for (int i = 0; i < next->nservers; i++)
		server_conf_release(&next->servers[i]);
	free(next->servers);
	next->servers = copy;
	next->nservers = n;
	next->scan_login_explicit = cur->scan_login_explicit;
	buf_addf(kept, "%s[server] sections", kept->len ? ", " : "");
	return 0;
}

int config_keep_static(struct config *next, const struct config *cur, struct buf *kept,
		       struct buf *errors)
{
	struct config *c = (struct config *)cur; /* field() is shared with the loader */

	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		if (!is_static_key(k))
			continue;
		if (k->type == KEY_INT || k->type == KEY_ENUM) {
			int *dst = field(next, k), *src = field(c, k);
			if (*dst == *src)
				continue;
			*dst = *src;
		} else {
			char **dst = field(next, k), *src = *(char **)field(c, k);
			char *copy;
			if (strcmp(*dst, src) == 0)
				continue;
			copy = strdup(src);
			if (copy == NULL)
				return -ENOMEM;
			free(*dst);
			*dst = copy;
		}
		buf_addf(kept, "%s[%s] %s", kept->len ? ", " : "", k->section, k->name);
	}
	if (keep_servers(next, cur, kept) != 0)
		return -ENOMEM;
	/* The holder is derived (POD_NAME:pid) when not set: keep the running one. */
	if (strcmp(next->holder, cur->holder) != 0) {
		char *copy = strdup(cur->holder);
		if (copy == NULL)
			return -ENOMEM;
		free(next->holder);
		next->holder = copy;
	}
	/* Leases in force keep their timing: every batch must still fit in it. */
	if (cur->lease_ttl - cur->safety_margin <= config_batch_max_seconds(next)) {
		buf_addf(errors,
			 "%s: [mediawiki] maxtime + timeout_allowance = %d s: a batch could outlast "
			 "the running leases' trust (lease_ttl - safety_margin = %d s, which only a "
			 "restart changes)\n",
			 next->path, config_batch_max_seconds(next),
			 cur->lease_ttl - cur->safety_margin);
		return -EINVAL;
	}
	return 0;
}
