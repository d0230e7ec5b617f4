/* test_config.c - config_load on temporary INI files: every error names file, line,
 * section and key (one cmocka test per table row), defaults, multi-line values,
 * password sources, [scan_db] inheritance, the holder default, the shipped
 * conf/jobdrainer.ini and config_print's masking. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#define UNSET_ENV "JD_TEST_UNSET_4711"
#define EMPTY_ENV "JD_TEST_EMPTY_4711"
#define PW_ENV "JD_TEST_PW_4711"
#define MISSING_FILE "/nonexistent/jd-test-password"

/* Files made once for the whole run (group setup), named in INI texts as placeholders. */
static char empty_file[64];   /* @EMPTY@: a 0-byte file */
static char newline_file[64]; /* @NEWLINE@: a file holding only "\n" */

/* ---- helpers ---------------------------------------------------------------------- */

/* Expands @EMPTY@, @NEWLINE@, @H<n>@ (n times 'h') and @NUL@ (a NUL byte); *len (if
 * not NULL) gets the length, NUL bytes included. Caller frees. */
static char *expand_len(const char *s, size_t *len)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, "");
	while (*s) {
		if (strncmp(s, "@EMPTY@", 7) == 0) {
			buf_adds(&b, empty_file);
			s += 7;
		} else if (strncmp(s, "@NUL@", 5) == 0) {
			buf_add(&b, "", 1);
			s += 5;
		} else if (strncmp(s, "@NEWLINE@", 9) == 0) {
			buf_adds(&b, newline_file);
			s += 9;
		} else if (strncmp(s, "@H", 2) == 0 && s[2] >= '0' && s[2] <= '9') {
			char *end;
			long n = strtol(s + 2, &end, 10);
			assert_int_equal(*end, '@');
			for (long i = 0; i < n; i++)
				buf_add(&b, "h", 1);
			s = end + 1;
		} else {
			buf_add(&b, s, 1);
			s++;
		}
	}
	assert_false(b.failed);
	if (len != NULL)
		*len = b.len;
	return b.data;
}

static char *expand(const char *s)
{
	return expand_len(s, NULL);
}

/* Temp files of the running test, removed by remove_temp or, when an assertion cut the
 * test short, by the teardown. */
static char *temps[8];

static void track_temp(char *path)
{
	for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++) {
		if (temps[i] == NULL) {
			temps[i] = path;
			return;
		}
	}
	fail_msg("too many temp files");
}

static int remove_temps(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++) {
		if (temps[i] != NULL) {
			unlink(temps[i]);
			free(temps[i]);
			temps[i] = NULL;
		}
	}
	return 0;
}

/* Writes text (placeholders expanded) to a new file in /tmp; returns its path. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/jdtest-config-XXXXXX");
	size_t len;
	char *body = expand_len(text, &len);
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	track_temp(path);
	assert_int_equal(write(fd, body, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	free(body);
	return path;
}

static void remove_temp(char *path)
{
	for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++)
		if (temps[i] == path)
			temps[i] = NULL;
	unlink(path);
	free(path);
}

/* Loads text that must be valid; fails the test with the errors otherwise. */
static struct config *load_ok(const char *text)
{
	char *path = write_temp(text);
	struct config *cfg = NULL;
	struct buf err;
	int rc;

	buf_init(&err);
	rc = config_load(path, &cfg, &err);
	if (rc != 0)
		fail_msg("config_load failed (%d):\n%s", rc, err.data ? err.data : "");
	assert_non_null(cfg);
	assert_int_equal(err.len, 0);
	buf_release(&err);
	remove_temp(path);
	return cfg;
}

/* ---- error table ------------------------------------------------------------------ */

struct want_error {
	int line;
	const char *text; /* all after "<path>:<line>: ", e.g. "[sidecar] foo: unknown key" */
};

struct error_case {
	const char *name;
	const char *ini;
	struct want_error errors[8]; /* ends at line 0 */
};

#define S8(n) "db" n "0 db" n "1 db" n "2 db" n "3 db" n "4 db" n "5 db" n "6 db" n "7\n  "
/* db00..db77: as many as [scan] allowed_servers holds; then one more. */
#define SIXTY_FOUR_SERVERS S8("0") S8("1") S8("2") S8("3") S8("4") S8("5") S8("6") S8("7")
#define SIXTY_FIVE_SERVERS SIXTY_FOUR_SERVERS "db80"

#define NO_LOGIN(s)                                                                                \
	"add [server " s                                                                           \
	"] with user and password (or set user and password in [scan_db] itself: "                 \
	"[platform_db]'s are never sent to other servers)"

#define LONG_WHY "longer than the 197 inih reads; continue a long value on indented lines"

