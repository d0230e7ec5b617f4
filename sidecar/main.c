/* main.c - jobdrainer: keeps every wiki's MediaWiki job queue drained through signed
 * Special:RunJobs requests to the pod's own MediaWiki.
 *
 * Reads like a table of contents: parse arguments, load the config, start the
 * subsystems in order (scheduler, scanner, workers), wait for a signal, stop them in
 * reverse. Signals are blocked in every thread and taken here, synchronously.
 *
 * Exit codes: 0 ok (also after SIGTERM/SIGINT), 1 could not start, 2 bad command line
 * or configuration. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <mysql.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "db.h"
#include "httpd.h"
#include "limiter.h"
#include "log.h"
#include "reload.h"
#include "scanner.h"
#include "sched.h"
#include "steer.h"
#include "version.h"
#include "worker.h"

#ifndef INIH_VERSION
#define INIH_VERSION "unknown"
#endif

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Options a command may take (struct command's masks). */
enum {
	OPT_JSON = 1 << 0,
	OPT_ALL = 1 << 1,
	OPT_WIKI = 1 << 2,
	OPT_FOR = 1 << 3,
	OPT_REASON = 1 << 4,
	OPT_LANES = 1 << 5,
};

/* The options, in the order messages name them; `usage` with its argument. */
/* clang-format off */
static const struct {
	unsigned bit;
	const char *name;
	const char *usage;
} option_names[] = {
	{ OPT_JSON, "--json", "--json" },
	{ OPT_WIKI, "--wiki", "--wiki DOMAIN" },
	{ OPT_ALL, "--all", "--all" },
	{ OPT_FOR, "--for", "--for DURATION" },
	{ OPT_REASON, "--reason", "--reason TEXT" },
	{ OPT_LANES, "--lanes", "--lanes N" },
};
/* clang-format on */
#define NOPTIONS (sizeof(option_names) / sizeof(option_names[0]))

struct options {
	const char *config_path;
	bool check_only;
	const char *command; /* NULL: run the daemon */
	unsigned given;      /* OPT_* bits seen on the command line */
	const char *wiki;
	long long for_s; /* pause --for; 0: until resumed */
	const char *reason;
	int lanes; /* drain --lanes; 1 when not given */
};

static int run_status(const struct config *cfg, const struct options *o)
{
	if (o->wiki != NULL)
		return steer_status_wiki(cfg, o->wiki, o->given & OPT_JSON);
	return cli_status(cfg, o->given & OPT_JSON, o->given & OPT_ALL);
}

static int run_drain(const struct config *cfg, const struct options *o)
{
	return cli_drain(cfg, o->wiki, o->lanes);
}

static int run_pause(const struct config *cfg, const struct options *o)
{
	return steer_pause(cfg, o->wiki, o->given & OPT_ALL, o->for_s, o->reason);
}

static int run_resume(const struct config *cfg, const struct options *o)
{
	return steer_resume(cfg, o->wiki, o->given & OPT_ALL);
}

/* The operator commands: the one place that says which exist, what each takes and
 * does, and which function runs it. --help, the checks of a command line and the
 * dispatch all come from it, and tests/docs/test_docs.py holds the README,
 * docs/operations.md and the man page to --help. (PgBouncer's admin.c table.) */
