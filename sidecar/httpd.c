/* httpd.c - see httpd.h. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "scanner.h"
#include "util.h"

struct httpd {
	struct MHD_Daemon *daemon;
	int64_t alive_window_ms;
	int64_t started_ms; /* the scanner's first turn is due within the window from here */
	int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     const char *body, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct httpd *h = cls;
	char text[300];

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, 405, "text/plain", "method not allowed\n", 19);
	if (strcmp(url, "/healthz") == 0) {
		struct scanner_health sh;
		int64_t age;
		scanner_health(&sh);
		age = util_mono_ms() -
		      (sh.last_turn_ms > h->started_ms ? sh.last_turn_ms : h->started_ms);
		if (age <= h->alive_window_ms)
			return reply(c, 200, "text/plain", "ok\n", 3);
		snprintf(text, sizeof(text), "scanner loop stalled for %llds\n",
			 (long long)age / 1000);
		return reply(c, 503, "text/plain", text, strlen(text));
	}
	if (strcmp(url, "/readyz") == 0) {
		struct scanner_health sh;
		scanner_health(&sh);
		snprintf(text, sizeof(text), "%s\n", sh.ready ? "ready" : sh.why);
		return reply(c, sh.ready ? 200 : 503, "text/plain", text, strlen(text));
	}
	if (strcmp(url, "/metrics") == 0) {
		struct buf b;
		enum MHD_Result rc;
		buf_init(&b);
		metrics_render(&b);
		if (b.failed) {
			buf_release(&b);
			return reply(c, 500, "text/plain", "out of memory\n", 14);
		}
		rc = reply(c, 200, "text/plain; version=0.0.4", b.data, b.len);
		buf_release(&b);
		return rc;
	}
	return reply(c, 404, "text/plain", "not found\n", 10);
}

struct httpd *httpd_start(const struct config *cfg, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	struct httpd *h;
	int port;
	const union MHD_DaemonInfo *info;

	err[0] = '\0';
	if (cfg->http_listen[0] == '\0')
		return NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (util_parse_listen(cfg->http_listen, (unsigned char *)&sa.sin_addr, &port) != 0) {
		snprintf(err, errlen, "bad listen address '%s'", cfg->http_listen);
		return NULL;
	}
	sa.sin_port = htons((uint16_t)port);
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Alive while the scanner loop turns; its database calls may each take up to
	 * connect + query timeouts, a few per turn. */
	h->alive_window_ms =
		(int64_t)(4 * (cfg->platform.connect_timeout + cfg->platform.query_timeout) +
			  2 * cfg->scan_interval + 30) *
		1000;
	h->started_ms = util_mono_ms();
	/* Anyone who reaches the pod IP can open connections and trickle header bytes,
	 * which keeps each one alive past the idle timeout. The per-address cap keeps
	 * such a client from taking the slots the kubelet's probes and Prometheus need;
	 * the total is large enough for many addresses, and epoll has no FD_SETSIZE
	 * ceiling. The short timeout frees connections that go quiet. */
	h->daemon =
		MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, (uint16_t)port, NULL, NULL,
				 on_request, h, MHD_OPTION_SOCK_ADDR, &sa,
				 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_IDLE_TIMEOUT_S,
				 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_CONNECTIONS,
				 MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				 (unsigned int)HTTPD_MAX_CONNECTIONS_PER_IP, MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", cfg->http_listen,
			 strerror(errno ? errno : EADDRINUSE));
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : port;
	return h;
}

int httpd_port(const struct httpd *h)
{
	return h ? h->port : 0;
}

void httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
