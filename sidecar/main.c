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
#include "scanner.h"
#include "sched.h"
#include "version.h"
#include "worker.h"

#ifndef INIH_VERSION
#define INIH_VERSION "unknown"
#endif

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static void usage(FILE *out)
{
	fprintf(out,
		"usage: jobdrainer [--config FILE] [--check-config]\n"
		"       jobdrainer [--config FILE] status [--json] [--all]\n"
		"       jobdrainer [--config FILE] drain --wiki DOMAIN\n"
		"       jobdrainer --version | --help\n"
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
		"Commands:\n"
		"  status              the fleet's wikis with a backlog, a lease or trouble,\n"
		"                      most urgent first (--all: every wiki; --json)\n"
		"  drain --wiki DOMAIN drain one wiki now, under its lease, printing each batch\n"
		"\n"
		"Exit status: 0 ok (also after SIGTERM/SIGINT), 1 could not start or a\n"
		"command failed, 2 bad command line or configuration, 3 drain: another\n"
		"sidecar holds the wiki's lease, 4 drain: no such wiki.\n");
}

struct options {
	const char *config_path;
	bool check_only;
	const char *command; /* NULL: run the daemon */
	const char *wiki;
	bool json;
	bool all;
};

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "wiki", required_argument, NULL, 'w' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->config_path = CONFIG_DEFAULT_PATH;
	while ((c = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'k':
			o->check_only = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'a':
			o->all = true;
			break;
		case 'w':
			o->wiki = optarg;
			break;
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
	if (o->command != NULL && strcmp(o->command, "status") != 0 &&
	    strcmp(o->command, "drain") != 0) {
		fprintf(stderr, "jobdrainer: unknown command '%s'\n", o->command);
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((o->json || o->all) && (o->command == NULL || strcmp(o->command, "status") != 0)) {
		fprintf(stderr, "jobdrainer: --json and --all go with the status command\n");
		return EXIT_USAGE;
	}
	if ((o->wiki != NULL) != (o->command != NULL && strcmp(o->command, "drain") == 0)) {
		fprintf(stderr, "jobdrainer: drain needs --wiki DOMAIN, and --wiki needs drain\n");
		return EXIT_USAGE;
	}
	return -1;
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
	if (strcmp(o->command, "status") == 0)
		rc = cli_status(cfg, o->json, o->all);
	else
		rc = cli_drain(cfg, o->wiki);
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

/* Waits for SIGTERM/SIGINT. SIGHUP is answered, not acted on: there is no reload. */
static void wait_for_stop(const sigset_t *set)
{
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT) {
			struct log_line l;
			log_begin(&l, LOG_INFO, "stopping");
			log_str(&l, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			log_str(&l, "next", "no new batches; waiting for batches in flight");
			log_end(&l);
			return;
		}
		if (sig == SIGHUP)
			log_msg(LOG_WARN, "SIGHUP ignored: configuration reload is not supported; "
					  "restart to apply changes");
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
			log_msg(LOG_WARN, sig > 0 ? "second signal: abandoning batches in flight"
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
	wait_for_stop(&sigs);
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
	config_free(cfg);
	return rc;
}