static const struct command {
	const char *name;
	const char *synopsis; /* after "jobdrainer [--config FILE] " in --help */
	const char *label;    /* its name in --help's list of commands */
	const char *help;     /* what it does: lines of --help's list, '\n'-separated */
	unsigned takes;       /* the options it allows */
	unsigned one_of;      /* of these, exactly one is needed (0: none) */
	unsigned at_most_one; /* of these, one at most */
	int (*run)(const struct config *cfg, const struct options *o);
} commands[] = {
	{ "status", "status [--json] [--all | --wiki DOMAIN]", "status",
	  "the fleet's wikis with a backlog, a lease or trouble,\n"
	  "most urgent first (--all: every wiki; --json); with\n"
	  "--wiki DOMAIN, that wiki by job type, its lease, state,\n"
	  "lanes and recent drains",
	  OPT_JSON | OPT_ALL | OPT_WIKI, 0, OPT_ALL | OPT_WIKI, run_status },
	{ "drain", "drain --wiki DOMAIN [--lanes N]", "drain --wiki DOMAIN",
	  "drain one wiki now, under its lease, printing each batch;\n"
	  "--lanes N (1-64): N batches at once, each under a lease\n"
	  "slot of its own (default 1)",
	  OPT_WIKI | OPT_LANES, OPT_WIKI, 0, run_drain },
	{ "pause",
	  "pause (--wiki DOMAIN | --all)\n                  [--for DURATION] [--reason TEXT]",
	  "pause",
	  "stop draining one wiki (--wiki) or every wiki (--all)\n"
	  "fleet-wide, at each pod's next batch; --for 30m|2h|1d\n"
	  "ends it by itself, --reason says why (shown in status)",
	  OPT_WIKI | OPT_ALL | OPT_FOR | OPT_REASON, OPT_WIKI | OPT_ALL, 0, run_pause },
	{ "resume", "resume (--wiki DOMAIN | --all)", "resume",
	  "lift a pause (--all lifts the pause of every wiki)", OPT_WIKI | OPT_ALL,
	  OPT_WIKI | OPT_ALL, 0, run_resume },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: jobdrainer [--config FILE] [--check-config]\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "       jobdrainer [--config FILE] %s\n", commands[i].synopsis);
	fprintf(out, "       jobdrainer --version | --help\n"
		     "\n"
		     "Drains every wiki's MediaWiki job queue through signed Special:RunJobs\n"
		     "requests to the local MediaWiki. Without a command it runs the daemon.\n"
		     "\n"
		     "  -c, --config FILE   configuration (default " CONFIG_DEFAULT_PATH ")\n"
		     "      --check-config  validate the configuration, print it with secrets\n"
		     "                      masked, and exit\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          print this help and exit\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const char *line = commands[i].help;
		const char *label = commands[i].label;
		while (*line != '\0') {
			size_t n = strcspn(line, "\n");
			fprintf(out, "  %-19s %.*s\n", label, (int)n, line);
			label = "";
			line += n + (line[n] == '\n');
		}
	}
	fprintf(out, "\n"
		     "Exit status: 0 ok (also after SIGTERM/SIGINT), 1 could not start or a\n"
		     "command failed, 2 bad command line or configuration, 3 drain: another\n"
		     "sidecar holds the wiki's lease, 4 drain, status --wiki, pause, resume:\n"
		     "no such wiki.\n");
}

/* "--all" or "--wiki or --all": the options of mask, for messages. */
static void option_list(unsigned mask, const char *joint, char *out, size_t len)
{
	size_t used = 0;
	int left = __builtin_popcount(mask);

	out[0] = '\0';
	for (size_t i = 0; i < NOPTIONS && used < len; i++) {
		if (!(mask & option_names[i].bit))
			continue;
		left--;
		used += (size_t)snprintf(out + used, len - used, "%s%s", option_names[i].usage,
					 left == 0   ? ""
					 : left == 1 ? joint
						     : ", ");
	}
}

/* Which options go with which command, from the table. Returns -1 to go on, or an
 * exit code. */
