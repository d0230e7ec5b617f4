/* wiki.h - one wiki of the farm, as discovery found it. Leaf module. */
#ifndef JD_WIKI_H
#define JD_WIKI_H

#include <stddef.h>

struct wiki {
	char *domain;       /* Host header MediaWiki picks the wiki by */
	char *dbname;       /* validated identifier: util_is_db_name */
	char *table_prefix; /* validated identifier, MediaWiki's $wgDBprefix */
	char *secret;       /* $wgSecretKey; never logged */
};

/* Deep copy; NULL on allocation failure. */
struct wiki *wiki_dup(const struct wiki *w);
/* Frees a wiki from wiki_dup or discovery; accepts NULL and half-built ones. */
void wiki_free(struct wiki *w);

struct wiki_list {
	struct wiki **items;
	size_t len;
};

void wiki_list_free(struct wiki_list *l);

#endif