/* Laid out by hand, one case per line where it fits: not for clang-format. */
/* clang-format off */
static const struct error_case error_cases[] = {
	{ "unknown key", "[sidecar]\nworkers = 2\nfoo = 1\n",
	  { { 3, "[sidecar] foo: unknown key" } } },
	{ "unknown key of another section", "[sidecar]\nmaxjobs = 5\n",
	  { { 2, "[sidecar] maxjobs: unknown key" } } },
	{ "unknown section (its keys are not reported again)",
	  "[sidecar]\nworkers = 2\n\n[nosuch]\nfoo = 1\nbar = 2\n",
	  { { 4, "[nosuch]: unknown section" } } },
	{ "key outside any section", "workers = 2\n[sidecar]\n",
	  { { 1, "workers: outside any [section]" } } },
	{ "not a number", "[sidecar]\nworkers = abc\n",
	  { { 2, "[sidecar] workers: 'abc' is not a whole number (allowed: 1..64)" } } },
	{ "below range", "[sidecar]\nworkers = 0\n",
	  { { 2, "[sidecar] workers: '0' is out of range (allowed: 1..64)" } } },
	{ "above range", "[sidecar]\nworkers = 65\n",
	  { { 2, "[sidecar] workers: '65' is out of range (allowed: 1..64)" } } },
	{ "trailing junk", "[sidecar]\nworkers = 2x\n",
	  { { 2, "[sidecar] workers: '2x' is not a whole number (allowed: 1..64)" } } },
	{ "empty number", "[mediawiki]\nport =\n",
	  { { 2, "[mediawiki] port: '' is not a whole number (allowed: 1..65535)" } } },
	{ "db budget of 0 %", "[scan]\ndb_budget_percent = 0\n",
	  { { 2, "[scan] db_budget_percent: '0' is out of range (allowed: 1..100)" } } },
	{ "db budget as a fraction", "[scan]\ndb_budget_percent = 2.5\n",
	  { { 2, "[scan] db_budget_percent: '2.5' is not a whole number (allowed: 1..100)" } } },
	{ "negative longest sweep", "[scan]\nmax_sweep_seconds = -1\n",
	  { { 2, "[scan] max_sweep_seconds: '-1' is out of range (allowed: 0..86400)" } } },
	{ "longest sweep in minutes", "[scan]\nmax_sweep_seconds = 2m\n",
	  { { 2, "[scan] max_sweep_seconds: '2m' is not a whole number (allowed: 0..86400)" } } },
	{ "allowed server with a path", "[scan]\nallowed_servers = db2, db3/x\n",
	  { { 2, "[scan] allowed_servers: 'db3/x' is not host or host:port (a host name or IPv4 address)" } } },
	{ "allowed server with port 0", "[scan]\nallowed_servers = db2:0\n",
	  { { 2, "[scan] allowed_servers: 'db2:0' is not host or host:port (a host name or IPv4 address)" } } },
	{ "65 allowed servers", "[scan]\nallowed_servers = " SIXTY_FIVE_SERVERS "\n",
	  { { 2, "[scan] allowed_servers: more than 64 servers" } } },
	{ "allowed server without credentials ([platform_db]'s are not sent)",
	  "[scan]\nallowed_servers = db2, db3:3307\n",
	  { { 2, "[scan] allowed_servers: no credentials for database server db2:3306: " NO_LOGIN("db2:3306") },
	    { 2, "[scan] allowed_servers: no credentials for database server db3:3307: " NO_LOGIN("db3:3307") } } },
	{ "[scan_db] user alone is no login of its own (the password is [platform_db]'s)",
	  "[platform_db]\npassword = hunter2\n[scan_db]\nuser = scan\n[scan]\nallowed_servers = db2\n",
	  { { 6, "[scan] allowed_servers: no credentials for database server db2:3306: " NO_LOGIN("db2:3306") } } },
	{ "[server] section without a user", "[server db2]\ntls = on\n",
	  { { 1, "[server db2:3306]: no credentials: set user and password here (or in [scan_db] "
		 "itself: [platform_db]'s are never sent to other servers)" } } },
	{ "[server] password without user", "[scan_db]\nuser = s\npassword =\n[server db2]\npassword = hunter2\n",
	  { { 5, "[server db2:3306] password: set without user in this section" } } },
	{ "[server] binlog_password without binlog_user",
	  "[server db2]\nuser = a\nbinlog_password = hunter2\n",
	  { { 3, "[server db2:3306] binlog_password: set without binlog_user in this section" } } },
	{ "[server] without a name", "[server]\nuser = a\n",
	  { { 1, "[server]: name the server: [server HOST:PORT]" } } },
	{ "[server] with a bad name (its keys not reported again)", "[server db3/x]\nuser = a\nfoo = 1\n",
	  { { 1, "[server db3/x]: 'db3/x' is not host or host:port (a host name or IPv4 address)" } } },
	{ "[server] twice under two spellings", "[server DB2.]\nuser = a\n\n[server db2:03306]\nuser = b\n",
	  { { 4, "[server db2:03306]: the same server (db2:3306) as the section at line 1" } } },
	{ "[server] unknown key", "[server 10.0.0.7:3307]\nuser = a\nhost = b\n",
	  { { 3, "[server 10.0.0.7:3307] host: unknown key" } } },
	{ "[server] key set twice", "[server db2]\nuser = a\nuser = b\n",
	  { { 3, "[server db2:3306] user: set twice (first at line 2)" } } },
	{ "[server] password_file missing", "[server db2]\nuser = a\npassword_file = " MISSING_FILE "\n",
	  { { 3, "[server db2:3306] password_file: cannot read " MISSING_FILE ": No such file or directory" } } },
	{ "[server] and password conflict", "[server db2]\nuser = a\npassword = x\npassword_env = " PW_ENV "\n",
	  { { 4, "[server db2:3306] password_env: conflicts with password (line 3); set only one" } } },
	{ "[server] user for [scan_db]'s own server", "[scan_db]\nhost = replica\n[server replica:3306]\nuser = a\n",
	  { { 4, "[server replica:3306] user: this is [scan_db]'s server, whose wikis are scanned "
		 "with [scan_db]'s login: set it there" } } },
	{ "bad tls value", "[scan_db]\ntls = yes\n",
	  { { 2, "[scan_db] tls: 'yes' is not one of the allowed values (allowed: off, on, verify)" } } },
	{ "bad tls value in a [server] section", "[server db2]\nuser = a\ntls = required\n",
	  { { 3, "[server db2:3306] tls: 'required' is not one of the allowed values (allowed: off, "
		 "on, verify)" } } },
	{ "tls_ca missing", "[platform_db]\ntls = verify\ntls_ca = /nonexistent/ca.pem\n",
	  { { 3, "[platform_db] tls_ca: cannot read /nonexistent/ca.pem: No such file or directory" } } },
	{ "tls_ca a directory", "[binlog]\ntls = verify\ntls_ca = /tmp\n",
	  { { 3, "[binlog] tls_ca: /tmp is not a regular file" } } },
	{ "tls_ca empty", "[server db2]\nuser = a\ntls = verify\ntls_ca = @EMPTY@\n",
	  { { 4, "[server db2:3306] tls_ca: @EMPTY@ is empty" } } },
	{ "tls_ca without verify", "[scan_db]\ntls = on\ntls_ca = @NEWLINE@\n",
	  { { 3, "[scan_db] tls_ca: only tls = verify checks a certificate; set tls = verify (or "
		 "remove tls_ca)" } } },
	{ "tls_ca with tls left off", "[server db2]\nuser = a\ntls_ca = @NEWLINE@\n",
	  { { 3, "[server db2:3306] tls_ca: only tls = verify checks a certificate; set tls = "
		 "verify (or remove tls_ca)" } } },
	{ "batch growth cap of 0", "[mediawiki]\nmaxjobs_alone = 0\n",
	  { { 2, "[mediawiki] maxjobs_alone: '0' is out of range (allowed: 1..100000)" } } },
	{ "reload check above an hour", "[sidecar]\nreload_check_interval = 3601\n",
	  { { 2, "[sidecar] reload_check_interval: '3601' is out of range (allowed: 0..3600)" } } },
	{ "binlog heartbeat of 0", "[binlog]\nheartbeat = 0\n",
	  { { 2, "[binlog] heartbeat: '0' is out of range (allowed: 1..60)" } } },
	{ "bad enum", "[sidecar]\nlog_format = yaml\n",
	  { { 2, "[sidecar] log_format: 'yaml' is not one of the allowed values "
		 "(allowed: text, json)" } } },
	{ "bad level", "[sidecar]\nlog_level = verbose\n",
	  { { 2, "[sidecar] log_level: 'verbose' is not one of the allowed values "
		 "(allowed: debug, info, warn, error)" } } },
	{ "key set twice", "[sidecar]\nworkers = 2\n; again:\nworkers = 3\n",
	  { { 4, "[sidecar] workers: set twice (first at line 2)" } } },
	{ "key set twice across repeated section", "[scan]\ninterval = 5\n[drain]\n[scan]\ninterval = 6\n",
	  { { 5, "[scan] interval: set twice (first at line 2)" } } },
	{ "long line, and parsing goes on", "[sidecar]\nholder = @H250@\nworkers = 0\n",
	  { { 2, "[sidecar] holder: line is 259 bytes, " LONG_WHY },
	    { 3, "[sidecar] workers: '0' is out of range (allowed: 1..64)" } } },
	{ "line of 198 bytes", "[sidecar]\nholder = @H189@\n",
	  { { 2, "[sidecar] holder: line is 198 bytes, " LONG_WHY } } },
	{ "continuation of a single-line key", "[sidecar]\nworkers = 2\n  3\n",
	  { { 3, "[sidecar] workers: continuation line, but this key takes a single line" } } },
	{ "password and password_file", "[platform_db]\npassword = a\npassword_file = /x\n",
	  { { 3, "[platform_db] password_file: conflicts with password (line 2); set only one" } } },
	{ "scan_db password and password_env",
	  "[scan_db]\npassword_env = " PW_ENV "\n\npassword = a\n",
	  { { 2, "[scan_db] password_env: conflicts with password (line 4); set only one" } } },
	{ "password_file missing", "[platform_db]\npassword_file = " MISSING_FILE "\n",
	  { { 2, "[platform_db] password_file: cannot read " MISSING_FILE
		 ": No such file or directory" } } },
	{ "scan_db password_file missing", "[scan_db]\nhost = r\npassword_file = " MISSING_FILE "\n",
	  { { 3, "[scan_db] password_file: cannot read " MISSING_FILE
		 ": No such file or directory" } } },
	{ "password_file a device (would read forever)", "[platform_db]\npassword_file = /dev/zero\n",
	  { { 2, "[platform_db] password_file: /dev/zero is not a regular file" } } },
	{ "password_file a directory", "[scan_db]\npassword_file = /tmp\n",
	  { { 2, "[scan_db] password_file: /tmp is not a regular file" } } },
	{ "password_file empty", "[platform_db]\npassword_file = @EMPTY@\n",
	  { { 2, "[platform_db] password_file: @EMPTY@ is empty" } } },
	{ "scan_db password_file only a newline", "[scan_db]\npassword_file = @NEWLINE@\n",
	  { { 2, "[scan_db] password_file: @NEWLINE@ is empty" } } },
	{ "password_env unset", "[platform_db]\npassword_env = " UNSET_ENV "\n",
	  { { 2, "[platform_db] password_env: environment variable " UNSET_ENV " is not set" } } },
	{ "scan_db password_env empty", "[scan_db]\npassword_env = " EMPTY_ENV "\n",
	  { { 2, "[scan_db] password_env: environment variable " EMPTY_ENV " is empty" } } },
	{ "backoff_max below backoff_base", "[drain]\nbackoff_base = 100\nbackoff_max = 50\n",
	  { { 3, "[drain] backoff_max: 50 is below backoff_base (100)" } } },
	{ "mediawiki path without '/'", "[mediawiki]\npath = w/index.php\n",
	  { { 2, "[mediawiki] path: must start with '/'" } } },
	{ "holder with a space", "[sidecar]\nholder = my pod\n",
	  { { 2, "[sidecar] holder: must be 1-255 of [A-Za-z0-9._:-]" } } },
	{ "holder with a byte above 0x7f", "[sidecar]\nholder = p\xc3\xa9\n",
	  { { 2, "[sidecar] holder: must be 1-255 of [A-Za-z0-9._:-]" } } },
	{ "holder with a slash", "[sidecar]\nholder = a/b\n",
	  { { 2, "[sidecar] holder: must be 1-255 of [A-Za-z0-9._:-]" } } },
	{ "empty discovery query", "[discovery]\nquery =\n",
	  { { 2, "[discovery] query: must not be empty" } } },
	{ "syntax error", "[sidecar]\nworkers 2\n",
	  { { 2, "syntax error: expected '[section]' or 'key = value'" } } },
	{ "several errors, each with its line",
	  "[sidecar]\nworkers = 0\nbogus = 1\n[mediawiki]\nport = 0\nmaxjobs = lots\n"
	  "[nosuch]\nx = 1\n[drain]\nbackoff_base = 1\nbackoff_base = 2\n",
	  { { 2, "[sidecar] workers: '0' is out of range (allowed: 1..64)" },
	    { 3, "[sidecar] bogus: unknown key" },
	    { 5, "[mediawiki] port: '0' is out of range (allowed: 1..65535)" },
	    { 6, "[mediawiki] maxjobs: 'lots' is not a whole number (allowed: 1..100000)" },
	    { 7, "[nosuch]: unknown section" },
	    { 11, "[drain] backoff_base: set twice (first at line 10)" } } },
	{ "syntax error next to another error", "[sidecar]\nworkers = 0\nfoo bar\n",
	  { { 2, "[sidecar] workers: '0' is out of range (allowed: 1..64)" },
	    { 3, "syntax error: expected '[section]' or 'key = value'" } } },
	{ "lease shorter than a batch can last",
	  "[mediawiki]\nmaxtime = 40\n[coordination]\nlease_ttl = 70\n",
	  { { 4, "[coordination] lease_ttl: a batch can last maxtime + timeout_allowance = 70 s, "
		 "longer than a lease is trusted: lease_ttl - safety_margin = 70 - 5 = 65 s; "
		 "raise lease_ttl" } } },
	{ "maxtime raised past the default lease (blames maxtime)", "[mediawiki]\nmaxtime = 30\n",
	  { { 2, "[mediawiki] maxtime: a batch can last maxtime + timeout_allowance = 60 s, "
		 "longer than a lease is trusted: lease_ttl - safety_margin = 60 - 5 = 55 s; "
		 "raise lease_ttl" } } },
	{ "renew_interval not below the trust", "[coordination]\nrenew_interval = 55\n",
	  { { 2, "[coordination] renew_interval: 55 s must be below lease_ttl - safety_margin "
		 "(55 s)" } } },
	{ "coordination database not an identifier", "[coordination]\ndatabase = jd-x\n",
	  { { 2, "[coordination] database: 'jd-x' is not a plain identifier ([A-Za-z0-9_$], "
		 "1-64)" } } },
	{ "http listen without a port", "[http]\nlisten = 0.0.0.0\n",
	  { { 2, "[http] listen: '0.0.0.0' is not IPV4-ADDRESS:PORT (or :PORT, or empty to "
		 "disable)" } } },
	{ "http listen with a host name", "[http]\nlisten = localhost:9180\n",
	  { { 2, "[http] listen: 'localhost:9180' is not IPV4-ADDRESS:PORT (or :PORT, or empty "
		 "to disable)" } } },
	{ "batches_per_second out of range", "[drain]\nbatches_per_second = -1\n",
	  { { 2, "[drain] batches_per_second: '-1' is out of range (allowed: 0..1000)" } } },
	{ "breaker_failures below 2", "[drain]\nbreaker_failures = 1\n",
	  { { 2, "[drain] breaker_failures: '1' is out of range (allowed: 2..1000)" } } },
	{ "NUL byte after a value", "[sidecar]\nworkers = 2@NUL@\n",
	  { { 2, "[sidecar] workers: NUL byte at column 12; inih would silently drop the rest "
		 "of the line" } } },
	{ "NUL byte in a value", "[sidecar]\nworkers = 1@NUL@6\n",
	  { { 2, "[sidecar] workers: NUL byte at column 12; inih would silently drop the rest "
		 "of the line" } } },
	{ "vertical tab inih would trim", "[mediawiki]\nmaxjobs = 5\x0b\n",
	  { { 2, "[mediawiki] maxjobs: control character 0x0b at column 12; only tabs and "
		 "printable characters are allowed" } } },
	{ "escape byte in a comment", "; \x1b[31m\n[sidecar]\n",
	  { { 1, "control character 0x1b at column 3; only tabs and printable characters are "
		 "allowed" } } },
	{ "mediawiki host bare IPv6", "[mediawiki]\nhost = ::1\n",
	  { { 2, "[mediawiki] host: '::1' is not an IPv4 address, a bracketed IPv6 address "
		 "([::1]) or a host name" } } },
	{ "mediawiki host with a port", "[mediawiki]\nhost = 127.0.0.1:80\n",
	  { { 2, "[mediawiki] host: '127.0.0.1:80' is not an IPv4 address, a bracketed IPv6 "
		 "address ([::1]) or a host name" } } },
	{ "mediawiki host with a path", "[mediawiki]\nhost = mw/x\n",
	  { { 2, "[mediawiki] host: 'mw/x' is not an IPv4 address, a bracketed IPv6 address "
		 "([::1]) or a host name" } } },
	{ "mediawiki host bad IPv4", "[mediawiki]\nhost = 127.0.0.256\n",
	  { { 2, "[mediawiki] host: '127.0.0.256' is not an IPv4 address, a bracketed IPv6 "
		 "address ([::1]) or a host name" } } },
	{ "mediawiki host bad bracketed IPv6", "[mediawiki]\nhost = [::g]\n",
	  { { 2, "[mediawiki] host: '[::g]' is not an IPv4 address, a bracketed IPv6 address "
		 "([::1]) or a host name" } } },
	{ "probe_interval_max zero", "[drain]\nprobe_interval_max = 0\n",
	  { { 2, "[drain] probe_interval_max: '0' is out of range (allowed: 1..3600)" } } },
	{ "probe_interval_max junk", "[drain]\nprobe_interval_max = 5s\n",
	  { { 2, "[drain] probe_interval_max: '5s' is not a whole number (allowed: 1..3600)" } } },
	{ "priority_types bad character", "[drain]\npriority_types = cirrus*, bad/type\n",
	  { { 2, "[drain] priority_types: pattern 'bad/type' has '/': only [A-Za-z0-9_.:-] and the "
		 "wildcards * and ?" } } },
	{ "skip_types bad on a continuation", "[drain]\nskip_types = a\n  b c%\n",
	  { { 2, "[drain] skip_types: pattern 'c%' has '%': only [A-Za-z0-9_.:-] and the "
		 "wildcards * and ?" } } },
	{ "secret value never echoed", "[platform_db]\npassword = hunter2\n  more\n",
	  { { 3, "[platform_db] password: continuation line, but this key takes a single line" } } },
};
/* clang-format on */

