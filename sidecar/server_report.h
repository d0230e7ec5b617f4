/* server_report.h - what detection knows of one database server, reported every few
 * seconds by the scanner lease holder to the three places an operator looks: /metrics
 * (metrics_set_servers), the coordination table jd_server (coord_write_server_reports)
 * and `status` (coord_read_server_reports). A plain value: no pointers, copied freely.
 * Leaf header (libc only). */
#ifndef JD_SERVER_REPORT_H
#define JD_SERVER_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One database server's detection, as the scanner reports it (metrics per server, the coordination row, `status`). */
struct server_report {
	char server[128]; /* canonical "host:port" of the server ([scan_db]'s for the wikis naming none) */
	size_t wikis;
	bool down; /* its last statement failed on the connection: unreachable, lost, refused login */
	char down_why[256];
	int64_t sweep_ms;   /* the last complete sweep's length; 0: none yet */
	double budget_used; /* share of one database core over the last minute (pace_used) */
	size_t hot, unreadable;
	int feed; /* enum binlog_state: 0 STARTING, 1 FOLLOWING, 2 BLIND, 3 FAILED; or -1: no feed on this server */
	char feed_why[256];
};

/* The feed's state as the metrics label, `status` and its JSON name it (the value of
 * server_report.feed, an enum binlog_state); NULL for -1 (no feed) or an unknown one.
 * One list, so the three places cannot name a state differently. */
#define SERVER_REPORT_FEED_STATES(X) X(0, "starting") X(1, "following") X(2, "blind") X(3, "failed")
#define SERVER_REPORT_FEED_STATE_COUNT 4
#define SERVER_REPORT_FEED_FOLLOWING 1

static inline const char *server_report_feed_name(int feed)
{
	switch (feed) {
#define SERVER_REPORT_FEED_CASE(v, name)                                                           \
	case v:                                                                                    \
		return name;
		SERVER_REPORT_FEED_STATES(SERVER_REPORT_FEED_CASE)
#undef SERVER_REPORT_FEED_CASE
	default:
		return NULL;
	}
}

#endif
