/* httpd.h - the sidecar's own HTTP endpoints (libmicrohttpd, one internal thread):
 *   /healthz  200 while the scanner loop keeps turning (liveness: restart me if not);
 *   /readyz   200 while the databases answer (readiness), else 503 with the reason
 *             (both read scanner_health());
 *   /metrics  Prometheus text (metrics.h).
 * Anything else is 404; methods other than GET and HEAD are 405.
 * At most HTTPD_MAX_CONNECTIONS connections, HTTPD_MAX_CONNECTIONS_PER_IP from one
 * address (more are closed at once), each closed after HTTPD_IDLE_TIMEOUT_S idle. */
#ifndef JD_HTTPD_H
#define JD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define HTTPD_MAX_CONNECTIONS 256
#define HTTPD_MAX_CONNECTIONS_PER_IP 8
#define HTTPD_IDLE_TIMEOUT_S 5

struct httpd;

/* Listens on [http] listen. Returns NULL with a message in err on failure; with an
 * empty listen it returns NULL and err empty (disabled). */
struct httpd *httpd_start(const struct config *cfg, char *err, size_t errlen);
/* The port it listens on (useful when the configured port is 0). */
int httpd_port(const struct httpd *h);
void httpd_stop(struct httpd *h);

#endif
