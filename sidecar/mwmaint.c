/* mwmaint.c - see mwmaint.h. */
#include "mwmaint.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int mwmaint_release(const char *version)
{
	for (const char *p = version; p != NULL && *p; p++) {
		int minor = 0, digits = 0;
		/* "1." not inside a longer number (a label's "11.2" or "wbs1.5" is not 1.x). */
		if (p[0] != '1' || p[1] != '.' || (p > version && p[-1] >= '0' && p[-1] <= '9') ||
		    (p > version && p[-1] == '.'))
			continue;
		for (const char *d = p + 2; *d >= '0' && *d <= '9' && digits < 4; d++, digits++)
			minor = minor * 10 + (*d - '0');
		if (digits > 0 && digits < 4)
			return minor;
	}
	return -1;
}

void mwmaint_wiki_id(const struct wiki *w, char *out, size_t len)
{
	/* Discovery let only [A-Za-z0-9_$] through: no '-' or '?' for WikiMap to escape. */
	snprintf(out, len, "%s%s%s", w->dbname, w->table_prefix[0] ? "-" : "", w->table_prefix);
}

/* Whether s reaches the script as one word, unquoted, in any POSIX shell. */
static bool shell_safe(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-/+=@,",
			   *s) == NULL)
			return false;
	return true;
}

void mwmaint_requeue(char *out, size_t len, int release, const char *wiki_id, const char *type)
{
	char quoted[4 * 64 + 3];
	size_t q = 0;

	if (shell_safe(type)) {
		snprintf(quoted, sizeof(quoted), "%s", type);
	} else {
		/* '...' with each ' as '\'' (a job type is at most 64 bytes: it fits). */
		quoted[q++] = '\'';
		for (const char *s = type; *s && q + 6 < sizeof(quoted); s++) {
			if (*s == '\'') {
				memcpy(quoted + q, "'\\''", 4);
				q += 4;
			} else {
				quoted[q++] = *s;
			}
		}
		quoted[q++] = '\'';
		quoted[q] = '\0';
	}
	snprintf(out, len, "php maintenance/%s --wiki %s --type %s --action repush-abandoned",
		 release >= MWMAINT_RUN_PHP_SINCE ? "run.php manageJobs" : "manageJobs.php",
		 wiki_id, quoted);
}