static int check_command(const struct options *o)
{
	const struct command *c = o->command ? find_command(o->command) : NULL;
	char names[128];

	if (o->command != NULL && c == NULL) {
		fprintf(stderr, "jobdrainer: unknown command '%s'\n", o->command);
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < NOPTIONS; i++) {
		unsigned bit = option_names[i].bit;
		size_t used = 0;
		if (!(o->given & bit) || (c != NULL && (c->takes & bit)))
			continue;
		for (size_t k = 0; k < NCOMMANDS; k++)
			if (commands[k].takes & bit)
				used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
							 used ? ", " : "", commands[k].name);
		fprintf(stderr, "jobdrainer: %s goes with the %s command%s\n", option_names[i].name,
			names, strchr(names, ',') ? "s" : "");
		return EXIT_USAGE;
	}
	if (c == NULL)
		return -1;
	if (c->one_of && __builtin_popcount(o->given & c->one_of) != 1) {
		option_list(c->one_of, " or ", names, sizeof(names));
		fprintf(stderr, "jobdrainer: %s needs %s%s\n", c->name, names,
			__builtin_popcount(c->one_of) > 1 ? " (one of them)" : "");
		return EXIT_USAGE;
	}
	if (__builtin_popcount(o->given & c->at_most_one) > 1) {
		option_list(c->at_most_one, " or ", names, sizeof(names));
		fprintf(stderr, "jobdrainer: %s takes %s, not both\n", c->name, names);
		return EXIT_USAGE;
	}
	return -1;
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "wiki", required_argument, NULL, 'w' },
		{ "for", required_argument, NULL, 'f' },
		{ "reason", required_argument, NULL, 'r' },
		{ "lanes", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->config_path = CONFIG_DEFAULT_PATH;
	o->lanes = 1;
	while ((c = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'k':
			o->check_only = true;
			break;
		case 'j':
			o->given |= OPT_JSON;
			break;
		case 'a':
			o->given |= OPT_ALL;
			break;
		case 'w':
			o->given |= OPT_WIKI;
			o->wiki = optarg;
			break;
		case 'f':
			o->given |= OPT_FOR;
			if (util_parse_duration(optarg, STEER_PAUSE_MAX_S, &o->for_s) != 0) {
				fprintf(stderr,
					"jobdrainer: --for '%s' is not a duration of 1s to "
					"366d (90s, 30m, 2h, 1d)\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'r':
			o->given |= OPT_REASON;
			o->reason = optarg;
			break;
		case 'l': {
			long long n;
			if (util_parse_int(optarg, 1, CLI_LANES_MAX, &n) != 0) {
				fprintf(stderr,
					"jobdrainer: --lanes '%s' is not a number of 1 to %d\n",
					optarg, CLI_LANES_MAX);
				return EXIT_USAGE;
			}
			o->given |= OPT_LANES;
			o->lanes = (int)n;
			break;
		}
		case 'V':
			printf("jobdrainer %s\n", JD_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		o->command = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "jobdrainer: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	return check_command(o);
}

static void log_startup(const struct config *cfg)
{
	struct log_line l;

	log_begin(&l, LOG_INFO, "jobdrainer starting");
	log_str(&l, "version", JD_VERSION);
	log_str(&l, "holder", cfg->holder);
	log_str(&l, "config", cfg->path);
	log_str(&l, "libcurl", curl_version_info(CURLVERSION_NOW)->version);
	log_str(&l, "libmariadb", db_client_version());
	log_str(&l, "jansson", jansson_version_str());
	log_str(&l, "openssl", OpenSSL_version(OPENSSL_VERSION));
	log_str(&l, "inih", INIH_VERSION);
	log_int(&l, "workers", cfg->workers);
	log_int(&l, "maxjobs", cfg->maxjobs);
	log_int(&l, "maxtime_s", cfg->maxtime);
	log_int(&l, "http_timeout_s", cfg->maxtime + cfg->http_allowance);
	log_int(&l, "time_slice_s", cfg->time_slice);
	log_int(&l, "scan_interval_s", cfg->scan_interval);
	log_int(&l, "discovery_interval_s", cfg->discovery_interval);
	log_int(&l, "backoff_base_s", cfg->backoff_base);
	log_int(&l, "backoff_max_s", cfg->backoff_max);
	log_int(&l, "shutdown_timeout_s", cfg->shutdown_timeout);
	log_str(&l, "mediawiki", cfg->mw_host);
	log_int(&l, "mediawiki_port", cfg->mw_port);
	log_str(&l, "mw_version", cfg->mw_version[0] ? cfg->mw_version : "(all)");
	log_end(&l);
}

/* An operator command: logs (drain's errors) go to stderr, results to stdout. */
static int run_command(struct config *cfg, const struct options *o)
{
	int rc;

	log_setup(LOG_FORMAT_TEXT, LOG_WARN, 2);
	if (mysql_library_init(0, NULL, NULL) != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "jobdrainer: cannot initialise libmariadb or libcurl\n");
		config_free(cfg);
		return EXIT_RUNTIME;
	}
	rc = find_command(o->command)->run(cfg, o);
	curl_global_cleanup();
	mysql_library_end();
	config_free(cfg);
	return rc;
}

/* The HTTP endpoints; a listen address that cannot be bound is fatal (the probes
 * would fail anyway), an empty one disables them. */
static int start_httpd(const struct config *cfg, struct httpd **out)
{
	struct log_line l;
	char err[256];

	*out = httpd_start(cfg, err, sizeof(err));
	if (*out == NULL && err[0] != '\0') {
		log_begin(&l, LOG_ERROR, "cannot start the HTTP endpoints");
		log_str(&l, "error", err);
		log_end(&l);
		return -1;
	}
	log_begin(&l, LOG_INFO, *out ? "http endpoints listening" : "http endpoints disabled");
	if (*out != NULL) {
		log_str(&l, "listen", cfg->http_listen);
		log_int(&l, "port", httpd_port(*out));
	}
	log_end(&l);
	return 0;
}

/* The running subsystems, for a reload to reach. */
struct running {
	struct reload *reload;
	struct sched *sched;
	struct limiter *limiter;
	struct scanner *scanner;
	struct workers *workers;
	int threads; /* worker threads started: a reload can lower workers, not raise it */
};

/* Hands a reloaded configuration to every subsystem: each takes it up at its next
 * batch or pass (reload.h keeps the old one alive). */
static void apply_config(struct running *run, const char *why)
{
	const struct config *cfg = reload_now(run->reload, why);

	if (cfg == NULL)
		return;
	if (cfg->workers > run->threads) {
		struct log_line l;
		log_begin(&l, LOG_WARN, "configuration reload: more workers than threads started");
		log_int(&l, "workers", cfg->workers);
		log_int(&l, "threads", run->threads);
		log_str(&l, "next", "at most the threads started drain at once until a restart");
		log_end(&l);
	}
	log_set_level((enum log_level)cfg->log_level);
	sched_set_config(run->sched, cfg);
	limiter_set_config(run->limiter, cfg);
	scanner_set_config(run->scanner, cfg);
	workers_set_config(run->workers, cfg);
}

/* Waits for SIGTERM/SIGINT; SIGHUP, or a change of the file's content (looked at every
 * reload_check_interval seconds), reloads the configuration. */
static void wait_for_stop(const sigset_t *set, struct running *run)
{
	int64_t next_check = util_mono_ms();
	int sig;

	for (;;) {
		const struct config *cfg = reload_current(run->reload);
		struct timespec tick = { 1, 0 };
		int64_t now = util_mono_ms();
		if (cfg->reload_check_interval > 0 && now >= next_check) {
			next_check = now + (int64_t)cfg->reload_check_interval * 1000;
			if (reload_file_changed(run->reload))
				apply_config(run, "file changed");
		}
		sig = sigtimedwait(set, NULL, &tick);
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			apply_config(run, "SIGHUP");
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT) {
			struct log_line l;
			log_begin(&l, LOG_INFO, "stopping");
			log_str(&l, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			log_str(&l, "next", "no new batches; waiting for batches in flight");
			log_end(&l);
			return;
		}
	}
}

/* Lets batches in flight finish within shutdown_timeout; a second signal, or the
 * deadline, cuts them short. */
static void drain_in_flight(const struct config *cfg, struct workers *w, const sigset_t *set,
			    atomic_bool *abort_now)
{
	int64_t deadline = util_mono_ms() + (int64_t)cfg->shutdown_timeout * 1000;
	struct timespec tick = { 0, 200 * 1000000 };

	while (!workers_wait(w, util_mono_ms() + 200)) {
		int sig = sigtimedwait(set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT || util_mono_ms() >= deadline) {
			log_msg(LOG_WARN,
				sig > 0 ? "second signal: abandoning batches in flight"
					: "shutdown_timeout reached: abandoning batches in "
					  "flight");
			atomic_store(abort_now, true);
			break;
		}
	}
}

int main(int argc, char **argv)
{
	struct options opt;
	struct config *cfg = NULL;
	struct sched *sched = NULL;
	struct limiter *limiter = NULL;
	struct httpd *httpd = NULL;
	struct scanner *scanner = NULL;
	struct workers *workers = NULL;
	struct reload *reload = NULL;
	struct running run;
	struct buf errors;
	sigset_t sigs;
	atomic_bool abort_now = false;
	int rc;

	/* 0. No core dump and no ptrace by other processes of the same user: the process
	 * holds database passwords and every wiki's secret key. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rc = parse_args(argc, argv, &opt);
	if (rc >= 0)
		return rc;

	/* 1. Configuration: any error ends here, naming file, line and key. */
	buf_init(&errors);
	if (config_load(opt.config_path, &cfg, &errors) != 0) {
		fprintf(stderr, "%sjobdrainer: configuration has errors; not starting\n",
			errors.data ? errors.data : "");
		buf_release(&errors);
		return EXIT_USAGE;
	}
	buf_release(&errors);
	if (opt.check_only) {
		config_print(cfg, stdout);
		config_free(cfg);
		return EXIT_OK;
	}
	if (opt.command != NULL)
		return run_command(cfg, &opt);
	log_setup((enum log_format)cfg->log_format, (enum log_level)cfg->log_level, 1);

	/* 2. Signals: blocked before any thread exists, so every thread inherits the mask
	 * and only sigwait() here sees them. SIGPIPE is ignored for good. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigdelset(&sigs, SIGPIPE);

	/* 3. Libraries that must be set up before threads. */
	if (mysql_library_init(0, NULL, NULL) != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		log_msg(LOG_ERROR, "cannot initialise libmariadb or libcurl");
		config_free(cfg);
		return EXIT_RUNTIME;
	}
	log_startup(cfg);
	reload = reload_new(cfg);
	if (reload == NULL) {
		log_msg(LOG_ERROR, "out of memory");
		config_free(cfg);
		return EXIT_RUNTIME;
	}

	/* 4. Subsystems: the endpoints, the scheduler, the scanner that feeds it, the
	 * limiter and the workers that use both. */
	rc = EXIT_RUNTIME;
	if (start_httpd(cfg, &httpd) != 0)
		goto out;
	sched = sched_new(cfg);
	limiter = limiter_new(cfg);
	if (sched == NULL || limiter == NULL)
		goto out;
	scanner = scanner_start(cfg, sched);
	if (scanner == NULL)
		goto out;
	workers = workers_start(cfg, sched, limiter, &abort_now);
	if (workers == NULL)
		goto out;

	/* 5. Run until told to stop. Then the statements of the shutdown path (lease
	 * releases) get until shutdown_timeout plus a little: after that every database
	 * connection is cut, so a hung database cannot hold the exit past the grace period. */
	run = (struct running){ reload, sched, limiter, scanner, workers, cfg->workers };
	wait_for_stop(&sigs, &run);
	cfg = (struct config *)reload_current(reload); /* owned by reload */
	db_abort_at(util_mono_ms() + ((int64_t)cfg->shutdown_timeout + 2) * 1000);
	rc = EXIT_OK;

out:
	/* 6. Tear down in reverse: no new batches, finish or abandon those in flight. */
	if (rc != EXIT_OK)
		log_msg(LOG_ERROR, "cannot start: see the line above, or out of memory or threads");
	if (sched != NULL)
		sched_stop(sched);
	if (limiter != NULL)
		limiter_stop(limiter);
	if (workers != NULL)
		drain_in_flight(cfg, workers, &sigs, &abort_now);
	workers_join_free(workers);
	scanner_stop(scanner);
	limiter_free(limiter);
	sched_free(sched);
	httpd_stop(httpd);
	log_msg(LOG_INFO, "stopped");
	curl_global_cleanup();
	mysql_library_end();
	reload_free(reload); /* every config since start, now that no thread is left */
	return rc;
}
