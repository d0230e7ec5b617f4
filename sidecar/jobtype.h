/* jobtype.h - job-type lists of the INI ([drain] priority_types, skip_types) and the
 * choice of the job type a batch asks Special:RunJobs for.
 *
 * A list is patterns separated by commas and/or blanks; a pattern is a job type
 * (`job_cmd`) with shell wildcards (* and ?), matched case-sensitively as MediaWiki
 * does. Leaf module: libc only; pure functions, safe from any thread. */
#ifndef JD_JOBTYPE_H
#define JD_JOBTYPE_H

#include <stdbool.h>
#include <stddef.h>

/* The longest pattern and job type we handle (MediaWiki's job_cmd is VARBINARY(60)). */
#define JOBTYPE_MAX 60
/* Patterns in one list, at most. */
#define JOBTYPE_LIST_MAX 32

/* A job type as the lists and jd_wiki.ready_type_names hold it (one owner for the
 * rule). job_cmd is any 60 bytes, but the column is ASCII and the list is separated by
 * blanks and commas: bytes outside the printable ASCII range 0x21-0x7e, the comma and
 * '%' itself are written %XX (uppercase hex), everything else as it is, so every
 * MediaWiki type in use today reads the same and no value can break the column or the
 * list. The form is reversible: jobtype_decode gives the bytes back for MediaWiki. */

/* Writes the list form of type[0..len) to out. Returns its length, or -ENAMETOOLONG
 * (out "") when it would not fit in outlen - 1 bytes (the caller leaves the type out of
 * the list; it still counts as ready work). */
int jobtype_encode(const char *type, size_t len, char *out, size_t outlen);

/* The bytes a list word stands for (NUL-terminated in out; *len without the NUL, which a
 * decoded NUL byte may precede). 0, or -EINVAL when word is not a list form (a bad %XX
 * sequence, a byte the form never holds) or does not fit. */
int jobtype_decode(const char *word, char *out, size_t outlen, size_t *len);

/* Checks a list: 0, or -EINVAL with why (naming the bad pattern). */
int jobtype_check_list(const char *list, char *why, size_t whylen);

/* The index of the first pattern of list that type matches, or -1. */
int jobtype_match(const char *list, const char *type);

/* Whether type is a word of words (a blank-separated list of job types). */
bool jobtype_in(const char *words, const char *type);

/* The type the next batch asks for, given the ready types a scan saw (blank-separated),
 * those already answered "none left" under this lease (tried) and the type the last
 * batch asked for (last, "" for none):
 *  - the first ready, untried type matching priority (in the order of its patterns);
 *  - else, with no skip list, "" (an untyped batch: MediaWiki picks any type);
 *  - else the next ready, untried type after `last` in `ready` (round robin, so a
 *    long backlog of one type does not hold back the others) that skip does not match.
 * Returns false when nothing is left to ask for (out is ""). */
bool jobtype_next(const char *priority, const char *skip, const char *ready, const char *tried,
		  const char *last, char *out, size_t outlen);

#endif