#define NERROR_CASES (sizeof(error_cases) / sizeof(error_cases[0]))

/* Is `line` one of the lines of text (whole line, without its '\n')? */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && p[n] == '\n')
			return true;
	return false;
}

static size_t count_lines(const char *text)
{
	size_t n = 0;

	for (; *text; text++)
		n += *text == '\n';
	return n;
}

static void test_error_case(void **state)
{
	const struct error_case *c = *state;
	char *path = write_temp(c->ini);
	struct config *cfg = NULL;
	struct buf err;
	const char *got;
	size_t want_n = 0;
	int rc, missing = 0;

	buf_init(&err);
	rc = config_load(path, &cfg, &err);
	got = err.data ? err.data : "";
	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	for (; want_n < 8 && c->errors[want_n].line != 0; want_n++) {
		char *text = expand(c->errors[want_n].text);
		char *line = NULL;
		assert_true(asprintf(&line, "%s:%d: %s", path, c->errors[want_n].line, text) > 0);
		if (!has_line(got, line)) {
			print_error("missing error line: %s\n", line);
			missing++;
		}
		free(line);
		free(text);
	}
	if (missing || count_lines(got) != want_n)
		fail_msg("%s: want %zu error line(s), got %zu:\n%s", c->name, want_n,
			 count_lines(got), got);
	assert_null(strstr(got, "hunter2"));
	buf_release(&err);
	remove_temp(path);
}

