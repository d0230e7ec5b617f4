/* cli.h - operator commands, run next to the daemon (kubectl exec ... jobdrainer ...):
 *   status [--json] [--all]  the fleet's view from the coordination tables (detection
 *                            per database server, pauses, wikis);
 *   drain --wiki DOMAIN [--lanes N]  drain one wiki now, under its lease (N lanes: N
 *                            lease slots, each a thread), and say what happened.
 * They print to stdout and return the process exit code. */
#ifndef JD_CLI_H
#define JD_CLI_H

#include <stdbool.h>

#include "config.h"
#include "exitcode.h" /* the exit codes the commands return */

int cli_status(const struct config *cfg, bool json, bool all);
/* drain --lanes: at most as many as a lease slot number holds in this release. */
#define CLI_LANES_MAX 64

int cli_drain(const struct config *cfg, const char *domain, int lanes);

#endif
