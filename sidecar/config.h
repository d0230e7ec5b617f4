/* config.h - the daemon's configuration: one INI file, read once at start-up.
 *
 * Every key is declared once in the table in config.c (name, type, default, range,
 * secret flag); conf/jobdrainer.ini documents the same keys. A loaded config is
 * immutable: threads share a const pointer. A reload (reload.h) loads a new one and
 * swaps the pointers the subsystems hold; a replaced config is kept until exit, so no
 * thread ever reads a freed one. */
#ifndef JD_CONFIG_H
#define JD_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

#define CONFIG_DEFAULT_PATH "/etc/jobdrainer/jobdrainer.ini"

/* How a connection uses TLS (key tls): off, encrypted only, or encrypted to a server
 * whose certificate chains to tls_ca (the system's CAs when empty) and names the host
 * connected to. With on or verify a server that cannot do TLS is refused (db.h). */
enum db_tls { DB_TLS_OFF, DB_TLS_ON, DB_TLS_VERIFY };

/* A MySQL endpoint. password is resolved from password, password_file or
 * password_env (at most one may be set). */
struct db_endpoint {
	char *host;
	int port;
	char *socket;
	char *user;
	char *password;
	char *password_file;
	char *password_env;
	char *database;
	int connect_timeout; /* seconds */
	int query_timeout;   /* seconds, read and write */
	int tls;             /* enum db_tls */
	char *tls_ca;        /* PEM file of the CAs tls = verify trusts; "": the system's */
};

/* How the file looked when it was read: not settings, but what a reload compares to
 * tell a file caught half-written from an edit (reload.h). */
struct config_file_shape {
	int keys;           /* keys the file set */
	int lines;          /* lines read */
	bool final_newline; /* its last line ended with a newline (true when it had none) */
	char sections[192]; /* its [section] headers of known sections, each " name" */
};

struct config {
	char *path;
	struct config_file_shape shape;

	/* [sidecar] */
	int workers;
	char *holder;
	int log_format; /* enum log_format */
	int log_level;  /* enum log_level */
	int shutdown_timeout;
	int reload_check_interval; /* seconds between looks at the file; 0: SIGHUP only */

	/* [http] */
	char *http_listen;

	/* [mediawiki] */
	char *mw_host;
	int mw_port;
	char *mw_path;
	int maxjobs;
	int maxjobs_alone; /* the most a batch grows to while no other wiki waits */
	int maxtime;
	int http_allowance;
	int http_connect_timeout;
	int signature_ttl;
	int max_body_kib;

	/* [platform_db]: discovery (and, later, coordination) */
	struct db_endpoint platform;

	/* [discovery] */
	char *discovery_query;
	char *mw_version;
	int discovery_interval;

	/* [scan_db]: wiki databases, e.g. a replica; unset keys take [platform_db]'s */
	struct db_endpoint scan;

	/* [scan] */
	int scan_interval;
	int scan_wikis_per_query;
	int scan_queries_per_second; /* 0: unlimited */
	int scan_full_interval;      /* seconds between full scans */
	int scan_db_budget_percent;  /* share of one database core detection may use */
	int scan_max_sweep_seconds;  /* a sweep's longest period, over the budget; 0: none */
	char *scan_allowed_servers;  /* canonical "host:port"s, blank-separated (after load) */

	/* [drain] */
	int time_slice;
	int backoff_base;
	int backoff_max;
	int max_workers_per_wiki;
	int park_interval;
	int batches_per_second; /* 0: unlimited */
	int wiki_min_interval_ms;
	int breaker_failures;
	int probe_interval_max; /* seconds: longest pause between breaker probes */
	char *priority_types;   /* job-type patterns asked for first (jobtype.h) */
	char *skip_types;       /* job-type patterns never run (left to other runners) */

	/* [coordination]: leases and the shared backlog, in a database of their own on
	 * the [platform_db] server */
	char *coord_db;
	int lease_ttl;
	int renew_interval;
	int safety_margin;
	int poll_interval_ms;

	/* [server HOST:PORT] sections, in file order (config_server looks one up) */
	struct server_conf *servers;
	int nservers;
	bool scan_login_explicit; /* [scan_db] sets user and a password source itself */