static void test_missing_file(void **state)
{
	struct config *cfg = NULL;
	struct buf err;

	(void)state;
	buf_init(&err);
	assert_int_equal(config_load("/nonexistent/jd.ini", &cfg, &err), -EINVAL);
	assert_null(cfg);
	assert_string_equal(err.data,
			    "/nonexistent/jd.ini: cannot open: No such file or directory\n");
	buf_release(&err);
}

/* ---- success cases ---------------------------------------------------------------- */

/* The built-in discovery query (wbaas schema): checked by shape here; test_repo_conf
 * checks it against the one documented in conf/jobdrainer.ini. */
static void assert_default_query(const char *q)
{
	static const char head[] = "SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value\n"
				   "FROM wikis w\n";
	static const char tail[] = "\nORDER BY w.id";
	size_t n = strlen(q);

	assert_int_equal(strncmp(q, head, strlen(head)), 0);
	assert_true(n > strlen(tail));
	assert_string_equal(q + n - strlen(tail), tail);
	assert_non_null(strstr(q, "\nWHERE w.deleted_at IS NULL\n"));
	assert_non_null(strstr(q, "@jobdrainer_version"));
	/* Every line fits in an INI line, indented: the default can be written out. */
	for (const char *line = q; line != NULL;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		assert_true(len + 8 <= (size_t)config_max_line());
	}
}

/* A reload keeps what a running daemon cannot change, names it, and refuses batches
 * that would outlast the running leases. */
static void test_keep_static(void **state)
{
	struct config *cur, *next;
	struct buf kept, errors;

	(void)state;
	cur = load_ok("[sidecar]\nholder = pod-a\n[http]\nlisten = 127.0.0.1:9180\n"
		      "[coordination]\nlease_ttl = 60\n");
	next = load_ok("[sidecar]\nholder = pod-b\nworkers = 5\n[http]\nlisten = :1\n"
		       "[coordination]\nlease_ttl = 600\n[platform_db]\nhost = db2\n"
		       "[drain]\nbatches_per_second = 3\n");
	buf_init(&kept);
	buf_init(&errors);
	assert_int_equal(config_keep_static(next, cur, &kept, &errors), 0);
	/* [scan_db] host follows [platform_db]'s when unset, [binlog] host [scan_db]'s:
	 * they changed too. */
	assert_string_equal(kept.data, "[sidecar] holder, [http] listen, [platform_db] host, "
				       "[scan_db] host, [coordination] lease_ttl, [binlog] host");
	assert_string_equal(next->holder, "pod-a");
	assert_string_equal(next->http_listen, "127.0.0.1:9180");
	assert_string_equal(next->platform.host, "127.0.0.1");
	assert_int_equal(next->lease_ttl, 60);
	assert_int_equal(next->workers, 5); /* live keys take the file's value */
	assert_int_equal(next->batches_per_second, 3);
	config_free(next);
	buf_release(&kept);

	/* maxtime 40 + allowance 30 would fit a 600 s lease, not the running 60 s one. */
	next = load_ok("[coordination]\nlease_ttl = 600\n[mediawiki]\nmaxtime = 40\n");
	buf_init(&kept);
	assert_int_equal(config_keep_static(next, cur, &kept, &errors), -EINVAL);
	assert_non_null(strstr(errors.data, "[mediawiki] maxtime + timeout_allowance = 70 s"));
	config_free(next);
	config_free(cur);
	buf_release(&kept);
	buf_release(&errors);
}

/* [scan_db]'s own login, which it then may use on every allowed server. */
#define SCAN_LOGIN "[scan_db]\nuser = scan\npassword = scan-secret\n"

/* The trust boundary: the servers discovery rows may send the scan's login to. */
static void test_allowed_servers(void **state)
{
	struct config *cfg;

	(void)state;
	/* None listed: only [scan_db]'s and [platform_db]'s own servers. */
	cfg = load_ok(
		"[platform_db]\nhost = DB1.internal\n[scan_db]\nhost = replica\nport = 3307\n");
	assert_string_equal(cfg->scan_allowed_servers, "");
	assert_true(config_server_allowed(cfg, "db1.internal:3306"));
	assert_true(config_server_allowed(cfg, "replica:3307"));
	assert_false(config_server_allowed(cfg, "replica:3306"));
	assert_false(config_server_allowed(cfg, "db2:3306"));
	assert_true(config_endpoint_is(&cfg->scan, "replica:3307"));
	assert_false(config_endpoint_is(&cfg->scan, "db1.internal:3306"));
	config_free(cfg);

	/* Listed in any spelling, kept (and compared) in the canonical one; a name is a
	 * whole word of the list, not a part of one. */
	cfg = load_ok("[scan]\nallowed_servers = DB2, 10.0.0.7:03307\n  db3.internal.\n" SCAN_LOGIN);
	assert_string_equal(cfg->scan_allowed_servers, "db2:3306 10.0.0.7:3307 db3.internal:3306");
	assert_true(config_server_allowed(cfg, "db2:3306"));
	assert_true(config_server_allowed(cfg, "10.0.0.7:3307"));
	assert_true(config_server_allowed(cfg, "db3.internal:3306"));
	assert_true(config_server_allowed(cfg, "127.0.0.1:3306")); /* the defaults' */
	assert_false(config_server_allowed(cfg, "b2:3306"));
	assert_false(config_server_allowed(cfg, "db2:330"));
	assert_false(config_server_allowed(cfg, "10.0.0.7:3306"));
	assert_false(config_server_allowed(cfg, "db3.internal:3306 db2:3306"));
	config_free(cfg);

	/* 64 is the most. */
	cfg = load_ok("[scan]\nallowed_servers = " SIXTY_FOUR_SERVERS "\n" SCAN_LOGIN);
	config_free(cfg);

	/* A reload cannot widen it: the running list stays, and the log says so. */
	struct config *cur = load_ok(SCAN_LOGIN),
		      *next = load_ok("[scan]\nallowed_servers = db2\n" SCAN_LOGIN);
	struct buf kept, errors;
	buf_init(&kept);
	buf_init(&errors);
	assert_int_equal(config_keep_static(next, cur, &kept, &errors), 0);
	assert_string_equal(kept.data, "[scan] allowed_servers");
	assert_string_equal(next->scan_allowed_servers, "");
	assert_false(config_server_allowed(next, "db2:3306"));
	config_free(next);
	config_free(cur);
	buf_release(&kept);
	buf_release(&errors);
}

/* [server HOST:PORT] sections: canonical names, their logins and TLS, the feed's
 * credentials, and what they allow. */
