/* reload.h - re-reading the configuration while the daemon runs: on SIGHUP, and when
 * the file's content changes (a mounted ConfigMap is updated in place by the kubelet,
 * about a minute after `kubectl apply`).
 *
 * A file with errors is refused, with the usual "FILE:LINE: [section] key: why" lines,
 * and the configuration in force stays; so is a file that parses but looks cut short
 * by a write in progress (reload_looks_cut), since its missing keys would silently
 * fall back to their defaults. Either is reported once, and loaded when it changes. Keys a running daemon cannot change (its
 * identity, endpoints, coordination and scope: config_keep_static) keep their old
 * values and are named in one log line. Every config loaded since start is owned here
 * until reload_free: the subsystems swap their pointer at their next batch or pass,
 * and a thread still reading a replaced config never reads freed memory (a few KB per
 * reload, and reloads happen only when the file changes). Used by the main thread only. */
#ifndef JD_RELOAD_H
#define JD_RELOAD_H

#include <stdbool.h>

#include "config.h"

struct reload;

/* Takes ownership of the config the daemon started with. NULL: out of memory. */
struct reload *reload_new(struct config *initial);
void reload_free(struct reload *r);

const struct config *reload_current(const struct reload *r);

/* Whether the file's content differs from the last one looked at (loaded, or
 * refused: a broken file is reported once, not at every check). */
bool reload_file_changed(struct reload *r);

/* Whether a file that parses looks cut short by a write still in progress (a
 * non-atomic edit on a VM: truncate, then write) rather than edited, judged against
 * the file in force: it sets no key though the one in force did (empty); its last line
 * has no newline though the one in force ended with one (cut mid-line: "maxjobs = 1"
 * of "maxjobs = 100"); or a [section] header the one in force had is gone (cut
 * between sections: everything below would fall back to its defaults). Keeping the
 * header, even with no key under it, is how a section is returned to its defaults on
 * purpose. Returns true with why (one sentence) when it looks cut. Pure function. */
bool reload_looks_cut(const struct config_file_shape *cur, const struct config_file_shape *next,
		      char *why, size_t len);

/* Loads the file (why: "SIGHUP", "file changed") and logs the outcome. Returns the new
 * config, now current, or NULL when it was refused or nothing changed. */
const struct config *reload_now(struct reload *r, const char *why);

#endif