	/* [binlog]: the push path (binlog.h); unset endpoint keys take [scan_db]'s */
	int binlog_enabled;        /* 0 false, 1 true (auto resolved at load) */
	struct db_endpoint binlog; /* database and query_timeout unused */
	int binlog_server_id;      /* 0: derived from the holder name */
	int binlog_heartbeat;      /* seconds */
	int binlog_retry_interval; /* seconds */
};

/* At most this many servers in [scan] allowed_servers and [server] sections together
 * (beside [scan_db]'s and [platform_db]'s own). */
#define CONFIG_SERVERS_MAX 64

/* One [server HOST:PORT] section: a database server discovery rows may name (it is
 * allowed as if listed in [scan] allowed_servers), with its own logins. Every string is
 * non-NULL ("" when unset); passwords are resolved from password, password_file or
 * password_env (at most one of each group). Part of the immutable config. */
struct server_conf {
	char *name; /* canonical "host:port" (util_canon_db_server) */
	int line;   /* where its section header is, for messages */
	/* The scan's login there: host and port are name's; user, password (and its
	 * sources), tls and tls_ca the section's (tls keys it leaves unset: [scan_db]'s);
	 * timeouts [scan_db]'s; no socket, no default database. Used only when user is set
	 * (config_scan_login). */
	struct db_endpoint scan;
	/* The binary log feed's login there (REPLICATION SLAVE, BINLOG MONITOR), with the
	 * same TLS as scan; binlog_user "" when the section names none (no feed
	 * credentials for this server). binlog_password is resolved like password. */
	char *binlog_user;
	char *binlog_password;
	char *binlog_password_file;
	char *binlog_password_env;
};

/* The [server canon] section (canon in util_canon_db_server's form), or NULL. */
const struct server_conf *config_server(const struct config *cfg, const char *canon);

/* Whose login the scan uses on database server canon, when a discovery row names it:
 * the explicit-credentials rule, one owner. Returns an endpoint whose user, password,
 * tls and tls_ca are that login (its host, port and timeouts are not canon's):
 *   - the [server canon] section's, when it sets user (tls from it or [scan_db]);
 *   - else [scan_db]'s, when [scan_db] itself sets user and a password source
 *     (scan_login_explicit: "one scan user on every server" is then the operator's
 *     word), or when canon is [scan_db]'s or [platform_db]'s own server (which get
 *     that login anyway);
 *   - else NULL: no credentials. [platform_db]'s password, which [scan_db] inherits
 *     when it names none, never goes to a server the operator did not give it to.
 * config_load refuses a file where an allowed server has none, so for every server
 * config_server_allowed accepts this is non-NULL. */
const struct db_endpoint *config_scan_login(const struct config *cfg, const char *canon);

/* Whether the sidecar may log in to database server `canon` (util_canon_db_server's
 * form): [scan_db]'s and [platform_db]'s own servers, those of [scan] allowed_servers
 * and those of [server] sections. The one rule for every connection a discovery row can ask for. */
bool config_server_allowed(const struct config *cfg, const char *canon);
/* Whether ep's host:port is the server canon (util_canon_db_server's form). */
bool config_endpoint_is(const struct db_endpoint *ep, const char *canon);

/* The longest a batch can take: MediaWiki's maxtime plus the HTTP allowance. */
int config_batch_max_seconds(const struct config *cfg);

/* Reads and validates the file. On success returns 0 and a new config in *out. On
 * failure returns -EINVAL (or -ENOMEM) and appends one line per problem to errors,
 * each "FILE:LINE: [section] key: why". */
int config_load(const char *path, struct config **out, struct buf *errors);
void config_free(struct config *cfg);

/* Writes the effective configuration as INI, every secret masked. */
void config_print(const struct config *cfg, FILE *out);

/* For a reload: gives next the running config's values of the keys a running daemon
 * cannot change (identity, endpoints, coordination, discovery's scope), naming in kept
 * ("[section] key, ...") those the file changed. -EINVAL (a line in errors) when next's
 * batches would not fit the running leases; -ENOMEM. */
int config_keep_static(struct config *next, const struct config *cur, struct buf *kept,
		       struct buf *errors);

/* The longest line Debian's inih reads whole; longer ones are rejected. */
int config_max_line(void);

#endif