static void test_server_sections(void **state)
{
	const struct server_conf *sv;
	const struct db_endpoint *login;
	struct config *cfg;
	char *pw, *ini = NULL;

	(void)state;
	assert_int_equal(setenv(PW_ENV, "env-secret", 1), 0);
	pw = write_temp("file-secret\n");
	/* The second name is longer than the 49 bytes inih keeps of a section name. */
	assert_true(asprintf(&ini,
			     "[scan_db]\ntls = verify\n"
			     "[server DB2.Internal.]\nuser = scan2\npassword_file = %s\n"
			     "binlog_user = feed\nbinlog_password_env = " PW_ENV "\n"
			     "[server mariadb-secondary.default.svc.cluster.local:3307]\n"
			     "user = scan3\npassword = hunter2\ntls = off\n",
			     pw) > 0);
	cfg = load_ok(ini);
	assert_int_equal(cfg->nservers, 2);
	assert_false(cfg->scan_login_explicit);

	sv = config_server(cfg, "db2.internal:3306");
	assert_non_null(sv);
	assert_string_equal(sv->name, "db2.internal:3306");
	assert_string_equal(sv->scan.host, "db2.internal");
	assert_int_equal(sv->scan.port, 3306);
	assert_string_equal(sv->scan.user, "scan2");
	assert_string_equal(sv->scan.password, "file-secret");
	assert_string_equal(sv->scan.socket, "");
	assert_string_equal(sv->scan.database, "");
	assert_int_equal(sv->scan.tls, DB_TLS_VERIFY); /* [scan_db]'s, unset here */
	assert_int_equal(sv->scan.query_timeout, cfg->scan.query_timeout);
	assert_string_equal(sv->binlog_user, "feed");
	assert_string_equal(sv->binlog_password, "env-secret");
	assert_ptr_equal(config_scan_login(cfg, "db2.internal:3306"), &sv->scan);

	sv = config_server(cfg, "mariadb-secondary.default.svc.cluster.local:3307");
	assert_non_null(sv);
	assert_string_equal(sv->scan.password, "hunter2");
	assert_int_equal(sv->scan.tls, DB_TLS_OFF);
	assert_string_equal(sv->binlog_user, "");

	/* A section allows its server; nothing else is added. */
	assert_true(config_server_allowed(cfg, "db2.internal:3306"));
	assert_false(config_server_allowed(cfg, "db2.internal:3307"));
	assert_null(config_server(cfg, "db9:3306"));
	/* A server nobody gave a login to: none, even [platform_db]'s ... */
	assert_null(config_scan_login(cfg, "db9:3306"));
	/* ... which goes only where [platform_db] and [scan_db] point anyway. */
	login = config_scan_login(cfg, "127.0.0.1:3306");
	assert_ptr_equal(login, &cfg->scan);
	config_free(cfg);
	free(ini);

	/* [scan_db]'s own login (user and password set there): one scan user for all. */
	cfg = load_ok("[platform_db]\npassword = hunter2\n" SCAN_LOGIN
		      "[scan]\nallowed_servers = db2\n[server db3]\ntls = on\n");
	assert_true(cfg->scan_login_explicit);
	assert_ptr_equal(config_scan_login(cfg, "db2:3306"), &cfg->scan);
	assert_ptr_equal(config_scan_login(cfg, "db3:3306"), &cfg->scan);
	assert_string_equal(cfg->scan.password, "scan-secret");
	config_free(cfg);

	/* "password =" said in [scan_db] is a login of its own too: no password. */
	cfg = load_ok("[platform_db]\npassword = hunter2\n[scan_db]\nuser = ro\npassword =\n"
		      "[scan]\nallowed_servers = db2\n");
	assert_true(cfg->scan_login_explicit);
	assert_string_equal(cfg->scan.password, "");
	config_free(cfg);
	remove_temp(pw);
	unsetenv(PW_ENV);
}

/* At most CONFIG_SERVERS_MAX servers, sections and list together. */
static void test_server_sections_bounded(void **state)
{
	struct buf text, err;
	struct config *cfg = NULL;
	char *path, want[128];

	(void)state;
	buf_init(&text);
	for (int i = 0; i < CONFIG_SERVERS_MAX; i++)
		buf_addf(&text, "[server db%d]\nuser = u\n", i);
	cfg = load_ok(text.data);
	assert_int_equal(cfg->nservers, CONFIG_SERVERS_MAX);
	config_free(cfg);

	buf_addf(&text, "[server db%d]\nuser = u\n", CONFIG_SERVERS_MAX);
	path = write_temp(text.data);
	buf_init(&err);
	assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s:%d: [server db%d]: more than %d [server] sections\n", path,
		 2 * CONFIG_SERVERS_MAX + 1, CONFIG_SERVERS_MAX, CONFIG_SERVERS_MAX);
	assert_string_equal(err.data, want);
	buf_release(&err);
	remove_temp(path);
	buf_release(&text);

	/* 64 listed and one section more; a section of a listed server is no extra. */
	buf_init(&text);
	buf_addf(&text, "[scan]\nallowed_servers = " SIXTY_FOUR_SERVERS "\n" SCAN_LOGIN
			"[server db00]\nuser = u\n");
	cfg = load_ok(text.data);
	config_free(cfg);
	buf_addf(&text, "[server db99]\nuser = u\n");
	path = write_temp(text.data);
	buf_init(&err);
	assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.data, "[server db99:3306]: more than 64 servers in [scan] "
					 "allowed_servers and [server] sections together\n"));
	buf_release(&err);
	remove_temp(path);
	buf_release(&text);
}

/* tls and tls_ca: off by default, inherited like the other endpoint keys. */
static void test_tls_keys(void **state)
{
	struct config *cfg;
	char *ca, *ini = NULL;

	(void)state;
	cfg = load_ok("");
	assert_int_equal(cfg->platform.tls, DB_TLS_OFF);
	assert_int_equal(cfg->scan.tls, DB_TLS_OFF);
	assert_int_equal(cfg->binlog.tls, DB_TLS_OFF);
	assert_string_equal(cfg->scan.tls_ca, "");
	config_free(cfg);

	ca = write_temp("-----BEGIN CERTIFICATE-----\n");
	assert_true(asprintf(&ini,
			     "[platform_db]\ntls = verify\ntls_ca = %s\n"
			     "[binlog]\ntls = on\n[server db2]\nuser = u\n",
			     ca) > 0);
	cfg = load_ok(ini);
	assert_int_equal(cfg->platform.tls, DB_TLS_VERIFY);
	assert_string_equal(cfg->platform.tls_ca, ca);
	/* [scan_db] from [platform_db], [binlog] from [scan_db], a server from [scan_db]. */
	assert_int_equal(cfg->scan.tls, DB_TLS_VERIFY);
	assert_string_equal(cfg->scan.tls_ca, ca);
	assert_int_equal(cfg->binlog.tls, DB_TLS_ON);
	assert_int_equal(cfg->servers[0].scan.tls, DB_TLS_VERIFY);
	assert_string_equal(cfg->servers[0].scan.tls_ca, ca);
	config_free(cfg);
	free(ini);
	remove_temp(ca);
}

static char *print_config(const struct config *cfg);

/* [server] sections print (secrets masked) and load back; a reload keeps them. */
static void test_server_sections_print_and_keep(void **state)
{
	struct config *c1, *c2;
	struct buf kept, errors;
	char *p1, *p2;

	(void)state;
	c1 = load_ok("[server db2]\nuser = u\npassword = hunter2\ntls = on\n"
		     "binlog_user = f\nbinlog_password = hunter3\n");
	p1 = print_config(c1);
	assert_non_null(strstr(p1, "\n[server db2:3306]\nuser = u\npassword = ********\n"));
	assert_null(strstr(p1, "hunter"));
	c2 = load_ok(p1);
	p2 = print_config(c2);
	assert_string_equal(p1, p2);
	config_free(c2);
	free(p1);
	free(p2);

	/* A reload can neither add, drop nor change a server: the running ones stay. */
	c2 = load_ok("[server db3]\nuser = u\n");
	buf_init(&kept);
	buf_init(&errors);
	assert_int_equal(config_keep_static(c2, c1, &kept, &errors), 0);
	assert_string_equal(kept.data, "[server] sections");
	assert_int_equal(c2->nservers, 1);
	assert_non_null(config_server(c2, "db2:3306"));
	assert_null(config_server(c2, "db3:3306"));
	assert_string_equal(config_server(c2, "db2:3306")->scan.password, "hunter2");
	assert_string_equal(config_server(c2, "db2:3306")->binlog_password, "hunter3");
	config_free(c2);
	buf_release(&kept);
	/* The same sections: nothing to keep. */
	c2 = load_ok("[server db2:3306]\nuser = u\npassword = hunter2\ntls = on\n"
		     "binlog_user = f\nbinlog_password = hunter3\n");
	buf_init(&kept);
	assert_int_equal(config_keep_static(c2, c1, &kept, &errors), 0);
	assert_int_equal(kept.len, 0);
	config_free(c2);
	config_free(c1);
	buf_release(&kept);
	buf_release(&errors);
}

