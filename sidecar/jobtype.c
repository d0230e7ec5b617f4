/* jobtype.c - see jobtype.h. */
#include "jobtype.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

static bool is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\n';
}

/* Copies the next word of *p into out (truncated to outlen - 1) and advances *p.
 * Returns the word's full length, 0 at the end. */
static size_t next_word(const char **p, char *out, size_t outlen)
{
	const char *s = *p, *start;
	size_t n;

	while (*s && is_sep(*s))
		s++;
	start = s;
	while (*s && !is_sep(*s))
		s++;
	n = (size_t)(s - start);
	snprintf(out, outlen, "%.*s", (int)n, start);
	*p = s;
	return n;
}

static bool pattern_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == ':' || c == '*' || c == '?';
}

/* Whether byte c stands for itself in a list word (jobtype.h). */
static bool literal(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != ',' && c != '%';
}

int jobtype_encode(const char *type, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)type[i];
		size_t need = literal(c) ? 1 : 3;
		if (o + need >= outlen) {
			if (outlen > 0)
				out[0] = '\0';
			return -ENAMETOOLONG;
		}
		if (need == 1) {
			out[o++] = (char)c;
			continue;
		}
		out[o++] = '%';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	if (o >= outlen)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return (int)o;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int jobtype_decode(const char *word, char *out, size_t outlen, size_t *len)
{
	size_t o = 0;

	for (const char *p = word; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (o + 1 >= outlen)
			return -EINVAL;
		if (c == '%') {
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
			/* Only what jobtype_encode writes: one spelling per type. */
			if (lo < 0 || literal((unsigned char)(hi << 4 | lo)))
				return -EINVAL;
			out[o++] = (char)(hi << 4 | lo);
			p += 2;
			continue;
		}
		if (!literal(c))
			return -EINVAL;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	*len = o;
	return 0;
}

int jobtype_check_list(const char *list, char *why, size_t whylen)
{
	char word[JOBTYPE_MAX + 2];
	const char *p = list;
	size_t n;
	int count = 0;

	while ((n = next_word(&p, word, sizeof(word))) > 0) {
		if (n > JOBTYPE_MAX) {
			snprintf(why, whylen, "pattern '%.20s...' is longer than %d bytes", word,
				 JOBTYPE_MAX);
			return -EINVAL;
		}
		for (const char *c = word; *c; c++) {
			if (!pattern_char(*c)) {
				snprintf(why, whylen,
					 "pattern '%s' has '%c': only [A-Za-z0-9_.:-] and the "
					 "wildcards * and ?",
					 word, *c);
				return -EINVAL;
			}
		}
		if (++count > JOBTYPE_LIST_MAX) {
			snprintf(why, whylen, "more than %d patterns", JOBTYPE_LIST_MAX);
			return -EINVAL;
		}
	}
	return 0;
}

int jobtype_match(const char *list, const char *type)
{
	char word[JOBTYPE_MAX + 2];
	const char *p = list;
	int i = 0;

	while (next_word(&p, word, sizeof(word)) > 0) {
		if (fnmatch(word, type, 0) == 0)
			return i;
		i++;
	}
	return -1;
}

bool jobtype_in(const char *words, const char *type)
{
	char word[JOBTYPE_MAX + 2];
	const char *p = words;

	while (next_word(&p, word, sizeof(word)) > 0)
		if (strcmp(word, type) == 0)
			return true;
	return false;
}

/* Whether a ready word may be asked for in the round robin. */
static bool runnable(const char *word, size_t n, const char *skip, const char *tried)
{
	return n <= JOBTYPE_MAX && !jobtype_in(tried, word) && jobtype_match(skip, word) < 0;
}

bool jobtype_next(const char *priority, const char *skip, const char *ready, const char *tried,
		  const char *last, char *out, size_t outlen)
{
	char word[JOBTYPE_MAX + 2], first[JOBTYPE_MAX + 2] = "";
	const char *p = ready;
	int best = -1;
	bool after = false;
	size_t n;

	out[0] = '\0';
	while ((n = next_word(&p, word, sizeof(word))) > 0) {
		int rank;
		if (!runnable(word, n, skip, tried))
			continue;
		rank = jobtype_match(priority, word);
		if (rank >= 0 && (best < 0 || rank < best)) {
			best = rank;
			snprintf(out, outlen, "%s", word);
		}
	}
	if (best >= 0)
		return true;
	/* No skip list: an untyped batch runs whatever MediaWiki picks. */
	if (strspn(skip, ", \t\n") == strlen(skip))
		return true;
	for (p = ready; (n = next_word(&p, word, sizeof(word))) > 0;) {
		if (strcmp(word, last) == 0) {
			after = true;
			continue;
		}
		if (!runnable(word, n, skip, tried))
			continue;
		if (after) {
			snprintf(out, outlen, "%s", word);
			return true;
		}
		if (first[0] == '\0')
			snprintf(first, sizeof(first), "%s", word);
	}
	/* Wrap around; `last` itself when it is the only one left. */
	if (first[0] == '\0' && last[0] != '\0' && jobtype_in(ready, last) &&
	    runnable(last, strlen(last), skip, tried))
		snprintf(first, sizeof(first), "%s", last);
	snprintf(out, outlen, "%s", first);
	return first[0] != '\0';
}
