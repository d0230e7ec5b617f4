/* mwmaint.h - the MediaWiki maintenance commands the operator is told to run, spelled
 * for one wiki and its MediaWiki release (status --wiki). Pure functions; leaf module
 * (libc + wiki.h), unit-tested. */
#ifndef JD_MWMAINT_H
#define JD_MWMAINT_H

#include <stddef.h>

#include "wiki.h"

/* The first release whose maintenance scripts run through maintenance/run.php. */
#define MWMAINT_RUN_PHP_SINCE 40

/* The MediaWiki 1.x release a [discovery] version label names, as its minor number:
 * "mw1.43-wbs2" and "1.43.1" give 43; -1 when the label names none (e.g. ""). */
int mwmaint_release(const char *version);

/* MediaWiki's wiki ID of w, what a maintenance script's --wiki takes: "DB", or
 * "DB-PREFIX" when it has a table prefix (WikiMap; MW_DB and MW_PREFIX). */
void mwmaint_wiki_id(const struct wiki *w, char *out, size_t len);

/* The command that requeues w's abandoned jobs of one type (manageJobs
 * --action repush-abandoned) on MediaWiki 1.<release>: through run.php from 1.40 on,
 * the script itself before. A type with characters a shell treats specially is quoted. */
void mwmaint_requeue(char *out, size_t len, int release, const char *wiki_id, const char *type);

#endif