static void test_defaults(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("");
	assert_int_equal(cfg->workers, 2);
	assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->shutdown_timeout, 25);
	assert_string_equal(cfg->mw_host, "127.0.0.1");
	assert_int_equal(cfg->mw_port, 80);
	assert_string_equal(cfg->mw_path, "/w/index.php");
	assert_int_equal(cfg->maxjobs, 100);
	assert_int_equal(cfg->maxtime, 15);
	assert_int_equal(cfg->http_allowance, 30);
	assert_int_equal(cfg->http_connect_timeout, 5);
	assert_int_equal(cfg->signature_ttl, 30);
	assert_int_equal(cfg->max_body_kib, 1024);
	assert_string_equal(cfg->platform.host, "127.0.0.1");
	assert_int_equal(cfg->platform.port, 3306);
	assert_string_equal(cfg->platform.socket, "");
	assert_string_equal(cfg->platform.user, "jobdrainer");
	assert_string_equal(cfg->platform.password, "");
	assert_string_equal(cfg->platform.database, "apidb");
	assert_int_equal(cfg->platform.connect_timeout, 5);
	assert_int_equal(cfg->platform.query_timeout, 30);
	assert_default_query(cfg->discovery_query);
	assert_string_equal(cfg->mw_version, "");
	assert_int_equal(cfg->discovery_interval, 60);
	/* [scan_db] entirely inherited */
	assert_string_equal(cfg->scan.host, "127.0.0.1");
	assert_int_equal(cfg->scan.port, 3306);
	assert_string_equal(cfg->scan.user, "jobdrainer");
	assert_string_equal(cfg->scan.password, "");
	assert_string_equal(cfg->scan.database, "apidb");
	assert_int_equal(cfg->scan.connect_timeout, 5);
	assert_int_equal(cfg->scan.query_timeout, 30);
	assert_int_equal(cfg->scan_interval, 2);
	assert_int_equal(cfg->scan_db_budget_percent, 5);
	assert_int_equal(cfg->scan_wikis_per_query, 50);
	assert_int_equal(cfg->time_slice, 60);
	assert_int_equal(cfg->backoff_base, 5);
	assert_int_equal(cfg->backoff_max, 600);
	assert_non_null(strchr(cfg->holder, ':')); /* <pod or host>:<pid> */
	assert_non_null(cfg->path);
	config_free(cfg);
}

static void test_values_and_syntax(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("; comment\n# comment\n\n[sidecar]\nworkers = 64\nlog_format = json\n"
		      "log_level = debug\n[mediawiki]\nport = 65535\nhost=mw.local\n"
		      "maxjobs = 7 ; inline comment\n[drain]\nbackoff_base = 600\n"
		      "backoff_max = 600\r\n[sidecar]\nshutdown_timeout = 1\n");
	assert_int_equal(cfg->workers, 64);
	assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->mw_port, 65535);
	assert_string_equal(cfg->mw_host, "mw.local");
	assert_int_equal(cfg->maxjobs, 7);
	assert_int_equal(cfg->backoff_base, 600);
	assert_int_equal(cfg->backoff_max, 600);
	assert_int_equal(cfg->shutdown_timeout, 1);
	config_free(cfg);
}

static void test_multiline_query(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("[discovery]\nquery = SELECT domain, db, prefix, secret\n"
		      "    FROM wikis\n"
		      "\tWHERE ok = 1\n"
		      "; a comment inside\n"
		      "    ORDER BY id\n"
		      "version = mw1.39\n");
	assert_string_equal(
		cfg->discovery_query,
		"SELECT domain, db, prefix, secret\nFROM wikis\nWHERE ok = 1\nORDER BY id");
	assert_string_equal(cfg->mw_version, "mw1.39");
	config_free(cfg);
}

/* conf/jobdrainer.ini: comments "follow a value after ' ;'". inih 55 strips them on a
 * key's first line but not on its continuation lines, so today they end up in the
 * SQL. */
static void test_inline_comment_on_continuation(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("[discovery]\nquery = SELECT a, b, c, d ; the columns\n"
		      "    FROM wikis ; the table\n");
	assert_string_equal(cfg->discovery_query, "SELECT a, b, c, d\nFROM wikis");
	config_free(cfg);
}

/* inih reads lines of up to 197 bytes: exactly that is fine. */
static void test_longest_line(void **state)
{
	struct config *cfg;
	char want[200];

	(void)state;
	assert_int_equal(config_max_line(), 197);
	cfg = load_ok("[sidecar]\nholder = @H188@\n"); /* 9 + 188 = 197 bytes */
	memset(want, 'h', 188);
	want[188] = '\0';
	assert_string_equal(cfg->holder, want);
	config_free(cfg);
}

/* An indented key = value line right after a section header is an ordinary key for
 * inih (there is no previous key to continue), and must be taken as one. */
static void test_indented_key_after_header(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("[sidecar]\n  workers = 3\n");
	assert_int_equal(cfg->workers, 3);
	config_free(cfg);
	cfg = load_ok("[discovery]\n  query = SELECT a, b, c, d FROM w\n");
	assert_string_equal(cfg->discovery_query, "SELECT a, b, c, d FROM w");
	config_free(cfg);
}

static void test_password_file_scan_db(void **state)
{
	struct config *cfg;
	char *pw = write_temp("s3cret\n");
	char *ini = NULL;

	(void)state;
	assert_true(asprintf(&ini, "[scan_db]\nhost = replica\npassword_file = %s\n", pw) > 0);
	cfg = load_ok(ini);
	assert_string_equal(cfg->scan.password, "s3cret");
	assert_string_equal(cfg->scan.password_file, pw);
	assert_string_equal(cfg->platform.password, "");
	config_free(cfg);
	free(ini);
	remove_temp(pw);
}

/* The primary Kubernetes setup: the platform password from a mounted Secret, the scan
 * endpoint left to inherit it. */
static void test_password_file_platform_db(void **state)
{
	struct config *cfg;
	char *pw = write_temp("s3cret\r\n");
	char *ini = NULL;

	(void)state;
	assert_true(asprintf(&ini, "[platform_db]\npassword_file = %s\n", pw) > 0);
	cfg = load_ok(ini);
	assert_string_equal(cfg->platform.password, "s3cret");
	assert_string_equal(cfg->scan.password, "s3cret");
	config_free(cfg);
	free(ini);
	remove_temp(pw);
}

static void test_password_env_scan_db(void **state)
{
	struct config *cfg;

	(void)state;
	assert_int_equal(setenv(PW_ENV, "from env", 1), 0);
	cfg = load_ok("[scan_db]\npassword_env = " PW_ENV "\n");
	assert_string_equal(cfg->scan.password, "from env");
	assert_string_equal(cfg->platform.password, "");
	config_free(cfg);
	unsetenv(PW_ENV);
}

static void test_password_env_platform_db(void **state)
{
	struct config *cfg;

	(void)state;
	assert_int_equal(setenv(PW_ENV, "from env", 1), 0);
	cfg = load_ok("[platform_db]\npassword_env = " PW_ENV "\n");
	assert_string_equal(cfg->platform.password, "from env");
	assert_string_equal(cfg->scan.password, "from env");
	config_free(cfg);
	unsetenv(PW_ENV);
}

