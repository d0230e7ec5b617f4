/* wiki.h - one wiki of the farm, as discovery found it. Leaf module. */
#ifndef JD_WIKI_H
#define JD_WIKI_H

#include <stddef.h>
#include <stdint.h>

/* What the scanner last wrote to this wiki's jd_wiki row (scanner.c decides from it
 * whether a new scan's figures need writing). All zero: nothing written yet. */
struct wiki_written {
	uint64_t light;   /* fingerprint of the figures every scan reads */
	uint64_t full;    /* fingerprint of those only a full scan reads (0: none written) */
	int64_t at_ms;    /* monotonic ms of the last write */
};

struct wiki {
	char *domain;       /* Host header MediaWiki picks the wiki by */
	char *dbname;       /* validated identifier: util_is_db_name */
	char *table_prefix; /* validated identifier, MediaWiki's $wgDBprefix */
	char *secret;       /* $wgSecretKey; never logged */
	struct wiki_written written; /* the scanner's own list only; copies start at zero */
};

/* Deep copy, without `written`; NULL on allocation failure. */
struct wiki *wiki_dup(const struct wiki *w);
/* Frees a wiki from wiki_dup or discovery; accepts NULL and half-built ones. */
void wiki_free(struct wiki *w);

struct wiki_list {
	struct wiki **items;
	size_t len;
};

void wiki_list_free(struct wiki_list *l);

#endif
