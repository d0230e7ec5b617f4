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