/* [scan_db] overrides what it sets and inherits the rest. */
static void test_scan_inherits(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("[platform_db]\nhost = db-primary\nport = 3307\nuser = u1\npassword = pw1\n"
		      "database = platform\nquery_timeout = 9\n"
		      "[scan_db]\nhost = db-replica\nconnect_timeout = 2\n");
	assert_string_equal(cfg->scan.host, "db-replica");
	assert_int_equal(cfg->scan.port, 3307);
	assert_string_equal(cfg->scan.user, "u1");
	assert_string_equal(cfg->scan.password, "pw1");
	assert_string_equal(cfg->scan.database, "platform");
	assert_int_equal(cfg->scan.connect_timeout, 2);
	assert_int_equal(cfg->scan.query_timeout, 9);
	assert_string_equal(cfg->platform.host, "db-primary");
	assert_int_equal(cfg->platform.connect_timeout, 5);
	config_free(cfg);

	/* The scan endpoint's own password wins over the inherited one. */
	cfg = load_ok("[platform_db]\npassword = pw1\n[scan_db]\npassword = pw2\n");
	assert_string_equal(cfg->platform.password, "pw1");
	assert_string_equal(cfg->scan.password, "pw2");
	config_free(cfg);
}

/* The password and its sources are inherited as one: a [scan_db] source of another
 * kind replaces [platform_db]'s instead of conflicting with it. */
static void test_scan_password_group(void **state)
{
	struct config *cfg;
	char *pw = write_temp("replica-pw\n");
	char *ini = NULL;

	(void)state;
	assert_true(asprintf(&ini, "[platform_db]\npassword = pw1\n[scan_db]\npassword_file = %s\n",
			     pw) > 0);
	cfg = load_ok(ini);
	assert_string_equal(cfg->platform.password, "pw1");
	assert_string_equal(cfg->scan.password, "replica-pw");
	config_free(cfg);
	free(ini);

	assert_int_equal(setenv(PW_ENV, "env-pw", 1), 0);
	assert_true(asprintf(&ini,
			     "[platform_db]\npassword_file = %s\n[scan_db]\npassword_env = " PW_ENV
			     "\n",
			     pw) > 0);
	cfg = load_ok(ini);
	assert_string_equal(cfg->platform.password, "replica-pw");
	assert_string_equal(cfg->scan.password, "env-pw");
	assert_string_equal(cfg->scan.password_file, "");
	config_free(cfg);
	free(ini);
	unsetenv(PW_ENV);
	remove_temp(pw);
}

static void expect_refused(const char *section, const char *key, const char *value, const char *why);

/* [binlog] is auto by default: on with a [binlog] user of its own, off without (an
 * inherited user does not count); its endpoint inherits [scan_db]'s (which inherits
 * [platform_db]'s), its own keys win, and a password of its own replaces the chain's. */
static void test_binlog_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("");
	assert_int_equal(cfg->binlog_enabled, 0);
	assert_int_equal(cfg->binlog_server_id, 0);
	assert_int_equal(cfg->binlog_retry_interval, 30);
	config_free(cfg);

	cfg = load_ok("[platform_db]\nhost = primary\nport = 3307\nuser = u1\npassword = pw1\n"
		      "[scan_db]\nhost = replica\nconnect_timeout = 2\n"
		      "[binlog]\nenabled = true\nserver_id = 4000\n");
	assert_int_equal(cfg->binlog_enabled, 1);
	assert_int_equal(cfg->binlog_server_id, 4000);
	assert_string_equal(cfg->binlog.host, "replica");
	assert_int_equal(cfg->binlog.port, 3307);
	assert_string_equal(cfg->binlog.user, "u1");
	assert_string_equal(cfg->binlog.password, "pw1");
	assert_int_equal(cfg->binlog.connect_timeout, 2);
	config_free(cfg);

	cfg = load_ok("[scan_db]\nuser = scanner\n[binlog]\nhost = primary\n");
	assert_int_equal(cfg->binlog_enabled, 0);
	assert_string_equal(cfg->binlog.user, "scanner");
	config_free(cfg);

	cfg = load_ok("[binlog]\nenabled = false\nuser = repl\n");
	assert_int_equal(cfg->binlog_enabled, 0);
	config_free(cfg);

	cfg = load_ok("[platform_db]\npassword = pw1\n"
		      "[binlog]\nhost = primary\nuser = repl\npassword = pw3\n");
	assert_int_equal(cfg->binlog_enabled, 1);
	assert_string_equal(cfg->binlog.host, "primary");
	assert_string_equal(cfg->binlog.user, "repl");
	assert_string_equal(cfg->binlog.password, "pw3");
	assert_string_equal(cfg->scan.password, "pw1");
	config_free(cfg);

	expect_refused("binlog", "enabled", "yes",
		       "not one of the allowed values (allowed: false, true, auto)");
}

static void test_holder(void **state)
{
	struct config *cfg;
	char want[64];

	(void)state;
	assert_int_equal(setenv("POD_NAME", "jobdrainer-7f9c", 1), 0);
	snprintf(want, sizeof(want), "jobdrainer-7f9c:%d", (int)getpid());
	cfg = load_ok("");
	assert_string_equal(cfg->holder, want);
	config_free(cfg);

	cfg = load_ok("[sidecar]\nholder = explicit-1\n");
	assert_string_equal(cfg->holder, "explicit-1");
	config_free(cfg);

	/* Empty POD_NAME: HOSTNAME next. */
	assert_int_equal(setenv("POD_NAME", "", 1), 0);
	assert_int_equal(setenv("HOSTNAME", "host-b", 1), 0);
	snprintf(want, sizeof(want), "host-b:%d", (int)getpid());
	cfg = load_ok("");
	assert_string_equal(cfg->holder, want);
	config_free(cfg);

	/* A pod name the tables would refuse: non-ASCII bytes become '-'. */
	assert_int_equal(setenv("POD_NAME", "pod-\xc3\xa9 x", 1), 0);
	snprintf(want, sizeof(want), "pod----x:%d", (int)getpid());
	cfg = load_ok("");
	assert_string_equal(cfg->holder, want);
	config_free(cfg);

	/* A pod name too long for jd_lease.holder: cut, with a hash that keeps two such
	 * names apart. */
	{
		char longa[400], longb[400];
		char *ha;
		memset(longa, 'a', sizeof(longa) - 1);
		longa[sizeof(longa) - 1] = '\0';
		memcpy(longb, longa, sizeof(longb));
		longb[sizeof(longb) - 2] = 'b';
		assert_int_equal(setenv("POD_NAME", longa, 1), 0);
		cfg = load_ok("");
		assert_true(strlen(cfg->holder) <= 255);
		assert_true(util_is_holder(cfg->holder));
		assert_int_equal(strncmp(cfg->holder, "aaaa", 4), 0);
		ha = strdup(cfg->holder);
		config_free(cfg);
		assert_int_equal(setenv("POD_NAME", longb, 1), 0);
		cfg = load_ok("");
		assert_true(strlen(cfg->holder) <= 255);
		assert_string_not_equal(cfg->holder, ha);
		config_free(cfg);
		free(ha);
	}
	unsetenv("POD_NAME");
	unsetenv("HOSTNAME");
}

static const char *repo_conf(void)
{
	const char *p = getenv("JD_CONF");

	return p != NULL && *p ? p : "conf/jobdrainer.ini";
}

/* Loads "[section]\nkey = value\n" and checks the one error names section and key. */
static void expect_refused(const char *section, const char *key, const char *value, const char *why)
{
	char ini[256], want[320];
	char *path;
	struct config *cfg = NULL;
	struct buf err;

	snprintf(ini, sizeof(ini), "[%s]\n%s = %s\n", section, key, value);
	path = write_temp(ini);
	buf_init(&err);
	assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: [%s] %s: '%s' is %s", path, section, key, value, why);
	if (err.data == NULL || strstr(err.data, want) == NULL)
		fail_msg("want \"%s\", got:\n%s", want, err.data ? err.data : "(nothing)");
	buf_release(&err);
	remove_temp(path);
}

/* Every number key the shipped INI documents refuses junk and out-of-range values with
 * a message naming it: the table's ranges hold for each key, not just the ones the
 * table above happens to list. */
static void test_every_number_key_refuses_bad_values(void **state)
{
	FILE *f = fopen(repo_conf(), "r");
	char line[512], section[64] = "";
	int checked = 0;

	(void)state;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char key[64], value[64], extra;
		if (sscanf(line, "[%63[^]]]", section) == 1)
			continue;
		if (sscanf(line, "%63[a-z_] = %63[-0-9]%c", key, value, &extra) != 3 ||
		    extra != '\n')
			continue;
		expect_refused(section, key, "99999999999", "out of range");
		expect_refused(section, key, "12abc", "not a whole number");
		checked++;
	}
	fclose(f);
	/* workers, port, maxjobs, ..., poll_interval_ms: a good share of the table. */
	assert_true(checked >= 25);
}

/* Prints cfg to a string, without the first line (it names the file). Caller frees. */
static char *print_config(const struct config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	char *body;

	assert_non_null(f);
	config_print(cfg, f);
	assert_int_equal(fclose(f), 0);
	body = strchr(text, '\n');
	assert_non_null(body);
	body = strdup(body + 1);
	free(text);
	return body;
}

/* The shipped file loads, and documents exactly the built-in defaults. */
static void test_repo_conf(void **state)
{
	struct config *shipped = NULL, *builtin;
	struct buf err;
	char *a, *b;

	(void)state;
	buf_init(&err);
	if (config_load(repo_conf(), &shipped, &err) != 0)
		fail_msg("%s does not load (run from the repo root or set JD_CONF):\n%s",
			 repo_conf(), err.data ? err.data : "");
	assert_int_equal(err.len, 0);
	builtin = load_ok("");
	a = print_config(shipped);
	b = print_config(builtin);
	assert_string_equal(a, b);
	free(a);
	free(b);
	config_free(shipped);
	config_free(builtin);
	buf_release(&err);
}

/* config_print's output is itself a valid config that loads back to the same values. */
static void test_print_round_trip(void **state)
{
	struct config *c1, *c2;
	char *p1, *p2;

	(void)state;
	c1 = load_ok("[sidecar]\nworkers = 7\nholder = h-1\n[mediawiki]\npath = /index.php\n"
		     "[discovery]\nquery = SELECT a,\n  b, c, d\n  FROM t\n"
		     "[scan_db]\nhost = replica\n");
	p1 = print_config(c1);
	c2 = load_ok(p1);
	p2 = print_config(c2);
	assert_string_equal(p1, p2);
	assert_int_equal(c2->workers, 7);
	assert_string_equal(c2->discovery_query, "SELECT a,\nb, c, d\nFROM t");
	assert_string_equal(c2->scan.host, "replica");
	free(p1);
	free(p2);
	config_free(c1);
	config_free(c2);
}

static void test_print_masks_secrets(void **state)
{
	struct config *cfg;
	char *out, *pw, *ini = NULL;
	size_t n = 0;

	(void)state;
	pw = write_temp("file-secret-xyzzy\n");
	assert_true(asprintf(&ini,
			     "[platform_db]\npassword = hunter2\n[scan_db]\npassword_file = %s\n",
			     pw) > 0);
	cfg = load_ok(ini);
	assert_string_equal(cfg->platform.password, "hunter2");
	assert_string_equal(cfg->scan.password, "file-secret-xyzzy");
	out = print_config(cfg);
	assert_null(strstr(out, "hunter2"));
	assert_null(strstr(out, "xyzzy"));
	for (const char *p = out; (p = strstr(p, "\npassword = ********\n")) != NULL; p++)
		n++;
	assert_int_equal(n, 3); /* [platform_db], [scan_db] and [binlog] (inherited) */
	assert_non_null(strstr(out, "\npassword_file = "));
	free(out);
	config_free(cfg);

	/* No password: printed empty, not as asterisks. */
	cfg = load_ok("");
	out = print_config(cfg);
	assert_non_null(strstr(out, "\npassword =\n"));
	assert_null(strstr(out, "********"));
	free(out);
	config_free(cfg);
	free(ini);
	remove_temp(pw);
}

/* ---- main ------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	int fd;

	(void)state;
	unsetenv(UNSET_ENV);
	if (setenv(EMPTY_ENV, "", 1) != 0)
		return -1;
	snprintf(empty_file, sizeof(empty_file), "/tmp/jdtest-empty-XXXXXX");
	if ((fd = mkstemp(empty_file)) < 0)
		return -1;
	close(fd);
	snprintf(newline_file, sizeof(newline_file), "/tmp/jdtest-newline-XXXXXX");
	if ((fd = mkstemp(newline_file)) < 0 || write(fd, "\n", 1) != 1)
		return -1;
	close(fd);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(empty_file);
	unlink(newline_file);
	unsetenv(EMPTY_ENV);
	unsetenv(PW_ENV);
	return 0;
}

/* What a reload compares (reload_looks_cut): the file's keys, last newline and known
 * section headers, an empty header included. */
static void test_file_shape(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("; comment\n[drain]\nskip_types = farm*\n[scan]\n[drain]\n"
		      "time_slice = 30\n[mediawiki]\nmaxjobs = 5\n");
	assert_int_equal(cfg->shape.keys, 3);
	assert_int_equal(cfg->shape.lines, 8);
	assert_true(cfg->shape.final_newline);
	assert_string_equal(cfg->shape.sections, " drain scan mediawiki");
	config_free(cfg);
	cfg = load_ok("[drain]\nskip_types = farm*\n[mediawiki]\nmaxjobs = 1");
	assert_false(cfg->shape.final_newline);
	assert_int_equal(cfg->shape.keys, 2);
	config_free(cfg);
	cfg = load_ok("");
	assert_int_equal(cfg->shape.keys, 0);
	assert_int_equal(cfg->shape.lines, 0);
	assert_true(cfg->shape.final_newline);
	assert_string_equal(cfg->shape.sections, "");
	config_free(cfg);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_allowed_servers),
		cmocka_unit_test(test_keep_static),
		cmocka_unit_test(test_server_sections),
		cmocka_unit_test(test_server_sections_bounded),
		cmocka_unit_test(test_tls_keys),
		cmocka_unit_test(test_server_sections_print_and_keep),
		cmocka_unit_test(test_values_and_syntax),
		cmocka_unit_test(test_multiline_query),
		cmocka_unit_test(test_inline_comment_on_continuation),
		cmocka_unit_test(test_longest_line),
		cmocka_unit_test(test_indented_key_after_header),
		cmocka_unit_test(test_password_file_scan_db),
		cmocka_unit_test(test_password_file_platform_db),
		cmocka_unit_test(test_password_env_scan_db),
		cmocka_unit_test(test_password_env_platform_db),
		cmocka_unit_test(test_scan_inherits),
		cmocka_unit_test(test_binlog_keys),
		cmocka_unit_test(test_scan_password_group),
		cmocka_unit_test(test_holder),
		cmocka_unit_test(test_repo_conf),
		cmocka_unit_test(test_every_number_key_refuses_bad_values),
		cmocka_unit_test(test_print_round_trip),
		cmocka_unit_test(test_print_masks_secrets),
		cmocka_unit_test(test_file_shape),
	};
	const size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(NERROR_CASES + nfixed, sizeof(*tests));
	int failed;

	if (tests == NULL)
		return 1;
	for (size_t i = 0; i < NERROR_CASES; i++) {
		tests[i].name = error_cases[i].name;
		tests[i].test_func = test_error_case;
		tests[i].teardown_func = remove_temps;
		tests[i].initial_state = (void *)&error_cases[i];
	}
	memcpy(tests + NERROR_CASES, fixed, sizeof(fixed));
	for (size_t i = NERROR_CASES; i < NERROR_CASES + nfixed; i++)
		tests[i].teardown_func = remove_temps;
	failed = _cmocka_run_group_tests("config", tests, NERROR_CASES + nfixed, group_setup,
					 group_teardown);
	free(tests);
	return failed;
}
